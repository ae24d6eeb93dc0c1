"""Cell spaces: a small DAG per cell whose edges each choose one op, with the output node chosen too.

A cell has an input node ``n0`` and ``nodes`` intermediate nodes ``n1..nN``. Node ``j`` is the sum of
its incoming edges ``(i, j)``, ``i < j``; every edge picks one op name from the cell's op set, one of
which means "no edge" (``none``). The search also picks the output node (the CDCN++ "node attention").

Edges are listed in the DARTS order ``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3), ...``: the edge list of
a cell is what the base spec consumes (one list param), plus the output node (one int param).

Sampled cells are *normalized* before they reach the spec: an edge leaving a node that has no live
input, or entering a node that does not lead to the output node, is set to ``none``. Two samples that
differ only in edges that cannot matter therefore materialize to the same params (and the same model);
a sample whose output node has no live path from the input is infeasible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archc.diagnostics import SourceLoc

__all__ = ["CellSpace", "cell_edges", "normalize_cell", "edge_key"]


def cell_edges(nodes: int) -> list[tuple[int, int]]:
    """The edges of a cell with ``nodes`` intermediate nodes, in the DARTS order."""
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


def edge_key(cell: str, i: int, j: int) -> str:
    """The Optuna param name of edge ``(i, j)`` of ``cell`` (e.g. ``low.e0_1``)."""
    return f"{cell}.e{i}_{j}"


def normalize_cell(kinds: Sequence[str], out: int, nodes: int, none: str = "none") -> tuple[list[str], str | None]:
    """Normalize a sampled cell: ``(edges, reason)``; ``reason`` is set when the cell is infeasible.

    ``kinds`` lists the edge ops in :func:`cell_edges` order and ``out`` is the output node (1..nodes).

    >>> normalize_cell(["cdc", "skip", "cdc"], 1, 2)
    (['cdc', 'none', 'none'], None)
    """
    edges = cell_edges(nodes)
    kind = {e: k for e, k in zip(edges, kinds)}
    live = [True] + [False] * nodes
    for j in range(1, nodes + 1):
        live[j] = any(live[i] and kind[(i, j)] != none for i in range(j))
    if not 1 <= out <= nodes:
        return list(kinds), f"output node {out} is not one of 1..{nodes}"
    if not live[out]:
        return [none] * len(edges), f"output node n{out} has no live path from the cell input"
    useful = [False] * (nodes + 1)
    useful[out] = True
    for j in range(out, 0, -1):
        if not useful[j]:
            continue
        for i in range(j):
            if live[i] and kind[(i, j)] != none:
                useful[i] = True
    result = [k if (live[i] and useful[j] and k != none) else none for (i, j), k in zip(edges, kinds)]
    return result, None


@dataclass(frozen=True)
class CellSpace:
    """One searched cell: its op set and the two base-spec params it materializes into."""

    name: str
    nodes: int
    ops: tuple[str, ...]
    edges_param: str
    output_param: str
    none: str = "none"
    op_table: str | None = None
    loc: SourceLoc | None = field(default=None, compare=False)

    @property
    def edges(self) -> list[tuple[int, int]]:
        return cell_edges(self.nodes)

    @property
    def output_key(self) -> str:
        return f"{self.name}.out"

    def param_names(self) -> list[str]:
        """Optuna param names of this cell: one per edge, then the output node."""
        return [edge_key(self.name, i, j) for i, j in self.edges] + [self.output_key]

    def materialize(self, values: Mapping[str, Any]) -> tuple[list[str], int, str | None]:
        """``(edges, out, reason)`` from sampled values (normalized; ``reason`` when infeasible)."""
        kinds = [str(values[edge_key(self.name, i, j)]) for i, j in self.edges]
        out = int(values[self.output_key])
        edges, reason = normalize_cell(kinds, out, self.nodes, self.none)
        return edges, out, (f"cell '{self.name}': {reason}" if reason else None)

    def point(self, edges: Mapping[tuple[int, int], str], out: int) -> dict[str, Any]:
        """Optuna param values of a fixed cell (edges not given are ``none``)."""
        vals: dict[str, Any] = {edge_key(self.name, i, j): edges.get((i, j), self.none) for i, j in self.edges}
        vals[self.output_key] = out
        return vals
