"""Generated documentation: the op reference, the JSON Schema of spec files and the pass catalogue.

All are rendered from the code, so they cannot drift from it::

    python -m archc._docgen > docs/ops.md
    python -m archc._docgen --schema > docs/spec.schema.json
    python -m archc._docgen --passes > docs/passes.md

The pass catalogue takes each pass's math from its docstrings, its refusal conditions from the
``return "reason"`` statements of its rules, and its examples from :mod:`archc.passes.examples`,
whose *after* graphs it produces by running the pass (printed back with :func:`archc.ir.printer.spec_text`).
``tests/unit/test_docs.py`` checks that the committed files equal what this module renders.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import keyword
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archc.ops import REGISTRY
from archc.ops.base import Attr, Op
from archc.spec.document import BLOCK_KEYS, FORMAT_VERSION, LIB_KEYS, PARAM_TYPES, TOP_KEYS
from archc.spec.expand import _MODULE_ATTRS, MAX_REPEAT, RESERVED

__all__ = ["ops_markdown", "schema_json", "schema_text", "passes_markdown", "rule_reasons", "general_refusals", "main"]

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

#: input dtypes accepted by ``inputs: {x: {shape: ..., dtype: ...}}`` (archc.spec.expand._input_type)
INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16")

_IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEL = rf"(-?[0-9]+|{_NAME})"
_REF_PATTERN = rf"^\s*{_NAME}(\.{_SEL}|\[{_SEL}\])?\s*$"


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


# -- spec.schema.json ----------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _or_expr(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _ref("expr")]}


def _attr_schema(a: Attr) -> dict[str, Any]:
    """Schema of one op attribute: its kind, or an expression, or null (the default) when optional."""
    bound = {} if a.min is None else {"minimum": a.min}
    enum = {"enum": list(a.choices)} if a.choices else {}
    k = a.kind
    integer = {"type": "integer", **bound, **enum}
    if k == "int":
        base: dict[str, Any] = integer
    elif k == "float":
        base = {"type": "number", **bound, **enum}
    elif k == "bool":
        base = {"type": "boolean"}
    elif k == "str":
        base = {"type": "string", **enum}
    elif k == "pair":
        base = {"anyOf": [integer, {"type": "array", "items": _or_expr(integer), "minItems": 2, "maxItems": 2}]}
    elif k in ("ints", "shape"):
        base = {"type": "array", "items": _or_expr(integer)}
    elif k == "floats":
        base = {"type": "array", "items": _or_expr({"type": "number", **bound})}
    else:
        base = {}
    default = "required" if a.required else f"default {_value(a.default)}"
    desc = f"{a.doc + ' — ' if a.doc else ''}{a.kind}, {default}"
    if not base:
        return {"description": desc}
    options = [base, _ref("expr")] + ([] if a.required else [{"type": "null"}])
    return {"description": desc, "anyOf": options}


def _op_rule(op: Op) -> dict[str, Any]:
    """``if op == <name> then`` only the reserved keys and the op's attributes, required ones present."""
    then: dict[str, Any] = {
        "properties": {**{k: True for k in RESERVED}, **{a.name: _attr_schema(a) for a in op.attrs}},
        "additionalProperties": False,
    }
    required = [a.name for a in op.attrs if a.required]
    if required:
        then["required"] = required
    return {"if": {"properties": {"op": {"const": op.name}}, "required": ["op"]}, "then": then}


