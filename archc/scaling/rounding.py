"""pycls's rounding of scaled dimensions (depth, width, group width, resolution) and block compatibility."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["DIMS", "DEFAULT_ROUNDING", "ROUNDERS", "round_depth", "round_width", "round_group_width",
           "round_resolution", "make_compatible"]

DIMS = ("depth", "width", "group_width", "resolution")
DEFAULT_ROUNDING = {"depth": 1, "width": 8, "group_width": 8, "resolution": 4}


def round_depth(x: float, multiple: int = 1) -> int:
    """Depth: ``round()`` to a multiple (1 by default), at least one multiple; a zero depth stays zero."""
    if x == 0:
        return 0
    return max(multiple, round(x / multiple) * multiple)


def round_width(x: float, multiple: int = 8) -> int:
    """Width: the nearest multiple of ``multiple`` (8 by default), at least one multiple (pycls)."""
    return max(1, round(x / multiple)) * multiple


def round_group_width(x: float, multiple: int = 8) -> int:
    """Group width (pycls): round to an integer ≥ 1; kept if ≤ 2, 4 if ≤ 5, else the nearest multiple of 8."""
    g = max(1, round(x))
    if g <= 2:
        return g
    if g <= 5:
        return 4
    return max(multiple, round(g / multiple) * multiple)


def round_resolution(x: float, multiple: int = 4) -> int:
    """Resolution: the nearest multiple of ``multiple`` (4 by default), at least one multiple."""
    return max(multiple, round(x / multiple) * multiple)


ROUNDERS: dict[str, Callable[[float, int], int]] = {
    "depth": round_depth, "width": round_width, "group_width": round_group_width, "resolution": round_resolution,
}


def make_compatible(widths: int | list[int], groups: int | list[int]) -> tuple[Any, Any]:
    """pycls's block compatibility: each group width at most its width, each width a multiple of its group width.

    ``widths`` and ``groups`` are ints or lists (a single group width applies to every width).
    """
    wl = widths if isinstance(widths, list) else [widths]
    gl = groups if isinstance(groups, list) else [groups] * len(wl)
    if len(gl) != len(wl):
        raise ValueError(f"{len(gl)} group widths for {len(wl)} widths")
    gs = [min(g, w) for g, w in zip(gl, wl)]
    if not isinstance(groups, list):  # one shared group width: the smallest width bounds it
        gs = [min(gs)] * len(wl)
    ws = [max(g, round(w / g) * g) for w, g in zip(wl, gs)]
    return (ws if isinstance(widths, list) else ws[0]), (gs if isinstance(groups, list) else gs[0])
