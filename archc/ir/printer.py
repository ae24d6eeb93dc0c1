"""The IR written back in the spec language (IR → spec, the other half of the spec → IR round trip).

:func:`spec_text` prints a typed :class:`Graph` — typically the result of a pass — as the
``inputs`` / ``blocks`` / ``graph`` / ``outputs`` of a spec file. The text is concrete: block
params are already bound in the IR, so each distinct block body is printed once as a block without
params (a block whose instances have different bodies gets one definition per body: ``blk``,
``blk_2``, ...), and a repeat whose items differ in an attribute gives that attribute as
``${[v0, v1, ...][i]}``. Attributes equal to their op's default and inputs that are the previous
node are left out, as a person would write them. Loading the text again gives a graph equal to the
printed one up to source locations (tests/numerics/test_pass_rules.py checks this on every pass
example), which is what lets the pass catalogue (docs/passes.md) show real pass results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from archc.ir.graph import Graph, Node, Ref
from archc.ir.types import TensorType
from archc.ops import REGISTRY

__all__ = ["spec_text", "yaml_value"]

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: plain scalars YAML would read as something other than a string
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def yaml_value(v: Any) -> str:
    """A value in YAML flow style, as a spec writes it (lists as ``[a, b]``, floats that read back as floats)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        text = repr(v)
        if "e" in text and "." not in text.split("e")[0]:
            mant, exp = text.split("e")
            text = f"{mant}.0e{exp}"  # YAML 1.1 reads 1e-05 as a string
        return text
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return v if _PLAIN.match(v) and v.lower() not in _YAML_WORDS else json.dumps(v)
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {yaml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(yaml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} in a spec")


def _short(v: Any, kind: str) -> Any:
    """A pair with equal halves as the single integer a spec would write."""
    if kind == "pair" and isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return v[0]
    return v


def _op_attrs(n: Node) -> dict[str, Any]:
    """The node's attributes that differ from the op's defaults (required ones always)."""
    op = REGISTRY[n.op]
    out: dict[str, Any] = {}
    for a in op.attrs:
        if a.name not in n.attrs:
            continue
        v = n.attrs[a.name]
        if not a.required:
            default = a.coerce(a.default) if a.default is not None else None
            if v == default:
                continue
        out[a.name] = _short(v, a.kind)
    return out


def _input_type(t: TensorType) -> str:
    shape = yaml_value(list(t.shape))
    return shape if t.dtype == "float32" else f"{{shape: {shape}, dtype: {t.dtype}}}"


class _Printer:
    def __init__(self) -> None:
        #: block definitions in the order they are needed (inner ones first): name → body text lines
        self.defs: dict[str, list[str]] = {}
        self.names: dict[int, str] = {}

    def block_name(self, n: Node) -> str:
        """The definition name of a block instance's body (one per distinct body text)."""
        assert n.body is not None and n.block is not None
        key = id(n.body)
        if key in self.names:
            return self.names[key]
        lines = self.body(n.body)
        base = n.block
        name, k = base, 1
        while name in self.defs and self.defs[name] != lines:
            k += 1
            name = f"{base}_{k}"
        self.defs[name] = lines
        self.names[key] = name
        return name

    def body(self, g: Graph) -> list[str]:
        lines = []
        names = list(g.inputs)
        if names != ["x"]:
            lines.append(f"inputs: {yaml_value(names)}")
        items, default_out = self.items(g)
        lines.append("graph:" if items else "graph: []")
        lines += [f"  {s}" for s in items]
        if g.outputs != default_out:
            lines.append(f"outputs: {self.refs(g, g.outputs)}")
        return lines

    def refs(self, g: Graph, refs: tuple[Ref, ...]) -> str:
        """Refs as a spec writes them: an output of a multi-output node by its name (``parts.q``) or index."""
        out = []
        for r in refs:
            n = g.nodes.get(r.node)
            if n is not None and len(n.types) > 1:
                out.append(f"{r.node}.{n.out_names[r.index] if n.out_names else r.index}")
            else:
                out.append(str(r))
        return out[0] if len(out) == 1 else "[" + ", ".join(out) + "]"

    def items(self, g: Graph) -> tuple[list[str], tuple[Ref, ...] | None]:
        """Graph items and the outputs a spec gets when it names none (the last value)."""
        first = next(iter(g.inputs), None)
        prev: Ref | None = Ref(first, 0) if first is not None else None
        prev_outputs = 1
        lines = []
        for n in g:
            fields: dict[str, Any] = {}
            if n.is_repeat:
                fields.update(self.repeat(n))
            elif n.is_block:
                fields["op"] = self.block_name(n)
            else:
                fields["op"] = n.op
                fields.update(_op_attrs(n))
            reads_prev = n.inputs == (prev,) and prev_outputs == 1
            takes_none = not n.inputs and n.op in REGISTRY and REGISTRY[n.op].arity[1] == 0
            if not (reads_prev or takes_none):
                fields = {"op": fields.pop("op"), "in": self.refs(g, n.inputs) if n.inputs else [], **fields}
            derived = tuple(str(r) if r.index == 0 else f"{r.node}_{r.index}" for r in n.body.outputs) \
                if n.is_block and n.body is not None and len(n.body.outputs) > 1 else ()
            if n.out_names and n.out_names != derived:
                fields["names"] = list(n.out_names)
            if len(fields) == 1:
                lines.append(f"- {n.id}: {yaml_value(fields['op'])}")
            else:
                body = ", ".join(f"{k}: {v if k == 'in' and isinstance(v, str) else yaml_value(v)}" for k, v in fields.items())
                lines.append(f"- {n.id}: {{{body}}}")
            prev, prev_outputs = Ref(n.id, 0), len(n.types)
        if prev is None or prev_outputs != 1:
            return lines, None
        return lines, (prev,)

    def repeat(self, n: Node) -> dict[str, Any]:
        """``op``, ``repeat`` and the attributes of a repeat node (per-item values as ``${[...][i]}``)."""
        assert n.body is not None
        items = list(n.body)
        if any(it.is_repeat for it in items):
            raise ValueError(f"cannot write the nested repeat in '{n.id}' in a spec")
        ops = [self.block_name(it) if it.is_block else it.op for it in items]
        fields: dict[str, Any] = {"op": ops[0] if len(set(ops)) == 1 else "${" + repr(ops) + "[i]}", "repeat": len(items)}
        if len(set(ops)) == 1 and not items[0].is_block:
            shown = _op_attrs(items[0])
            for a in REGISTRY[ops[0]].attrs:
                vals = [it.attrs.get(a.name) for it in items]
                if any(v != vals[0] for v in vals):
                    fields[a.name] = "${" + repr([_expr_value(_short(v, a.kind)) for v in vals]) + "[i]}"
                elif a.name in shown:
                    fields[a.name] = shown[a.name]
        elif any(not it.is_block for it in items):
            raise ValueError(f"cannot write the repeat '{n.id}' of different ops in a spec")
        return fields


def _expr_value(v: Any) -> Any:
    """A value as a literal of the expression language (Python syntax: lists, not tuples)."""
    return [_expr_value(x) for x in v] if isinstance(v, tuple) else v


def spec_text(graph: Graph) -> str:
    """``graph`` in the spec language: ``inputs``, ``blocks`` (if any), ``graph``, ``outputs`` (if not the last node).

    The result has no ``archc: 1`` header; prepend one (and a ``name``) to get a spec file.

    >>> from archc.compiler import build_graph
    >>> _, g = build_graph("spec.yaml", text="archc: 1\\ninputs: {x: [B, 3, 8, 8]}\\ngraph:\\n  - c: {op: conv2d, out: 4, kernel: 3}\\n  - relu\\n")
    >>> print(spec_text(g))
    inputs: {x: [B, 3, 8, 8]}
    graph:
      - c: {op: conv2d, out: 4, kernel: 3}
      - relu: relu
    """
    p = _Printer()
    top = p.body(graph)
    lines = ["inputs: {" + ", ".join(f"{k}: {_input_type(t)}" for k, t in graph.inputs.items()) + "}"]
    if p.defs:
        lines.append("blocks:")
        for name, body in p.defs.items():
            lines.append(f"  {name}:")
            lines += [f"    {s}" for s in body]
    lines += [s for s in top if not s.startswith("inputs: ") and not (graph.meta.get("output_names") and s.startswith("outputs: "))]
    names = graph.meta.get("output_names")
    if names:  # named outputs print as the mapping they were written as
        refs = [p.refs(graph, (r,)) for r in graph.outputs]
        lines.append("outputs: {" + ", ".join(f"{k}: {v}" for k, v in zip(names, refs)) + "}")
    return "\n".join(lines) + "\n"
