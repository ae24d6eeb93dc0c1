"""Choices of a search space: the :class:`Choice` model (Optuna distributions both ways) and the
``choices:`` section that declares them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archc.diagnostics import SourceLoc, SpecError, suggest
from archc.search.space_config import CHOICE_KEYS, CHOICE_TYPES
from archc.search.space_yaml import (
    check_keys,
    decode,
    encode,
    err,
    get_bool,
    get_mapping,
    get_number,
    get_string,
    parse_path,
    plain,
)
from archc.spec.document import SpecDoc, check_identifier
from archc.spec.loader import YList, YMap

__all__ = ["Choice", "choices_from_distributions", "parse_choices"]


@dataclass(frozen=True, eq=True)
class Choice:
    """One searched value: categorical (``op`` when its values name ops/blocks), int or float range.

    ``target`` is the base-spec param path the choice sets (``None``: the choice is only a variable
    of the space's ``params`` expressions); ``when`` makes it conditional: it is active only when
    every named earlier choice has one of the listed values.
    """

    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: Any = None
    high: Any = None
    step: Any = None
    log: bool = False
    op: bool = False
    target: tuple[str | int, ...] | None = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    default: Any = None
    loc: SourceLoc | None = field(default=None, compare=False)

    def distribution(self) -> Any:
        """The Optuna distribution of this choice."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution([encode(v) for v in self.values])
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    @classmethod
    def from_distribution(cls, name: str, dist: Any, **meta: Any) -> Choice:
        """The choice an Optuna distribution describes (``meta``: target, when, default, op, loc)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if isinstance(dist, CategoricalDistribution):
            return cls(name, "categorical", tuple(decode(v) for v in dist.choices), **meta)
        if isinstance(dist, IntDistribution):
            return cls(name, "int", (), dist.low, dist.high, dist.step, dist.log, **meta)
        if isinstance(dist, FloatDistribution):
            return cls(name, "float", (), dist.low, dist.high, dist.step, dist.log, **meta)
        raise TypeError(f"unsupported distribution {type(dist).__name__}")

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether the choice is sampled, given the values of the choices before it."""
        return all(name in values and values[name] in allowed for name, allowed in self.when)

    def suggest(self, trial: Any) -> Any:
        """Sample this choice in an Optuna trial; returns the decoded value."""
        if self.kind == "categorical":
            return decode(trial.suggest_categorical(self.name, [encode(v) for v in self.values]))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the choice's domain."""
        if self.kind == "categorical":
            return plain(value) in [plain(v) for v in self.values]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and not isinstance(value, int):
            return False
        if not self.low <= value <= self.high:
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return True

    def grid_values(self) -> list[Any] | None:
        """All values (categorical or stepped ranges) or None for a continuous range."""
        if self.kind == "categorical":
            return [encode(v) for v in self.values]
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + k * self.step, 12) for k in range(n + 1)]


def choices_from_distributions(dists: Mapping[str, Any]) -> list[Choice]:
    """Choices from Optuna distributions (the inverse of :meth:`SearchSpace.distributions`)."""
    return [Choice.from_distribution(name, d) for name, d in dists.items()]