def schema_json() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of spec files and block libraries (docs/spec.schema.json)."""
    ops = sorted(REGISTRY)
    expr = _ref("expr")
    identifier = _ref("identifier")
    top = {
        "archc": {"const": FORMAT_VERSION, "description": f"format version; this archc reads {FORMAT_VERSION}"},
        "name": {"type": "string", "description": "model name (default: the file name without extension)"},
        "doc": {"type": "string", "description": "description; becomes the docstring of the generated model"},
        "imports": _ref("imports"),
        "params": {
            "type": "object",
            "description": "top-level params: name -> value; a value may be an expression over earlier params",
            "propertyNames": identifier,
        },
        "variants": {
            "type": "object",
            "description": "named param sets: variant -> {param: value}; chosen with -v (default: default_variant, "
                           "else the first)",
            "additionalProperties": {
                "anyOf": [{"type": "object", "propertyNames": identifier}, {"type": "null"}],
            },
        },
        "default_variant": {"type": "string", "description": "the variant used when none is chosen"},
        "inputs": {
            "type": "object",
            "description": "model inputs: name -> shape, e.g. x: [B, 3, 224, 224]; the first feeds the first node",
            "propertyNames": identifier,
            "additionalProperties": _ref("input"),
        },
        "blocks": _ref("blocks"),
        "graph": _ref("graph"),
        "outputs": {"anyOf": [_ref("refs"), {"type": "object", "minProperties": 1,
                                             "additionalProperties": {"type": "string"}}],
                    "description": "model outputs (default: the last node); a mapping name: ref makes forward return a dict"},
        "scaling": {"type": "object", "description": "scaling rules (free-form for now)"},
        "head": {
            "type": "object",
            "description": "the classifier's parts, for the timm interface of generated models (docs/spec.md#the-head)",
            "properties": {
                "features": {**identifier, "description": "the node whose output forward_features returns"},
                "classifier": {
                    "description": "the classifier node(s): a top-level node id, or block_node.node inside a top-level "
                                   "block instance; reset_classifier rebuilds them",
                    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                },
                "mean": {"type": "array", "items": {"type": "number"}, "description": "per-channel input mean"},
                "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0},
                        "description": "per-channel input std"},
                "interpolation": {"enum": ["nearest", "bilinear", "bicubic"], "description": "resize interpolation"},
                "crop_pct": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "center-crop fraction"},
            },
            "required": ["features", "classifier"],
            "additionalProperties": False,
        },
    }
    assert tuple(top) == TOP_KEYS, "keep the schema's top-level keys in the order of TOP_KEYS"
    library = {k: top[k] for k in LIB_KEYS}
    block = {
        "doc": {"type": "string", "description": "description; becomes the docstring of the generated class"},
        "params": {
            "type": "object",
            "description": "params of the block; the body sees only these (and i/n inside its repeats)",
            "propertyNames": identifier,
            "additionalProperties": _ref("blockParam"),
        },
        "inputs": {
            "description": "input names (default [x]); the first feeds the first node",
            "anyOf": [identifier, {"type": "array", "items": identifier}],
        },
        "graph": _ref("graph"),
        "outputs": {**_ref("refs"), "description": "block outputs (default: the last node)"},
    }
    assert tuple(block) == BLOCK_KEYS
    node = {
        "op": _ref("opName"),
        "in": {**_ref("refs"), "description": "inputs: a ref or a list of refs (default: the previous node)"},
        "repeat": {
            "description": "chain this many copies; their attributes see i (0-based) and n; 0 passes the first "
                           "input through",
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_REPEAT}, expr],
        },
        "when": {
            "description": "the node exists only when true; otherwise its id stands for its first input",
            "anyOf": [{"type": "boolean"}, expr],
        },
        "names": {"type": "array", "description": "names of the node's outputs", "items": identifier},
        "doc": {"type": "string", "description": "a comment on the node (ignored by the compiler)"},
    }
    assert set(node) == set(RESERVED)
    shape_dim = _or_expr({"type": "integer", "minimum": 1})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "archc spec",
        "description": "An archc spec file (archc: 1 with inputs and graph) or a block library (blocks only). "
                       "Generated by `python -m archc._docgen --schema`; see docs/spec.md.",
        "anyOf": [_ref("spec"), _ref("library")],
        "$defs": {
            "spec": {
                "type": "object",
                "description": "a spec file",
                "properties": top,
                "required": ["archc", "inputs", "graph"],
                "additionalProperties": False,
            },
            "library": {
                "type": "object",
                "description": "a block library, imported by specs",
                "properties": library,
                "additionalProperties": False,
            },
            "identifier": {
                "type": "string",
                "description": "letters, digits and underscores, not starting with a digit, not a Python keyword",
                "pattern": _IDENT_PATTERN,
                "not": {"enum": sorted(keyword.kwlist)},
            },
            "expr": {
                "type": "string",
                "description": "an expression: '${expr}' is its value, 'text${expr}' a string",
                "pattern": r"\$\{",
            },
            "imports": {
                "type": "array",
                "description": "block libraries, relative to this file, inside the project tree",
                "items": {"type": "string", "pattern": r"\.ya?ml$"},
            },
            "input": {
                "anyOf": [
                    _ref("shape"),
                    {
                        "type": "object",
                        "properties": {"shape": _ref("shape"), "dtype": {"enum": list(INPUT_DTYPES)}},
                        "required": ["shape"],
                        "additionalProperties": False,
                    },
                ],
            },
            "shape": {
                "description": "dims; the first may be B, the symbolic batch",
                "anyOf": [
                    {
                        "type": "array",
                        "minItems": 1,
                        "prefixItems": [{"anyOf": [{"const": "B"}, {"type": "integer", "minimum": 1}, expr]}],
                        "items": shape_dim,
                    },
                    expr,
                ],
            },
            "blocks": {
                "type": "object",
                "description": "block definitions: name -> block",
                "propertyNames": identifier,
                "additionalProperties": _ref("block"),
            },
            "block": {
                "type": "object",
                "description": "a reusable subgraph",
                "properties": block,
                "required": ["graph"],
                "additionalProperties": False,
            },
            "paramType": {"enum": list(PARAM_TYPES)},
            "blockParam": {
                "description": "a type (a required param), {type, default, doc}, or a default value whose type is "
                               "inferred",
                "anyOf": [
                    _ref("paramType"),
                    {
                        "type": "object",
                        "properties": {"type": _ref("paramType"), "default": True, "doc": {"type": "string"}},
                        "required": ["type"],
                        "additionalProperties": False,
                    },
                    {"not": {"anyOf": [{"type": "object", "required": ["type"]}, _ref("paramType")]}},
                ],
            },
            "graph": {"type": "array", "description": "nodes, in order", "items": _ref("item")},
            "item": {
                "description": "an op or block name, {op: ..., ...}, or {id: op} / {id: {op: ..., ...}}",
                "anyOf": [_ref("opName"), _ref("node"), _ref("namedNode")],
            },
            "namedNode": {
                "type": "object",
                "description": "{id: op} or {id: {op: ..., ...}}; the id names the node and its generated attribute",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {
                    "allOf": [identifier, {"pattern": "^[^_]"}, {"not": {"enum": sorted(_MODULE_ATTRS | {"op"})}}],
                },
                "additionalProperties": {"anyOf": [_ref("opName"), _ref("node")]},
            },
            "node": {
                "type": "object",
                "description": "a node: op plus reserved keys; other keys are op attributes or block arguments",
                "properties": node,
                "required": ["op"],
                "propertyNames": {"type": "string", "pattern": _IDENT_PATTERN},
                "allOf": [_op_rule(REGISTRY[k]) for k in ops],
            },
            "opName": {
                "description": "an op, a block, or an expression naming one",
                "anyOf": [{"enum": ops}, {"type": "string", "pattern": _IDENT_PATTERN}, expr],
            },
            "ref": {
                "type": "string",
                "description": "name, name.2, name[2], name.k or name[k]",
                "pattern": _REF_PATTERN,
            },
            "refs": {"anyOf": [_ref("ref"), {"type": "array", "items": _ref("ref")}]},
        },
    }


def schema_text() -> str:
    """docs/spec.schema.json as text."""
    return json.dumps(schema_json(), indent=2, ensure_ascii=False) + "\n"


# -- passes.md -----------------------------------------------------------------------------------

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _md(doc: str | None) -> str:
    """A reST-flavoured docstring as markdown: ``code`` → `code`, :role:`x` → `x`."""
    text = inspect.cleandoc(doc or "")
    text = _ROLE.sub(lambda m: f"`{m[1]}`", text)
    return text.replace("``", "`")


def _placeholder(e: ast.expr, consts: dict[str, Any]) -> str:
    """A value interpolated into a refusal message: a module constant's value, a name or attribute path, else …."""
    if isinstance(e, ast.Name) and isinstance(consts.get(e.id), (int, float, str)) and not isinstance(consts[e.id], bool):
        return str(consts[e.id])
    cur = e
    while isinstance(cur, (ast.Attribute, ast.Subscript)):
        cur = cur.value
    return "{" + ast.unparse(e) + "}" if isinstance(cur, ast.Name) else "{…}"


