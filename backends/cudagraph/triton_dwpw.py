"""Generated Triton kernels for a k×k conv followed by a pointwise conv, and the runtime that picks one.

``y = act2(W2 · act1(conv_kxk(x, W1, groups=G) + b1) + b2) [+ residual]`` in one kernel; the
intermediate tensor — the largest one of a depthwise/inverted-bottleneck block — never touches
global memory. Two kernels, both written here as Python/Triton source templates:

**Channels-last kernel** (:data:`_NHWC_KERNEL`; float32, bfloat16, float16): for a k×k conv with
stride 1, dilation 1, odd k, "same" zero padding and a small group width (``C_IN / groups ≤ 16``:
depthwise, and grouped convs such as ConvFirst's width-8 groups). ``x`` is read as NHWC (a
channels-last NCHW tensor, strides ``(H·W·C, 1, W·C, C)``) and ``y`` is written channels-last. One
program owns ``BLOCK_P`` pixels (flattened ``h·w``) of one image and *all* channels: it computes
``mid[BLOCK_P, CMID_P2]`` once (``CMID_P2`` = the next power of two ≥ ``C_MID``, at least 16,
masked) — per input channel of a group and per tap ``(kh, kw)`` one load contiguous along channels
times a weight vector, accumulated in float32, then ``+ b1`` and act1 — casts it to the input dtype
and then walks the output channels in chunks of ``BLOCK_N``: ``tl.dot(mid, W2ᵀ[CMID_P2, BLOCK_N])``
accumulated in float32 (tensor cores for bf16/fp16; exact ``input_precision="ieee"`` for float32),
``+ b2``, act2, ``+ residual``, one store. The k×k work is done once per pixel, however many output
channels there are. ``BLOCK_P ∈ {16, 32, 64}``, ``BLOCK_N ∈ {32, 64, 128}`` and ``num_warps ∈ {4, 8}``
are autotuned per (C_MID, C_OUT, H, W, k, group width, residual, dtype); configurations whose float32
``mid`` tile passes 16384 elements (registers) or whose dot operands pass an estimated 192 KiB of
shared memory are pruned, and a ``C_MID`` above 1024 (or one no configuration fits) is left to the
other paths.

**NCHW kernel** (:data:`_KERNEL`; float32 only, any group width): the general fallback. Each
program computes BLOCK_P pixels × BLOCK_N output channels and recomputes its chunk of the k×k conv
for every output-channel block.

**Accuracy** against the PyTorch ops (max relative error ``max|a − b| / max|a|``): float32 within
float32 rounding (≤ 1e-5; the exact-fp32 dot), bfloat16 ≤ 2e-2, float16 ≤ 5e-3. In bf16/fp16 the
kernel rounds the intermediate once to the input dtype (PyTorch rounds after the conv and after
act1) and adds the residual before the final rounding, so the two differ by a few units of the
last place.

:func:`kernel_source` / :func:`nhwc_kernel_source` write one kernel's source; :func:`emit_runtime`
returns the source embedded into generated ``cudagraph`` modules: the kernel templates, their
launchers, ``dwpw_path`` (which implementation a call takes: ``"nhwc"`` when the channels-last
kernel's conditions hold on CUDA, else ``"nchw"`` for a float32 chain, else ``"torch"``) and
``dwpw`` — the call the generated forward makes. ``dwpw`` runs the two PyTorch convs when Triton or
CUDA is absent, the configuration is not supported, or the chain was measured slower fused
(``archc_unfused``, :mod:`.choice`). Nothing here imports triton at module import time, and neither
does the generated module (Triton is optional).

Triton's CPU interpreter (``TRITON_INTERPRET=1``) runs the kernels on CPU tensors, which is how
they are tested without a GPU: the runtime reads the variable once, when the generated module is
imported, into ``_ALLOW_CPU_INTERPRETER``; only then may a kernel be launched on CPU tensors, and
the channels-last kernel is autotuned over one configuration (``BLOCK_P=16, BLOCK_N=32``, 4 warps;
the interpreter cannot time configurations). The interpreter's ``tl.dot`` multiplies bfloat16
operands as their raw bits, so bfloat16 is checked on a GPU only.
"""

