"""The runtime of fused modules: ``FusedConv2d`` / ``FusedLinear`` and the switches and tuning of their oneDNN path.

:data:`RUNTIME_SOURCE` is Python *text*, not code of this module: :func:`archc.passes.fusion_lowering.fuse_source`
embeds it verbatim into every fused generated file (which imports only torch), and :func:`runtime_module`
imports the same text as a module so that TorchScript can read the classes' source. ``FusedConv2d``
and ``FusedLinear`` have exactly the state dicts of ``nn.Conv2d`` and ``nn.Linear`` and fall back to
plain PyTorch ops off CPU, in other dtypes, in training mode or when an input does not fit.

:func:`pack_convs` swaps the plain convs/linears of a built model for them (prepacked weights without
post-ops, for TorchScript), :func:`set_onednn` and :func:`reset_packed` switch their oneDNN path and
drop the reordered weights, and :func:`autotune` keeps, per module, whichever path measured faster.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["RUNTIME_SOURCE", "runtime_module", "pack_convs", "set_onednn", "reset_packed", "autotune"]

#: the runtime classes as source text, embedded verbatim into every fused generated file
RUNTIME_SOURCE = '''
from typing import Optional

_ONEDNN = bool(torch.backends.mkldnn.is_available())


def fused_post(y: torch.Tensor, post: str, algorithm: str) -> torch.Tensor:
    """The activation a fused conv/linear applies after its output, as plain PyTorch ops (oneDNN's post-op names)."""
    if post == "none":
        return y
    if post == "relu":
        return F.relu(y)
    if post == "swish":
        return F.silu(y)
    if post == "gelu":
        if algorithm == "tanh":
            return F.gelu(y, approximate="tanh")
        return F.gelu(y)
    if post == "sigmoid":
        return torch.sigmoid(y)
    if post == "tanh":
        return torch.tanh(y)
    if post == "hardswish":
        return F.hardswish(y)
    if post == "hardsigmoid":
        return F.hardsigmoid(y)
    raise RuntimeError("fused conv/linear: unknown post-op " + post)


class FusedConv2d(nn.Conv2d):
    """nn.Conv2d with a fused epilogue: post(conv(x) [+ other]).

    On CPU in float32 (eval mode) this is one oneDNN convolution with the residual add and the
    activation as post-ops, its weight reordered once (on the first call, for that input shape)
    into the layout oneDNN picks; anywhere else (CUDA, float64, training, an input that does not
    fit) — or where ``onednn`` was switched off because the plain ops measured faster — it runs the
    same plain PyTorch ops the unfused module runs. Parameters and state_dict keys are nn.Conv2d's.
    """

    def __init__(self, *args, post: str = "none", post_algorithm: str = "", binary: str = "none", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        self.post_algorithm = post_algorithm
        self.binary = binary
        if isinstance(self.padding, str) or self.padding_mode != "zeros":
            raise ValueError("FusedConv2d needs explicit zero padding")
        self.onednn = _ONEDNN
        self.pad = [int(p) for p in self.padding]
        self.strides = [int(s) for s in self.stride]
        self.dilations = [int(d) for d in self.dilation]
        self.kernel = [int(k) for k in self.kernel_size]
        # the oneDNN-layout weight, made on the first call (an empty tensor until then; never in the state dict)
        self.packed = [torch.empty(0)]

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - .to(), .float(), ...: drop the reordered weight
        self.packed = [torch.empty(0)]
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.packed = [torch.empty(0)]
        super()._load_from_state_dict(*args, **kwargs)

    def _fits(self, x: torch.Tensor, other: Optional[torch.Tensor]) -> bool:
        if not self.onednn or self.training or x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
            return False
        if self.weight.dtype != torch.float32 or self.weight.device.type != "cpu" or x.requires_grad:
            return False
        if other is None:
            return True
        h = (x.size(2) + 2 * self.pad[0] - self.dilations[0] * (self.kernel[0] - 1) - 1) // self.strides[0] + 1
        w = (x.size(3) + 2 * self.pad[1] - self.dilations[1] * (self.kernel[1] - 1) - 1) // self.strides[1] + 1
        return (other.dim() == 4 and other.dtype == torch.float32 and other.device.type == "cpu"
                and other.size(0) == x.size(0) and other.size(1) == self.out_channels
                and other.size(2) == h and other.size(3) == w and not other.requires_grad)

    def forward(self, x: torch.Tensor, other: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self._fits(x, other):
            if self.packed[0].numel() == 0:  # the layout oneDNN picks for this input shape, made once
                self.packed[0] = torch.ops.mkldnn._reorder_convolution_weight(
                    self.weight.detach(), self.pad, self.strides, self.dilations, self.groups, list(x.shape))
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.packed[0], self.bias, self.pad, self.strides, self.dilations, self.groups,
                    self.post, [], self.post_algorithm)
            unary: Optional[str] = None
            if self.post != "none":
                unary = self.post
            return torch.ops.mkldnn._convolution_pointwise(
                x, other, self.packed[0], self.bias, self.pad, self.strides, self.dilations, self.groups,
                "add", None, unary, [], self.post_algorithm)
        # aten::convolution (not conv2d): optimize_for_inference leaves it alone, so the module stays serializable
        y = torch.convolution(x, self.weight, self.bias, self.strides, self.pad, self.dilations, False, [0, 0], self.groups)
        if other is not None:
            y = other + y
        return fused_post(y, self.post, self.post_algorithm)


class FusedLinear(nn.Linear):
    """nn.Linear with a fused activation: post(x @ Wᵀ + b) as one oneDNN matmul on CPU in float32
    (weight reordered once, on the first call, for that row count), else the plain PyTorch ops.
    Parameters and state_dict keys are nn.Linear's."""

    def __init__(self, *args, post: str = "none", post_algorithm: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        self.post_algorithm = post_algorithm
        self.onednn = _ONEDNN
        self.packed = [torch.empty(0)]

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202
        self.packed = [torch.empty(0)]
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.packed = [torch.empty(0)]
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.onednn and not self.training and x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() >= 2
                and not x.requires_grad and self.weight.dtype == torch.float32 and self.weight.device.type == "cpu"):
            if self.packed[0].numel() == 0:
                self.packed[0] = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), x.numel() // x.size(-1))
            return torch.ops.mkldnn._linear_pointwise(x, self.packed[0], self.bias, self.post, [], self.post_algorithm)
        return fused_post(F.linear(x, self.weight, self.bias), self.post, self.post_algorithm)
'''

_RUNTIME_CACHE: dict[str, Any] = {}


def runtime_module() -> Any:
    """The runtime (FusedConv2d, ...) as an importable module (TorchScript can read its source)."""
    if "mod" not in _RUNTIME_CACHE:
        from archc.passes.equivalence import module_from_source

        prelude = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
        _RUNTIME_CACHE["mod"] = module_from_source(prelude + RUNTIME_SOURCE, "archc_fused_runtime")
    return _RUNTIME_CACHE["mod"]


def pack_convs(model: torch.nn.Module) -> int:
    """Replace every plain ``nn.Conv2d`` / ``nn.Linear`` of ``model`` (in place) by FusedConv2d / FusedLinear without post-ops.

    Same weights, same state dict; on CPU the weight is reordered once into oneDNN's layout — what
    ``optimize_for_inference`` does with MKLDNN constants, in a form TorchScript can serialize.
    Returns the number of modules replaced.
    """
    rt = runtime_module()
    count = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Conv2d and not isinstance(child.padding, str) and child.padding_mode == "zeros":
                new = rt.FusedConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                     padding=child.padding, dilation=child.dilation, groups=child.groups,
                                     bias=child.bias is not None)
            elif type(child) is torch.nn.Linear:
                new = rt.FusedLinear(child.in_features, child.out_features, bias=child.bias is not None)
            else:
                continue
            new.to(device=child.weight.device, dtype=child.weight.dtype)
            if child.weight.dim() == 4 and child.weight.is_contiguous(memory_format=torch.channels_last):
                new.to(memory_format=torch.channels_last)  # keep the layout (and dtype) the model was given
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(parent, name, new)
            count += 1
    return count


def _fused_convs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The FusedConv2d and FusedLinear modules of ``model``."""
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in ("FusedConv2d", "FusedLinear") and hasattr(m, "onednn")]


def set_onednn(model: torch.nn.Module, enabled: bool, only: set[str] | None = None) -> torch.nn.Module:
    """Switch the oneDNN path of the FusedConv2d modules of ``model`` (all, or those named in ``only``).

    Off means plain PyTorch ops (portable: export, ONNX, CUDA). Drops every reordered weight.
    """
    for name, m in _fused_convs(model):
        if only is None or name in only:
            m.onednn = bool(enabled and torch.backends.mkldnn.is_available())
        m.packed = [torch.empty(0)]
    return model


def reset_packed(model: torch.nn.Module) -> torch.nn.Module:
    """Empty every FusedConv2d's reordered-weight cache (before scripting and saving)."""
    for _, m in _fused_convs(model):
        m.packed = [torch.empty(0)]
    return model


def autotune(model: torch.nn.Module, inputs: list[torch.Tensor], repeats: int = 7, warmup: int = 2) -> list[str]:
    """Time each FusedConv2d's oneDNN path against its plain-PyTorch path on the inputs it sees; keep the faster.

    Interleaved medians per conv, on the shapes ``model(*inputs)`` gives it (float32, CPU, eval mode).
    Switches off oneDNN where the plain ops were faster and returns those module names. Both paths
    compute the same function (the plain one is what the float64 check runs), so this only ever
    changes speed. A shared machine makes the choice noisy, never wrong.
    """
    import time

    convs = [(n, m) for n, m in _fused_convs(model) if m.onednn]
    if not convs:
        return []
    seen: dict[str, tuple] = {}
    def grab(name: str):  # noqa: ANN202 - a pre-hook that records the first call's inputs and returns None
        def hook(mod: torch.nn.Module, args: tuple) -> None:
            seen.setdefault(name, args)
        return hook

    hooks = [m.register_forward_pre_hook(grab(n)) for n, m in convs]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    plain: list[str] = []
    with torch.no_grad():
        for name, m in convs:
            if name not in seen:
                continue
            args = seen[name]
            times: dict[bool, list[float]] = {True: [], False: []}
            for mode in (True, False):
                m.onednn = mode
                for _ in range(warmup):
                    m(*args)
            for r in range(repeats):
                for mode in ((True, False) if r % 2 == 0 else (False, True)):
                    m.onednn = mode
                    t0 = time.perf_counter()
                    m(*args)
                    times[mode].append(time.perf_counter() - t0)
            fast = sorted(times[True])[repeats // 2] <= sorted(times[False])[repeats // 2]
            m.onednn = fast
            if not fast:
                plain.append(name)
    reset_packed(model)
    return plain
