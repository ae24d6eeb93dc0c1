"""Readers of positioned YAML values in search-space files, and how choice values are stored in Optuna.

Every reader takes the parent mapping, the key and a phrase naming where it is (``"evaluator 'train'"``)
so that its :class:`~archc.diagnostics.SearchSpaceError` says what is wrong at the value's ``file:line:col``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from archc.diagnostics import SearchSpaceError, SourceLoc, suggest
from archc.spec.loader import YMap

__all__ = ["err", "check_keys", "get_mapping", "get_number", "get_string", "get_bool", "plain", "encode", "decode",
           "parse_path"]

_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def err(message: str, loc: SourceLoc | None, hint: str | None = None) -> SearchSpaceError:
    """A search-space error at ``loc`` (raise it)."""
    return SearchSpaceError(message, loc, hint)


def check_keys(m: YMap, allowed: Sequence[str], what: str) -> None:
    """Refuse a key of ``m`` not in ``allowed``, with the closest allowed key as the hint."""
    for k in m:
        if k not in allowed:
            raise err(f"unknown key '{k}' in {what}", m.key_loc(k),
                       suggest(str(k), allowed) or f"allowed keys: {', '.join(allowed)}")


def get_mapping(parent: YMap, key: str, what: str, required: bool = False) -> YMap:
    """``parent[key]`` as a mapping; an absent or null section is an empty mapping at the parent's position."""
    if key not in parent:
        if required:
            raise err(f"{what} needs '{key}'", parent.loc)
        m = YMap()
        m.loc = parent.loc
        return m
    v = parent[key]
    if v is None:
        m = YMap()
        m.loc = parent.loc_of(key)
        return m
    if not isinstance(v, YMap):
        raise err(f"'{key}' in {what} must be a mapping, got {v!r}", parent.loc_of(key))
    return v


def get_number(parent: YMap, key: str, what: str, default: Any = None, *, integer: bool = False, positive: bool = False,
            nonneg: bool = False, allow_none: bool = False) -> Any:
    """``parent[key]`` as a finite number (``default`` when absent), checked against the flags."""
    if key not in parent:
        return default
    v = parent[key]
    loc = parent.loc_of(key)
    if v is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(v, str) and not integer and _FLOAT_TEXT.match(v.strip()):
        v = float(v)  # YAML 1.1 reads '3.5e6' (no sign, no dot) as a string
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise err(f"'{key}' in {what} must be {kind}, got {v!r}", loc)
    if not math.isfinite(v):
        raise err(f"'{key}' in {what} must be finite, got {v!r}", loc)
    if positive and v <= 0:
        raise err(f"'{key}' in {what} must be positive, got {v!r}", loc)
    if nonneg and v < 0:
        raise err(f"'{key}' in {what} must not be negative, got {v!r}", loc)
    return v


def get_string(parent: YMap, key: str, what: str, default: Any = None, options: Sequence[str] | None = None) -> Any:
    """``parent[key]`` as a string (``default`` when absent), one of ``options`` when they are given."""
    if key not in parent:
        return default
    v = parent[key]
    loc = parent.loc_of(key)
    if not isinstance(v, str):
        raise err(f"'{key}' in {what} must be a string, got {v!r}", loc,
                   f"one of: {', '.join(options)}" if options else None)
    if options is not None and v not in options:
        raise err(f"unknown {key} '{v}' in {what}", loc, suggest(v, options) or f"one of: {', '.join(options)}")
    return v


def get_bool(parent: YMap, key: str, what: str, default: bool) -> bool:
    """``parent[key]`` as true or false (``default`` when absent)."""
    if key not in parent:
        return default
    v = parent[key]
    if not isinstance(v, bool):
        raise err(f"'{key}' in {what} must be true or false, got {v!r}", parent.loc_of(key))
    return v


def plain(v: Any) -> Any:
    """YMap/YList → dict/list, recursively."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def encode(v: Any) -> Any:
    """A categorical value as Optuna stores it: primitives as they are, containers as compact JSON."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(plain(v), separators=(",", ":"))


def decode(v: Any) -> Any:
    """The inverse of :func:`encode`: JSON text of a list or mapping back to the value; anything else as it is."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def parse_path(text: str, loc: SourceLoc | None, params: Mapping[str, Any], what: str) -> tuple[str | int, ...]:
    """``dims`` or ``dims.2`` → a param path, checked against the base spec's params."""
    parts: list[str | int] = []
    for i, part in enumerate(str(text).split(".")):
        if i > 0 and part.lstrip("-").isdigit():
            parts.append(int(part))
        elif i == 0 and part:
            parts.append(part)
        else:
            raise err(f"bad param path '{text}' in {what}", loc, "write 'name' or 'name.index', e.g. 'dims.2'")
    if parts[0] not in params:
        raise err(f"{what} sets unknown param '{parts[0]}' of the base spec", loc,
                   suggest(str(parts[0]), params) or f"params: {', '.join(params)}")
    return tuple(parts)
