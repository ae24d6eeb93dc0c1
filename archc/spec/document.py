"""The spec document: top-level schema, imports, params, variants.

This module turns loaded YAML into a :class:`SpecDoc` (still unexpanded: node lists keep their
expressions) and resolves the effective params for a variant and command-line overrides.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archc.diagnostics import SourceLoc, SpecError, suggest
from archc.spec.bundled import is_bundled, resolve_bundled
from archc.spec.expr import evaluate, is_expr
from archc.spec.loader import YList, YMap, load_yaml

__all__ = ["SpecDoc", "BlockDef", "ParamDecl", "load_spec_doc", "resolve_params", "parse_override", "FORMAT_VERSION"]

FORMAT_VERSION = 1
TOP_KEYS = ("archc", "name", "doc", "imports", "params", "variants", "default_variant", "inputs", "blocks", "graph",
            "outputs", "scaling", "head")
LIB_KEYS = ("archc", "name", "doc", "imports", "blocks")
BLOCK_KEYS = ("doc", "params", "inputs", "graph", "outputs")
PARAM_TYPES = ("int", "float", "bool", "str", "list", "any")
#: \Z, not $: "$" also matches before a final newline, and "conv\n" is no identifier
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class ParamDecl:
    """A block param: name, type and default (``None`` default with ``required``)."""

    name: str
    type: str
    default: Any
    required: bool
    loc: SourceLoc


@dataclass
class BlockDef:
    """A reusable subgraph definition."""

    name: str
    params: dict[str, ParamDecl]
    inputs: list[str]
    graph: YList
    outputs: Any
    loc: SourceLoc
    doc: str = ""


@dataclass
class SpecDoc:
    """A loaded, schema-checked spec with its imported blocks."""

    path: str
    name: str
    doc: str
    params: YMap
    variants: YMap
    default_variant: str | None
    inputs: YMap
    blocks: dict[str, BlockDef]
    graph: YList
    outputs: Any
    raw: YMap
    root: Path
    sources: dict[str, str] = field(default_factory=dict)
    #: the parsed ``head:`` declaration (:class:`archc.spec.head.HeadDecl`), None without one
    head: Any = None

    @property
    def digest(self) -> str:
        """sha256 over the texts of the spec and every imported file."""
        h = hashlib.sha256()
        for p in sorted(self.sources):
            h.update(self.sources[p].encode())
        return h.hexdigest()

    @property
    def scaling(self) -> Any:
        return self.raw.get("scaling")


def check_identifier(name: Any, loc: SourceLoc, what: str) -> str:
    """Every name that reaches generated code must be a plain identifier (and not a Python keyword)."""
    if isinstance(name, str) and keyword.iskeyword(name):
        raise SpecError(f"{what} '{name}' is a Python keyword", loc, hint=f"rename it, e.g. '{name}_'")
    if not isinstance(name, str) or not _IDENT.match(name):
        raise SpecError(
            f"{what} {name!r} is not a valid identifier",
            loc,
            hint="use letters, digits and underscores, starting with a letter",
        )
    return name


def _check_keys(m: YMap, allowed: Sequence[str], what: str) -> None:
    for k in m:
        if k not in allowed:
            raise SpecError(
                f"unknown key '{k}' in {what}",
                m.key_loc(k),
                hint=suggest(str(k), allowed) or f"allowed keys: {', '.join(allowed)}",
            )


def _expect(value: Any, typ: type, loc: SourceLoc, what: str) -> Any:
    if not isinstance(value, typ):
        names = {YMap: "a mapping", YList: "a list", str: "a string", int: "an integer"}
        raise SpecError(f"{what} must be {names.get(typ, typ.__name__)}, got {value!r}", loc)
    return value


def find_root(path: Path) -> Path:
    """The project tree a spec may import from: nearest ancestor with pyproject.toml or .git."""
    start = path.resolve().parent
    for d in (start, *start.parents):
        if (d / "pyproject.toml").exists() or (d / ".git").exists():
            return d
    return start


def load_spec_doc(path: str | Path, text: str | None = None, root: Path | None = None) -> SpecDoc:
    """Load and schema-check a spec file and its imports."""
    p = Path(path)
    raw = load_yaml(p, text)
    loc0 = getattr(raw, "loc", SourceLoc(str(p), 1, 1))
    if not isinstance(raw, YMap):
        raise SpecError("a spec must be a YAML mapping at the top level", loc0, hint="start with 'archc: 1'")
    _check_keys(raw, TOP_KEYS, "the spec")
    _check_version(raw, loc0)
    root = root or find_root(p)
    sources = {str(p): text if text is not None else p.read_text(encoding="utf-8")}
    blocks: dict[str, BlockDef] = {}
    _load_imports(raw, p, root, blocks, sources, stack=[p.resolve()])
    for bd in _parse_blocks(raw).values():
        _add_block(blocks, bd)
    if "graph" not in raw:
        raise SpecError("a spec needs a 'graph' list of nodes", loc0, hint="add 'graph:' with the model's nodes")
    graph = _expect(raw["graph"], YList, raw.loc_of("graph"), "'graph'")
    params = raw.get("params", YMap())
    _expect(params, YMap, raw.loc_of("params"), "'params'")
    for k in params:
        check_identifier(k, params.key_loc(k), "param name")
    variants = raw.get("variants", YMap())
    _expect(variants, YMap, raw.loc_of("variants"), "'variants'")
    for vname, vals in variants.items():
        if not isinstance(vname, str):  # selected by name with --variant, so it must read back as itself
            raise SpecError(f"variant name {vname!r} must be a string", variants.key_loc(vname), hint=f"quote it: '{vname}'")
        _expect(vals if vals is not None else YMap(), YMap, variants.loc_of(vname), f"variant '{vname}'")
        for k in vals or {}:
            if k not in params:
                raise SpecError(
                    f"variant '{vname}' sets unknown param '{k}'",
                    vals.key_loc(k),
                    hint=suggest(str(k), params) or "declare it under params first",
                )
    default_variant = raw.get("default_variant")
    if default_variant is not None and not isinstance(default_variant, str):
        raise SpecError(f"default_variant must be a variant name, got {default_variant!r}", raw.loc_of("default_variant"),
                        hint="write the name of one of the variants")
    if default_variant is not None and default_variant not in variants:
        raise SpecError(
            f"default_variant '{default_variant}' is not a variant",
            raw.loc_of("default_variant"),
            hint=suggest(str(default_variant), variants) or "declare it under variants",
        )
    inputs = raw.get("inputs")
    if inputs is None:
        raise SpecError("a spec needs 'inputs' (e.g. 'inputs: {x: [B, 3, 224, 224]}')", loc0)
    _expect(inputs, YMap, raw.loc_of("inputs"), "'inputs'")
    if not inputs:
        raise SpecError("a spec needs at least one input", raw.loc_of("inputs"), hint="e.g. 'inputs: {x: [B, 3, 224, 224]}'")
    from archc.spec.expand import _MODULE_ATTRS

    for k in inputs:
        check_identifier(k, inputs.key_loc(k), "input name")
        if k in _MODULE_ATTRS:
            raise SpecError(f"input name '{k}' clashes with a name used by generated modules", inputs.key_loc(k),
                            hint=f"rename it, e.g. '{k}_in'")
    name = raw.get("name", p.stem)
    _expect(name, str, raw.loc_of("name"), "'name'")
    from archc.spec.head import parse_head

    return SpecDoc(
        path=str(p), name=name, doc=str(raw.get("doc", "") or ""), params=params, variants=variants,
        default_variant=default_variant, inputs=inputs, blocks=blocks, graph=graph, outputs=raw.get("outputs"),
        raw=raw, root=root, sources=sources, head=parse_head(raw),
    )


def _check_version(raw: YMap, loc0: SourceLoc) -> None:
    if "archc" not in raw:
        raise SpecError("missing format version 'archc: 1'", loc0, hint="add 'archc: 1' at the top")
    if raw["archc"] != FORMAT_VERSION:
        raise SpecError(
            f"unsupported format version {raw['archc']!r}", raw.loc_of("archc"), hint=f"this archc reads 'archc: {FORMAT_VERSION}'"
        )


def _add_block(blocks: dict[str, BlockDef], bd: BlockDef) -> None:
    if bd.name in blocks and blocks[bd.name].loc != bd.loc:
        first = blocks[bd.name].loc
        raise SpecError(f"block '{bd.name}' is defined twice (first at {first})", bd.loc, hint="rename one of them")
    blocks[bd.name] = bd


def _load_imports(raw: YMap, path: Path, root: Path, blocks: dict[str, BlockDef], sources: dict[str, str],
                  stack: list[Path]) -> None:
    imports = raw.get("imports", YList())
    _expect(imports, YList, raw.loc_of("imports"), "'imports'")
    for i, rel in enumerate(imports):
        loc = imports.loc_of(i)
        if not isinstance(rel, str) or not rel.endswith((".yaml", ".yml")):
            raise SpecError(f"an import must be a relative path to a .yaml file (or archc:<path> of the bundled library), "
                            f"got {rel!r}", loc)
        lib_root = root
        if is_bundled(rel):
            # the bundled library's own relative imports stay confined to the library, wherever the spec lives
            target, lib_root = resolve_bundled(rel, loc)
        else:
            target = (path.parent / rel).resolve()
        try:
            target.relative_to(lib_root.resolve())
        except ValueError:
            raise SpecError(
                f"import '{rel}' resolves outside the project tree ({root})",
                loc,
                hint="imports are resolved relative to the importing file and must stay inside the project "
                     "(the bundled blocks are importable anywhere as archc:lib/<file>.yaml)",
            ) from None
        if target in stack:
            raise SpecError(f"import cycle: '{rel}' imports itself (directly or indirectly)", loc)
        if not target.exists():
            raise SpecError(f"imported file '{rel}' does not exist", loc, hint=f"looked for {target}")
        lib = load_yaml(target)
        if not isinstance(lib, YMap):
            raise SpecError("a block library must be a YAML mapping", getattr(lib, "loc", loc))
        _check_keys(lib, LIB_KEYS, f"block library '{rel}'")
        _check_version(lib, lib.loc)
        if str(target) not in sources:
            sources[str(target)] = target.read_text(encoding="utf-8")
        _load_imports(lib, target, lib_root, blocks, sources, stack + [target])
        for bd in _parse_blocks(lib).values():
            _add_block(blocks, bd)


def _parse_blocks(raw: YMap) -> dict[str, BlockDef]:
    out: dict[str, BlockDef] = {}
    blocks = raw.get("blocks", YMap())
    _expect(blocks, YMap, raw.loc_of("blocks"), "'blocks'")
    for name, body in blocks.items():
        loc = blocks.key_loc(name)
        check_identifier(name, loc, "block name")
        from archc.ops import REGISTRY

        if name in REGISTRY:
            raise SpecError(f"block '{name}' has the name of an op", loc, hint=f"rename the block, e.g. '{name}_block'")
        _expect(body, YMap, blocks.loc_of(name), f"block '{name}'")
        _check_keys(body, BLOCK_KEYS, f"block '{name}'")
        params: dict[str, ParamDecl] = {}
        praw = body.get("params", YMap())
        _expect(praw, YMap, body.loc_of("params"), f"params of block '{name}'")
        for pname, pval in praw.items():
            ploc = praw.key_loc(pname)
            check_identifier(pname, ploc, "param name")
            params[pname] = _param_decl(pname, pval, praw.loc_of(pname))
        inputs = body.get("inputs", YList(["x"]))
        if isinstance(inputs, str):
            inputs = YList([inputs])
        _expect(inputs, YList, body.loc_of("inputs"), f"inputs of block '{name}'")
        for j, iname in enumerate(inputs):
            check_identifier(iname, inputs.loc_of(j), "input name")
        if "graph" not in body:
            raise SpecError(f"block '{name}' needs a 'graph' list", loc)
        graph = _expect(body["graph"], YList, body.loc_of("graph"), f"graph of block '{name}'")
        out[name] = BlockDef(name, params, list(inputs), graph, body.get("outputs"), loc, str(body.get("doc", "") or ""))
    return out


def _param_decl(name: str, value: Any, loc: SourceLoc) -> ParamDecl:
    if isinstance(value, str) and value in PARAM_TYPES:
        return ParamDecl(name, value, None, True, loc)
    if isinstance(value, YMap) and "type" in value:
        typ = value["type"]
        if typ not in PARAM_TYPES:
            raise SpecError(f"unknown param type {typ!r}", value.loc_of("type"), hint=suggest(str(typ), PARAM_TYPES))
        for k in value:
            if k not in ("type", "default", "doc"):
                raise SpecError(f"unknown key '{k}' in param '{name}'", value.key_loc(k), hint="use type, default, doc")
        if "default" in value:
            return ParamDecl(name, typ, value["default"], False, loc)
        return ParamDecl(name, typ, None, True, loc)
    return ParamDecl(name, _type_of(value), value, False, loc)


def _type_of(v: Any) -> str:
    if is_expr(v):
        return "any"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, list):
        return "list"
    return "any"


def check_param_type(decl: ParamDecl, value: Any, loc: SourceLoc, block: str) -> Any:
    """Check a bound block-param value against its declared type (ints are accepted as floats)."""
    t = decl.type
    ok = (
        t == "any"
        or (t == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (t == "float" and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t == "bool" and isinstance(value, bool))
        or (t == "str" and isinstance(value, str))
        or (t == "list" and isinstance(value, (list, tuple)))
    )
    if not ok:
        raise SpecError(f"param '{decl.name}' of block '{block}' must be {t}, got {value!r}", loc)
    if t == "float":
        return float(value)
    if t == "list":
        return list(value)
    return value


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``-p name=value`` / ``-p name.2=value`` (value is YAML) into a key path and a value."""
    if "=" not in text:
        raise SpecError(f"bad param override '{text}'", hint="write -p name=value, e.g. -p dims=[64,128,320,512]")
    key, _, val = text.partition("=")
    parts: list[str | int] = []
    for i, part in enumerate(key.strip().split(".")):
        if i > 0 and part.lstrip("-").isdigit():
            parts.append(int(part))
        elif part:
            parts.append(part)
        else:
            raise SpecError(f"bad param override '{text}'", hint="write -p name=value or -p name.index=value")
    try:
        value = yaml.safe_load(val) if val.strip() else ""
    except yaml.YAMLError:
        raise SpecError(f"cannot parse the value in '-p {text}'", hint="values are YAML, e.g. 12, 0.5, [1, 2], true") from None
    return parts, value


