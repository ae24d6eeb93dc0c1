"""A spec's ``scaling:`` section (which params are depth, width, group width, resolution) and the scaled,
rounded values of those params for given factors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import SourceLoc, SpecError, suggest
from archc.scaling.rounding import DEFAULT_ROUNDING, DIMS, ROUNDERS, make_compatible
from archc.scaling.rules import Rule, parse_rule
from archc.spec.document import SpecDoc
from archc.spec.loader import YList, YMap

__all__ = ["SCALING_KEYS", "Target", "ScalingDecl", "load_scaling", "check_values", "scaled_values"]

SCALING_KEYS = (*DIMS, "rounding", "rule", "applied")


@dataclass(frozen=True)
class Target:
    """One scaled param: a value archc scales and rounds, or a multiplier the spec applies itself."""

    dim: str
    param: str
    kind: str  # "value" | "multiplier"
    loc: SourceLoc
    divides: str | None = None


@dataclass
class ScalingDecl:
    """A spec's validated ``scaling:`` section."""

    targets: list[Target]
    rounding: dict[str, int]
    rule: Rule | None
    loc: SourceLoc

    @property
    def dims(self) -> set[str]:
        return {t.dim for t in self.targets}


_EXAMPLE = "add e.g. 'scaling: {depth: depths, width: [widths], resolution: img}' (see docs/scaling.md)"


def load_scaling(doc: SpecDoc) -> ScalingDecl:
    """Validate ``doc``'s ``scaling:`` section; every error points at the offending YAML."""
    raw = doc.raw
    if "scaling" not in raw or raw["scaling"] is None:
        where = raw.key_loc("scaling") if "scaling" in raw else raw.loc
        raise SpecError(f"spec '{doc.name}' declares no scaling: archc does not know which params are depth, width "
                        "or resolution", where, hint=_EXAMPLE)
    sec = raw["scaling"]
    if not isinstance(sec, YMap):
        raise SpecError(f"'scaling' must be a mapping, got {sec!r}", raw.loc_of("scaling"), hint=_EXAMPLE)
    for k in sec:
        if k not in SCALING_KEYS:
            raise SpecError(f"unknown key '{k}' in 'scaling'", sec.key_loc(k),
                            hint=suggest(str(k), SCALING_KEYS) or f"allowed keys: {', '.join(SCALING_KEYS)}")
    targets: list[Target] = []
    seen: dict[str, Target] = {}
    for dim in (k for k in sec if k in DIMS):  # in the order written, so a duplicate is reported where it is
        val, vloc = sec[dim], sec.loc_of(dim)
        items: list[tuple[Any, SourceLoc]]
        if isinstance(val, YList):
            if not val:
                raise SpecError(f"'scaling.{dim}' is an empty list", vloc, hint=f"name the {dim} params, or remove the key")
            items = [(v, val.loc_of(i)) for i, v in enumerate(val)]
        else:
            items = [(val, vloc)]
        for item, iloc in items:
            t = _target(doc, dim, item, iloc)
            if t.param in seen:
                first = seen[t.param]
                raise SpecError(f"param '{t.param}' is scaled twice (first as {first.dim} at {first.loc})", t.loc,
                                hint="a param belongs to one dimension")
            seen[t.param] = t
            targets.append(t)
    if not targets:
        raise SpecError("'scaling' declares no depth, width, group_width or resolution param", raw.key_loc("scaling"),
                        hint=_EXAMPLE)
    for t in targets:
        if t.divides is not None and t.divides in seen and seen[t.divides].kind == "multiplier":
            raise SpecError(f"'divides: {t.divides}' names a multiplier param", t.loc,
                            hint="group widths can only be made to divide width values that archc scales")
    rounding = dict(DEFAULT_ROUNDING)
    if "rounding" in sec:
        rd = sec["rounding"]
        if not isinstance(rd, YMap):
            raise SpecError(f"'scaling.rounding' must be a mapping, got {rd!r}", sec.loc_of("rounding"),
                            hint="e.g. 'rounding: {width: 8, resolution: 4}'")
        for k, v in rd.items():
            if k not in DIMS:
                raise SpecError(f"unknown key '{k}' in 'scaling.rounding'", rd.key_loc(k),
                                hint=suggest(str(k), DIMS) or f"allowed keys: {', '.join(DIMS)}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"rounding of {k} must be a positive integer (a multiple), got {v!r}", rd.loc_of(k),
                                hint=f"e.g. {k}: {DEFAULT_ROUNDING[k]}")
            rounding[k] = v
    rule = None
    if "rule" in sec:
        rule = parse_rule(sec["rule"], sec.loc_of("rule"))
    if "applied" in sec and not isinstance(sec["applied"], YMap):
        raise SpecError("'scaling.applied' must be a mapping (written by 'archc scale')", sec.loc_of("applied"))
    return ScalingDecl(targets, rounding, rule, raw.key_loc("scaling"))


