"""A canonical print of a graph, for recognising architectures that compile to the same model.

Blocks and repeats are flattened into their leaf ops; identities are aliases; values that reach no
output are dropped; leaves are numbered in order of appearance. Two samples whose params differ but
whose graphs compute the same thing through the same ops, attributes and shapes (e.g. cells that
differ only in dead edges, or block structure that differs only in naming) print identically.
"""

from __future__ import annotations

import hashlib
from typing import Any

from archc.ir.graph import Graph

__all__ = ["canonical_text", "canonical_hash"]

_ALIAS_OPS = frozenset({"identity"})


def _fmt(v: Any) -> str:
    if isinstance(v, dict) or hasattr(v, "items"):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)


def canonical_text(graph: Graph) -> str:
    """The canonical print of ``graph`` (see the module doc)."""
    lines: list[tuple[str, str, tuple[str, ...]]] = []  # (value id, text, input value ids)

    def flatten(g: Graph, env: dict[str, str]) -> list[str]:
        vals: dict[tuple[str, int], str] = {}

        def ref(r: Any) -> str:
            if r.node in g.inputs:
                return env[r.node]
            return vals[(r.node, r.index)]

        for n in g:
            ins = [ref(r) for r in n.inputs]
            if n.body is not None:
                inner = dict(zip(n.body.inputs, ins))
                outs = flatten(n.body, inner)
                for k, v in enumerate(outs):
                    vals[(n.id, k)] = v
                continue
            if n.op in _ALIAS_OPS and len(ins) == 1:
                vals[(n.id, 0)] = ins[0]
                continue
            vid = f"%{len(lines)}"
            types = ", ".join(str(t) for t in n.types)
            lines.append((vid, f"{n.op}(@IN) {_fmt(dict(n.attrs))} -> {types}", tuple(ins)))
            for k in range(len(n.types)):
                vals[(n.id, k)] = vid if k == 0 else f"{vid}.{k}"
        return [ref(r) for r in g.outputs]

    inputs = {name: f"${name}" for name in graph.inputs}
    outs = flatten(graph, inputs)
    # keep what reaches an output, then number the kept leaves in order
    by_id = {vid: (text, ins) for vid, text, ins in lines}
    live: set[str] = set()
    stack = [o.split(".")[0] for o in outs]
    while stack:
        v = stack.pop()
        if v in live or v not in by_id:
            continue
        live.add(v)
        stack += [i.split(".")[0] for i in by_id[v][1]]
    names: dict[str, str] = {}
    out_lines = [f"input {name}: {t}" for name, t in graph.inputs.items()]

    def rename(v: str) -> str:
        base, _, k = v.partition(".")
        if base.startswith("$"):
            return v
        return names[base] + (f".{k}" if k else "")

    for vid, text, ins in lines:
        if vid not in live:
            continue
        names[vid] = f"v{len(names)}"
        out_lines.append(f"{names[vid]} = " + text.replace("@IN", ", ".join(rename(i) for i in ins), 1))
    out_lines.append("output " + ", ".join(rename(o) for o in outs))
    return "\n".join(out_lines)


def canonical_hash(graph: Graph) -> str:
    """sha256 (hex, 16 characters) of :func:`canonical_text`."""
    return hashlib.sha256(canonical_text(graph).encode()).hexdigest()[:16]
