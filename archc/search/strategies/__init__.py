"""Search strategies: an explicit registry of name -> module.

* ``sample``: the black-box Optuna study (:func:`archc.search.runner.run_search`), one trained proxy per trial;
* ``darts`` / ``pcdarts``: bi-level differentiable search over the space's supernet
  (:mod:`.bilevel`, :mod:`.differentiable`);
* ``spos``: single-path one-shot supernet training, then an Optuna study of children with inherited weights.

Every one-shot strategy module exposes an options class (``from_mapping(values, base)`` and ``check()``),
``OPTION_DOCS`` and a run function ``run(space, options, *, out, threads, log, **extras)`` returning a
result with ``files``; ``extras`` are the further keyword arguments the entry lists (``storage``,
``study_name``, ``timeout``). Importing this package imports neither torch nor the strategies.

>>> sorted(STRATEGIES)
['darts', 'pcdarts', 'sample', 'spos']
>>> STRATEGIES["pcdarts"].module
'archc.search.strategies.pcdarts'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["Strategy", "STRATEGIES", "get_strategy", "register", "resolve_options"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: where it lives and what it takes."""

    name: str
    module: str
    run: str                       # the run function of the module
    options: str | None            # its options class (None: the strategy takes the space's study settings)
    doc: str
    extras: tuple[str, ...] = ()   # keyword arguments beyond out/threads/log that its run function takes

    def load(self) -> ModuleType:
        """The strategy's module (imported on first use)."""
        return importlib.import_module(self.module)

    def run_function(self) -> Any:
        return getattr(self.load(), self.run)

    def options_class(self) -> Any:
        return getattr(self.load(), self.options) if self.options else None


STRATEGIES: dict[str, Strategy] = {}


def register(entry: Strategy) -> Strategy:
    """Add ``entry`` to :data:`STRATEGIES`; a name registered twice is an error."""
    if entry.name in STRATEGIES:
        raise ValueError(f"strategy '{entry.name}' is registered twice ({STRATEGIES[entry.name].module}, {entry.module})")
    STRATEGIES[entry.name] = entry
    return entry


def get_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; raises :class:`~archc.search.runner.SearchError` with a suggestion."""
    if name not in STRATEGIES:
        from archc.diagnostics import suggest
        from archc.search.runner import SearchError

        raise SearchError(f"unknown search strategy '{name}'",
                          hint=suggest(name, STRATEGIES) or f"strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def resolve_options(name: str, space: Any, values: Mapping[str, Any] | None = None) -> Any:
    """The options of strategy ``name``: its defaults ← the space file's ``strategy: {name: ...}`` ← ``values``.

    An invalid option from the space file is reported at its position (``file:line:col``).
    """
    from archc.diagnostics import SearchSpaceError
    from archc.search.runner import SearchError

    entry = get_strategy(name)
    cls = entry.options_class()
    if cls is None:
        if values or space.strategy.get(name):
            raise SearchError(f"strategy '{name}' takes its settings from the space's 'study' and 'evaluator' sections",
                              hint="drop the strategy options")
        return None
    opts = cls()
    for key, (value, loc) in space.strategy.get(name, {}).items():
        try:
            opts = cls.from_mapping({key: value}, opts)
        except SearchError as exc:
            raise SearchSpaceError(f"strategy '{name}': {exc.message}", loc, exc.hint) from None
    return cls.from_mapping(dict(values or {}), opts)


register(Strategy("sample", "archc.search.runner", "run_search", None,
                  "black-box Optuna study: each trial materializes, costs and trains one architecture"))
register(Strategy("darts", "archc.search.strategies.darts", "run_darts", "DartsOptions",
                  "DARTS: bi-level differentiable search of the cells' supernet (all channels)"))
register(Strategy("pcdarts", "archc.search.strategies.pcdarts", "run_pcdarts", "PcdartsOptions",
                  "PC-DARTS: DARTS with partial channels (1/K through the mixed ops) and edge normalization"))
register(Strategy("spos", "archc.search.strategies.spos", "run_spos", "SposOptions",
                  "SPOS: one sampled path per batch, then an Optuna study of children with inherited weights",
                  ("storage", "study_name", "timeout")))