def _message(e: ast.expr | None, consts: dict[str, Any]) -> list[str]:
    """The message templates a ``return`` expression can produce (strings and f-strings)."""
    if isinstance(e, ast.Constant) and isinstance(e.value, str):
        return [e.value]
    if isinstance(e, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else _placeholder(v.value, consts)  # type: ignore[attr-defined]
                        for v in e.values)]
    if isinstance(e, ast.IfExp):
        return _message(e.body, consts) + _message(e.orelse, consts)
    return []


def rule_reasons(rule: Any) -> list[str]:
    """Every reason a rule gives for not firing: the strings its ``match`` and ``check`` return."""
    found: list[tuple[int, str]] = []
    for cls in type(rule).__mro__:
        if cls.__module__ == "archc.passes.base" or cls is object:
            continue
        consts = {k: v for k, v in vars(sys.modules[cls.__module__]).items() if k.isupper()}
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        for fn in tree.body[0].body:  # type: ignore[attr-defined]
            if isinstance(fn, ast.FunctionDef) and fn.name in ("match", "check"):
                found += [(node.lineno, m) for node in ast.walk(fn) if isinstance(node, ast.Return)
                          for m in _message(node.value, consts)]
    return list(dict.fromkeys(m for _, m in sorted(found)))


def general_refusals() -> list[str]:
    """Reasons the pass manager refuses a rewrite of any rule (``Explanation(..., False, "reason")`` in RulePass)."""
    from archc.passes.base import RulePass

    tree = ast.parse(textwrap.dedent(inspect.getsource(RulePass)))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Explanation" and len(node.args) == 5:
            fired, reason = node.args[3], node.args[4]
            if isinstance(fired, ast.Constant) and fired.value is False:
                out += _message(reason, {})
    return out


