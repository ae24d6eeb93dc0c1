"""``pcdarts``: partially-connected DARTS (Xu et al., ICLR 2020) over a cell space's supernet.

1/K of an edge's channels (K = 4) go through its mixed op and the rest bypass it; the two parts are
concatenated and channel-shuffled. Each node weights its incoming edges by softmax(β_edge) (edge
normalization), which also ranks the edges at discretization. α lr 6e-4; α/β are frozen for the first
30% of the epochs (15 of 50 in the paper). See :mod:`archc.search.strategies.bilevel`.

>>> res = run_pcdarts("search_spaces/cdc.yaml", out="runs/cdc_pcdarts")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.search.space import SearchSpace, load_space
from archc.search.strategies.bilevel import OPTION_DOCS, BilevelOptions
from archc.search.strategies.differentiable import DifferentiableResult, options_for, run_differentiable

__all__ = ["PcdartsOptions", "run_pcdarts", "OPTION_DOCS"]


@dataclass(frozen=True)
class PcdartsOptions(BilevelOptions):
    """:class:`BilevelOptions` with the PC-DARTS defaults (K = 4, α lr 6e-4, α frozen for 30% of the epochs)."""

    partial_channels: int = 4
    arch_lr: float = 6e-4
    warmup: float = 0.3


def run_pcdarts(space_path: str | Path | SearchSpace, options: PcdartsOptions | Mapping[str, Any] | None = None, *,
                out: str | Path | None = None, threads: int | None = None,
                log: Callable[[str], None] | None = None) -> DifferentiableResult:
    """Run PC-DARTS on ``space_path`` (``options`` as in :func:`archc.search.strategies.darts.run_darts`)."""
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    opts = options if isinstance(options, BilevelOptions) else options_for(space, "pcdarts", options)
    return run_differentiable(space, "pcdarts", opts, out=out, threads=threads, log=log)
