"""Where a cell space's cells live in its base spec, and the candidate ops of every edge.

A cell space names two params of its base spec per cell (the edge list and the output node). The cell
itself is a block of the base spec; this module finds, from the expanded graph alone:

* the block instance of each cell (the top-level node whose arguments are ``${<edges param>}`` and
  ``${<output param>}``) and the two block params that receive them;
* the node of the cell body that realizes each edge: the cell block is instantiated with every edge
  live and the same op, then with one edge's op changed — the one node that differs is that edge
  (so nothing depends on how the spec author named the edge nodes);
* the candidate op of an edge for every op of the cell: the same node in the cell block instantiated
  with every edge set to that op. The candidates are the very block instances the child networks
  build, which is what makes weight sharing exact;
* the cell's tail: the plain single-input ops after the cell's output node (CDCN++: the max-pool).

With partial channels (PC-DARTS, K > 1) the cell block is instantiated once more with its width
params (the int params equal to the cell's channel count) divided by K: edges whose input and output
widths agree take their candidates from it and run them on 1/K of the channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from archc.diagnostics import ArchcError, SpecError
from archc.ir.graph import Graph, Node
from archc.search.cells import CellSpace
from archc.spec.document import SpecDoc
from archc.spec.loader import YMap

__all__ = ["SupernetError", "CellAnatomy", "cell_anatomy", "thaw"]


class SupernetError(ArchcError):
    """A search space cannot be turned into a supernet (or a supernet call was given a bad argument)."""


def thaw(v: Any) -> Any:
    """Frozen IR values (tuples, read-only mappings) back to plain lists and dicts."""
    if isinstance(v, (Mapping, MappingProxyType)):
        return {k: thaw(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [thaw(x) for x in v]
    return v


@dataclass
class CellAnatomy:
    """One cell of the network: its block instance, its edge nodes and the candidate ops per edge."""

    cell: CellSpace
    node: Node                                   # the cell's block instance in the network graph
    edges_arg: str                               # block param receiving the edge list
    out_arg: str                                 # block param receiving the output node
    edge_ids: list[str]                          # body node id of each edge (the child's module names)
    candidates: dict[tuple[int, str], Node]      # (edge index, op) -> block instance at full width
    tail: list[Node]                             # plain ops applied to the output node, in order
    channels: tuple[int, int]                    # (input, node) channel counts
    partial: dict[int, int] = field(default_factory=dict)  # edge index -> K for partial-channel edges

    @property
    def ops(self) -> list[str]:
        """The cell's real ops (``none`` excluded), in the space's order."""
        return [o for o in self.cell.ops if o != self.cell.none]


def _instantiate(doc: SpecDoc, node: Node, params: Mapping[str, Any], in_types: list[Any] | None = None) -> Graph:
    """The body of ``node``'s block instantiated with ``params`` (inputs of ``in_types``, default the node's)."""
    from archc.spec.expand import _Expander

    args = YMap(thaw(params))
    if node.loc is not None:
        args.loc = node.loc
    try:
        inst = _Expander(doc).block_instance(node.id, doc.blocks[node.block], dict(args), args, {}, node.inputs,
                                             in_types or list(node.meta["in_types"]), node.loc or args.loc)
    except SpecError as exc:
        raise SupernetError(f"cell block '{node.block}' does not expand with {dict(thaw(params))}: {exc.message}",
                            exc.loc, exc.hint) from None
    assert inst.body is not None
    return inst.body


def _node_key(n: Node) -> str:
    return repr((n.op, n.block, thaw(n.params or {}), thaw(dict(n.attrs)), [str(r) for r in n.inputs]))


def _arg_for(node: Node, param: str) -> str | None:
    exprs = node.meta.get("exprs") or {}
    want = "${" + param + "}"
    hits = [k for k, v in exprs.items() if isinstance(v, str) and v.replace(" ", "") == want]
    return hits[0] if len(hits) == 1 else None


def _find_cell_node(graph: Graph, cell: CellSpace) -> tuple[Node, str, str]:
    for n in graph:
        if not n.is_block:
            continue
        ea, oa = _arg_for(n, cell.edges_param), _arg_for(n, cell.output_param)
        if ea and oa:
            return n, ea, oa
    raise SupernetError(
        f"cell '{cell.name}': no top-level block of the base spec takes '${{{cell.edges_param}}}' and "
        f"'${{{cell.output_param}}}'",
        cell.loc, "a supernet needs each cell to be one block instance at the top level of the base spec's graph")


def _channels(t: Any) -> int:
    return int(t.shape[1])


def cell_anatomy(doc: SpecDoc, graph: Graph, cell: CellSpace, partial_channels: int = 1) -> CellAnatomy:
    """The :class:`CellAnatomy` of ``cell`` in the expanded network ``graph``."""
    node, edges_arg, out_arg = _find_cell_node(graph, cell)
    ops = [o for o in cell.ops if o != cell.none]
    n_edges = len(cell.edges)
    params = thaw(node.params or {})

    def body(edge_ops: list[str], extra: Mapping[str, Any] | None = None, in_types: list[Any] | None = None) -> Graph:
        return _instantiate(doc, node, {**params, edges_arg: edge_ops, out_arg: cell.nodes, **(extra or {})}, in_types)

    base = body([ops[0]] * n_edges)
    edge_ids: list[str] = []
    for k in range(n_edges):
        other = ops[1] if len(ops) > 1 else cell.none
        changed = body([ops[0]] * k + [other] + [ops[0]] * (n_edges - k - 1))
        keys = {nid: _node_key(n) for nid, n in changed.nodes.items()}
        diff = [nid for nid, n in base.nodes.items() if n.is_block and keys.get(nid) != _node_key(n)]
        if len(ops) == 1:  # 'none' removes the edge node (and may rewire others): keep the removed block
            diff = [nid for nid in diff if nid not in changed.nodes]
        if len(diff) != 1:
            raise SupernetError(
                f"cell '{cell.name}': cannot tell which node of block '{node.block}' is edge {cell.edges[k]} "
                f"(changing its op changes {diff or 'nothing'})", cell.loc,
                "each edge must be one block instance whose op follows the edge's entry of the edge list")
        edge_ids.append(diff[0])
    candidates: dict[tuple[int, str], Node] = {}
    for op in ops:
        b = base if op == ops[0] else body([op] * n_edges)
        for k, nid in enumerate(edge_ids):
            candidates[(k, op)] = b.nodes[nid]
    # the tail: plain single-input ops from the body output back to the output node
    tail: list[Node] = []
    ref = base.outputs[0]
    while ref.node in base.nodes:
        n = base.nodes[ref.node]
        if n.is_block or n.is_repeat or len(n.inputs) != 1:
            break
        tail.insert(0, n)
        ref = n.inputs[0]
    cin = _channels(node.meta["in_types"][0])
    c = _channels(candidates[(len(edge_ids) - 1, ops[0])].types[0])
    anat = CellAnatomy(cell, node, edges_arg, out_arg, edge_ids, candidates, tail, (cin, c))
    if partial_channels > 1:
        _add_partial(anat, body, params, partial_channels)
    return anat


def _add_partial(anat: CellAnatomy, body: Any, params: Mapping[str, Any], k: int) -> None:
    """Candidates at 1/k width for the edges whose input and output widths agree (PC-DARTS)."""
    cin, c = anat.channels
    cell = anat.cell
    if c % k:
        raise SupernetError(f"cell '{cell.name}': partial channels K={k} do not divide its width {c}", cell.loc,
                            "choose K dividing the cell width (K=4 with widths that are multiples of 4)")
    widths = {p for p, v in params.items() if isinstance(v, int) and not isinstance(v, bool) and v in (cin, c)}
    if not widths:
        raise SupernetError(f"cell '{cell.name}': no int param of block '{anat.node.block}' holds its width {c}", cell.loc)
    reduced = {p: (params[p] // k if params[p] == c or cin == c else params[p]) for p in widths}
    # the reduced body sees a 1/k-wide input when the cell keeps its width (else edges from it stay full)
    t0 = anat.node.meta["in_types"][0]
    t_in = replace(t0, shape=(t0.shape[0], cin // k, *t0.shape[2:])) if cin == c else t0
    for op in anat.ops:
        b = body([op] * len(anat.edge_ids), reduced, [t_in, *anat.node.meta["in_types"][1:]])
        for e, nid in enumerate(anat.edge_ids):
            cand = b.nodes[nid]
            full = anat.candidates[(e, op)]
            if _channels(full.meta["in_types"][0]) != _channels(full.types[0]):
                continue  # the bypass could not be concatenated back: this edge keeps all channels
            if (_channels(cand.meta["in_types"][0]), _channels(cand.types[0])) != (c // k, c // k):
                continue
            anat.candidates[(e, op)] = cand
            anat.partial[e] = k
    for e in list(anat.partial):
        if any(_channels(anat.candidates[(e, op)].types[0]) != c // k for op in anat.ops):
            raise SupernetError(f"cell '{cell.name}': edge {cell.edges[e]} does not scale to 1/{k} width for every op",
                                cell.loc)
