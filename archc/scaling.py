"""Model scaling: grow (or shrink) a spec to a MAC target along depth, width, group width and resolution.

A spec says which of its params are depths, widths, group widths and the input resolution in a
``scaling:`` section (see ``docs/scaling.md``)::

    scaling:
      depth: depths                                  # int or list-of-int params: scaled and rounded by archc
      width: [stem, widths, head]
      group_width: {param: group_width, divides: dims}   # after rounding, dims are made multiples of it
      resolution: img
      rounding: {depth: 1, width: 8, group_width: 8, resolution: 4}   # optional; these are the defaults
      rule: fast                                     # optional default rule of 'archc scale'

or names multiplier params that the spec applies (and rounds) itself: ``width: {multiplier: width_mult}``.

A *rule* says how a MAC ratio ``s`` is split over the dimensions, as exponents: depth × s^e_d, width
× s^e_w, group width × s^e_g, resolution × s^e_r with e_d + 2·e_w + 2·e_r = 1 (MACs ∝ d·w²·r²).
Rules are pycls scale types ``d{a}_w{b}_g{c}_r{e}`` (e_d = a/S, e_w = b/2S, e_g = c/2S, e_r = e/2S with
S = a + b + e), letter forms (``d``, ``w``, ``r``, ``dw``, ``dwr`` …: weight 1 each), ``fast`` (= ``dWr``
= ``d1_w8_g8_r1``, α = 0.8; ``fast:A`` for another α), ``dW`` (``d2_w8_g8``) and ``efficientnet``
(d = α^φ, w = β^φ, r = γ^φ with α, β, γ = 1.2, 1.1, 1.15, or ``efficientnet:A,B,G``; φ = ln s / ln αβ²γ²).

pycls scales by the target then rounds; rounding (and the parts of a network whose MACs are not ∝
d·w²·r²: stem, head, depthwise convs, the classifier) moves the achieved MACs off the target. By
default :func:`scale` therefore searches the scale factor ``s'`` handed to the rule (the rule's
direction is unchanged) until the rounded model's MACs bracket the target as tightly as the rounding
allows, keeps the closer side, then trims the width (and resolution) factor by at most ±5% where that
gets closer; ``calibrate="none"`` is pycls's plain scale-then-round.

``python -m archc.scaling --report`` regenerates the tables and the plot in ``docs/scaling.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archc.cost.model import Cost, graph_cost, pycls_cost
from archc.diagnostics import ArchcError, SourceLoc, SpecError, register_source, suggest
from archc.spec.document import SpecDoc, find_root, load_spec_doc, parse_override, resolve_params
from archc.spec.expand import expand
from archc.spec.loader import YList, YMap, load_yaml

__all__ = [
    "DIMS", "DEFAULT_ROUNDING", "NAMED_RULES", "Rule", "Target", "ScalingDecl", "ScaleResult",
    "round_depth", "round_width", "round_group_width", "round_resolution", "make_compatible",
    "parse_rule", "parse_flops", "phi_targets", "load_scaling", "check_values", "scaled_values", "scale",
    "write_scaled", "output_paths", "format_results", "fit_exponent", "run_study", "main",
]

DIMS = ("depth", "width", "group_width", "resolution")
SCALING_KEYS = (*DIMS, "rounding", "rule", "applied")
DEFAULT_ROUNDING = {"depth": 1, "width": 8, "group_width": 8, "resolution": 4}
#: named rules (before any ':' argument) and what they mean
NAMED_RULES = {
    "fast": "fast compound scaling, d1_w8_g8_r1 (α = 0.8); fast:A for another α",
    "dWr": "same as fast",
    "dW": "depth and width, width emphasised: d2_w8_g8 (α = 0.8); dW:A for another α",
    "efficientnet": "EfficientNet compound scaling, α, β, γ = 1.2, 1.1, 1.15; efficientnet:A,B,G to give them",
}
_RULE_HELP = ("rules: fast, dWr, dW, efficientnet[:A,B,G], letters from 'dwgr' (d, w, r, dw, dwr, …), "
              "or pycls's d{a}_w{b}_g{c}_r{e}, e.g. d1_w8_g8_r1")
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TERM = re.compile(rf"^([dwgr])({_NUM})$")
_TOL = 1e-9


# --------------------------------------------------------------------------------------------- rounding


def round_depth(x: float, multiple: int = 1) -> int:
    """Depth: ``round()`` to a multiple (1 by default), at least one multiple; a zero depth stays zero."""
    if x == 0:
        return 0
    return max(multiple, round(x / multiple) * multiple)


def round_width(x: float, multiple: int = 8) -> int:
    """Width: the nearest multiple of ``multiple`` (8 by default), at least one multiple (pycls)."""
    return max(1, round(x / multiple)) * multiple


def round_group_width(x: float, multiple: int = 8) -> int:
    """Group width (pycls): round to an integer ≥ 1; kept if ≤ 2, 4 if ≤ 5, else the nearest multiple of 8."""
    g = max(1, round(x))
    if g <= 2:
        return g
    if g <= 5:
        return 4
    return max(multiple, round(g / multiple) * multiple)


def round_resolution(x: float, multiple: int = 4) -> int:
    """Resolution: the nearest multiple of ``multiple`` (4 by default), at least one multiple."""
    return max(multiple, round(x / multiple) * multiple)


ROUNDERS: dict[str, Callable[[float, int], int]] = {
    "depth": round_depth, "width": round_width, "group_width": round_group_width, "resolution": round_resolution,
}


def make_compatible(widths: int | list[int], groups: int | list[int]) -> tuple[Any, Any]:
    """pycls's block compatibility: each group width at most its width, each width a multiple of its group width.

    ``widths`` and ``groups`` are ints or lists (a single group width applies to every width).
    """
    wl = widths if isinstance(widths, list) else [widths]
    gl = groups if isinstance(groups, list) else [groups] * len(wl)
    if len(gl) != len(wl):
        raise ValueError(f"{len(gl)} group widths for {len(wl)} widths")
    gs = [min(g, w) for g, w in zip(gl, wl)]
    if not isinstance(groups, list):  # one shared group width: the smallest width bounds it
        gs = [min(gs)] * len(wl)
    ws = [max(g, round(w / g) * g) for w, g in zip(wl, gs)]
    return (ws if isinstance(widths, list) else ws[0]), (gs if isinstance(groups, list) else gs[0])


# --------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """A scaling rule as exponents: for a MAC ratio ``s``, depth × s^d, width × s^w, group width × s^g, resolution × s^r."""

    text: str
    canonical: str
    d: float
    w: float
    g: float
    r: float

    def factors(self, s: float) -> dict[str, float]:
        """Continuous multipliers of each dimension for the scale factor ``s``."""
        return {"depth": s ** self.d, "width": s ** self.w, "group_width": s ** self.g, "resolution": s ** self.r}

    @property
    def exponents(self) -> dict[str, float]:
        return {"depth": self.d, "width": self.w, "group_width": self.g, "resolution": self.r}

    @property
    def act_exponent(self) -> float:
        """Ideal activation exponent: activations ∝ d·w·r², so they grow as s^(e_d + e_w + 2·e_r)."""
        return self.d + self.w + 2 * self.r

    def describe(self) -> str:
        parts = [f"{k.replace('_', ' ')} s^{v:.3g}" for k, v in self.exponents.items() if v]
        label = self.text if self.text == self.canonical else f"{self.text} = {self.canonical}"
        return f"{label}: " + ", ".join(parts)


def _rule_error(text: str, msg: str, col: int, loc: SourceLoc | None, hint: str | None = _RULE_HELP) -> SpecError:
    if loc is None:  # a rule from the command line: point into the string itself
        register_source("--rule", text)
        loc = SourceLoc("--rule", 1, col)
    return SpecError(msg, loc, hint=hint)


def _pycls_rule(text: str, weights: Mapping[str, float], canonical: str | None = None) -> Rule:
    total = weights.get("d", 0.0) + weights.get("w", 0.0) + weights.get("r", 0.0)
    d = weights.get("d", 0.0) / total
    w = weights.get("w", 0.0) / total / 2
    g = weights.get("g", 0.0) / total / 2
    r = weights.get("r", 0.0) / total / 2
    if canonical is None:
        canonical = "_".join(f"{k}{_fmt_num(weights[k])}" for k in "dwgr" if k in weights)
    return Rule(text, canonical, d, w, g, r)


def _fmt_num(x: float) -> str:
    return f"{x:g}"


def _float_args(text: str, args: str, n: int, start: int, loc: SourceLoc | None, what: str) -> list[float]:
    vals: list[float] = []
    col = start
    for part in args.split(","):
        try:
            v = float(part)
            if not math.isfinite(v):
                raise ValueError
        except ValueError:
            raise _rule_error(text, f"bad number {part.strip()!r} in scaling rule '{text}'", col, loc,
                              hint=f"write {what}") from None
        vals.append(v)
        col += len(part) + 1
    if len(vals) != n:
        raise _rule_error(text, f"scaling rule '{text}' takes {n} number{'s' if n > 1 else ''}, got {len(vals)}",
                          start, loc, hint=f"write {what}")
    return vals


def parse_rule(text: Any, loc: SourceLoc | None = None) -> Rule:
    """Parse a rule string (see the module docstring); errors point at ``loc`` or into the string itself.

    >>> parse_rule("fast").canonical
    'd1_w8_g8_r1'
    >>> round(parse_rule("efficientnet").act_exponent, 3)
    0.854
    """
    if not isinstance(text, str) or not text.strip():
        raise _rule_error(str(text), f"a scaling rule must be a non-empty string, got {text!r}", 1, loc)
    name, sep, args = text.partition(":")
    if name in ("fast", "dWr", "dW"):
        alpha = 0.8
        if sep:
            (alpha,) = _float_args(text, args, 1, len(name) + 2, loc, f"{name}:A with 0 < A ≤ 1, e.g. {name}:0.8")
            if not 0 < alpha <= 1:
                raise _rule_error(text, f"α of rule '{text}' must be in (0, 1], got {alpha:g}", len(name) + 2, loc,
                                  hint="α is the share of the MAC growth that goes to width, e.g. 0.8")
        if name == "dW":
            weights = {"d": 1 - alpha, "w": alpha, "g": alpha}
            canonical = "d2_w8_g8" if alpha == 0.8 else f"d{_fmt_num(1 - alpha)}_w{_fmt_num(alpha)}_g{_fmt_num(alpha)}"
            return Rule(text, canonical, 1 - alpha, alpha / 2, alpha / 2, 0.0)
        weights = {"d": (1 - alpha), "w": 4 * alpha, "g": 4 * alpha, "r": (1 - alpha)}
        canonical = "d1_w8_g8_r1" if alpha == 0.8 else "_".join(f"{k}{_fmt_num(v)}" for k, v in weights.items())
        return Rule(text, canonical, (1 - alpha) / 2, alpha / 2, alpha / 2, (1 - alpha) / 4)
    if name == "efficientnet":
        a, b, c = 1.2, 1.1, 1.15
        if sep:
            a, b, c = _float_args(text, args, 3, len(name) + 2, loc, "efficientnet:A,B,G, e.g. efficientnet:1.2,1.1,1.15")
        if min(a, b, c) <= 0 or a * b * b * c * c <= 1 + 1e-9 or min(a, b, c) < 1:
            raise _rule_error(text, f"rule '{text}': α, β, γ must be ≥ 1 with α·β²·γ² > 1 (got {a * b * b * c * c:.4g})",
                              len(name) + 2 if sep else 1, loc, hint="EfficientNet uses α·β²·γ² ≈ 2, e.g. 1.2,1.1,1.15")
        log_total = math.log(a * b * b * c * c)
        ew = math.log(b) / log_total
        return Rule(text, f"efficientnet:{_fmt_num(a)},{_fmt_num(b)},{_fmt_num(c)}",
                    math.log(a) / log_total, ew, ew, math.log(c) / log_total)
    if sep:
        raise _rule_error(text, f"rule '{name}' takes no ':' argument", len(name) + 1, loc)
    if all(ch in "dwgr" for ch in text):
        seen: set[str] = set()
        for i, ch in enumerate(text):
            if ch in seen:
                raise _rule_error(text, f"scaling rule '{text}' names '{ch}' twice", i + 1, loc)
            seen.add(ch)
        if not seen & set("dwr"):
            raise _rule_error(text, f"scaling rule '{text}' scales neither depth, width nor resolution", 1, loc,
                              hint="a rule must grow MACs: include d, w or r")
        return _pycls_rule(text, {k: 1.0 for k in "dwgr" if k in seen}, canonical=text)
    weights: dict[str, float] = {}
    col = 1
    for part in text.split("_"):
        m = _TERM.match(part)
        if not m:
            close = suggest(name, [*NAMED_RULES, "d", "w", "r", "dw", "dr", "wr", "dwr"])
            if "_" not in text and close:
                hint = close
            else:
                hint = f"each '_'-separated term is a letter d, w, g or r and a weight ≥ 0, e.g. w8 ({_RULE_HELP})"
            raise _rule_error(text, f"bad term '{part}' in scaling rule '{text}'", col, loc, hint=hint)
        key, val = m.group(1), float(m.group(2))
        if key in weights:
            raise _rule_error(text, f"scaling rule '{text}' names '{key}' twice", col, loc)
        weights[key] = val
        col += len(part) + 1
    if weights.get("d", 0) + weights.get("w", 0) + weights.get("r", 0) <= 0:
        raise _rule_error(text, f"scaling rule '{text}' gives depth, width and resolution zero weight", 1, loc,
                          hint="a rule must grow MACs: give d, w or r a positive weight")
    return _pycls_rule(text, weights)


def parse_flops(text: str | float | Sequence[float]) -> list[float]:
    """Target MAC ratios from ``"2,4,8,16"`` (a trailing ``x`` is allowed) or numbers; each must be > 0."""
    items = text.split(",") if isinstance(text, str) else ([text] if isinstance(text, (int, float)) else list(text))
    out: list[float] = []
    for item in items:
        raw = item.strip().rstrip("x×") if isinstance(item, str) else item
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise ArchcError(f"bad --flops value {item!r}", hint="give MAC ratios over the base, e.g. --flops 2,4,8,16") from None
        if not math.isfinite(v) or v <= 0:
            raise ArchcError(f"--flops ratio must be a positive number, got {item!r}", hint="e.g. --flops 2 (twice the base MACs)")
        out.append(v)
    if not out:
        raise ArchcError("--flops needs at least one ratio", hint="e.g. --flops 2,4,8,16")
    return out


def phi_targets(rule: str | Rule, phis: int | Sequence[float]) -> list[float]:
    """MAC targets of EfficientNet's compound coefficients φ (``phis`` = N means φ = 1..N): (α·β²·γ²)^φ for an
    ``efficientnet`` rule — so φ = 1 gives d = α, w = β, r = γ exactly before rounding — and 2^φ otherwise.

    >>> [round(x, 3) for x in phi_targets("efficientnet", 2)]
    [1.92, 3.687]
    """
    r = parse_rule(rule) if isinstance(rule, str) else rule
    seq = list(range(1, phis + 1)) if isinstance(phis, int) else list(phis)
    if not seq:
        raise ArchcError("--phi needs at least one compound coefficient", hint="e.g. --phi 7 for φ = 1..7")
    base = 2.0
    if r.canonical.startswith("efficientnet:"):
        a, b, c = (float(x) for x in r.canonical.split(":", 1)[1].split(","))
        base = a * b * b * c * c
    return [base ** p for p in seq]


# --------------------------------------------------------------------------------------------- declaration


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


# --------------------------------------------------------------------------------------------- scaling to a target


@dataclass
class ScaleResult:
    """One scaled model: its new param values, cost and how close it came to the MAC target."""

    spec: str
    name: str
    variant: str | None
    rule: Rule
    target: float
    factor: float
    values: dict[str, Any]
    cost: Cost
    base_cost: Cost
    bracket: tuple[float, float]
    plain_ratio: float
    #: continuous multiplier of each dimension that was applied (the rule's at s', times any trim)
    factors: dict[str, float]
    #: trims applied after the factor search: (dimension, multiplier of its factor)
    trim: list[tuple[str, float]]
    evaluations: int
    overrides: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    convention: str = "macs"
    #: the base spec's text when it was given in memory (``scale(..., text=...)``)
    text: str | None = None

    @property
    def mac_ratio(self) -> float:
        return self.cost.macs / self.base_cost.macs

    @property
    def act_ratio(self) -> float:
        return self.cost.acts / self.base_cost.acts

    @property
    def error(self) -> float:
        """Relative MAC error of the achieved model against the target."""
        return self.mac_ratio / self.target - 1

    @property
    def step(self) -> float:
        """Relative gap between the nearest achievable MAC ratios below and above the target (the rounding error)."""
        lo, hi = self.bracket
        return hi / lo - 1 if lo > 0 and math.isfinite(hi) else math.inf


class _Evaluator:
    """Costs of the spec under param values, cached by the (rounded) values."""

    def __init__(self, doc: SpecDoc, variant: str | None, overrides: Mapping[str, Any], convention: str) -> None:
        self.doc, self.variant, self.overrides = doc, variant, dict(overrides)
        self.cost_fn = pycls_cost if convention == "pycls" else graph_cost
        self.cache: dict[str, Cost] = {}

    def __call__(self, values: Mapping[str, Any]) -> Cost:
        key = repr(sorted(values.items()))
        if key not in self.cache:
            _, env = resolve_params(self.doc, self.variant, {**self.overrides, **values})
            self.cache[key] = self.cost_fn(expand(self.doc, env, self.variant))
        return self.cache[key]


def _solve(ratio_at: Callable[[float], float], target: float, t0: float | None = None, slope: float = 1.0,
           limit: float | None = None) -> tuple[float, float, tuple[float, float]]:
    """Search t so that the achieved MAC ratio ``ratio_at(t)`` is as close to ``target`` as rounding allows.

    ``ratio_at`` is a non-decreasing step function of t (t = log s' for the scale factor, or the log of a
    trim multiplier); ``slope`` is the expected d log(ratio)/dt, ``limit`` bounds |t − t0|. Returns
    (t, ratio) of the best point and the bracket (the achieved ratios just below and just above the target).
    """
    T = math.log(target)
    t0 = T if t0 is None else t0
    pts: dict[float, float] = {}

    def f(t: float) -> float:
        if t not in pts:
            pts[t] = math.log(ratio_at(t))
        return pts[t]

    def clip(t: float) -> float:
        return t if limit is None else min(max(t, t0 - limit), t0 + limit)

    lo = hi = None
    t = t0
    for _ in range(40):  # bracket the target with secant steps, grown when they land on the same step
        v = f(t)
        if abs(v - T) < _TOL:
            return t, math.exp(v), (math.exp(v), math.exp(v))
        if v < T:
            lo = t if lo is None or t > lo else lo
        else:
            hi = t if hi is None or t < hi else hi
        if lo is not None and hi is not None:
            break
        step = (T - v) / slope
        nxt = clip(t + math.copysign(max(abs(step) * 1.25, 0.01), step))
        if nxt == t:  # at the bound: the target is out of reach
            break
        if abs(f(nxt) - v) < 1e-12:
            slope *= 0.5
        t = nxt
    if lo is None or hi is None:
        best = min(pts, key=lambda k: abs(pts[k] - T))
        below = max((v for v in pts.values() if v <= T), default=-math.inf)
        above = min((v for v in pts.values() if v >= T), default=math.inf)
        return best, math.exp(pts[best]), (math.exp(below), math.exp(above))
    for _ in range(60):  # regula falsi on the bracket, falling back to bisection; stop at a resolved step
        if hi - lo < 1e-5 or pts[hi] - pts[lo] < 1e-9:
            break
        flo, fhi = pts[lo], pts[hi]
        t = lo + (T - flo) * (hi - lo) / (fhi - flo)
        if not lo + 0.1 * (hi - lo) < t < hi - 0.1 * (hi - lo):
            t = 0.5 * (lo + hi)
        v = f(t)
        if abs(v - T) < _TOL:
            return t, math.exp(v), (math.exp(v), math.exp(v))
        if v < T:
            lo = t
        else:
            hi = t
    best = lo if T - pts[lo] <= pts[hi] - T else hi
    return best, math.exp(pts[best]), (math.exp(pts[lo]), math.exp(pts[hi]))


def _gap(bracket: tuple[float, float]) -> float:
    lo, hi = bracket
    return hi / lo if lo > 0 and math.isfinite(hi) else math.inf


CALIBRATIONS = ("trim", "factor", "none")
#: largest trim of a dimension's factor after the scale-factor search (±5%)
TRIM_LIMIT = math.log(1.05)


def _trim_dims(rule: Rule, decl: ScalingDecl) -> list[str]:
    """Dimensions whose factors may be trimmed after the search, finest first: width, then resolution —
    only those the rule scales, and only for rules that scale two or more dimensions."""
    exps = rule.exponents
    scaled = [d for d in ("depth", "width", "resolution") if exps[d] > 0 and d in decl.dims]
    if len(scaled) < 2:
        return []
    return [d for d in ("width", "resolution")
            if d in scaled and any(t.dim == d and t.kind == "value" for t in decl.targets)]


def _user_overrides(doc: SpecDoc, variant: str | None, params: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The command-line overrides as whole top-level values (``depths.2=12`` becomes the whole ``depths``)."""
    if not params:
        return {}
    names = list(params) if isinstance(params, Mapping) else [parse_override(p)[0][0] for p in params]
    _, env = resolve_params(doc, variant, params)
    return {str(n): env[str(n)] for n in names}


