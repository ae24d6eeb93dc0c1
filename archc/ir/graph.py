"""The graph IR.

A :class:`Graph` is an ordered DAG of :class:`Node` values. Nodes are small frozen records; facts
derived from them (output types, costs) live in ``node.meta``. Blocks stay blocks: a block instance
is a node whose ``body`` is the instantiated block graph, and a repeat is a node whose ``body`` is a
chain of items named ``0, 1, ...``. networkx serves the algorithms (topological order, cycles),
not the public model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from archc.diagnostics import SourceLoc
from archc.ir.types import TensorType

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Ref", "Node", "Graph", "BLOCK", "REPEAT", "freeze"]

BLOCK = "block"
REPEAT = "repeat"


@dataclass(frozen=True, slots=True)
class Ref:
    """Output ``index`` of node (or graph input) ``node``."""

    node: str
    index: int = 0

    def __str__(self) -> str:
        return self.node if self.index == 0 else f"{self.node}.{self.index}"


def freeze(value: Any) -> Any:
    """Deep-freeze attribute values so nodes are hashable and immutable."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One operation (or block instance, or repeat) in a graph.

    ``op`` is an op name, :data:`BLOCK` or :data:`REPEAT`. ``block`` names the block definition of
    a block instance and ``params`` holds its bound block params.
    """

    id: str
    op: str
    inputs: tuple[Ref, ...]
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    loc: SourceLoc | None = None
    body: Graph | None = None
    block: str | None = None
    params: Mapping[str, Any] | None = None
    out_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Node:
        """A copy with ``changes``; derived ``meta`` is dropped unless given."""
        changes.setdefault("meta", {})
        return replace(self, **changes)

    @property
    def types(self) -> tuple[TensorType, ...]:
        return self.meta["types"]

    @property
    def is_block(self) -> bool:
        return self.op == BLOCK

    @property
    def is_repeat(self) -> bool:
        return self.op == REPEAT


@dataclass(eq=False)
class Graph:
    """An ordered DAG: ``nodes`` are stored in a valid topological order."""

    name: str
    inputs: dict[str, TensorType]
    nodes: dict[str, Node]
    outputs: tuple[Ref, ...]
    input_locs: dict[str, SourceLoc] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def type_of(self, ref: Ref) -> TensorType:
        """Type of the value ``ref`` points at."""
        if ref.node in self.inputs:
            return self.inputs[ref.node]
        return self.nodes[ref.node].types[ref.index]

    @property
    def output_types(self) -> tuple[TensorType, ...]:
        return tuple(self.type_of(r) for r in self.outputs)

    def users(self) -> dict[str, list[str]]:
        """Node/input id → ids of the nodes that read it (graph outputs count as user '<output>')."""
        out: dict[str, list[str]] = {k: [] for k in list(self.inputs) + list(self.nodes)}
        for n in self.nodes.values():
            for r in n.inputs:
                out[r.node].append(n.id)
        for r in self.outputs:
            out[r.node].append("<output>")
        return out

    def to_networkx(self) -> nx.DiGraph:
        import networkx as nx  # imported on first use: it costs most of archc's start-up time

        g = nx.DiGraph()
        for name in self.inputs:
            g.add_node(name)
        for n in self.nodes.values():
            g.add_node(n.id)
            for r in n.inputs:
                g.add_edge(r.node, n.id)
        return g

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """All nodes depth first, with dotted paths (the module paths of generated code)."""
        for n in self.nodes.values():
            path = f"{prefix}{n.id}"
            yield path, n
            if n.body is not None:
                yield from n.body.walk(path + ".")

    def with_nodes(self, nodes: list[Node], outputs: tuple[Ref, ...] | None = None) -> Graph:
        """A new graph with the same inputs and ``nodes`` (topologically sorted here)."""
        g = Graph(self.name, dict(self.inputs), {n.id: n for n in nodes}, outputs or self.outputs,
                  dict(self.input_locs), dict(self.meta))
        return g.sorted()

    def sorted(self) -> Graph:
        """This graph with nodes in a deterministic topological order (stable w.r.t. current order)."""
        import networkx as nx

        order = {nid: i for i, nid in enumerate(self.nodes)}
        g = self.to_networkx()
        topo = nx.lexicographical_topological_sort(g, key=lambda k: order.get(k, -1))
        self.nodes = {k: self.nodes[k] for k in topo if k in self.nodes}
        return self
