"""Scaling a spec to MAC targets: the rule's factors, rounded, costed, and calibrated (a search of the scale
factor, then a trim of width and resolution) so the rounded model lands as close to each target as rounding allows."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.cost.model import Cost, graph_cost, pycls_cost
from archc.diagnostics import ArchcError, SpecError
from archc.scaling.decl import ScalingDecl, check_values, load_scaling, scaled_values
from archc.scaling.rules import Rule, parse_flops, parse_rule, phi_targets
from archc.spec.document import SpecDoc, load_spec_doc, parse_override, resolve_params
from archc.spec.expand import expand

__all__ = ["ScaleResult", "CALIBRATIONS", "TRIM_LIMIT", "scale"]

_TOL = 1e-9


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