def scale(spec: str | Path, flops: float | Sequence[float] | str | None, rule: str | Rule | None = None, *,
          phi: int | Sequence[float] | None = None, variant: str | None = None,
          params: Sequence[str] | Mapping[str, Any] = (), calibrate: str | bool = "trim", convention: str = "macs",
          text: str | None = None) -> list[ScaleResult]:
    """Scale ``spec`` to each MAC ratio in ``flops`` (over the spec's own cost) with ``rule``.

    ``rule`` defaults to the spec's ``scaling.rule``, else ``fast``. Instead of ``flops``, ``phi`` gives
    EfficientNet compound coefficients (see :func:`phi_targets`). ``calibrate``:

    * ``"trim"`` (default): search the scale factor s' handed to the rule so that the rounded model's
      MACs bracket the target as tightly as the rule's rounding allows, then — for rules that scale two
      or more dimensions — trim the width factor, then the resolution factor, each by at most ±5%, to
      land between the coarse steps that depth rounding leaves (a trim is kept only if it gets closer);
    * ``"factor"`` (or True): the scale-factor search only;
    * ``"none"`` (or False): pycls's scale-then-round at s' = S.
    """
    if calibrate is True:
        calibrate = "factor"
    elif calibrate is False:
        calibrate = "none"
    if calibrate not in CALIBRATIONS:
        raise ArchcError(f"unknown calibration {calibrate!r}", hint=f"use one of: {', '.join(CALIBRATIONS)}")
    if (flops is None) == (phi is None):
        raise ArchcError("give either MAC targets (--flops) or compound coefficients (--phi)")
    doc = load_spec_doc(spec, text)
    decl = load_scaling(doc)
    if rule is None:
        rule = decl.rule or parse_rule("fast")
    elif isinstance(rule, str):
        rule = parse_rule(rule)
    variant, env = resolve_params(doc, variant, params)
    check_values(decl, env)
    overrides = _user_overrides(doc, variant, params)
    notes = _coverage(doc, decl, rule)
    evaluate = _Evaluator(doc, variant, overrides, convention)
    base = evaluate({})
    if base.macs <= 0:
        raise SpecError(f"spec '{doc.name}' has no MACs to scale", doc.raw.loc)
    if evaluate(scaled_values(decl, env, rule.factors(1.0))).macs != base.macs:
        notes.append("the declared values are not on the rounding grid: at 1× the rounded model differs from the base")
    trim_dims = _trim_dims(rule, decl) if calibrate == "trim" else []
    results = []
    targets = parse_flops(flops) if flops is not None else phi_targets(rule, phi)
    for target in targets:
        def ratio_of(factors: Mapping[str, float]) -> float:
            return evaluate(scaled_values(decl, env, factors)).macs / base.macs

        def ratio_at(t: float) -> float:
            return ratio_of(rule.factors(math.exp(t)))

        plain = ratio_at(math.log(target))
        trim: list[tuple[str, float]] = []
        if calibrate != "none":
            t, best, bracket = _solve(ratio_at, target)
        else:
            t, best, bracket = math.log(target), plain, (0.0, math.inf)  # no search: no bracket known
        factors = rule.factors(math.exp(t))
        for dim in trim_dims:
            if bracket[0] == bracket[1]:
                break

            def ratio_trimmed(c: float, dim: str = dim, f0: Mapping[str, float] = factors) -> float:
                return ratio_of({**f0, dim: f0[dim] * math.exp(c)})

            c, best2, bracket2 = _solve(ratio_trimmed, target, t0=0.0, slope=2.0, limit=TRIM_LIMIT)
            if abs(math.log(best2 / target)) < abs(math.log(best / target)) - 1e-12:
                factors = {**factors, dim: factors[dim] * math.exp(c)}
                trim.append((dim, math.exp(c)))
                best = best2
            if _gap(bracket2) < _gap(bracket):  # the tightest bracket bounds the error
                bracket = bracket2
        values = scaled_values(decl, env, factors)
        cost = evaluate(values)
        results.append(ScaleResult(str(spec), doc.name, variant, rule, target, math.exp(t), values, cost, base,
                                   bracket, plain, factors, trim, len(evaluate.cache), overrides, list(notes),
                                   convention, text))
    return results


