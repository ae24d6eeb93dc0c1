"""Merging parallel transformer branches that share one input (ViT-parallel → single path).

Two sibling block instances with the same structure, reading the same tensor, whose outputs are
both added into one residual sum, are replaced by one wider instance:

* **FFN** (``linear → act → linear``): ``W₂ᵃ·σ(W₁ᵃx + b₁ᵃ) + b₂ᵃ + W₂ᵇ·σ(W₁ᵇx + b₁ᵇ) + b₂ᵇ`` equals one FFN
  with hidden units concatenated: ``W₁ = [W₁ᵃ; W₁ᵇ]``, ``b₁ = [b₁ᵃ; b₁ᵇ]``, ``W₂ = [W₂ᵃ | W₂ᵇ]``,
  ``b₂ = b₂ᵃ + b₂ᵇ`` (the activation is elementwise).
* **attention** (``qkv linear → chunk(q, k, v) → heads → sdpa → merge heads → proj``): heads are
  independent, so the branches are one attention with the heads of ``a`` followed by those of ``b``:
  the q, k and v row blocks of the qkv weights are interleaved ``[qᵃ; qᵇ; kᵃ; kᵇ; vᵃ; vᵇ]``, the
  projection takes ``[Pᵃ | Pᵇ]`` and the summed bias. Exact when both branches use the same head
  size (hence the same default scale).

Refused when the siblings differ in structure or attributes, read different inputs, are used outside
the residual sum, or (attention) have no explicit head dimension to double.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from archc.ir.graph import Graph, Node, Ref, freeze
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass, single_user

__all__ = ["MergeParallelBlocks", "ParallelMerge"]


def _ops(body: Graph) -> tuple[str, ...]:
    return tuple(n.op for n in body)


def _kind(body: Graph) -> str | None:
    ops = _ops(body)
    if len(ops) == 3 and ops[0] == "linear" and ops[2] == "linear":
        return "ffn"
    if ops and ops[0] == "linear" and ops[-1] == "linear" and "sdpa" in ops and ops[1] == "chunk":
        return "attention"
    return None


def _rebuild(body: Graph, updates: dict[str, dict[str, Any]]) -> Graph:
    """The body with some attributes changed and every type re-inferred in order."""
    g = Graph(body.name, dict(body.inputs), {}, body.outputs, dict(body.input_locs), dict(body.meta))
    for n in body:
        attrs = {**dict(n.attrs), **updates.get(n.id, {})}
        g.nodes[n.id] = _with_names(make_node(g, n.id, n.op, n.inputs, attrs, like=n), n)
    return g


def _names(expr: Any) -> set[str]:
    """The identifiers an author's ``${...}`` expression mentions (empty for a literal value)."""
    if not isinstance(expr, str) or "${" not in expr:
        return set()
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "".join(re.findall(r"\$\{(.*?)\}", expr, re.S))))


def _with_names(new: Node, old: Node) -> Node:
    return new if not old.out_names else new.replace(out_names=old.out_names, meta=new.meta)


def _sum_tree(g: Graph, start: str, users: dict[str, list[str]]) -> list[str]:
    """Ids of the chain of adds that consumes ``start`` (follows single users through adds)."""
    chain = []
    cur = start
    while True:
        u = single_user(users, cur)
        if u is None or u not in g.nodes or g.nodes[u].op != "add":
            return chain
        chain.append(u)
        cur = u


