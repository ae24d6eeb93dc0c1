"""docs/spec.schema.json: the JSON Schema of spec files, rendered from the spec loader's own tables."""

from __future__ import annotations

import json
import keyword
from typing import Any

from archc._docgen.ops_md import _value
from archc.ops import REGISTRY
from archc.ops.base import Attr, Op
from archc.spec.document import BLOCK_KEYS, FORMAT_VERSION, LIB_KEYS, PARAM_TYPES, TOP_KEYS
from archc.spec.expand import _MODULE_ATTRS, MAX_REPEAT, RESERVED

#: input dtypes accepted by ``inputs: {x: {shape: ..., dtype: ...}}`` (archc.spec.expand._input_type)
INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16")

_IDENT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SEL = rf"(-?[0-9]+|{_NAME})"
_REF_PATTERN = rf"^\s*{_NAME}(\.{_SEL}|\[{_SEL}\])?\s*$"


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


