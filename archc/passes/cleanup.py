"""Inference-time cleanups.

* ``remove_train_only``: dropout, drop-path and identity are the identity in eval mode; their users
  read the input instead.
* ``dce``: nodes whose outputs reach no graph output are removed (with their weights).
* ``cse``: two parameter-free nodes with the same op, attributes and inputs compute the same value;
  the later one is replaced by the earlier.
* ``inline_blocks``: a block instance whose body became a single op reading the block inputs in
  order is replaced by that op (state-dict keys lose the inner node's name); a block instance or
  repeat whose body became empty (it returns its inputs) is removed and its users read those inputs.
"""

from __future__ import annotations

from archc.ir.graph import Graph, Node, Ref
from archc.ops import REGISTRY
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, register_pass

__all__ = ["RemoveTrainOnly", "DeadCode", "CommonSubexpr", "InlineSingleOpBlocks"]


class _RemoveTrainOnly(Rule):
    """A node of a train-only op (``dropout``, ``drop_path``) or an ``identity``: its users read its input."""

    name = "remove_train_only"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | None:
        op = REGISTRY.get(node.op)
        if op is None or not (op.train_only or node.op == "identity"):
            return None
        return Match(node)

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        n = m.anchor
        return Rewrite({n.id}, [], {Ref(n.id, 0): n.inputs[0]})


@register_pass
class RemoveTrainOnly(RulePass):
    """Train-only ops removed: in eval mode dropout and drop-path return their input unchanged.

    ``dropout(x) = x`` and ``drop_path(x) = x`` in eval mode (the ops declared ``train_only``), and
    ``identity(x) = x`` always, so every such node is removed and its users read its input instead.
    Exact for the eval-mode function, which is the one a deploy form computes. The rule has no
    conditions of its own.
    """

    name = "remove_train_only"
    doc = "Drop dropout, drop-path and identity nodes (identities in eval mode)."
    rules = (_RemoveTrainOnly(),)


class _Dead(Rule):
    """A node none of whose outputs is read by another node or returned by the graph."""

    name = "dce"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | None:
        return Match(node) if not users.get(node.id) else None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        n = m.anchor

        def drop(sd: StateDict) -> None:
            for k in [k for k in sd if k == n.id or k.startswith(n.id + ".")]:
                del sd[k]

        return Rewrite({n.id}, [], {}, drop)


@register_pass
class DeadCode(RulePass):
    """Dead-code elimination: a value that reaches no graph output cannot change the outputs.

    Such a node is removed together with its weights (the state-dict keys under its id); removing it
    can make its inputs dead in turn, so the pass runs to a fixpoint. Inside a block body "output"
    means a body output, so a branch no body output depends on is removed from every instance.
    The rule has no conditions of its own.
    """

    name = "dce"
    doc = "Remove nodes whose values are never used."
    rules = (_Dead(),)


class _CSE(Rule):
    """A node without parameters or buffers that has the op, attributes and inputs of an earlier node."""

    name = "cse"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | None:
        if node.body is not None or node.op not in REGISTRY or REGISTRY[node.op].params(node.attrs, node.meta["in_types"]):
            return None
        if REGISTRY[node.op].buffers(node.attrs, node.meta["in_types"]) or REGISTRY[node.op].arity[1] == 0:
            return None
        key = (node.op, tuple(node.inputs), tuple(sorted((k, repr(v)) for k, v in node.attrs.items())))
        for other in g:
            if other.id == node.id:
                return None
            if other.body is None and (other.op, tuple(other.inputs), tuple(sorted((k, repr(v)) for k, v in other.attrs.items()))) == key:
                return Match(node, {"same": other})
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        n, same = m.anchor, m.nodes["same"]
        return Rewrite({n.id}, [], {Ref(n.id, k): Ref(same.id, k) for k in range(len(n.types))})


@register_pass
class CommonSubexpr(RulePass):
    """Common-subexpression elimination: ``f(a) = f(a)``.

    Ops are pure functions of their inputs and attributes, so two nodes with the same op, equal
    attributes and the same inputs compute the same value; the later one is removed and its users
    read the earlier one. Only nodes without parameters and buffers are merged (two convs of the same
    input have different weights), and never ops without inputs (they make fresh values).
    """

    name = "cse"
    doc = "Merge parameter-free nodes that compute the same value."
    rules = (_CSE(),)


def _pass_through(body: Graph) -> list[str] | None:
    """The body input each output of ``body`` is, when every output is one (through empty block instances only)."""
    found = []
    for r in body.outputs:
        while r.node not in body.inputs:
            item = body.nodes[r.node]
            if not (item.is_block and item.body is not None and len(item.body) == 0):
                return None
            inner = item.body.outputs[r.index].node
            r = item.inputs[list(item.body.inputs).index(inner)]
        found.append(r.node)
    return found


class _Inline(Rule):
    """A block instance whose body is one op of the block inputs (in order), or a block/repeat whose body is empty."""

    name = "inline_blocks"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | None:
        if node.body is not None and (node.is_block or node.is_repeat):
            through = _pass_through(node.body)
            if through is not None:  # every output is a body input (an empty body, or a repeat of empty blocks)
                return Match(node, data={"empty": through})
        if not node.is_block or node.body is None or len(node.body) != 1:
            return None
        inner = next(iter(node.body))
        if inner.body is not None or tuple(node.body.outputs) != tuple(Ref(inner.id, k) for k in range(len(inner.types))):
            return None
        if tuple(inner.inputs) != tuple(Ref(k, 0) for k in node.body.inputs):
            return None
        return Match(node, {"inner": inner})

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        if m.data.get("empty") is not None:
            n = m.anchor
            assert n.body is not None
            names = list(n.body.inputs)
            return Rewrite({n.id}, [], {Ref(n.id, k): n.inputs[names.index(name)] for k, name in enumerate(m.data["empty"])})
        n, inner = m.anchor, m.nodes["inner"]
        new = inner.replace(id=n.id, inputs=n.inputs, loc=inner.loc, out_names=n.out_names or inner.out_names, meta=dict(inner.meta))
        prefix = f"{n.id}.{inner.id}"

        def rename(sd: StateDict) -> None:
            for k in [k for k in sd if k == prefix or k.startswith(prefix + ".")]:
                sd[n.id + k[len(prefix):]] = sd.pop(k)

        return Rewrite(set(), [new], {}, rename)


@register_pass
class InlineSingleOpBlocks(RulePass):
    """Block instances that are a single op become that op; empty blocks and repeats disappear.

    A block instance computes its body. When the body is one op ``f(x₁, …, xₙ)`` of the block inputs
    in order, returning all of its outputs, the instance *is* that op: it is replaced by the op under
    the instance's id, and its weights move from ``blk.inner.weight`` to ``blk.weight`` (this is what
    makes a folded RepVGG block, whose body became one conv, a plain ``nn.Conv2d``). When the body is
    empty — every output is a body input, e.g. after every node in it was folded or removed — the
    instance or repeat is the identity on those inputs: it is removed and its users read its inputs
    (except an instance that is an item of a repeat: the items of a repeat are its iterations and are
    never removed one by one). Other blocks are not candidates.
    """

    name = "inline_blocks"
    doc = "Replace block instances whose body is a single op by that op; drop pass-through (empty) blocks."
    rules = (_Inline(),)
