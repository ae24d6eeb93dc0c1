"""Architecture search over specs: search-space files, Optuna studies, proxy evaluation, exports.

>>> from archc.search import run_search                         # doctest: +SKIP
>>> res = run_search("search_spaces/cdc.yaml", trials=20)          # doctest: +SKIP
>>> res.best.number, res.files["best"]                            # doctest: +SKIP

See ``docs/search_space.md`` for the file format and ``archc search --help`` for the command.
Heavy modules (torch, optuna) are imported when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "run_search", "SearchResult", "SearchError", "load_space", "SearchSpace", "Choice", "CellSpace", "Materialized",
    "choices_from_distributions", "ProxyEvaluator", "TrialContext", "ModelBuilder", "canonical_hash",
    "canonical_text", "export_spec", "write_outputs", "normalize_cell", "load_data",
]

_WHERE = {
    "run_search": "runner", "SearchResult": "runner", "SearchError": "runner", "ModelBuilder": "runner",
    "write_outputs": "runner",
    "load_space": "space", "SearchSpace": "space", "Choice": "space", "Materialized": "space",
    "choices_from_distributions": "space", "CellSpace": "cells", "normalize_cell": "cells",
    "ProxyEvaluator": "evaluate", "TrialContext": "evaluate", "canonical_hash": "canon", "canonical_text": "canon",
    "export_spec": "export", "load_data": "data",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"archc.search.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'archc.search' has no attribute {name!r}")