def resolve_params(doc: SpecDoc, variant: str | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()) -> tuple[str | None, dict[str, Any]]:
    """Effective top-level params: defaults, then the variant, then command-line overrides.

    Param values may be expressions over earlier params; they are evaluated in declaration order.
    """
    if variant is None:
        variant = doc.default_variant or (next(iter(doc.variants)) if doc.variants else None)
    elif variant not in doc.variants:
        raise SpecError(
            f"unknown variant '{variant}' of '{doc.name}'",
            doc.raw.key_loc("variants") if "variants" in doc.raw else doc.raw.loc,
            hint=suggest(variant, doc.variants) or (f"variants: {', '.join(doc.variants)}" if doc.variants else "this spec has no variants"),
        )
    raw: dict[str, Any] = dict(doc.params)
    locs: dict[str, SourceLoc] = {k: doc.params.loc_of(k) for k in doc.params}
    if variant is not None:
        vals = doc.variants[variant] or YMap()
        for k, v in vals.items():
            raw[k] = v
            locs[k] = vals.loc_of(k)
    # a command-line override has no position of its own: its errors point at the params it overrides
    params_loc = doc.raw.key_loc("params") if "params" in doc.raw else SourceLoc(doc.path, 0, 0)
    try:
        items = list(overrides.items()) if isinstance(overrides, Mapping) else [parse_override(o) for o in overrides]
    except SpecError as exc:
        raise exc.with_loc(params_loc) from None
    pending: list[tuple[list[str | int], Any]] = []
    for path, value in items:
        if isinstance(path, str):
            path = [path]
        name = path[0]
        if name not in raw:
            raise SpecError(
                f"-p {'.'.join(map(str, path))}: unknown param '{name}'",
                params_loc,
                hint=suggest(str(name), raw) or (f"params: {', '.join(raw)}" if raw else "this spec has no params"),
            )
        if len(path) == 1:
            raw[name] = value
        else:
            pending.append((path, value))
    env = _evaluate_params(raw, locs)
    if not pending:
        return variant, env
    for path, value in pending:
        target = env[path[0]]
        for j, part in enumerate(path[1:], 1):
            if not isinstance(target, list) or not isinstance(part, int) or not -len(target) <= part < len(target):
                raise SpecError(
                    f"-p {'.'.join(map(str, path))}: cannot index {'.'.join(map(str, path[:j]))} with {part!r}",
                    locs.get(str(path[0]), params_loc),
                    hint=f"'{path[0]}' is {env[path[0]]!r}",
                )
            if j == len(path) - 1:
                target[part] = value
            else:
                target = target[part]
    # params derived from an indexed one (e.g. sum(depths)) must see the override: evaluate again
    for path, _ in pending:
        raw[path[0]] = env[path[0]]
    return variant, _evaluate_params(raw, locs)


def _evaluate_params(raw: Mapping[str, Any], locs: Mapping[str, SourceLoc]) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for k, v in raw.items():
        env[k] = evaluate(v, env, locs.get(k))
    return env
