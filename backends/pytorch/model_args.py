"""What the model class's arguments (num_classes, in_chans, drop_path_rate) reach, for the generator.

The model class of a spec with a head takes a few spec params as constructor arguments (see
:mod:`archc.backends.pytorch.timm`). Most values are derived symbolically; these functions settle
the rest by evaluating again: the op rules on other input sizes (attributes are bound from params,
never from input sizes, so this is exact), the spec expanded with other argument values, and a
block's structural decisions with other values of a param.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from archc.backends.pytorch.symbolic import is_sym, plain

from archc.ir.graph import Graph, Node
from archc.ir.types import TensorType
from archc.ops import REGISTRY
from archc.spec.expr import compile_expr

__all__ = ["decides_alike", "perturbed", "train_time_only", "infer_body", "reached", "input_independent"]


def decides_alike(node: Node, param: str, env: Mapping[str, Any]) -> bool:
    """True when block instance ``node`` would be built the same with other values of its param ``param``.

    A param its class does not take as an argument reaches no size; it can only decide structure
    (``when``, ``op``, counts). Each such decision of the body is evaluated again with other values.
    """
    value = env.get(param)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    for _key, _nid, src, decided in (node.body.meta.get("decisions") or ()) if node.body is not None else ():
        m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S) if isinstance(src, str) else None
        if m is None:
            return False
        try:
            expr = compile_expr(m.group(1))
            if param not in expr.names:
                continue
            for other in (value + 1, value + 5, 1, 2 * value + 3, value - 1):
                if expr.eval({**env, param: type(value)(other)}) != decided:
                    return False
        except Exception:  # noqa: BLE001 - a decision that does not evaluate here cannot be vouched for
            return False
    return True


def perturbed(graph: Graph, args: frozenset[str]) -> Graph | None:
    """The graph's spec expanded again with every model argument changed (None if that is refused).

    Each argument moves at once (class and channel counts up, a rate shifted by an amount no spec
    writes), so a size that stays the same follows none of them.
    """
    head = graph.meta.get("head") or {}
    if "spec" not in head:
        return None
    doc, variant = head["spec"]
    params = dict(graph.meta.get("params") or {})
    for a in args:
        v = params[a]
        if isinstance(v, float):  # a move without a fixed point (v / 2 + 0.05 left 0.1 where it was)
            params[a] = v + 0.0371 if v < 0.5 else v - 0.0371
        elif isinstance(v, int) and not isinstance(v, bool):
            params[a] = v + 3
    from archc.spec.expand import expand

    try:
        return expand(doc, params, variant)
    except Exception:  # noqa: BLE001 - values the spec refuses: nothing is learned, nothing is settled
        return None


def train_time_only(graph: Graph, args: frozenset[str]) -> frozenset[str]:
    """The model arguments that reach nothing but attributes of train-only ops (dropout, stochastic depth).

    The spec is expanded again with each argument moved: when every node keeps its id, op, wiring and
    types, and only train-only ops change attributes, no size, count or structure follows the argument
    (a constructor value computed from sizes is then a constant of the spec, whatever else it sits beside).
    """
    return frozenset(a for a in args if (alt := perturbed(graph, frozenset({a}))) is not None and _alike(graph, alt))


def _alike(a: Graph, b: Graph) -> bool:
    """Same nodes, wiring and types, and the same attributes except on train-only ops (recursively)."""
    if list(a.nodes) != list(b.nodes) or a.inputs != b.inputs or a.outputs != b.outputs:
        return False
    for n in a:
        m = b.nodes[n.id]
        if (n.op, n.inputs, n.types, n.body is None) != (m.op, m.inputs, m.types, m.body is None):
            return False
        if n.body is not None:
            if not _alike(n.body, m.body):  # type: ignore[arg-type]
                return False
        elif n.attrs != m.attrs and not REGISTRY[n.op].train_only:
            return False
    return True


def infer_body(body: Graph, ins: list[TensorType]) -> list[TensorType]:
    """The output types of ``body`` for input types ``ins`` (the op rules on the bound attributes)."""
    types: dict[tuple[str, int], TensorType] = {(name, 0): t for name, t in zip(body.inputs, ins)}
    for n in body:
        in_t = [types[(r.node, r.index)] for r in n.inputs]
        outs = infer_body(n.body, in_t) if n.body is not None else REGISTRY[n.op].infer(n.attrs, in_t)
        for j, t in enumerate(outs):
            types[(n.id, j)] = t
    return [types[(r.node, r.index)] for r in body.outputs]


def reached(body: Graph, ins: list[TensorType], found: set[int]) -> list[TensorType]:
    """Record the block instances whose input sizes change when ``body`` reads ``ins``; its output types."""
    types: dict[tuple[str, int], TensorType] = {(name, 0): t for name, t in zip(body.inputs, ins)}
    for n in body:
        in_t = [types.get((r.node, r.index)) or body.type_of(r) for r in n.inputs]
        if in_t == [body.type_of(r) for r in n.inputs]:
            continue
        if n.is_block:
            found.add(id(n))
        try:
            outs = reached(n.body, in_t, found) if n.body is not None else REGISTRY[n.op].infer(n.attrs, in_t)
        except Exception:  # noqa: BLE001 - sizes the op refuses: the spec refuses them too, nothing to follow
            continue
        for j, t in enumerate(outs):
            types[(n.id, j)] = t
        if n.is_repeat and n.body is not None:
            _share_in_loop(n.body, found)
    return [types.get((r.node, r.index)) or body.type_of(r) for r in body.outputs]


def _share_in_loop(items: Graph, found: set[int]) -> None:
    """The items of a repeat are built by one loop of one class: when one item reads an argument, all
    items (and the blocks inside them, position by position) take the class of the one that does."""
    blocks = [it for it in items if it.is_block]
    for r in [it for it in blocks if id(it) in found]:
        for o in blocks:
            found.add(id(o))
            if r.body is not None and o.body is not None:
                _mirror(r.body, o.body, found)


def _mirror(a: Graph, b: Graph, found: set[int]) -> None:
    for n in a:
        m = b.nodes.get(n.id)
        if m is None:
            continue
        if id(n) in found and m.is_block:
            found.add(id(m))
        if n.body is not None and m.body is not None:
            _mirror(n.body, m.body, found)


def input_independent(node: Node, ins: list[TensorType]) -> list[list[bool]]:
    """Per output of block instance ``node`` and axis: does the size stay when the symbolic input sizes change?

    Attributes are bound from params, never from input sizes, so inferring the body again with other
    input sizes computes exactly what the block gives for them; a size that stays under several
    changes (and any that fails to infer counts as changing) is taken as independent of them.
    """
    same = [[True] * len(t.shape) for t in node.types]
    for delta in (1, 5, 64):
        moved = [t.with_shape(tuple(plain(d) + delta if is_sym(d) else plain(d) for d in t.shape)) for t in ins]
        try:
            outs = infer_body(node.body, moved)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - sizes the block refuses: they matter to it
            return [[False] * len(t.shape) for t in node.types]
        for j, (t, o) in enumerate(zip(node.types, outs)):
            for a, (d0, d1) in enumerate(zip(t.shape, o.shape)):
                same[j][a] = same[j][a] and d0 == d1
    return same
