"""Analytic cost model: params, MACs, activations, per node, per block and per model.

Conventions are those of :mod:`archc.ops.base`: params are learnable elements; MACs are the
multiply-accumulates of conv, linear and matmul/attention for one sample; activations are output
elements of conv, linear and pooling layers (pycls). Ops the model cannot cost are listed in
``Cost.uncosted`` rather than silently counted as zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from archc.ir.graph import Graph, Node
from archc.ir.types import numel
from archc.ops import REGISTRY

__all__ = ["Cost", "node_cost", "graph_cost", "pycls_cost", "CONVENTIONS"]

CONVENTIONS = {
    "macs": "multiply-accumulates of conv, linear and matmul per sample; activations = conv/linear/pool outputs",
    "pycls": "pycls's complexity: MACs plus one add per output element of each conv/linear bias; "
             "activations = conv/linear/pool outputs except global average pooling",
}
#: ops whose output pycls does not count as activations (its gap2d adds none)
_PYCLS_NO_ACTS = frozenset({"global_avgpool", "global_maxpool"})


@dataclass
class Cost:
    """Totals of one node, block or graph (batch 1)."""

    params: int = 0
    macs: int = 0
    acts: int = 0
    buffers: int = 0
    uncosted: list[str] = field(default_factory=list)
    #: estimated MACs of the uncosted ops, by op name (their stated rule; not part of ``macs``)
    uncosted_macs: dict[str, int] = field(default_factory=dict)
    #: the part of ``macs`` done once per forward whatever the batch (ops on tables without a batch axis,
    #: e.g. a position-bias MLP over fixed coordinates): at batch B a forward does
    #: ``(macs - batchless_macs) * B + batchless_macs``
    batchless_macs: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.params += other.params
        self.macs += other.macs
        self.batchless_macs += other.batchless_macs
        self.acts += other.acts
        self.buffers += other.buffers
        self.uncosted += [u for u in other.uncosted if u not in self.uncosted]
        for name, n in other.uncosted_macs.items():
            self.uncosted_macs[name] = self.uncosted_macs.get(name, 0) + n
        return self


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def node_cost(node: Node, memo: dict[int, Cost] | None = None) -> Cost:
    """Cost of one node (a block or repeat sums its body)."""
    memo = {} if memo is None else memo
    if node.body is not None:
        return graph_cost(node.body, memo)
    op = REGISTRY[node.op]
    ins, outs = node.meta["in_types"], node.types
    c = Cost()
    c.params = sum(_prod(s) for s in op.params(node.attrs, ins).values())
    c.buffers = sum(_prod(s) for s in op.buffers(node.attrs, ins).values())
    c.macs = op.macs(node.attrs, ins, outs)
    if c.macs and outs and not any(isinstance(d, str) for t in outs for d in t.shape):
        c.batchless_macs = c.macs
    if op.counts_activations:
        c.acts = sum(numel(t) for t in outs)
    if op.uncounted:
        c.uncosted = [node.op]
        estimate = op.uncounted_macs(node.attrs, ins, outs)
        if estimate:
            c.uncosted_macs = {node.op: estimate}
    return c


def graph_cost(g: Graph, memo: dict[int, Cost] | None = None) -> Cost:
    """Total cost of a graph; shared block bodies are costed once and reused."""
    memo = {} if memo is None else memo
    key = id(g)
    if key in memo:
        return memo[key]
    total = Cost()
    for n in g:
        total += node_cost(n, memo)
    memo[key] = total
    return total


def pycls_cost(g: Graph) -> Cost:
    """The cost in pycls's own convention (see :data:`CONVENTIONS`), for comparison with pycls tables."""
    total = Cost()
    for _, n in g.walk():
        if n.body is not None:
            continue
        c = node_cost(n)
        if n.op in ("conv2d", "cdc_conv2d", "linear") and n.attrs.get("bias"):
            c.macs += numel(n.types[0])
        if n.op in _PYCLS_NO_ACTS:
            c.acts = 0
        total += c
    return total
