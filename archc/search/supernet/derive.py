"""Discretization of a mixed cell (DARTS / PC-DARTS / CDCN++ node attention).

* each edge keeps its strongest op other than ``none`` (largest softmax(α) entry);
* each intermediate node keeps its strongest incoming edge: strength = that op's softmax(α) weight,
  times the edge's softmax(β_edge) weight among the node's incoming edges with partial channels
  (PC-DARTS edge normalization);
* the cell keeps the output node with the largest β (node attention).
"""

from __future__ import annotations

from typing import Any

import torch

from archc.search.cells import CellSpace, normalize_cell

__all__ = ["derive_choice", "edge_strengths", "alpha_table"]


@torch.no_grad()
def edge_strengths(cell: CellSpace, module: torch.nn.Module, partial: bool) -> list[tuple[str, float]]:
    """Per edge (cell order): its strongest op other than none and that edge's strength."""
    probs = torch.softmax(module.alpha.detach().double(), dim=-1)
    none = cell.ops.index(cell.none)
    out = []
    for k, (_, j) in enumerate(cell.edges):
        row = probs[k].clone()
        row[none] = -1.0
        best = int(row.argmax())
        strength = float(row[best])
        if partial:
            ins = [kk for kk, (_, jj) in enumerate(cell.edges) if jj == j]
            eb = torch.softmax(module.edge_beta.detach().double()[ins[0]:ins[-1] + 1], dim=0)
            strength *= float(eb[ins.index(k)])
        out.append((cell.ops[best], strength))
    return out


def derive_choice(cell: CellSpace, module: torch.nn.Module, partial: bool) -> dict[str, Any]:
    """The discretized param values of ``cell`` from its mixed-cell ``module``'s α/β."""
    strengths = edge_strengths(cell, module, partial)
    keep: dict[tuple[int, int], str] = {}
    for j in range(1, cell.nodes + 1):
        ins = [k for k, (_, jj) in enumerate(cell.edges) if jj == j]
        best = max(ins, key=lambda k: (strengths[k][1], -k))
        keep[cell.edges[best]] = strengths[best][0]
    out_node = int(torch.argmax(module.beta.detach())) + 1
    # edges that cannot reach the output node are dropped, as the space normalizes every sample
    edges, _ = normalize_cell([keep.get(e, cell.none) for e in cell.edges], out_node, cell.nodes, cell.none)
    return cell.point(dict(zip(cell.edges, edges)), out_node)


@torch.no_grad()
def alpha_table(cell: CellSpace, module: torch.nn.Module, partial: bool = False) -> list[dict[str, Any]]:
    """Rows ``{cell, edge, <op>: softmax(α)...}`` and one ``beta`` row (node attention) per cell."""
    probs = torch.softmax(module.alpha.detach().double(), dim=-1)
    rows: list[dict[str, Any]] = []
    eb = module.edge_beta if partial else None
    for k, (i, j) in enumerate(cell.edges):
        row: dict[str, Any] = {"cell": cell.name, "edge": f"{i}-{j}"}
        row.update({op: float(probs[k, n]) for n, op in enumerate(cell.ops)})
        if eb is not None:
            ins = [kk for kk, (_, jj) in enumerate(cell.edges) if jj == j]
            row["edge_beta"] = float(torch.softmax(eb.detach().double()[ins[0]:ins[-1] + 1], dim=0)[ins.index(k)])
        rows.append(row)
    beta = torch.softmax(module.beta.detach().double(), dim=0)
    rows.append({"cell": cell.name, "edge": "beta", **{f"n{j + 1}": float(beta[j]) for j in range(cell.nodes)}})
    return rows