def _coverage(doc: SpecDoc, decl: ScalingDecl, rule: Rule) -> list[str]:
    """Refuse a rule whose MAC-changing dimensions the spec does not declare; note partial coverage."""
    exps = rule.exponents
    used = [d for d in ("depth", "width", "resolution") if exps[d] > 0]
    missing = [d for d in used if d not in decl.dims]
    if missing and len(missing) == len(used):
        raise SpecError(f"rule '{rule.text}' scales {' and '.join(missing)}, but the scaling section of "
                        f"'{doc.name}' declares no {' or '.join(m.replace('_', ' ') for m in missing)} param",
                        decl.loc, hint=f"declare e.g. 'scaling: {{{missing[0]}: ...}}', or pick another rule")
    return [f"{d} is not declared: its share (s^{exps[d]:.3g}) is left to the calibration" for d in missing]


# --------------------------------------------------------------------------------------------- writing


def _fmt_ratio(s: float) -> str:
    return f"{s:g}"


def output_paths(out: str | Path | None, flops: Sequence[float], labels: Sequence[str] | None = None, *,
                 stem: str = "scaled") -> list[Path]:
    """``OUT`` for a single target; ``OUT`` with a suffix per target for a family: ``_s{S}`` (or ``_{label}``).

    Without ``out``, every output is ``{stem}_{suffix}.yaml`` in the current folder, even a single one.
    """
    from archc._fs import safe_stem

    # the stem comes from the spec's name and labels may be user text: plain file names in the working folder
    labels = [safe_stem(str(lb), "scaled") for lb in labels] if labels else [f"s{_fmt_ratio(s)}" for s in flops]
    if out is None:
        return [Path(safe_stem(f"{stem}_{lb}", "scaled") + ".yaml") for lb in labels]
    p = Path(out)
    if len(flops) == 1:
        return [p]
    suffix = p.suffix or ".yaml"
    return [p.with_name(f"{p.stem}_{lb}{suffix}") for lb in labels]


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _import_targets(path: Path, raw: Mapping[str, Any]) -> list[Path]:
    return [(path.parent / rel).resolve() for rel in raw.get("imports") or []]