class MergeParallelBlocks(Rule):
    """Two instances of one FFN or attention block reading the same tensor, both added into one residual sum.

    They become one instance of twice the width (twice the hidden units, or twice the heads); the
    second instance and the ``add`` that took it are removed.
    """

    name = "merge_parallel_blocks"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        if not node.is_block or node.body is None or _kind(node.body) is None:
            return None
        for other in g:
            if other is node or not other.is_block or other.block != node.block or other.inputs != node.inputs:
                continue
            if list(g.nodes).index(other.id) < list(g.nodes).index(node.id):
                continue
            return Match(node, {"a": node, "b": other}, {"kind": _kind(node.body)})
        return None

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        a, b = m.nodes["a"], m.nodes["b"]
        if _ops(a.body) != _ops(b.body) or any(x.attrs != y.attrs for x, y in zip(a.body, b.body)):  # type: ignore[union-attr]
            return f"'{a.id}' and '{b.id}' differ in structure or attributes"
        chain_a, chain_b = _sum_tree(g, a.id, users), _sum_tree(g, b.id, users)
        if not chain_a or not chain_b:
            return f"'{a.id}' or '{b.id}' is not added into a residual sum"
        if chain_b[0] not in chain_a and chain_a[0] not in chain_b:
            return f"'{a.id}' and '{b.id}' are added into different sums"
        if m.data["kind"] == "attention":
            shapes = [n for n in a.body if n.op == "reshape"]  # type: ignore[union-attr]
            if len(shapes) < 4:
                return "the attention branch does not expose its head split as reshapes"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        a, b = m.nodes["a"], m.nodes["b"]
        body = a.body
        assert body is not None
        nodes = list(body)
        first, last = nodes[0], nodes[-1]
        width = first.attrs["out"]
        updates: dict[str, dict[str, Any]] = {first.id: {"out": 2 * width}}
        if m.data["kind"] == "attention":
            for n in nodes:
                if n.op == "reshape":
                    shape = list(n.attrs["shape"])
                    # [-1, heads, d] → [-1, 2·heads, d]; [-1, width] → [-1, 2·width]
                    if len(shape) == 3:
                        shape[1] *= 2
                    elif len(shape) == 2:
                        shape[1] *= 2
                    updates[n.id] = {"shape": shape}
        new_body = _rebuild(body, updates)
        doubled = {first.attrs["out"], first.attrs["out"] // 3} if m.data["kind"] == "attention" else {width}
        doubled |= {n.attrs["shape"][1] for n in nodes if n.op == "reshape" and len(n.attrs["shape"]) == 3}
        # the block params that set a doubled width: those its author's expressions use in a changed attribute
        # (when the body kept them), among those whose value is one of the widths that doubled
        used = {name for n in nodes for key in updates.get(n.id, {}) for name in _names(n.meta.get("exprs", {}).get(key))}
        known = any(n.meta.get("exprs") for n in nodes)
        params = {k: (2 * v if isinstance(v, int) and not isinstance(v, bool) and v in doubled and (k in used or not known)
                      else v)
                  for k, v in (a.params or {}).items()}
        merged = a.replace(body=new_body, params=freeze(params), meta=dict(a.meta, types=new_body.output_types))
        chain_a, chain_b = _sum_tree(g, a.id, users), _sum_tree(g, b.id, users)
        add_b = g.nodes[chain_b[0]]
        other = next(r for r in add_b.inputs if r.node != b.id)
        kind = m.data["kind"]
        fid, lid = first.id, last.id

        def merge(sd: StateDict) -> None:
            pa, pb = f"{a.id}.", f"{b.id}."
            w1a, w1b = sd.pop(f"{pa}{fid}.weight"), sd.pop(f"{pb}{fid}.weight")
            has_b1 = f"{pa}{fid}.bias" in sd
            b1a = sd.pop(f"{pa}{fid}.bias") if has_b1 else None
            b1b = sd.pop(f"{pb}{fid}.bias") if has_b1 else None
            if kind == "attention":
                wa, wb = w1a.chunk(3, 0), w1b.chunk(3, 0)
                sd[f"{pa}{fid}.weight"] = torch.cat([t for pair in zip(wa, wb) for t in pair], 0)
                if has_b1:
                    ba, bb = b1a.chunk(3, 0), b1b.chunk(3, 0)  # type: ignore[union-attr]
                    sd[f"{pa}{fid}.bias"] = torch.cat([t for pair in zip(ba, bb) for t in pair], 0)
            else:
                sd[f"{pa}{fid}.weight"] = torch.cat([w1a, w1b], 0)
                if has_b1:
                    sd[f"{pa}{fid}.bias"] = torch.cat([b1a, b1b], 0)  # type: ignore[list-item]
            sd[f"{pa}{lid}.weight"] = torch.cat([sd.pop(f"{pa}{lid}.weight"), sd.pop(f"{pb}{lid}.weight")], 1)
            if f"{pa}{lid}.bias" in sd:
                sd[f"{pa}{lid}.bias"] = sd.pop(f"{pa}{lid}.bias") + sd.pop(f"{pb}{lid}.bias")
            for k in [k for k in sd if k.startswith(pb)]:
                del sd[k]

        del chain_a
        return Rewrite({b.id, add_b.id}, [merged], {Ref(add_b.id, 0): other}, merge)


@register_pass
class ParallelMerge(RulePass):
    name = "merge_parallel_blocks"
    doc = "Merge sibling FFN / attention blocks sharing an input into one wider block (ViT-parallel)."
    rules = (MergeParallelBlocks(),)
