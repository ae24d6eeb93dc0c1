"""A generated Triton kernel for a (grouped or depthwise) k×k conv followed by a pointwise conv.

``y = act2(W2 · act1(conv_kxk(x, W1, groups=G) + b1) + b2) [+ residual]`` in one kernel, NCHW float32
on CUDA: each program computes a tile of BLOCK_P pixels × BLOCK_N output channels; it walks the
intermediate channels in chunks of BLOCK_K, computes that chunk of the k×k conv for its pixels in
registers (never written to memory), applies act1 and accumulates the chunk's 1×1 product with
``tl.dot``. The intermediate tensor — the largest one of a depthwise/inverted-bottleneck block — never
touches global memory.

:func:`kernel_source` writes the kernel for one configuration (kernel size, groups, activations,
residual) as Python/Triton source; :func:`emit_runtime` returns the source embedded into generated
``cudagraph`` modules: the kernel generator, a launcher, and :func:`dwpw` — the fused call that the
generated forward uses, which falls back to the two PyTorch convs when Triton or CUDA is absent or
the configuration is not supported (stride ≠ 1, dilation ≠ 1, non-"same" padding, non-float32).
Nothing here imports triton at module import time.
"""

from __future__ import annotations

__all__ = ["ACTS", "kernel_source", "RUNTIME_SOURCE", "emit_runtime"]

#: activations the kernel applies in registers (Triton expressions of ``v``)
ACTS = {
    "none": "v",
    "relu": "tl.maximum(v, 0.0)",
    "silu": "v * tl.sigmoid(v)",
    "gelu": "0.5 * v * (1.0 + tl.math.erf(v * 0.7071067811865476))",
    "sigmoid": "tl.sigmoid(v)",
    "hardswish": "v * tl.minimum(tl.maximum(v + 3.0, 0.0), 6.0) / 6.0",
}

_KERNEL = '''
@triton.jit
def {name}(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, r_ptr, y_ptr,
           C_IN, C_MID, C_OUT, H, W,
           K: tl.constexpr, PAD: tl.constexpr, CG_IN: tl.constexpr, CG_MID: tl.constexpr,
           HAS_RES: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_p = tl.program_id(0)
    pid_n = tl.program_id(1)
    n = tl.program_id(2)
    HW = H * W
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_p = offs_p < HW
    mask_n = offs_n < C_OUT
    oh = offs_p // W
    ow = offs_p % W
    x_base = x_ptr + n * C_IN * HW
    acc = tl.zeros((BLOCK_P, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, C_MID, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < C_MID
        grp = offs_k // CG_MID
        mid = tl.zeros((BLOCK_P, BLOCK_K), dtype=tl.float32)
        for ci in range(0, CG_IN):
            cin = grp * CG_IN + ci
            for kh in range(0, K):
                ih = oh + kh - PAD
                for kw in range(0, K):
                    iw = ow + kw - PAD
                    valid = mask_p & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                    xv = tl.load(x_base + cin[None, :] * HW + (ih * W + iw)[:, None],
                                 mask=valid[:, None] & mask_k[None, :], other=0.0)
                    wv = tl.load(w1_ptr + ((offs_k * CG_IN + ci) * K + kh) * K + kw, mask=mask_k, other=0.0)
                    mid += xv * wv[None, :]
        mid += tl.load(b1_ptr + offs_k, mask=mask_k, other=0.0)[None, :]
        v = mid
        mid = {act1}
        mid = tl.where(mask_k[None, :], mid, 0.0)
        w2 = tl.load(w2_ptr + offs_n[None, :] * C_MID + offs_k[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc += tl.dot(mid, w2, allow_tf32=False)
    acc += tl.load(b2_ptr + offs_n, mask=mask_n, other=0.0)[None, :]
    v = acc
    acc = {act2}
    out_off = n * C_OUT * HW + offs_n[None, :] * HW + offs_p[:, None]
    mask = mask_p[:, None] & mask_n[None, :]
    if HAS_RES:
        acc += tl.load(r_ptr + out_off, mask=mask, other=0.0)
    tl.store(y_ptr + out_off, acc, mask=mask)
'''