def _inlined_blocks(path: Path, raw: Mapping[str, Any], seen: set[Path]) -> dict[str, Any]:
    """Blocks of every file ``raw`` imports (recursively, imports first), as plain data."""
    blocks: dict[str, Any] = {}
    for target in _import_targets(path, raw):
        if target in seen:
            continue
        seen.add(target)
        lib = load_yaml(target)
        blocks.update(_inlined_blocks(target, lib, seen))
        blocks.update(_plain(lib.get("blocks") or {}))
    return blocks


def _variant_name(res: ScaleResult) -> str:
    label = _fmt_ratio(res.target).replace(".", "p")
    return f"{res.variant}_x{label}" if res.variant else f"x{label}"


def write_scaled(res: ScaleResult, out: str | Path) -> Path:
    """Write ``res`` as a compile-ready spec at ``out`` and check that it compiles to the same cost.

    The output is the base spec with the chosen variant and every override folded into ``params``, the
    scaled values written out, a single variant named after the target, and the base's ``imports``
    rewritten relative to ``out`` (or, when ``out`` lies outside the base's project tree, the imported
    blocks copied in). ``scaling.applied`` records what was done; the declaration stays, so the output
    can be scaled again.
    """
    from archc.compiler import write_atomic

    out = Path(out)
    base_path = Path(res.spec)
    doc = load_spec_doc(base_path, res.text)
    data = _plain(doc.raw)
    params = data.setdefault("params", {})
    if res.variant is not None:
        params.update(_plain(doc.variants[res.variant] or {}))
    params.update(_plain(res.overrides))
    params.update(_plain(res.values))
    vname = _variant_name(res)
    data["variants"] = {vname: {}}
    data["default_variant"] = vname
    out_dir = out.resolve().parent
    targets = _import_targets(base_path, data)
    how = "no imports"
    if targets:
        out_root = find_root(out)
        if all(_inside(t, out_root.resolve()) for t in targets):
            data["imports"] = [Path(os.path.relpath(t, out_dir)).as_posix() for t in targets]
            how = "imports rewritten relative to the output"
        else:
            own = data.get("blocks") or {}
            data["blocks"] = {**_inlined_blocks(base_path, data, set()), **own}
            data.pop("imports", None)
            how = "imported blocks copied in (the output lies outside the base's project tree)"
    base_abs = base_path.resolve()
    base_rel = os.path.relpath(base_abs, out_dir) if _inside(base_abs, find_root(out).resolve()) else str(base_abs)
    note = (f"Scaled by 'archc scale' from {Path(base_rel).as_posix()}"
            f"{f' ({res.variant})' if res.variant else ''}: rule {res.rule.canonical}, target {_fmt_ratio(res.target)}× "
            f"MACs, achieved {res.mac_ratio:.4f}×.")
    data["doc"] = (str(data.get("doc") or "").rstrip() + " " + note).strip()
    scaling = data.get("scaling") or {}
    scaling["applied"] = {
        "base": Path(base_rel).as_posix(), "variant": res.variant, "rule": res.rule.canonical,
        "flops": res.target, "factor": round(res.factor, 6),
        "factors": {k: round(v, 6) for k, v in res.factors.items() if k in _declared_dims(doc)},
        "macs": res.cost.macs, "mac_ratio": round(res.mac_ratio, 6), "acts_ratio": round(res.act_ratio, 6),
        "convention": res.convention,
    }
    if res.trim:
        scaling["applied"]["trim"] = {d: round(c, 6) for d, c in res.trim}
    data["scaling"] = scaling
    header = (f"# Generated by 'archc scale' from {Path(base_rel).as_posix()}: edit the base spec and re-run.\n"
              f"# rule {res.rule.describe()}\n# {how}\n")
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=118, allow_unicode=True)
    # check before writing: the output must load, expand and cost exactly as computed
    check_doc = load_spec_doc(out, text=text)
    chosen, env = resolve_params(check_doc, None, ())
    cost_fn = pycls_cost if res.convention == "pycls" else graph_cost
    got = cost_fn(expand(check_doc, env, chosen))
    if (got.macs, got.params, got.acts) != (res.cost.macs, res.cost.params, res.cost.acts):
        raise ArchcError(f"internal error: the written spec costs {got.macs:,} MACs, not {res.cost.macs:,}")
    from archc._fs import check_distinct

    check_distinct([out], [Path(p) for p in doc.sources] or [base_path])  # never over the base spec or its imports
    try:
        write_atomic(out, text)
    except IsADirectoryError:
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint="give a file name, e.g. -o m.yaml") from None
    except OSError as exc:
        raise ArchcError(f"cannot write the output '{out}': {exc.strerror or exc}",
                         hint="check that the folder is writable") from None
    return out