def parse_choices(raw: YMap, spec: SpecDoc) -> list[Choice]:
    """The ``choices:`` section, in the order written (a ``when`` may only test a choice above it)."""
    section = get_mapping(raw, "choices", "the search space")
    sparams = dict(spec.params)
    out: list[Choice] = []
    seen: dict[str, Choice] = {}
    for name, body in section.items():
        kloc = section.key_loc(name)
        try:
            check_identifier(name, kloc, "choice name")
        except SpecError as exc:
            raise err(exc.message, exc.loc, exc.hint) from None
        vloc = section.loc_of(name)
        what = f"choice '{name}'"
        if isinstance(body, YList):
            body_map = YMap({"type": "categorical", "values": body})
            body_map.loc = vloc
            body_map.locs = {"type": vloc, "values": vloc}
            body_map.key_locs = {"type": kloc, "values": kloc}
            body = body_map
        if not isinstance(body, YMap):
            raise err(f"{what} must be a mapping (type, values | low/high/step/log, ...) or a list of values, got {body!r}",
                       vloc, "e.g. 'width: {type: int, low: 32, high: 128, step: 32}'")
        check_keys(body, CHOICE_KEYS, what)
        kind = get_string(body, "type", what, None, CHOICE_TYPES)
        if kind is None:
            kind = "categorical" if "values" in body else ("float" if isinstance(body.get("low"), float) or isinstance(body.get("high"), float) else "int")
        is_op = kind == "op"
        if is_op:
            kind = "categorical"
        values: tuple[Any, ...] = ()
        low = high = step = None
        log = get_bool(body, "log", what, False)
        if kind == "categorical":
            if "values" not in body:
                raise err(f"{what} needs 'values' (a non-empty list)", body.loc)
            vals = body["values"]
            if not isinstance(vals, YList) or not vals:
                raise err(f"'values' of {what} must be a non-empty list, got {vals!r}", body.loc_of("values"))
            for k, v in enumerate(vals):
                if plain(v) in [plain(x) for x in vals[:k]]:
                    raise err(f"value {v!r} appears twice in {what}", vals.loc_of(k), "values of a choice must be distinct")
                if is_op:
                    if not isinstance(v, str):
                        raise err(f"op choice '{name}': {v!r} is not an op or block name", vals.loc_of(k))
                    _check_op_name(v, spec, vals.loc_of(k))
            for key in ("low", "high", "step"):
                if key in body:
                    raise err(f"'{key}' does not apply to a categorical choice", body.key_loc(key), "use 'values', or type int/float")
            if log:
                raise err("'log' does not apply to a categorical choice", body.key_loc("log"))
            values = tuple(plain(v) for v in vals)
        else:
            if "values" in body:
                raise err(f"'values' does not apply to an {kind} range", body.key_loc("values"), "use low/high/step, or type categorical")
            for key in ("low", "high"):
                if key not in body:
                    raise err(f"{what} needs '{key}'", body.loc)
            integer = kind == "int"
            low = get_number(body, "low", what, integer=integer)
            high = get_number(body, "high", what, integer=integer)
            step = get_number(body, "step", what, None, integer=integer, positive=True)
            if high < low or (kind == "float" and high == low and step is None and log):
                raise err(f"{what}: high ({high}) is below low ({low})", body.loc_of("high"))
            if log and low <= 0:
                raise err(f"{what}: a log range needs low > 0, got {low}", body.loc_of("low"))
            if log and step is not None and not (integer and step == 1):
                raise err(f"{what}: 'log' and 'step' cannot be combined" + (" (an int log range has step 1)" if integer else ""),
                           body.key_loc("step"))
            if step is not None:
                k = (high - low) / step
                if abs(k - round(k)) > 1e-9:
                    raise err(f"{what}: the range {low}..{high} is not a whole number of steps of {step}", body.loc_of("step"),
                               f"e.g. high: {low + math.floor(k) * step}")
        target: tuple[str | int, ...] | None
        if "target" in body:
            t = body["target"]
            if t is None:
                target = None
            elif isinstance(t, str):
                target = parse_path(t, body.loc_of("target"), sparams, what)
            else:
                raise err(f"'target' of {what} must be a param path like 'dims.2' (or null), got {t!r}", body.loc_of("target"))
        else:
            target = (name,) if name in sparams else None
        when = _parse_when(body, what, seen)
        default = plain(body.get("default"))
        c = Choice(name, kind, values, low, high, step, log, is_op, target, when, default, kloc)
        out.append(c)
        seen[name] = c
    return out


def _check_op_name(v: str, spec: SpecDoc, loc: SourceLoc) -> None:
    from archc.ops import REGISTRY

    if v not in REGISTRY and v not in spec.blocks:
        raise err(f"unknown op or block '{v}'", loc,
                   suggest(v, list(REGISTRY) + list(spec.blocks)) or "an op choice lists op names ('archc ops') or blocks of the base spec")


def _parse_when(body: YMap, what: str, seen: Mapping[str, Choice]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if "when" not in body:
        return ()
    w = body["when"]
    wloc = body.loc_of("when")
    if not isinstance(w, YMap) or not w:
        raise err(f"'when' of {what} must map earlier choices to a value or a list of values, got {w!r}", wloc,
                   "e.g. 'when: {mixer: attention}'")
    out = []
    for other, allowed in w.items():
        if other not in seen:
            raise err(f"'when' of {what} refers to '{other}', which is not a choice declared before it", w.key_loc(other),
                       suggest(str(other), seen) or "a condition may only use choices declared above")
        vals = list(allowed) if isinstance(allowed, list) else [allowed]
        for v in vals:
            if not seen[other].contains(v):
                raise err(f"'when' of {what}: {v!r} is not a value of choice '{other}'", w.loc_of(other))
        out.append((str(other), tuple(plain(v) for v in vals)))
    return tuple(out)