from __future__ import annotations

__all__ = ["ACTS", "kernel_source", "nhwc_kernel_source", "RUNTIME_SOURCE", "emit_runtime"]

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


#: the channels-last kernel: all channels of BLOCK_P pixels per program, the k×k conv computed once
_NHWC_KERNEL = """
@triton.jit
def {name}(x_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, r_ptr, y_ptr,
           C_IN, C_MID, C_OUT, H, W,
           s1_o, s1_i, s1_h, s1_w, s2_o, s2_i,
           K: tl.constexpr, PAD: tl.constexpr, CG_IN: tl.constexpr, CG_MID: tl.constexpr, CMID_P2: tl.constexpr,
           HAS_B1: tl.constexpr, HAS_B2: tl.constexpr, HAS_RES: tl.constexpr, IEEE: tl.constexpr,
           BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_p = tl.program_id(0)
    img = tl.program_id(1).to(tl.int64)  # the image's base offset may pass 2**31 elements
    HW = H * W
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    oh = offs_p // W
    ow = offs_p % W
    offs_c = tl.arange(0, CMID_P2)
    mask_c = offs_c < C_MID
    # the first input channel of each intermediate channel's group (the channel itself when depthwise)
    cin0 = (offs_c // CG_MID) * CG_IN
    x_img = x_ptr + img * HW * C_IN
    mid = tl.zeros((BLOCK_P, CMID_P2), dtype=tl.float32)
    for ci in range(0, CG_IN):
        for kh in tl.static_range(K):
            ih = oh + (kh - PAD)
            row_ok = mask_p & (ih >= 0) & (ih < H)
            for kw in tl.static_range(K):
                iw = ow + (kw - PAD)
                ok = row_ok & (iw >= 0) & (iw < W)
                xv = tl.load(x_img + ((ih * W + iw) * C_IN)[:, None] + (cin0 + ci)[None, :],
                             mask=ok[:, None] & mask_c[None, :], other=0.0)
                wv = tl.load(w1_ptr + offs_c * s1_o + ci * s1_i + kh * s1_h + kw * s1_w, mask=mask_c, other=0.0)
                mid += xv.to(tl.float32) * wv.to(tl.float32)[None, :]
    if HAS_B1:
        mid += tl.load(b1_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    v = mid
    mid = {act1}
    # padded channels hold act1(0) (0.5 for sigmoid): harmless, they meet the zero rows of the masked W2 tile
    mid = mid.to(x_ptr.dtype.element_ty)
    y_img = img * HW * C_OUT
    for n0 in range(0, C_OUT, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        mask_n = offs_n < C_OUT
        w2 = tl.load(w2_ptr + offs_c[:, None] * s2_i + offs_n[None, :] * s2_o,
                     mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        if IEEE:
            acc = tl.dot(mid, w2, input_precision="ieee")
        else:
            acc = tl.dot(mid, w2)
        if HAS_B2:
            acc += tl.load(b2_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        v = acc
        acc = {act2}
        out = y_img + offs_p[:, None] * C_OUT + offs_n[None, :]
        mask = mask_p[:, None] & mask_n[None, :]
        if HAS_RES:
            acc += tl.load(r_ptr + out, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=mask)
"""


def kernel_source(name: str, act1: str = "none", act2: str = "none") -> str:
    """Triton source of one NCHW kernel; ``act1`` after the k×k conv, ``act2`` after the pointwise conv."""
    if act1 not in ACTS or act2 not in ACTS:
        raise ValueError(f"unsupported activation: {act1 if act1 not in ACTS else act2}")
    return _KERNEL.format(name=name, act1=ACTS[act1], act2=ACTS[act2])