def _pass_order() -> list[str]:
    """Registered passes: in the order the pipelines first run them, then any others by name."""
    from archc.passes.base import PASSES
    from archc.passes.pipeline import PIPELINES

    order: list[str] = []
    for passes in PIPELINES.values():
        for p in passes:
            if p not in order:
                order.append(p)
    return order + sorted(p for p in PASSES if p not in order)


def _yaml_block(text: str) -> list[str]:
    return ["```yaml", textwrap.dedent(text).strip("\n"), "```"]


def _fire_example(case: Any, folder: Path) -> list[str]:
    from archc.ir.printer import spec_text
    from archc.passes.base import PASSES
    from archc.passes.examples import example_graph
    from archc.passes.pipeline import run_pipeline

    before = example_graph(case.before, case.id, folder)
    if case.pass_name in PASSES:
        res = PASSES[case.pass_name].run(before)
        after, rewrites = res.graph, res.rewrites
        what = f"`{case.pass_name}`"
    else:
        pres = run_pipeline(before, case.pass_name, check=False)
        after, rewrites = pres.graph, sum(s.rewrites for s in pres.steps)
        what = f"the `{case.pass_name}` pipeline"
    plural = "" if rewrites == 1 else "s"
    return ([f"Before (`{case.id}`):", ""] + _yaml_block(case.before)
            + ["", f"After {what} ({rewrites} rewrite{plural}):", ""] + _yaml_block(spec_text(after)))


def _refusal_example(case: Any, folder: Path) -> list[str]:
    from archc.passes.examples import example_graph
    from archc.passes.explain import explain

    g = example_graph(case.before, case.id, folder)
    return ([f"`{case.id}`: {case.rule} refuses —", ""] + _yaml_block(case.before)
            + ["", f"`archc explain {case.id}.yaml --pass {case.pass_name}`:", "", "```", explain(g, case.pass_name), "```"])


