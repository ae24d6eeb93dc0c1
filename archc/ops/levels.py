"""Ops over the levels of a feature pyramid: one conv shared by every level, one BatchNorm over all levels.

Detection necks and heads apply the *same* weights to each pyramid level (SEPC's pyramid convolution,
RetinaNet's heads). Both ops here take the levels as separate inputs (any spatial sizes, the same
channel count) and give one output per input, so a spec wires them like any multi-output node.

* ``shared_conv2d``: ``yᵢ = conv(xᵢ, W) + b`` for every input i, with one ``W``, ``b`` (a plain
  ``nn.Conv2d`` called once per level). Params are counted once; MACs and activations are the sum over
  the levels.
* ``level_batchnorm`` (SEPC's integrated BN): every level is flattened to ``(N, C, 1, Hᵢ·Wᵢ)``, the
  levels are concatenated along the last axis and normalized by one ``BatchNorm2d``, then split back
  and reshaped. In training the batch statistics are therefore taken over all levels together (not
  per level); in eval it equals the same BatchNorm applied to each level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import TensorType
from archc.ops.base import Attr, Call, Lowering, Op, OpCheckError, helper, register
from archc.ops.conv import CONV_DEFAULTS, CONV_NAMES, Conv2d, _short

__all__ = ["SharedConv2d", "LevelBatchNorm"]


def _levels(name: str, ins: Sequence[TensorType]) -> Any:
    """The common channel count of NCHW inputs (raise OpCheckError naming the level that differs)."""
    for k, x in enumerate(ins):
        if x.rank != 4:
            raise OpCheckError(f"'{name}' expects NCHW inputs, got {x} as input {k}")
    c = ins[0].shape[1]
    for k, x in enumerate(ins[1:], 1):
        if x.shape[1] != c:
            raise OpCheckError(f"'{name}' shares its weights across inputs, so they need the same channels: "
                               f"input 0 is {ins[0]}, input {k} is {x}",
                               hint="give every level the same channel count (e.g. 1×1 laterals to one width)")
    return c


class SharedConv2d(Conv2d):
    """yᵢ = conv(xᵢ, W) + b for each input, with one weight and bias."""

    name = "shared_conv2d"
    doc = ("One 2-D convolution (the same weights) applied to each of several NCHW inputs, one output per input, "
           "e.g. a conv shared by the levels of a pyramid.")
    arity = (1, None)

    def num_outputs(self, a: Mapping[str, Any]) -> int:
        """One output per input: the count is only known with the inputs (``infer`` gives it)."""
        return 1

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        _levels(self.name, ins)
        return [super(SharedConv2d, self).infer(a, [x])[0] for x in ins]

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        return sum(super(SharedConv2d, self).macs(a, [x], [y]) for x, y in zip(ins, outs))

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        args = (ins[0].shape[1], a["out"], _short(a["kernel"]))
        fwd = ", ".join(f"{{m}}({{{k}}})" for k in range(len(ins)))
        return Lowering(Call("nn.Conv2d", args, self.ctor_kwargs(a), CONV_DEFAULTS, CONV_NAMES), fwd)


class LevelBatchNorm(Op):
    """One BatchNorm over several NCHW maps at once (statistics over all of them), one output per input."""

    name = "level_batchnorm"
    doc = ("BatchNorm shared by several NCHW inputs with statistics over all of them together: flattened, "
           "concatenated, normalized, split back (SEPC's integrated BN); one output per input.")
    arity = (1, None)
    attrs = (Attr("eps", "float", 1e-5, min=0.0), Attr("momentum", "float", 0.1, min=0.0), Attr("affine", "bool", True))

    def num_outputs(self, a: Mapping[str, Any]) -> int:
        """One output per input: the count is only known with the inputs (``infer`` gives it)."""
        return 1

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        _levels(self.name, ins)
        return list(ins)

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = int(ins[0].shape[1])
        return {"weight": (c,), "bias": (c,)} if a["affine"] else {}

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        c = int(ins[0].shape[1])
        return {"running_mean": (c,), "running_var": (c,), "num_batches_tracked": ()}

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        kw: dict[str, Any] = {"eps": a["eps"], "momentum": a["momentum"], "affine": a["affine"]}
        call = Call("LevelBatchNorm2d", (ins[0].shape[1],), kw, {"eps": 1e-5, "momentum": 0.1, "affine": True},
                    ("num_features",))
        levels = ", ".join(f"{{{k}}}" for k in range(len(ins)))
        # one input: the list's only element, so the node's single output is a tensor
        fwd = "{m}([" + levels + "])" + ("[0]" if len(ins) == 1 else "")
        return Lowering(call, fwd, helpers=("LevelBatchNorm2d",))


register(SharedConv2d)
register(LevelBatchNorm)

helper(
    "LevelBatchNorm2d",
    '''
class LevelBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over several NCHW maps at once: statistics over all of them (SEPC's integrated BN)."""

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        n, c = xs[0].shape[0], xs[0].shape[1]
        # every level as (N, C, 1, H*W), side by side: one set of batch statistics for the whole pyramid
        flat = torch.cat([x.reshape(n, c, 1, -1) for x in xs], dim=3)
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        y = F.batch_norm(flat, self.running_mean, self.running_var, self.weight, self.bias,
                         self.training, momentum, self.eps)
        parts = torch.split(y, [x.shape[2] * x.shape[3] for x in xs], dim=3)
        return [p.reshape(x.shape) for p, x in zip(parts, xs)]
''',
    imports=("from typing import List",),
)