def nhwc_kernel_source(name: str, act1: str = "none", act2: str = "none") -> str:
    """Triton source of one channels-last kernel (before autotuning); activations as in :func:`kernel_source`."""
    if act1 not in ACTS or act2 not in ACTS:
        raise ValueError(f"unsupported activation: {act1 if act1 not in ACTS else act2}")
    return _NHWC_KERNEL.format(name=name, act1=ACTS[act1], act2=ACTS[act2])


#: the runtime embedded into generated cudagraph modules (needs torch, nn, F in scope)
RUNTIME_SOURCE = '''
import os as _os

try:
    import triton
    import triton.language as tl
    _TRITON = True
except ImportError:  # the fused kernels are optional: without Triton, dwpw runs the two convs
    triton = None
    tl = None
    _TRITON = False

#: Triton's CPU interpreter is on (TRITON_INTERPRET, read at import): only then may a kernel run on CPU tensors
_ALLOW_CPU_INTERPRETER = _os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "on")

_DWPW_KERNELS = {}
_KERNEL_TEMPLATE = KERNEL_TEMPLATE_PLACEHOLDER
_NHWC_KERNEL_TEMPLATE = NHWC_KERNEL_TEMPLATE_PLACEHOLDER
_ACT_EXPRS = ACTS_PLACEHOLDER
_TORCH_ACTS = {"none": lambda v: v, "relu": F.relu, "silu": F.silu, "gelu": F.gelu, "sigmoid": torch.sigmoid,
               "hardswish": F.hardswish}

#: the channels-last kernel's limits: C_MID (all of it lives in one program's registers) and group width
#: (each input channel of a group is one more pass over the k×k taps)
_NHWC_MAX_CMID = 1024
_NHWC_MAX_GROUP_WIDTH = 16
_NHWC_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: per-program budgets: the float32 mid tile (elements; larger spills registers) and the dot operands (bytes)
_NHWC_MAX_TILE = 16384
_NHWC_MAX_SMEM = 192 * 1024
#: the configuration the interpreter runs (it cannot time configurations)
_NHWC_INTERPRETER_CONFIG = (16, 32, 4)


def _exec_kernel(template, name, act1, act2):
    import linecache
    src = template.format(name=name, act1=_ACT_EXPRS[act1], act2=_ACT_EXPRS[act2])
    fname = "<archc-triton-" + name + ">"
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)  # triton.jit reads the source back
    ns = {"triton": triton, "tl": tl}
    exec(compile(src, fname, "exec"), ns)
    return ns[name]


def _dwpw_kernel(act1, act2):
    key = ("nchw", act1, act2)
    if key not in _DWPW_KERNELS:
        _DWPW_KERNELS[key] = _exec_kernel(_KERNEL_TEMPLATE, "_dwpw_" + act1 + "_" + act2, act1, act2)
    return _DWPW_KERNELS[key]


def _cmid_p2(c_mid):
    # tl.dot needs an inner dimension of at least 16
    return max(16, 1 << (int(c_mid) - 1).bit_length())


def _nhwc_fits(cmid_p2, c_out, elem_bytes, block_p, block_n):
    # wider output tiles than C_OUT (rounded up to a power of two) only add masked lanes
    return (block_p * cmid_p2 <= _NHWC_MAX_TILE and block_n <= max(32, 1 << (int(c_out) - 1).bit_length())
            and (block_p + block_n) * cmid_p2 * elem_bytes <= _NHWC_MAX_SMEM)


def _nhwc_configs():
    if _ALLOW_CPU_INTERPRETER:
        p, n, w = _NHWC_INTERPRETER_CONFIG
        return [triton.Config({"BLOCK_P": p, "BLOCK_N": n}, num_warps=w)]
    return [triton.Config({"BLOCK_P": p, "BLOCK_N": n}, num_warps=w) for p in (16, 32, 64) for n in (32, 64, 128)
            for w in (4, 8)]


def _nhwc_prune(configs, nargs, **meta):
    elem = nargs["x_ptr"].element_size()
    kept = [c for c in configs if _nhwc_fits(meta["CMID_P2"], nargs["C_OUT"], elem, c.kwargs["BLOCK_P"], c.kwargs["BLOCK_N"])]
    # dwpw_path admits a chain only when the smallest configuration fits, so this never empties the list
    return kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_P"], c.kwargs["BLOCK_N"], c.num_warps))]


def _dwpw_nhwc_kernel(act1, act2):
    key = ("nhwc", act1, act2)
    if key not in _DWPW_KERNELS:
        fn = _exec_kernel(_NHWC_KERNEL_TEMPLATE, "_dwpw_nhwc_" + act1 + "_" + act2, act1, act2)
        _DWPW_KERNELS[key] = triton.autotune(
            configs=_nhwc_configs(), key=["C_MID", "C_OUT", "H", "W", "K", "CG_IN", "HAS_RES"],
            prune_configs_by={"early_config_prune": _nhwc_prune})(fn)
    return _DWPW_KERNELS[key]


def _chain_ok(c1, c2, x):
    # a k×k stride-1 'same' zero-padded conv, then a 1×1 conv over all its channels, on a 4-d input
    return (x.dim() == 4 and isinstance(c1, nn.Conv2d) and isinstance(c2, nn.Conv2d)
            and c1.stride == (1, 1) and c1.dilation == (1, 1) and c1.kernel_size[0] == c1.kernel_size[1]
            and c1.kernel_size[0] % 2 == 1 and c1.padding == (c1.kernel_size[0] // 2,) * 2
            and c1.padding_mode == "zeros" and c2.kernel_size == (1, 1) and c2.stride == (1, 1)
            and c2.padding == (0, 0) and c2.dilation == (1, 1) and c2.groups == 1
            and c1.out_channels == c2.in_channels and x.shape[1] == c1.in_channels)


def dwpw_path(c1, c2, x, residual=None):
    """Which implementation ``dwpw(c1, c2, x, residual=residual)`` runs: "nhwc", "nchw" or "torch".

    "nhwc" — the channels-last kernel: Triton, a CUDA input (or a CPU one under the interpreter), a
    supported chain, float32/bfloat16/float16 input and weights of one dtype (bfloat16 from compute
    capability 8.0), group width ≤ 16 and C_MID ≤ 1024; "nchw" — the general kernel: the same but float32 and any group width; otherwise
    "torch" (the PyTorch ops). A residual must be on the input's device, of its dtype and of the
    output's shape. ``archc_unfused`` (the measured choice) is not consulted here.
    """
    if not (_TRITON and (x.is_cuda or (_ALLOW_CPU_INTERPRETER and x.device.type == "cpu")) and _chain_ok(c1, c2, x)):
        return "torch"
    n, _, h, w = x.shape
    c_mid, c_out = c1.out_channels, c2.out_channels
    if residual is not None and (residual.device != x.device or residual.dtype != x.dtype
                                 or tuple(residual.shape) != (n, c_out, h, w)):
        return "torch"
    params = [c1.weight, c2.weight] + [b for b in (c1.bias, c2.bias) if b is not None]
    if any(p.dtype != x.dtype or p.device != x.device for p in params):
        return "torch"
    small = h * w * max(c1.in_channels, c_out) < 2 ** 31  # offsets within one image are 32-bit
    # bfloat16 tl.dot needs Ampere or newer
    bf16_ok = x.dtype != torch.bfloat16 or not x.is_cuda or torch.cuda.get_device_capability(x.device) >= (8, 0)
    if (small and bf16_ok and x.dtype in _NHWC_DTYPES and c1.in_channels // c1.groups <= _NHWC_MAX_GROUP_WIDTH
            and c_mid <= _NHWC_MAX_CMID and _nhwc_fits(_cmid_p2(c_mid), c_out, x.element_size(), 16, 32)):
        return "nhwc"
    if x.dtype == torch.float32 and x.numel() < 2 ** 31 and n * c_out * h * w < 2 ** 31:
        return "nchw"
    return "torch"


def dwpw_supported(c1, c2, x):
    """Whether a fused Triton kernel applies to this chain and input (see ``dwpw_path``)."""
    return dwpw_path(c1, c2, x) != "torch"


def _dwpw_nhwc(c1, c2, x, act1, act2, residual=None, config=None):
    """The channels-last kernel; ``config`` = (BLOCK_P, BLOCK_N, num_warps) skips the autotuner."""
    cl = torch.channels_last
    nchw = not x.is_contiguous(memory_format=cl)
    x = x.contiguous(memory_format=cl)
    n, c_in, h, w = x.shape
    c_mid, c_out, k = c1.out_channels, c2.out_channels, c1.kernel_size[0]
    y = torch.empty((n, c_out, h, w), device=x.device, dtype=x.dtype, memory_format=cl)
    w1, w2 = c1.weight, c2.weight
    res = residual.contiguous(memory_format=cl) if residual is not None else y
    args = (x, w1, c1.bias if c1.bias is not None else w1, w2, c2.bias if c2.bias is not None else w2, res, y,
            c_in, c_mid, c_out, h, w, w1.stride(0), w1.stride(1), w1.stride(2), w1.stride(3), w2.stride(0), w2.stride(1))
    meta = {"K": k, "PAD": k // 2, "CG_IN": c_in // c1.groups, "CG_MID": c_mid // c1.groups, "CMID_P2": _cmid_p2(c_mid),
            "HAS_B1": c1.bias is not None, "HAS_B2": c2.bias is not None, "HAS_RES": residual is not None,
            "IEEE": x.dtype == torch.float32}
    kernel = _dwpw_nhwc_kernel(act1, act2)
    if config is None:
        kernel[lambda m: (triton.cdiv(h * w, m["BLOCK_P"]), n)](*args, **meta)
    else:
        block_p, block_n, warps = config
        kernel.fn[(triton.cdiv(h * w, block_p), n)](*args, **meta, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=warps)
    # the PyTorch convs keep an NCHW input's layout: so does dwpw
    return y.contiguous() if nchw else y


def _dwpw_nchw(c1, c2, x, act1, act2, residual=None):
    """The general float32 NCHW kernel."""
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


def dwpw(c1, c2, x, act1="none", act2="none", residual=None):
    """act2(c2(act1(c1(x)))) [+ residual]: one Triton kernel when supported (and not measured slower), else the PyTorch ops.

    The kernel is the one ``dwpw_path`` names; a chain with ``archc_unfused`` set on ``c1`` (measured
    slower fused on this GPU) runs the PyTorch ops. Results equal the PyTorch ops' within the dtype's
    rounding: max relative error ≤ 1e-5 (float32), 2e-2 (bfloat16), 5e-3 (float16).
    """
    path = "torch" if getattr(c1, "archc_unfused", False) else dwpw_path(c1, c2, x, residual)
    if path == "nhwc":
        return _dwpw_nhwc(c1, c2, x, act1, act2, residual)
    if path == "nchw":
        return _dwpw_nchw(c1, c2, x, act1, act2, residual)
    y = _TORCH_ACTS[act2](c2(_TORCH_ACTS[act1](c1(x))))
    return y if residual is None else residual + y
'''


def emit_runtime() -> str:
    """The runtime with the kernel templates and the activation table filled in."""
    return (RUNTIME_SOURCE.replace("NHWC_KERNEL_TEMPLATE_PLACEHOLDER", repr(_NHWC_KERNEL))
            .replace("KERNEL_TEMPLATE_PLACEHOLDER", repr(_KERNEL))
            .replace("ACTS_PLACEHOLDER", repr(ACTS)))
