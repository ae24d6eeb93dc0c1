"""Run one op in isolation: build its lowering as a module and compare with the op's own rules.

The contract tests and the op unit tests use :func:`check_op` to prove, for every op, that the
analytic shape, parameter count and MAC count equal what PyTorch observes.
"""

from __future__ import annotations

import hashlib
import linecache
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from archc.backends.pytorch.render import helper_closure, render_call, render_forward
from torch.utils.flop_counter import FlopCounterMode

from archc.ir.types import TensorType
from archc.ops.base import HELPERS, get_op

__all__ = ["OpCheck", "build_single", "check_op"]

_PRELUDE = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n"


@dataclass
class OpCheck:
    """Analytic vs observed facts of one op instance."""

    inferred: list[tuple[int, ...]]
    observed: list[tuple[int, ...]]
    params: int
    observed_params: int
    macs: int
    observed_macs: int
    module: torch.nn.Module
    source: str

    def ok(self) -> bool:
        return self.inferred == self.observed and self.params == self.observed_params and self.macs == self.observed_macs


def build_single(name: str, attrs: Mapping[str, Any], in_types: Sequence[TensorType]) -> tuple[torch.nn.Module, str, list[TensorType], Any]:
    """Source and instance of a module that applies op ``name`` to its inputs."""
    op = get_op(name)
    assert op is not None, name
    a = op.bind(attrs)
    outs = op.infer(a, in_types)
    low = op.lower(a, in_types, outs)
    args = [f"x{i}" for i in range(len(in_types))]
    lines = [_PRELUDE]
    for h in helper_closure(low.helpers):
        lines.append(HELPERS[h].source + "\n")
    lines.append("class Single(nn.Module):\n    def __init__(self):\n        super().__init__()\n")
    if low.module is not None:
        lines.append(f"        self.m = {render_call(low.module)}\n")
    sig = ", ".join(f"{x}: torch.Tensor" for x in args)
    lines.append(f"\n    def forward(self, {sig}):\n        return {render_forward(low, 'self.m', args)}\n")
    src = "".join(lines)
    ns: dict[str, Any] = {}
    # registered in linecache so that torch.jit.script can read the source back
    fname = f"<archc-single-{name}-{hashlib.sha1(src.encode()).hexdigest()[:12]}>"
    linecache.cache[fname] = (len(src), None, src.splitlines(True), fname)
    exec(compile(src, fname, "exec"), ns)  # the source is archc's own lowering, not user text
    return ns["Single"](), src, outs, a


def check_op(name: str, attrs: Mapping[str, Any], in_shapes: Sequence[Sequence[int]], dtype: torch.dtype = torch.float32) -> OpCheck:
    """Build op ``name`` and measure shapes, params and MACs (batch = first dim of the inputs)."""
    in_types = [TensorType(tuple(s)) for s in in_shapes]
    mod, src, outs, a = build_single(name, attrs, in_types)
    mod.eval()
    op = get_op(name)
    xs = [torch.randn(*s, dtype=dtype) for s in in_shapes]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = mod(*xs)
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    batch = in_shapes[0][0] if in_shapes and in_shapes[0] else 1
    params = sum(_prod(s) for s in op.params(a, in_types).values())
    return OpCheck(
        inferred=[tuple(o.shape) for o in outs],
        observed=[tuple(t.shape) for t in ys],
        params=params,
        observed_params=sum(p.numel() for p in mod.parameters()),
        macs=op.macs(a, in_types, outs) * batch,
        observed_macs=fc.get_total_flops() // 2,
        module=mod,
        source=src,
    )


def _prod(s: Sequence[int]) -> int:
    n = 1
    for d in s:
        n *= d
    return n
