"""docs/ops.md: the op reference, rendered from :data:`archc.ops.REGISTRY`."""

from __future__ import annotations

from typing import Any

from archc.ops import REGISTRY
from archc.ops.base import Attr, Op

#: what each attribute kind accepts (see :class:`archc.ops.base.Attr`)
KIND_DOCS = {
    "int": "an integer",
    "float": "a number (integers are accepted)",
    "bool": "true or false",
    "str": "a string",
    "ints": "a list of integers",
    "floats": "a list of numbers",
    "pair": "an integer, or a pair [h, w] of integers (an integer n means [n, n])",
    "shape": "a list of integers (a tensor shape)",
    "any": "any value",
}


# -- ops.md --------------------------------------------------------------------------------------


def _value(v: Any) -> str:
    """A value as it would be written in a spec (YAML flow style)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _arity(op: Op) -> str:
    lo, hi = op.arity
    if hi is None:
        return f"{lo} or more"
    if lo == hi:
        return "none" if lo == 0 else str(lo)
    if hi == lo + 1:
        return f"{lo} or {hi}"
    return f"{lo} to {hi}"


def _default(a: Attr) -> str:
    if a.required:
        return "**required**"
    if a.default is None:
        return "—"
    return f"`{_value(a.default)}`"


def _constraints(a: Attr) -> str:
    out = []
    if a.min is not None:
        each = "each " if a.kind in ("ints", "shape", "floats", "pair") else ""
        out.append(f"{each}≥ {a.min:g}")
    if a.choices:
        out.append("one of " + ", ".join(f"`{_value(c)}`" for c in a.choices))
    return "; ".join(out)


def _outputs(op: Op) -> str:
    return "depends on the attributes" if type(op).num_outputs is not Op.num_outputs else "1"


def _costs(op: Op) -> str:
    """The analytic counts an op contributes to (conventions in archc.ops.base)."""
    t = type(op)
    out = [name for name, rule in (("params", "params"), ("buffers", "buffers"), ("MACs", "macs"))
           if getattr(t, rule) is not getattr(Op, rule)]
    if op.counts_activations:
        out.append("activations")
    if op.uncounted:
        estimated = t.uncounted_macs is not Op.uncounted_macs
        out.append(f"not in MACs ({op.uncounted}{'; estimated beside them' if estimated else ''})")
    return ", ".join(out) if out else "none"


def ops_markdown() -> str:
    """The op reference (docs/ops.md): every op of :data:`archc.ops.REGISTRY`, sorted by name."""
    ops = [REGISTRY[k] for k in sorted(REGISTRY)]
    lines = [
        "# Op library",
        "",
        "<!-- Generated from archc.ops.REGISTRY by `python -m archc._docgen > docs/ops.md`; do not edit. -->",
        "",
        f"{len(ops)} ops. A graph item names an op (or a block) with `op:`; every key that is not reserved",
        "(`op`, `in`, `repeat`, `when`, `names`, `doc`) is an attribute of the op. Attribute values may be",
        "expressions (`\"${...}\"`); `null` means the default; a default of — means unset (the description",
        "says what the op does then). *Inputs* is how many inputs the op takes (from `in:`, or the previous",
        "node). *Cost* names the analytic counts the op contributes to: params (learnable elements), buffers",
        "(persistent non-learnable tensors such as BatchNorm running statistics), MACs (per sample) and",
        "activations (output elements, pycls convention); see [spec.md](spec.md#costs).",
        "",
        "Attribute kinds:",
        "",
        "| kind | accepts |",
        "|---|---|",
    ]
    lines += [f"| {k} | {_cell(d)} |" for k, d in KIND_DOCS.items()]
    lines += ["", "| op | inputs | summary |", "|---|---|---|"]
    lines += [f"| [`{op.name}`](#{op.name}) | {_arity(op)} | {_cell(op.doc)} |" for op in ops]
    for op in ops:
        lines += ["", f"## {op.name}", ""]
        if op.doc:
            lines += [op.doc, ""]
        facts = [f"inputs: {_arity(op)}", f"outputs: {_outputs(op)}", f"cost: {_costs(op)}"]
        if op.train_only:
            facts.append("identity in eval mode (removable at deploy time)")
        lines.append("- " + "\n- ".join(facts))
        if op.attrs:
            lines += ["", "| attribute | kind | default | constraint | description |", "|---|---|---|---|---|"]
            for a in op.attrs:
                lines.append(f"| `{a.name}` | {a.kind} | {_cell(_default(a))} | {_cell(_constraints(a))} | {_cell(a.doc)} |")
        else:
            lines += ["", "No attributes."]
    return "\n".join(lines) + "\n"


