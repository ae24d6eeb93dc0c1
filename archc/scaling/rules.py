"""Scaling rules: the rule grammar (pycls scale types, letter forms, fast, dW, efficientnet) parsed into
exponents, with errors that point into the rule text; MAC targets from ``--flops`` and ``--phi``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import ArchcError, SourceLoc, SpecError, register_source, suggest

__all__ = ["NAMED_RULES", "Rule", "parse_rule", "parse_flops", "phi_targets"]

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
