"""Strategy options as frozen dataclasses: one way to layer a mapping (CLI or space file) over defaults."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any, TypeVar

from archc.search.runner import SearchError

__all__ = ["options_from_mapping"]

T = TypeVar("T")


def options_from_mapping(cls: type[T], values: Mapping[str, Any], base: T | None, unknown: str) -> T:
    """``base`` (default ``cls()``) with ``values`` applied; ``None`` values keep ``base``'s.

    ``unknown`` is the message for a key that is not an option, with ``{key}`` in it; the hint suggests
    the nearest option name. The result's ``check()`` runs before it is returned (it raises SearchError).
    """
    base = base if base is not None else cls()
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    kw: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            raise SearchError(unknown.format(key=key),
                              hint=f"did you mean '{near[0]}'?" if near else f"options: {', '.join(sorted(names))}")
        if value is not None:
            kw[key] = value
    out = dataclasses.replace(base, **kw)  # type: ignore[type-var]
    out.check()  # type: ignore[attr-defined]
    return out