def _declared_dims(doc: SpecDoc) -> set[str]:
    sec = doc.raw.get("scaling")
    return {d for d in DIMS if isinstance(sec, YMap) and d in sec}


# --------------------------------------------------------------------------------------------- reporting


def _si(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3f} {unit}"
    return f"{n:g}"


def format_results(results: Sequence[ScaleResult], paths: Sequence[Path | str] | None = None) -> str:
    """A table of the scaled models: MACs, params, activations, target and achieved MAC ratio, activation ratio."""
    if not results:
        return ""
    r0 = results[0]
    b = r0.base_cost
    mac_word = "flops (pycls)" if r0.convention == "pycls" else "MACs"
    lines = [f"base  {r0.spec}{f' ({r0.variant})' if r0.variant else ''}: {_si(b.macs)} {mac_word}, "
             f"{_si(b.params)} params, {_si(b.acts)} activations",
             f"rule  {r0.rule.describe()}"]
    lines += [f"note  {n}" for n in r0.notes]
    head = ("output", "MACs", "params", "acts", "target", "achieved", "error", "step", "acts ratio", "s'", "trim")
    rows = []
    for i, r in enumerate(results):
        name = str(paths[i]) if paths else f"×{_fmt_ratio(r.target)}"
        rows.append((name, _si(r.cost.macs), _si(r.cost.params), _si(r.cost.acts), f"{r.target:g}×",
                     f"{r.mac_ratio:.4f}×", f"{100 * r.error:+.2f}%",
                     f"{100 * r.step:.2f}%" if math.isfinite(r.step) else "-", f"{r.act_ratio:.4f}×", f"{r.factor:.4f}",
                     ", ".join(f"{d} ×{c:.4f}" for d, c in r.trim) or "-"))
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    lines.append("  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(head)))
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    for r in results:
        if r.step > 0 and abs(r.error) > r.step and math.isfinite(r.step):
            lines.append(f"warning: ×{r.target:g} is not bracketed: the rule cannot reach it on this spec")
    lines.append("step: gap between the nearest achievable MAC ratios around the target under the rule's rounding "
                 "(|error| ≤ step/2); s': scale factor handed to the rule; trim: ≤5% correction of a dimension's factor")
    return "\n".join(lines)


def fit_exponent(mac_ratios: Iterable[float], act_ratios: Iterable[float]) -> float:
    """Least-squares slope of log(activation ratio) on log(MAC ratio), through the base (the origin)."""
    xs = [math.log(m) for m in mac_ratios]
    ys = [math.log(a) for a in act_ratios]
    den = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys)) / den if den else math.nan