def _target(doc: SpecDoc, dim: str, item: Any, loc: SourceLoc) -> Target:
    if isinstance(item, str):
        return Target(dim, _param_name(doc, item, loc), "value", loc)
    if isinstance(item, YMap):
        allowed = ("param", "multiplier", "divides")
        for k in item:
            if k not in allowed:
                raise SpecError(f"unknown key '{k}' in a scaling.{dim} entry", item.key_loc(k),
                                hint=suggest(str(k), allowed) or "use {param: NAME} or {multiplier: NAME}")
        if ("param" in item) == ("multiplier" in item):
            raise SpecError(f"a scaling.{dim} entry needs exactly one of 'param' and 'multiplier'", item.loc,
                            hint="e.g. {param: widths} (archc rounds) or {multiplier: width_mult} (the spec rounds)")
        kind = "param" if "param" in item else "multiplier"
        name = _param_name(doc, item[kind], item.loc_of(kind))
        divides = None
        if "divides" in item:
            if dim != "group_width" or kind != "param":
                raise SpecError(f"'divides' belongs to a group_width param entry, not to a {dim} "
                                f"{'multiplier' if kind == 'multiplier' else 'entry'}", item.key_loc("divides"),
                                hint="write group_width: {param: G, divides: WIDTHS}")
            divides = _param_name(doc, item["divides"], item.loc_of("divides"))
        return Target(dim, name, "value" if kind == "param" else "multiplier", item.loc_of(kind), divides)
    raise SpecError(f"a scaling.{dim} entry must be a param name or a mapping, got {item!r}", loc,
                    hint="e.g. 'depth: depths' or 'width: {multiplier: width_mult}'")


def _param_name(doc: SpecDoc, name: Any, loc: SourceLoc) -> str:
    if not isinstance(name, str):
        raise SpecError(f"expected a param name, got {name!r}", loc, hint="name a top-level param of the spec")
    if name not in doc.params:
        raise SpecError(f"'{name}' is not a param of spec '{doc.name}'", loc,
                        hint=suggest(name, doc.params) or (f"params: {', '.join(doc.params)}" if doc.params else
                                                           "declare it under params first"))
    return name


# --------------------------------------------------------------------------------------------- applying factors


def _ints(value: Any) -> bool:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    return ok(value) or (isinstance(value, list) and bool(value) and all(ok(v) for v in value))


def check_values(decl: ScalingDecl, env: Mapping[str, Any]) -> None:
    """The declared params must hold what their dimension needs (checked on the resolved values)."""
    for t in decl.targets:
        v = env[t.param]
        if t.kind == "multiplier":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise SpecError(f"multiplier param '{t.param}' must be a positive number, got {v!r}", t.loc)
            continue
        if not _ints(v):
            raise SpecError(f"{t.dim.replace('_', ' ')} param '{t.param}' must be an integer ≥ 0 or a list of them, "
                            f"got {v!r}", t.loc, hint="scale a param that holds the values, or use {multiplier: NAME}")
        if t.dim != "depth" and (v == 0 or (isinstance(v, list) and 0 in v)):
            raise SpecError(f"{t.dim.replace('_', ' ')} param '{t.param}' holds a zero: {v!r}", t.loc)
        if t.divides is not None:
            w = env[t.divides]
            if not _ints(w):
                raise SpecError(f"'divides: {t.divides}' must name an int or list-of-int param, got {w!r}", t.loc)
            if isinstance(v, list) and (not isinstance(w, list) or len(w) != len(v)):
                raise SpecError(f"group widths '{t.param}' ({len(v)}) and '{t.divides}' "
                                f"({len(w) if isinstance(w, list) else 'a single value'}) differ in length", t.loc,
                                hint="give one group width per width, or a single group width")


def scaled_values(decl: ScalingDecl, env: Mapping[str, Any], factors: Mapping[str, float]) -> dict[str, Any]:
    """New values of the declared params for the continuous ``factors`` (rounded per ``decl.rounding``)."""
    out: dict[str, Any] = {}
    for t in decl.targets:
        v, f = env[t.param], factors[t.dim]
        if t.kind == "multiplier":
            out[t.param] = float(v) * f
            continue
        rnd, m = ROUNDERS[t.dim], decl.rounding[t.dim]
        out[t.param] = [rnd(x * f, m) for x in v] if isinstance(v, list) else rnd(v * f, m)
    for t in decl.targets:
        if t.divides is not None:
            w = out.get(t.divides, env[t.divides])
            ws, gs = make_compatible(list(w) if isinstance(w, list) else w, out[t.param])
            out[t.divides], out[t.param] = ws, gs
    return out