def passes_markdown() -> str:
    """The pass catalogue (docs/passes.md): every pass of :data:`archc.passes.base.PASSES`."""
    from archc.passes.base import PASSES, RulePass
    from archc.passes.examples import FIRE, NO_FIRE
    from archc.passes.pipeline import PIPELINES, TOLERANCE, run_pipeline

    folder = Path(__file__).resolve().parent / "passes"
    order = _pass_order()
    iterations = inspect.signature(run_pipeline).parameters["max_iterations"].default
    lines = [
        "# Pass catalogue",
        "",
        "<!-- Generated from archc.passes (PASSES, PIPELINES, docstrings, archc.passes.examples) by",
        "     `python -m archc._docgen --passes > docs/passes.md`; do not edit. -->",
        "",
        "A **pass** is a pure function of a typed graph: it returns a new graph and a **weight map**, a plain",
        "function `old state_dict → new state_dict` that converts the weights of the module generated from the",
        "old graph into weights of the module generated from the new one (it can be run on random tensors",
        "without building a model). A pass never mutates its input, and never folds a weight that is also used",
        "outside the match. Most passes are made of **rewrite rules**: a rule *matches* a candidate site",
        "anchored at one node, *checks* its conditions (a refused candidate carries the reason) and *rewrites*",
        "it; the pass applies its rules to a fixpoint inside every graph body. A block body shared by several",
        "instances (a repeat) is rewritten once, and its weight map runs under every instance's state-dict",
        "prefix, so converted keys stay those of the generated modules (`stages.1.blocks.0.conv.weight`).",
        "",
        "Each pass below states its math (from its docstrings, the single source), its rules and every",
        "reason a rule gives for refusing a site, and worked examples from `archc/passes/examples.py`,",
        "which the test suite also runs. An example's *after* graph is the pass's real output, written back",
        "in the spec language (`archc.ir.printer`): attributes at their op's default are left out (a conv's",
        "`bias: true`, its `kernel: 1`), and block params appear bound (blocks are printed as instantiated).",
        "",
        "## Pipelines",
        "",
        "Passes run in named pipelines (`archc compile SPEC --pipeline NAME`, `archc passes` lists them). A",
        "pipeline runs its passes in order and repeats the whole sequence until no pass rewrites anything (at",
        f"most {iterations} rounds), because one fold can enable another.",
        "",
        "| pipeline | passes, in order |",
        "|---|---|",
    ]
    for name, passes in PIPELINES.items():
        shown = " → ".join(f"[`{p}`](#{p})" for p in passes) if passes else "none: the graph as written"
        lines.append(f"| `{name}` | {shown} |")
    lines += [
        "",
        "**Certified equivalence.** Every pass marked exact is checked on every compile: the graph before",
        "the pipeline is lowered to PyTorch and run in float64, eval mode, with the given weights",
        "(`--weights train.pth`) or random ones (every parameter perturbed, BatchNorm statistics random, so no",
        "branch is numerically invisible); after each pass that rewrote something, the current graph's",
        "module runs on the same input with the weights converted by the weight maps so far, loaded with",
        "`strict=True`. The error is `max|a − b| / max|a|` over all outputs; above",
        f"{TOLERANCE:.0e} the compile fails with a `PassError` naming the pass. The compile report",
        "lists every pass with its rewrite count and its maximum relative error (`--no-check` skips the check).",
        "",
        "**`--debug`** (`archc compile SPEC --pipeline deploy --debug`) also runs the IR verifier after every",
        "pass; a failure names the pass and the passes that ran before it.",
        "",
        "**`archc explain SPEC --pass NAME`** runs the deploy passes that come before `NAME` (uncertified),",
        "then `NAME`, and prints one line per candidate site and rule: `graph/node: rule fired`, or",
        "`graph/node: rule refused: <the condition that failed>`. The refusal messages of each rule are",
        "listed below, and each pass has refused examples with their `archc explain` output.",
        "",
    ]
    general = general_refusals()
    if general:
        lines += ["Besides its own conditions, any rule's rewrite is refused by the pass manager with:", ""]
        lines += [f"- `{m}`" for m in general] + [""]
    pipeline_cases = [c for c in FIRE if c.pass_name in PIPELINES]
    for case in pipeline_cases:
        lines += [f"### Example: the `{case.pass_name}` pipeline", ""] + _fire_example(case, folder) + [""]
    lines += [
        "## Passes",
        "",
        "| pass | rules | exact | in pipelines | summary |",
        "|---|---|---|---|---|",
    ]
    for name in order:
        p = PASSES[name]
        rules = ", ".join(f"`{r.name}`" for r in p.rules) if isinstance(p, RulePass) else "—"
        where = ", ".join(k for k, v in PIPELINES.items() if name in v) or "—"
        lines.append(f"| [`{name}`](#{name}) | {rules} | {'yes' if p.exact else 'no'} | {where} | {_cell(p.doc)} |")
    for name in order:
        p = PASSES[name]
        cls = type(p)
        module = sys.modules[cls.__module__]
        lines += ["", f"## {name}", "", f"*{p.doc}*" if p.doc else "", ""]
        steps = [f"`{k}` (step {', '.join(str(i + 1) for i, q in enumerate(v) if q == name)})"
                 for k, v in PIPELINES.items() if name in v]
        lines.append(f"- source: `{cls.__module__.replace('.', '/')}.py`, class `{cls.__name__}`")
        lines.append(f"- exact: {'yes (certified in float64 on every compile)' if p.exact else 'no'}")
        lines.append(f"- runs in: {', '.join(steps) if steps else 'no pipeline'}")
        lines += ["", "### What it computes", "", _md(cls.__doc__ or module.__doc__), ""]
        if isinstance(p, RulePass):
            lines += ["### Rules", ""]
            for r in p.rules:
                anchored = f" — anchored at {', '.join(f'`{o}`' for o in r.anchor_ops)} nodes" if r.anchor_ops else ""
                what = _md(type(r).__doc__) or (p.doc if len(p.rules) == 1 else "") or "(no description)"
                lines += [f"**`{r.name}`**{anchored}. {what}", ""]
                reasons = rule_reasons(r)
                if reasons:
                    lines += ["Refuses a candidate (as `archc explain` prints it):", ""]
                    lines += [f"- `{m}`" for m in reasons]
                else:
                    lines.append("No conditions of its own: every match is rewritten"
                                 + (" (unless a general refusal applies, see [Pipelines](#pipelines))." if general else "."))
                lines.append("")
        fires = [c for c in FIRE if c.pass_name == name]
        refusals = [c for c in NO_FIRE if c.pass_name == name]
        lines += ["### Examples", ""]
        if not fires and not refusals:
            lines += ["No example yet (add one to `archc/passes/examples.py`).", ""]
        shown: set[str] = set()
        for case in fires:
            if case.rule in shown:
                continue
            shown.add(case.rule)
            lines += [f"#### {case.rule}", ""] + _fire_example(case, folder) + [""]
        more = [c for c in fires if c.rule in shown and c not in [next(f for f in fires if f.rule == c.rule)]]
        if more:
            lines += ["<details>", f"<summary>{len(more)} more example{'s' if len(more) > 1 else ''} of {name}</summary>", ""]
            for case in more:
                lines += [f"#### {case.rule}: {case.id}", ""] + _fire_example(case, folder) + [""]
            lines += ["</details>", ""]
        if refusals:
            lines += ["#### Refused", ""]
            for case in refusals:
                lines += _refusal_example(case, folder) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archc._docgen", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--schema", action="store_true", help="print docs/spec.schema.json instead of docs/ops.md")
    what.add_argument("--passes", action="store_true", help="print docs/passes.md instead of docs/ops.md")
    args = ap.parse_args(argv)
    text = schema_text() if args.schema else passes_markdown() if args.passes else ops_markdown()
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
    else:  # bytes: UTF-8 and '\n' line ends whatever the platform and locale
        sys.stdout.flush()
        out.write(text.encode("utf-8"))
        out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