# --------------------------------------------------------------------------------------------- the study


#: bases of the study: (spec file under specs/, variant, label)
REPORT_BASES = (("efficientnet", "b0", "EfficientNet-B0"), ("regnet", "x400mf", "RegNetX-400MF"),
                ("resnet", "resnet50", "ResNet-50"), ("convfirst", "t", "ConvFirst-T"))
#: rules of the study and the activation exponent the papers report (None: not stated there)
REPORT_RULES = (("fast", 0.6), ("dW", None), ("dwr", None), ("efficientnet", 0.85), ("w", 0.5), ("d", 1.0), ("r", 1.0))
REPORT_FLOPS = (2.0, 4.0, 8.0, 16.0)
_BEGIN = "<!-- BEGIN GENERATED: python -m archc.scaling --report -->"
_END = "<!-- END GENERATED -->"
_COLORS = {"fast": "#d62728", "dW": "#ff7f0e", "dwr": "#8c564b", "efficientnet": "#9467bd", "w": "#1f77b4",
           "d": "#2ca02c", "r": "#17becf"}


def _study_job(job: tuple[str, str | None, str, tuple[float, ...]]) -> list[dict[str, Any]]:
    spec, variant, rule, flops = job
    rows = []
    for calib in ("trim", "none"):
        for r in scale(spec, list(flops), rule, variant=variant, calibrate=calib):
            rows.append({"calibrate": calib, "target": r.target, "mac_ratio": r.mac_ratio, "act_ratio": r.act_ratio,
                         "error": r.error, "step": r.step, "factor": r.factor, "trim": list(r.trim),
                         "macs": r.cost.macs, "params": r.cost.params, "acts": r.cost.acts, "values": r.values,
                         "ideal": r.rule.act_exponent, "canonical": r.rule.canonical})
    return rows


