"""``darts``: bi-level differentiable search of a cell space's supernet (Liu et al., ICLR 2019).

Every channel goes through every mixed op; α lr 3e-4; α/β train from the first epoch. See
:mod:`archc.search.strategies.bilevel` for the optimization and
:mod:`archc.search.strategies.differentiable` for the outputs.

>>> res = run_darts("search_spaces/cdc.yaml", {"epochs": 2}, out="runs/cdc_darts")   # doctest: +SKIP
>>> res.files["derived"]                                                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.search.space import SearchSpace, load_space
from archc.search.strategies.bilevel import OPTION_DOCS, BilevelOptions
from archc.search.strategies.differentiable import DifferentiableResult, options_for, run_differentiable

__all__ = ["DartsOptions", "run_darts", "OPTION_DOCS"]


@dataclass(frozen=True)
class DartsOptions(BilevelOptions):
    """:class:`BilevelOptions` with the DARTS defaults (all channels, α lr 3e-4, no warm-up)."""

    partial_channels: int = 1
    arch_lr: float = 3e-4
    warmup: float = 0.0


def run_darts(space_path: str | Path | SearchSpace, options: DartsOptions | Mapping[str, Any] | None = None, *,
              out: str | Path | None = None, threads: int | None = None,
              log: Callable[[str], None] | None = None) -> DifferentiableResult:
    """Run DARTS on ``space_path``.

    ``options``: a mapping is applied over the defaults and the space file's ``strategy: {darts: ...}``
    options (what the command line does); a :class:`DartsOptions` is used as given.
    """
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    opts = options if isinstance(options, BilevelOptions) else options_for(space, "darts", options)
    return run_differentiable(space, "darts", opts, out=out, threads=threads, log=log)