def kernel_source(name: str, act1: str = "none", act2: str = "none") -> str:
    """Triton source of one kernel; ``act1`` after the k×k conv, ``act2`` after the pointwise conv."""
    if act1 not in ACTS or act2 not in ACTS:
        raise ValueError(f"unsupported activation: {act1 if act1 not in ACTS else act2}")
    return _KERNEL.format(name=name, act1=ACTS[act1], act2=ACTS[act2])


#: the runtime embedded into generated cudagraph modules (needs torch, nn, F in scope)
RUNTIME_SOURCE = '''
try:
    import triton
    import triton.language as tl
    _TRITON = True
except ImportError:  # the fused kernel is optional: without Triton, dwpw runs the two convs
    triton = None
    tl = None
    _TRITON = False

_DWPW_KERNELS = {}
_KERNEL_TEMPLATE = KERNEL_TEMPLATE_PLACEHOLDER
_ACT_EXPRS = ACTS_PLACEHOLDER
_TORCH_ACTS = {"none": lambda v: v, "relu": F.relu, "silu": F.silu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
               "hardswish": F.hardswish}


def _dwpw_kernel(act1, act2):
    key = (act1, act2)
    if key not in _DWPW_KERNELS:
        import linecache
        name = "_dwpw_" + act1 + "_" + act2
        src = _KERNEL_TEMPLATE.format(name=name, act1=_ACT_EXPRS[act1], act2=_ACT_EXPRS[act2])
        fname = "<archc-triton-" + name + ">"
        linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
        ns = {"triton": triton, "tl": tl}
        exec(compile(src, fname, "exec"), ns)
        _DWPW_KERNELS[key] = ns[name]
    return _DWPW_KERNELS[key]


def dwpw_supported(c1, c2, x):
    """Whether the fused Triton kernel applies: CUDA float32 NCHW, k×k stride-1 'same' conv, then a 1×1 conv."""
    return (_TRITON and x.is_cuda and x.dtype == torch.float32 and x.dim() == 4
            and isinstance(c1, nn.Conv2d) and isinstance(c2, nn.Conv2d)
            and c1.stride == (1, 1) and c1.dilation == (1, 1) and c1.kernel_size[0] == c1.kernel_size[1]
            and c1.kernel_size[0] % 2 == 1 and c1.padding == (c1.kernel_size[0] // 2,) * 2
            and c1.padding_mode == "zeros" and c2.kernel_size == (1, 1) and c2.stride == (1, 1)
            and c2.padding == (0, 0) and c2.groups == 1 and c1.out_channels == c2.in_channels)


def dwpw(c1, c2, x, act1="none", act2="none", residual=None):
    """act2(c2(act1(c1(x)))) [+ residual]: one Triton kernel on CUDA when supported (and not measured slower), else the PyTorch ops."""
    if getattr(c1, "archc_unfused", False) or not dwpw_supported(c1, c2, x) or (residual is not None and not residual.is_cuda):
        y = _TORCH_ACTS[act2](c2(_TORCH_ACTS[act1](c1(x))))
        return y if residual is None else residual + y
    x = x.contiguous()
    n, c_in, h, w = x.shape
    c_mid, c_out, k = c1.out_channels, c2.out_channels, c1.kernel_size[0]
    y = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype)
    b1 = c1.bias if c1.bias is not None else torch.zeros(c_mid, device=x.device, dtype=x.dtype)
    b2 = c2.bias if c2.bias is not None else torch.zeros(c_out, device=x.device, dtype=x.dtype)
    w2 = c2.weight.reshape(c_out, c_mid).contiguous()
    res = residual.contiguous() if residual is not None else y
    block_p, block_k, block_n = 64, 16, 32
    grid = (triton.cdiv(h * w, block_p), triton.cdiv(c_out, block_n), n)
    _dwpw_kernel(act1, act2)[grid](x, c1.weight.contiguous(), b1, w2, b2, res, y, c_in, c_mid, c_out, h, w,
                                   K=k, PAD=k // 2, CG_IN=c_in // c1.groups, CG_MID=c_mid // c1.groups,
                                   HAS_RES=residual is not None, BLOCK_P=block_p, BLOCK_K=block_k, BLOCK_N=block_n)
    return y
'''


def emit_runtime() -> str:
    """The runtime with the kernel template and the activation table filled in."""
    return (RUNTIME_SOURCE.replace("KERNEL_TEMPLATE_PLACEHOLDER", repr(_KERNEL))
            .replace("ACTS_PLACEHOLDER", repr(ACTS)))