def run_study(specs_dir: str | Path, bases: Sequence[tuple[str, str, str]] = REPORT_BASES,
              rules: Sequence[tuple[str, float | None]] = REPORT_RULES, flops: Sequence[float] = REPORT_FLOPS,
              jobs: int = 1) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Scale every base with every rule to every target (calibrated and pycls-plain); results by (base, rule)."""
    work = [(str(Path(specs_dir) / f"{b}.yaml"), v, r, tuple(flops)) for b, v, _ in bases for r, _ in rules]
    keys = [(label, r) for _, _, label in bases for r, _ in rules]
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as pool:
            out = list(pool.map(_study_job, work))
    else:
        out = [_study_job(w) for w in work]
    return dict(zip(keys, out))


def _fmt_pct(x: float) -> str:
    return f"{100 * x:+.2f}%"


def study_markdown(study: Mapping[tuple[str, str], list[dict[str, Any]]], bases: Sequence[tuple[str, str, str]],
                   rules: Sequence[tuple[str, float | None]], flops: Sequence[float], plot: str | None) -> str:
    """The generated part of docs/scaling.md: exponent table, MAC errors, per-target details."""
    labels = [lb for _, _, lb in bases]
    lines = [_BEGIN, "",
             f"Targets S = {', '.join(f'{s:g}' for s in flops)}; MACs and activations in archc's default convention "
             "(activations = conv, linear and pooling outputs, as pycls); default calibration (`trim`).", "",
             "#### Fitted activation exponents", "",
             "Least-squares slope of log(activation ratio) on log(achieved MAC ratio), through the base. *Ideal* is "
             "e_d + e_w + 2·e_r, what activations ∝ d·w·r² would give if every layer scaled alike.", "",
             "| rule | " + " | ".join(labels) + " | ideal | paper |",
             "|---|" + "---:|" * (len(labels) + 2)]
    for rule, paper in rules:
        cells = []
        ideal = math.nan
        for lb in labels:
            rows = [x for x in study[(lb, rule)] if x["calibrate"] == "trim"]
            ideal = rows[0]["ideal"]
            cells.append(f"{fit_exponent([x['mac_ratio'] for x in rows], [x['act_ratio'] for x in rows]):.3f}")
        canon = study[(labels[0], rule)][0]["canonical"]
        name = f"`{rule}`" + (f" ({canon})" if canon != rule else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ideal:.3f} | {f'≈ {paper:g}' if paper else '–'} |")
    lines += ["", "#### MAC error against the target", "",
              "Worst |achieved/target − 1| over the targets: *archc* is `archc scale` (scale-factor search, then a "
              "width/resolution trim of at most ±5%); *pycls* is scale-then-round at s' = S. *bound* is the largest "
              "gap between the nearest achievable MAC ratios below and above a target that the search found "
              "(the rounding error: archc's error is at most half of it).", "",
              "| rule | " + " | ".join(f"{lb} archc / pycls / bound" for lb in labels) + " |",
              "|---|" + "---:|" * len(labels)]
    worst_all = (0.0, "")
    for rule, _ in rules:
        cells = []
        for lb in labels:
            rows = study[(lb, rule)]
            cal = [x for x in rows if x["calibrate"] == "trim"]
            plain = [x for x in rows if x["calibrate"] == "none"]
            w = max(abs(x["error"]) for x in cal)
            worst = max(cal, key=lambda x: abs(x["error"]))
            if w > worst_all[0]:
                worst_all = (w, f"{lb}, `{rule}`, S = {worst['target']:g}: {_fmt_pct(worst['error'])}")
            bound = max(x["step"] for x in cal)
            cells.append(f"{100 * w:.2f}% / {100 * max(abs(x['error']) for x in plain):.2f}% / "
                         + (f"{100 * bound:.1f}%" if math.isfinite(bound) else "–"))
        lines.append(f"| `{rule}` | " + " | ".join(cells) + " |")
    lines += ["", f"Worst case over all bases, rules and targets: **{100 * worst_all[0]:.2f}%** ({worst_all[1]}).", ""]
    if plot:
        lines += [f"![activation ratio against MAC ratio, log-log]({plot})", ""]
    lines += ["<details><summary>Every scaled model</summary>", ""]
    for b, v, lb in bases:
        lines += [f"**{lb}** (`specs/{b}.yaml`, {v})", "",
                  "| rule | S | achieved | error | pycls error | bound | acts ratio | s' | trim | MACs | params |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
        for rule, _ in rules:
            rows = study[(lb, rule)]
            plain = {x["target"]: x for x in rows if x["calibrate"] == "none"}
            for x in (x for x in rows if x["calibrate"] == "trim"):
                trim = ", ".join(f"{d} ×{c:.3f}" for d, c in x["trim"]) or "–"
                lines.append(f"| `{rule}` | {x['target']:g} | {x['mac_ratio']:.4f} | {_fmt_pct(x['error'])} | "
                             f"{_fmt_pct(plain[x['target']]['error'])} | "
                             f"{100 * x['step']:.2f}% | {x['act_ratio']:.3f} | {x['factor']:.3f} | {trim} | "
                             f"{_si(x['macs'])} | {_si(x['params'])} |")
        lines.append("")
    lines += ["</details>", "", _END]
    return "\n".join(lines)


def study_svg(study: Mapping[tuple[str, str], list[dict[str, Any]]], bases: Sequence[tuple[str, str, str]],
              rules: Sequence[tuple[str, float | None]]) -> str:
    """A hand-written SVG: activation ratio against MAC ratio (log-log), one panel per base."""
    pw, ph, ml, mt, mb = 300, 250, 48, 28, 40
    cols = 2
    nrows = (len(bases) + cols - 1) // cols
    legend_h = 30
    width, height = cols * (pw + ml) + 20, nrows * (ph + mt + mb) + legend_h
    xmax = max(x["mac_ratio"] for rows in study.values() for x in rows)
    ymax = max(max(x["act_ratio"] for rows in study.values() for x in rows), xmax)
    lx, ly = math.log(max(xmax, 2) * 1.1), math.log(max(ymax, 2) * 1.1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for k, (_, _, lb) in enumerate(bases):
        ox = (k % cols) * (pw + ml) + ml
        oy = (k // cols) * (ph + mt + mb) + mt + legend_h

        def px(v: float, ox: float = ox) -> float:
            return ox + pw * math.log(v) / lx

        def py(v: float, oy: float = oy) -> float:
            return oy + ph - ph * math.log(v) / ly

        out.append(f'<text x="{ox + pw / 2}" y="{oy - 8}" text-anchor="middle" font-weight="bold">{lb}</text>')
        out.append(f'<rect x="{ox}" y="{oy}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for t in (1, 2, 4, 8, 16, 32, 64, 128):
            if t <= xmax * 1.1:
                out.append(f'<line x1="{px(t):.1f}" y1="{oy}" x2="{px(t):.1f}" y2="{oy + ph}" stroke="#eee"/>')
                out.append(f'<text x="{px(t):.1f}" y="{oy + ph + 14}" text-anchor="middle">{t}</text>')
            if t <= ymax * 1.1:
                out.append(f'<line x1="{ox}" y1="{py(t):.1f}" x2="{ox + pw}" y2="{py(t):.1f}" stroke="#eee"/>')
                out.append(f'<text x="{ox - 5}" y="{py(t) + 4:.1f}" text-anchor="end">{t}</text>')
        out.append(f'<text x="{ox + pw / 2}" y="{oy + ph + 30}" text-anchor="middle">MAC ratio</text>')
        out.append(f'<text x="{ox - 34}" y="{oy + ph / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {ox - 34} {oy + ph / 2})">activation ratio</text>')
        for e in (0.5, 1.0):  # reference slopes
            x2 = min(xmax * 1.1, (ymax * 1.1) ** (1 / e))
            out.append(f'<line x1="{px(1):.1f}" y1="{py(1):.1f}" x2="{px(x2):.1f}" y2="{py(x2 ** e):.1f}" '
                       f'stroke="#999" stroke-dasharray="4 3"/>')
            out.append(f'<text x="{px(x2) - 4:.1f}" y="{py(x2 ** e) - 4:.1f}" text-anchor="end" fill="#777">'
                       f's^{e:g}</text>')
        for rule, _ in rules:
            rows = [x for x in study[(lb, rule)] if x["calibrate"] == "trim"]
            pts = [(1.0, 1.0)] + [(x["mac_ratio"], x["act_ratio"]) for x in rows]
            color = _COLORS.get(rule, "#333")
            path = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"/>')
            out += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{color}"/>' for a, b in pts[1:]]
    x = ml
    for rule, _ in rules:
        color = _COLORS.get(rule, "#333")
        out.append(f'<line x1="{x}" y1="14" x2="{x + 18}" y2="14" stroke="{color}" stroke-width="2.5"/>')
        out.append(f'<text x="{x + 22}" y="18">{rule}</text>')
        x += 30 + 7 * len(rule) + 14
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m archc.scaling --report``: run the scaling study and rewrite its part of docs/scaling.md."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m archc.scaling", description=main.__doc__)
    ap.add_argument("--report", action="store_true", help="run the study and write the docs")
    ap.add_argument("--docs", default=None, help="docs folder (default: docs/ of this checkout)")
    ap.add_argument("--specs", default=None, help="specs folder (default: specs/ of this checkout)")
    ap.add_argument("--flops", default=",".join(f"{s:g}" for s in REPORT_FLOPS), help="targets (default 2,4,8,16)")
    ap.add_argument("--bases", default=None, help="comma-separated spec names to include (default: all)")
    ap.add_argument("--rules", default=None, help="comma-separated rules to include (default: all)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    args = ap.parse_args(argv)
    if not args.report:
        ap.print_help()
        return 0
    here = Path(__file__).resolve().parent.parent
    docs = Path(args.docs) if args.docs else here / "docs"
    specs = Path(args.specs) if args.specs else here / "specs"
    bases = [b for b in REPORT_BASES if not args.bases or b[0] in args.bases.split(",")]
    rules = [r for r in REPORT_RULES if not args.rules or r[0] in args.rules.split(",")]
    flops = parse_flops(args.flops)
    try:
        study = run_study(specs, bases, rules, flops, jobs=args.jobs)
    except ArchcError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    svg = docs / "scaling_activations.svg"
    svg.write_text(study_svg(study, bases, rules), encoding="utf-8")
    md = docs / "scaling.md"
    generated = study_markdown(study, bases, rules, flops, svg.name)
    old = md.read_text(encoding="utf-8") if md.exists() else f"# Model scaling\n\n{_BEGIN}\n{_END}\n"
    if _BEGIN not in old or _END not in old:
        old = old.rstrip() + f"\n\n{_BEGIN}\n{_END}\n"
    head, rest = old.split(_BEGIN, 1)
    tail = rest.split(_END, 1)[1]
    md.write_text(head + generated + tail, encoding="utf-8")
    print(generated.split("<details>")[0].replace(_BEGIN, "").strip())
    print(f"wrote {md} and {svg}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
