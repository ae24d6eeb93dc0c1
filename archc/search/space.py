"""Search-space files: loading, validation with positions, Optuna distributions, materialization.

A search space is a YAML file (``docs/search_space.md``) naming a base spec and what to search over
it: choices over spec params, op choices, cell spaces, constraints, objectives, an evaluator and a
study. Every error in the file is a :class:`~archc.diagnostics.SearchSpaceError` at its
``file:line:col``.

>>> space = load_space("search_spaces/cdc.yaml")            # doctest: +SKIP
>>> m = space.materialize(space.point("cdcnpp"))             # doctest: +SKIP
>>> m.overrides[("low_out",)]                                # doctest: +SKIP
2
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError, SearchSpaceError, SourceLoc, SpecError, suggest
from archc.search.cells import CellSpace, cell_edges, edge_key
from archc.spec.document import SpecDoc, check_identifier, load_spec_doc
from archc.spec.expr import compile_expr, evaluate, is_expr
from archc.spec.loader import YList, YMap, load_yaml

__all__ = [
    "Choice", "CellSpace", "Objective", "DataConfig", "TrainConfig", "ZeroCostConfig", "LatencyConfig",
    "EvaluatorConfig", "StudyConfig", "SearchSpace", "Materialized", "load_space", "choices_from_distributions",
    "COST_METRICS", "ZERO_COST_METRICS", "SAMPLERS", "PRUNERS", "FORMAT_VERSION",
]

FORMAT_VERSION = 1
TOP_KEYS = ("archc", "name", "doc", "base", "variant", "params", "choices", "cells", "constraints", "objectives",
            "evaluator", "study", "points", "strategy")
CHOICE_KEYS = ("type", "values", "low", "high", "step", "log", "target", "when", "default", "doc")
CHOICE_TYPES = ("categorical", "int", "float", "op")
CELL_KEYS = ("nodes", "ops", "edges", "output", "none", "op_table", "doc")
EVAL_KEYS = ("task", "data", "proxy", "train", "zero_cost", "latency", "threads")
DATA_KEYS = ("source", "path", "train", "val", "val_fraction", "seed", "hard")
TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "schedule", "seed", "max_batches",
              "device")
ZERO_KEYS = ("metrics", "batch_size", "screen")
SCREEN_KEYS = ("metric", "quantile", "after")
LATENCY_KEYS = ("runs", "warmup", "batch", "threads", "model", "check")
STUDY_KEYS = ("name", "sampler", "pruner", "trials", "timeout", "storage", "seed", "enqueue", "max_attempts", "out")

TASKS = ("classification", "depth")
SOURCES = ("digits", "folder", "npz")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
COST_METRICS = ("params", "macs", "acts")
LATENCY_METRIC = "latency_ms"
ZERO_COST_METRICS = ("naswot", "synflow", "grad_norm")
TRAIN_METRICS = {"classification": ("val_loss", "train_loss", "val_acc"),
                 "depth": ("val_loss", "train_loss", "val_acc", "val_auc", "val_acer")}
CONSTRAINT_METRICS = (*COST_METRICS, LATENCY_METRIC)
#: sampler name → Optuna class name (in optuna.samplers)
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "nsga2": "NSGAIISampler", "nsga3": "NSGAIIISampler",
            "grid": "GridSampler", "qmc": "QMCSampler", "bruteforce": "BruteForceSampler", "gp": "GPSampler",
            "cmaes": "CmaEsSampler"}
#: samplers that accept ``constraints_func`` (they learn from rejected, over-budget samples)
CONSTRAINED_SAMPLERS = ("tpe", "nsga2", "nsga3", "gp")
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "percentile": "PercentilePruner",
           "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner",
           "threshold": "ThresholdPruner", "wilcoxon": "WilcoxonPruner"}
_MANAGED_KWARGS = ("seed", "constraints_func", "search_space")
_FLOAT_TEXT = __import__("re").compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _err(message: str, loc: SourceLoc | None, hint: str | None = None) -> SearchSpaceError:
    return SearchSpaceError(message, loc, hint)


def _check_keys(m: YMap, allowed: Sequence[str], what: str) -> None:
    for k in m:
        if k not in allowed:
            raise _err(f"unknown key '{k}' in {what}", m.key_loc(k),
                       suggest(str(k), allowed) or f"allowed keys: {', '.join(allowed)}")


def _mapping(parent: YMap, key: str, what: str, required: bool = False) -> YMap:
    if key not in parent:
        if required:
            raise _err(f"{what} needs '{key}'", parent.loc)
        m = YMap()
        m.loc = parent.loc
        return m
    v = parent[key]
    if v is None:
        m = YMap()
        m.loc = parent.loc_of(key)
        return m
    if not isinstance(v, YMap):
        raise _err(f"'{key}' in {what} must be a mapping, got {v!r}", parent.loc_of(key))
    return v


def _number(parent: YMap, key: str, what: str, default: Any = None, *, integer: bool = False, positive: bool = False,
            nonneg: bool = False, allow_none: bool = False) -> Any:
    if key not in parent:
        return default
    v = parent[key]
    loc = parent.loc_of(key)
    if v is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    if isinstance(v, str) and not integer and _FLOAT_TEXT.match(v.strip()):
        v = float(v)  # YAML 1.1 reads '3.5e6' (no sign, no dot) as a string
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise _err(f"'{key}' in {what} must be {kind}, got {v!r}", loc)
    if not math.isfinite(v):
        raise _err(f"'{key}' in {what} must be finite, got {v!r}", loc)
    if positive and v <= 0:
        raise _err(f"'{key}' in {what} must be positive, got {v!r}", loc)
    if nonneg and v < 0:
        raise _err(f"'{key}' in {what} must not be negative, got {v!r}", loc)
    return v


def _string(parent: YMap, key: str, what: str, default: Any = None, options: Sequence[str] | None = None) -> Any:
    if key not in parent:
        return default
    v = parent[key]
    loc = parent.loc_of(key)
    if not isinstance(v, str):
        raise _err(f"'{key}' in {what} must be a string, got {v!r}", loc,
                   f"one of: {', '.join(options)}" if options else None)
    if options is not None and v not in options:
        raise _err(f"unknown {key} '{v}' in {what}", loc, suggest(v, options) or f"one of: {', '.join(options)}")
    return v


def _bool(parent: YMap, key: str, what: str, default: bool) -> bool:
    if key not in parent:
        return default
    v = parent[key]
    if not isinstance(v, bool):
        raise _err(f"'{key}' in {what} must be true or false, got {v!r}", parent.loc_of(key))
    return v


def _plain(v: Any) -> Any:
    """YMap/YList → dict/list, recursively."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _encode(v: Any) -> Any:
    """A categorical value as Optuna stores it: primitives as they are, containers as compact JSON."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(_plain(v), separators=(",", ":"))


def _decode(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def parse_path(text: str, loc: SourceLoc | None, params: Mapping[str, Any], what: str) -> tuple[str | int, ...]:
    """``dims`` or ``dims.2`` → a param path, checked against the base spec's params."""
    parts: list[str | int] = []
    for i, part in enumerate(str(text).split(".")):
        if i > 0 and part.lstrip("-").isdigit():
            parts.append(int(part))
        elif i == 0 and part:
            parts.append(part)
        else:
            raise _err(f"bad param path '{text}' in {what}", loc, "write 'name' or 'name.index', e.g. 'dims.2'")
    if parts[0] not in params:
        raise _err(f"{what} sets unknown param '{parts[0]}' of the base spec", loc,
                   suggest(str(parts[0]), params) or f"params: {', '.join(params)}")
    return tuple(parts)


# ---------------------------------------------------------------------------------------------------------
# choices
# ---------------------------------------------------------------------------------------------------------
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
            return CategoricalDistribution([_encode(v) for v in self.values])
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    @classmethod
    def from_distribution(cls, name: str, dist: Any, **meta: Any) -> Choice:
        """The choice an Optuna distribution describes (``meta``: target, when, default, op, loc)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if isinstance(dist, CategoricalDistribution):
            return cls(name, "categorical", tuple(_decode(v) for v in dist.choices), **meta)
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
            return _decode(trial.suggest_categorical(self.name, [_encode(v) for v in self.values]))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in the choice's domain."""
        if self.kind == "categorical":
            return _plain(value) in [_plain(v) for v in self.values]
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
            return [_encode(v) for v in self.values]
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + k * self.step, 12) for k in range(n + 1)]


def choices_from_distributions(dists: Mapping[str, Any]) -> list[Choice]:
    """Choices from Optuna distributions (the inverse of :meth:`SearchSpace.distributions`)."""
    return [Choice.from_distribution(name, d) for name, d in dists.items()]


# ---------------------------------------------------------------------------------------------------------
# configuration records
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str
    loc: SourceLoc | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DataConfig:
    """Where the proxy data comes from (never a download)."""

    source: str = "digits"
    path: Path | None = None
    train: int | None = None
    val: int | None = None
    val_fraction: float = 0.2
    seed: int = 0
    loc: SourceLoc | None = field(default=None, compare=False)
    #: digits only: each sample a seeded random placement/rotation/scale of a digit on a 16×16 canvas,
    #: with a faint distractor digit and noise (archc.search.data) — a task on which architectures differ
    hard: bool = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    seed: int = 0
    max_batches: int | None = None
    #: where proxies train: auto (CUDA when present), cpu, cuda or cuda:N
    device: str = "auto"


@dataclass(frozen=True)
class ZeroCostConfig:
    metrics: tuple[str, ...] = ZERO_COST_METRICS
    batch_size: int = 32
    #: screening: (metric, quantile, after) — reject a sample scoring below the quantile of earlier ones
    screen: tuple[str, float, int] | None = None


@dataclass(frozen=True)
class LatencyConfig:
    runs: int = 10
    warmup: int = 2
    batch: int = 1
    threads: int = 1
    model: str = "target"
    check: bool = False


@dataclass(frozen=True)
class EvaluatorConfig:
    """What each trial measures; the trained/screened model is the target model with ``proxy`` params."""

    task: str | None = None
    data: DataConfig = DataConfig()
    proxy: tuple[tuple[tuple[str | int, ...], Any, SourceLoc | None], ...] = ()
    train: TrainConfig | None = None
    zero_cost: ZeroCostConfig | None = None
    latency: LatencyConfig | None = None
    threads: int | None = None

    def metrics(self) -> tuple[str, ...]:
        """Every metric this evaluator reports (analytic costs always)."""
        out: list[str] = list(COST_METRICS)
        if self.latency is not None:
            out.append(LATENCY_METRIC)
        if self.train is not None and self.task is not None:
            out += TRAIN_METRICS[self.task]
        if self.zero_cost is not None:
            out += list(self.zero_cost.metrics)
        return tuple(out)

    @property
    def trains(self) -> bool:
        return self.train is not None

    def digest(self) -> str:
        """A hash of everything that influences trained/screened metrics (dedup key part)."""
        blob = json.dumps([self.task, repr(self.data), repr(self.train), repr(self.zero_cost),
                           [(list(p), _plain(v)) for p, v, _ in self.proxy]], default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StudyConfig:
    name: str
    sampler: str = "tpe"
    sampler_kwargs: tuple[tuple[str, Any], ...] = ()
    pruner: str = "none"
    pruner_kwargs: tuple[tuple[str, Any], ...] = ()
    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    seed: int | None = None
    enqueue: tuple[str, ...] = ()
    max_attempts: int | None = None
    out: str | None = None
    loc: SourceLoc | None = field(default=None, compare=False)


@dataclass
class Materialized:
    """A sample turned into fixed spec params.

    ``overrides`` set the target model (what constraints, costs and exported specs see);
    ``proxy`` are applied on top of them for the model that is trained or screened. ``reason`` is
    set when the sample is infeasible (e.g. a cell's output node has no live input).
    """

    values: dict[str, Any]
    overrides: dict[tuple[str | int, ...], Any]
    proxy: dict[tuple[str | int, ...], Any]
    reason: str | None = None
    cells: dict[str, tuple[list[str], int]] = field(default_factory=dict)

    def proxy_overrides(self) -> dict[tuple[str | int, ...], Any]:
        return {**self.overrides, **self.proxy}


# ---------------------------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SearchSpace:
    """A loaded, validated search space (see :func:`load_space`)."""

    path: str
    name: str
    doc: str
    base: Path
    variant: str | None
    spec: SpecDoc
    params: list[tuple[tuple[str | int, ...], Any, SourceLoc | None]]
    choices: list[Choice]
    cells: list[CellSpace]
    constraints: dict[str, float]
    objectives: list[Objective]
    evaluator: EvaluatorConfig
    study: StudyConfig
    points: dict[str, dict[str, Any]]
    raw: YMap
    text: str = ""
    #: options of the search strategies from the ``strategy:`` section: name -> {option: (value, position)}
    strategy: dict[str, dict[str, tuple[Any, SourceLoc | None]]] = field(default_factory=dict)
    #: the one-shot strategies' data set (``strategy: {data: ...}``); None: they train on the evaluator's
    strategy_data: DataConfig | None = None

    def for_oneshot(self) -> SearchSpace:
        """This space as the one-shot strategies see it: the evaluator's data replaced by ``strategy: {data: ...}``.

        A supernet's cost is set by its own budget, not by one trial's, and a data set on which a short
        stand-alone training ranks architectures can be larger than a supernet search needs.
        """
        if self.strategy_data is None:
            return self
        return dataclasses.replace(self, evaluator=dataclasses.replace(self.evaluator, data=self.strategy_data))

    @property
    def digest(self) -> str:
        """sha256 of the space file and the base spec's sources."""
        h = hashlib.sha256(self.text.encode())
        h.update(self.spec.digest.encode())
        return h.hexdigest()

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def param_names(self) -> list[str]:
        """Every Optuna param name of the space (choices, then cells)."""
        return [c.name for c in self.choices] + [n for cell in self.cells for n in cell.param_names()]

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of every param (conditional choices included)."""
        from optuna.distributions import CategoricalDistribution

        out = {c.name: c.distribution() for c in self.choices}
        for cell in self.cells:
            for i, j in cell.edges:
                out[edge_key(cell.name, i, j)] = CategoricalDistribution(list(cell.ops))
            out[cell.output_key] = CategoricalDistribution(list(range(1, cell.nodes + 1)))
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The search space of Optuna's GridSampler (every value of every param)."""
        out: dict[str, list[Any]] = {}
        for c in self.choices:
            vals = c.grid_values()
            assert vals is not None
            out[c.name] = vals
        for cell in self.cells:
            for i, j in cell.edges:
                out[edge_key(cell.name, i, j)] = list(cell.ops)
            out[cell.output_key] = list(range(1, cell.nodes + 1))
        return out

    def sample(self, trial: Any) -> dict[str, Any]:
        """Sample every active choice and every cell in ``trial`` (define-by-run); decoded values."""
        values: dict[str, Any] = {}
        for c in self.choices:
            if c.active(values):
                values[c.name] = c.suggest(trial)
        for cell in self.cells:
            for i, j in cell.edges:
                values[edge_key(cell.name, i, j)] = trial.suggest_categorical(edge_key(cell.name, i, j), list(cell.ops))
            values[cell.output_key] = trial.suggest_categorical(cell.output_key, list(range(1, cell.nodes + 1)))
        return values

    def materialize(self, values: Mapping[str, Any]) -> Materialized:
        """Fixed spec params for sampled ``values`` (decoded, as :meth:`sample` returns them)."""
        vals = {k: _decode(v) for k, v in values.items()}
        env = {c.name: vals.get(c.name, c.default) if c.active(vals) else c.default for c in self.choices}
        overrides: dict[tuple[str | int, ...], Any] = {}
        for path, raw, loc in self.params:
            overrides[path] = _plain(evaluate(raw, env, loc))
        for c in self.choices:
            if c.target is not None and c.active(vals) and c.name in vals:
                overrides[c.target] = _plain(vals[c.name])
        reasons: list[str] = []
        cells: dict[str, tuple[list[str], int]] = {}
        for cell in self.cells:
            edges, out, reason = cell.materialize(vals)
            cells[cell.name] = (edges, out)
            overrides[(cell.edges_param,)] = edges
            overrides[(cell.output_param,)] = out
            if reason:
                reasons.append(reason)
        proxy = {path: _plain(evaluate(raw, env, loc)) for path, raw, loc in self.evaluator.proxy}
        return Materialized(dict(vals), overrides, proxy, "; ".join(reasons) or None, cells)

    def run_folder(self, suffix: str = "") -> Path:
        """The default run folder: the space's ``study.out``, else ``runs/<name><suffix>`` with the name made a
        plain folder name (a space named ``../../x`` must not write outside ``runs/``)."""
        from archc._fs import safe_stem

        if not suffix and self.study.out:
            return Path(self.study.out)
        return Path("runs") / safe_stem(self.name + suffix, "space")

    def point(self, name: str) -> dict[str, Any]:
        """Optuna param values (encoded as Optuna stores them) of the named point."""
        if name not in self.points:
            raise _err(f"unknown point '{name}'", self.raw.loc_of("points"), suggest(name, self.points))
        return dict(self.points[name])


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------
def load_space(path: str | Path, text: str | None = None) -> SearchSpace:
    """Load and validate a search-space file; raises :class:`SearchSpaceError` at ``file:line:col``."""
    p = Path(path)
    try:
        raw = load_yaml(p, text)
    except SearchSpaceError:
        raise
    except SpecError as exc:  # YAML syntax, unreadable file: same message, search-space error class
        raise _err(exc.message, exc.loc, exc.hint) from None
    if text is None:
        text = p.read_text(encoding="utf-8")
    loc0 = getattr(raw, "loc", SourceLoc(str(p), 1, 1))
    if not isinstance(raw, YMap):
        raise _err("a search space must be a YAML mapping at the top level", loc0, "start with 'archc: 1' and 'base: <spec>'")
    _check_keys(raw, TOP_KEYS, "the search space")
    if "archc" not in raw:
        raise _err("missing format version 'archc: 1'", loc0, "add 'archc: 1' at the top")
    if raw["archc"] != FORMAT_VERSION:
        raise _err(f"unsupported format version {raw['archc']!r}", raw.loc_of("archc"), f"this archc reads 'archc: {FORMAT_VERSION}'")
    if "base" not in raw:
        raise _err("a search space needs 'base', the spec it searches over", loc0,
                   "add 'base: ../specs/<spec>.yaml' (relative to this file)")
    name = raw.get("name", p.stem)
    if not isinstance(name, str) or not name:
        raise _err(f"'name' must be a non-empty string, got {name!r}", raw.loc_of("name"))
    doc_text = str(raw.get("doc", "") or "")
    spec = _load_base(raw, p)
    variant = raw.get("variant")
    if variant is not None and variant not in spec.variants:
        raise _err(f"unknown variant '{variant}' of '{spec.name}'", raw.loc_of("variant"),
                   suggest(str(variant), spec.variants) or (f"variants: {', '.join(spec.variants)}" if spec.variants else "the base spec has no variants"))
    sparams = dict(spec.params)
    choices = _parse_choices(raw, spec)
    cells = _parse_cells(raw, spec, {c.name for c in choices})
    names = {c.name for c in choices}
    params = _parse_params(raw, "params", "'params'", sparams, names)
    taken = {pth[0]: loc for pth, _, loc in params}
    for c in choices:
        if c.target is not None and c.target[0] in taken and len(c.target) == 1:
            raise _err(f"param '{c.target[0]}' is both fixed under 'params' and set by choice '{c.name}'", c.loc,
                       "remove one of them")
    for cell in cells:
        for pn in (cell.edges_param, cell.output_param):
            if pn in taken:
                raise _err(f"param '{pn}' is both fixed under 'params' and set by cell '{cell.name}'", taken[pn])
    _check_choice_use(choices, params, raw)
    evaluator = _parse_evaluator(raw, p, sparams, names)
    objectives = _parse_objectives(raw, evaluator)
    constraints = _parse_constraints(raw)
    if LATENCY_METRIC in constraints and evaluator.latency is None:
        evaluator = EvaluatorConfig(evaluator.task, evaluator.data, evaluator.proxy, evaluator.train, evaluator.zero_cost,
                                    LatencyConfig(), evaluator.threads)
    points = _parse_points(raw, choices, cells)
    study = _parse_study(raw, name, objectives, choices, points)
    strategy, strategy_data = _parse_strategy(raw, p)
    return SearchSpace(str(p), name, doc_text, Path(spec.path), variant, spec, params, choices, cells, constraints,
                       objectives, evaluator, study, points, raw, text, strategy, strategy_data)


def _load_base(raw: YMap, p: Path) -> SpecDoc:
    base = raw["base"]
    loc = raw.loc_of("base")
    if not isinstance(base, str) or not base.endswith((".yaml", ".yml")):
        raise _err(f"'base' must be a relative path to a spec .yaml file, got {base!r}", loc)
    target = (p.parent / base)
    if not target.exists():
        raise _err(f"base spec '{base}' does not exist", loc, f"looked for {target.resolve()} (paths are relative to the space file)")
    try:
        return load_spec_doc(target)
    except ArchcError as exc:
        # the spec's own diagnostic, said to come from this space's base
        raise _err(f"base spec '{base}' is invalid: {exc.headline()}", loc, exc.hint) from None


def _parse_choices(raw: YMap, spec: SpecDoc) -> list[Choice]:
    section = _mapping(raw, "choices", "the search space")
    sparams = dict(spec.params)
    out: list[Choice] = []
    seen: dict[str, Choice] = {}
    for name, body in section.items():
        kloc = section.key_loc(name)
        try:
            check_identifier(name, kloc, "choice name")
        except SpecError as exc:
            raise _err(exc.message, exc.loc, exc.hint) from None
        vloc = section.loc_of(name)
        what = f"choice '{name}'"
        if isinstance(body, YList):
            body_map = YMap({"type": "categorical", "values": body})
            body_map.loc = vloc
            body_map.locs = {"type": vloc, "values": vloc}
            body_map.key_locs = {"type": kloc, "values": kloc}
            body = body_map
        if not isinstance(body, YMap):
            raise _err(f"{what} must be a mapping (type, values | low/high/step/log, ...) or a list of values, got {body!r}",
                       vloc, "e.g. 'width: {type: int, low: 32, high: 128, step: 32}'")
        _check_keys(body, CHOICE_KEYS, what)
        kind = _string(body, "type", what, None, CHOICE_TYPES)
        if kind is None:
            kind = "categorical" if "values" in body else ("float" if isinstance(body.get("low"), float) or isinstance(body.get("high"), float) else "int")
        is_op = kind == "op"
        if is_op:
            kind = "categorical"
        values: tuple[Any, ...] = ()
        low = high = step = None
        log = _bool(body, "log", what, False)
        if kind == "categorical":
            if "values" not in body:
                raise _err(f"{what} needs 'values' (a non-empty list)", body.loc)
            vals = body["values"]
            if not isinstance(vals, YList) or not vals:
                raise _err(f"'values' of {what} must be a non-empty list, got {vals!r}", body.loc_of("values"))
            for k, v in enumerate(vals):
                if _plain(v) in [_plain(x) for x in vals[:k]]:
                    raise _err(f"value {v!r} appears twice in {what}", vals.loc_of(k), "values of a choice must be distinct")
                if is_op:
                    if not isinstance(v, str):
                        raise _err(f"op choice '{name}': {v!r} is not an op or block name", vals.loc_of(k))
                    _check_op_name(v, spec, vals.loc_of(k))
            for key in ("low", "high", "step"):
                if key in body:
                    raise _err(f"'{key}' does not apply to a categorical choice", body.key_loc(key), "use 'values', or type int/float")
            if log:
                raise _err("'log' does not apply to a categorical choice", body.key_loc("log"))
            values = tuple(_plain(v) for v in vals)
        else:
            if "values" in body:
                raise _err(f"'values' does not apply to an {kind} range", body.key_loc("values"), "use low/high/step, or type categorical")
            for key in ("low", "high"):
                if key not in body:
                    raise _err(f"{what} needs '{key}'", body.loc)
            integer = kind == "int"
            low = _number(body, "low", what, integer=integer)
            high = _number(body, "high", what, integer=integer)
            step = _number(body, "step", what, None, integer=integer, positive=True)
            if high < low or (kind == "float" and high == low and step is None and log):
                raise _err(f"{what}: high ({high}) is below low ({low})", body.loc_of("high"))
            if log and low <= 0:
                raise _err(f"{what}: a log range needs low > 0, got {low}", body.loc_of("low"))
            if log and step is not None and not (integer and step == 1):
                raise _err(f"{what}: 'log' and 'step' cannot be combined" + (" (an int log range has step 1)" if integer else ""),
                           body.key_loc("step"))
            if step is not None:
                k = (high - low) / step
                if abs(k - round(k)) > 1e-9:
                    raise _err(f"{what}: the range {low}..{high} is not a whole number of steps of {step}", body.loc_of("step"),
                               f"e.g. high: {low + math.floor(k) * step}")
        target: tuple[str | int, ...] | None
        if "target" in body:
            t = body["target"]
            if t is None:
                target = None
            elif isinstance(t, str):
                target = parse_path(t, body.loc_of("target"), sparams, what)
            else:
                raise _err(f"'target' of {what} must be a param path like 'dims.2' (or null), got {t!r}", body.loc_of("target"))
        else:
            target = (name,) if name in sparams else None
        when = _parse_when(body, what, seen)
        default = _plain(body.get("default"))
        c = Choice(name, kind, values, low, high, step, log, is_op, target, when, default, kloc)
        out.append(c)
        seen[name] = c
    return out


def _check_op_name(v: str, spec: SpecDoc, loc: SourceLoc) -> None:
    from archc.ops import REGISTRY

    if v not in REGISTRY and v not in spec.blocks:
        raise _err(f"unknown op or block '{v}'", loc,
                   suggest(v, list(REGISTRY) + list(spec.blocks)) or "an op choice lists op names ('archc ops') or blocks of the base spec")


def _parse_when(body: YMap, what: str, seen: Mapping[str, Choice]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if "when" not in body:
        return ()
    w = body["when"]
    wloc = body.loc_of("when")
    if not isinstance(w, YMap) or not w:
        raise _err(f"'when' of {what} must map earlier choices to a value or a list of values, got {w!r}", wloc,
                   "e.g. 'when: {mixer: attention}'")
    out = []
    for other, allowed in w.items():
        if other not in seen:
            raise _err(f"'when' of {what} refers to '{other}', which is not a choice declared before it", w.key_loc(other),
                       suggest(str(other), seen) or "a condition may only use choices declared above")
        vals = list(allowed) if isinstance(allowed, list) else [allowed]
        for v in vals:
            if not seen[other].contains(v):
                raise _err(f"'when' of {what}: {v!r} is not a value of choice '{other}'", w.loc_of(other))
        out.append((str(other), tuple(_plain(v) for v in vals)))
    return tuple(out)


def _parse_cells(raw: YMap, spec: SpecDoc, choice_names: set[str]) -> list[CellSpace]:
    section = _mapping(raw, "cells", "the search space")
    sparams = dict(spec.params)
    out = []
    for name, body in section.items():
        kloc = section.key_loc(name)
        try:
            check_identifier(name, kloc, "cell name")
        except SpecError as exc:
            raise _err(exc.message, exc.loc, exc.hint) from None
        if name in choice_names:
            raise _err(f"cell '{name}' has the name of a choice", kloc, "rename one of them")
        what = f"cell '{name}'"
        if not isinstance(body, YMap):
            raise _err(f"{what} must be a mapping with nodes, ops, edges, output", section.loc_of(name))
        _check_keys(body, CELL_KEYS, what)
        for key in ("nodes", "ops", "edges", "output"):
            if key not in body:
                raise _err(f"{what} needs '{key}'", body.loc, {
                    "nodes": "the number of intermediate nodes, e.g. 'nodes: 4'",
                    "ops": "the op set of its edges, e.g. 'ops: [none, skip, cdc]'",
                    "edges": "the base-spec param that receives the edge list, e.g. 'edges: low_edges'",
                    "output": "the base-spec param that receives the output node, e.g. 'output: low_out'",
                }[key])
        nodes = _number(body, "nodes", what, integer=True, positive=True)
        if nodes > 8:
            raise _err(f"{what}: at most 8 intermediate nodes, got {nodes}", body.loc_of("nodes"))
        ops = body["ops"]
        if not isinstance(ops, YList) or len(ops) < 2:
            raise _err(f"'ops' of {what} must list at least two op names", body.loc_of("ops"))
        none = _string(body, "none", what, "none")
        for k, op in enumerate(ops):
            if not isinstance(op, str):
                raise _err(f"{what}: op {op!r} must be a name", ops.loc_of(k))
            if op in ops[:k]:
                raise _err(f"{what}: op '{op}' is listed twice", ops.loc_of(k))
        if none not in ops:
            raise _err(f"{what}: the op set has no '{none}' (the op meaning 'no edge')", body.loc_of("ops"),
                       f"add '{none}' to ops, or name the no-edge op with 'none: <name>'")
        edges_param = _string(body, "edges", what)
        output_param = _string(body, "output", what)
        for key, pn in (("edges", edges_param), ("output", output_param)):
            if pn not in sparams:
                raise _err(f"{what}: '{pn}' is not a param of the base spec", body.loc_of(key),
                           suggest(pn, sparams) or f"params: {', '.join(sparams)}")
        n_edges = len(cell_edges(nodes))
        default = sparams[edges_param]
        if isinstance(default, list) and len(default) != n_edges:
            raise _err(f"{what} has {nodes} nodes ({n_edges} edges) but base param '{edges_param}' holds {len(default)} edges",
                       body.loc_of("nodes"), "the cell's node count must match the base spec's cell")
        op_table = _string(body, "op_table", what)
        if op_table is not None:
            if op_table not in sparams:
                raise _err(f"{what}: op_table '{op_table}' is not a param of the base spec", body.loc_of("op_table"),
                           suggest(op_table, sparams))
            table = sparams[op_table]
            if not isinstance(table, dict):
                raise _err(f"{what}: base param '{op_table}' is not a mapping of op names", body.loc_of("op_table"))
            for k, op in enumerate(ops):
                if op != none and op not in table:
                    raise _err(f"{what}: op '{op}' is not in the base spec's table '{op_table}'", ops.loc_of(k),
                               suggest(op, table) or f"ops: {', '.join(map(str, table))}")
        out.append(CellSpace(name, nodes, tuple(ops), edges_param, output_param, none, op_table, kloc))
    return out


def _parse_params(raw: YMap, key: str, what: str, sparams: Mapping[str, Any], names: set[str],
                  section: YMap | None = None) -> list[tuple[tuple[str | int, ...], Any, SourceLoc | None]]:
    sec = section if section is not None else _mapping(raw, key, "the search space")
    out = []
    for k, v in sec.items():
        loc = sec.loc_of(k)
        path = parse_path(str(k), sec.key_loc(k), sparams, what)
        _check_exprs(v, loc, names, what)
        out.append((path, v, loc))
    return out


def _check_exprs(v: Any, loc: SourceLoc | None, names: set[str], what: str) -> None:
    """Expressions in a space may use choice names only; check them now, at their position."""
    if isinstance(v, list):
        locs = getattr(v, "locs", [])
        for i, x in enumerate(v):
            _check_exprs(x, locs[i] if i < len(locs) else loc, names, what)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            _check_exprs(x, getattr(v, "locs", {}).get(k, loc), names, what)
        return
    if not is_expr(v):
        return
    import re

    for m in re.finditer(r"\$\{(.*?)\}", v, re.S):
        try:
            expr = compile_expr(m.group(1), loc)
        except SpecError as exc:
            raise _err(exc.message, exc.loc, exc.hint) from None
        for n in sorted(expr.names):
            if n not in names:
                raise _err(f"expression '{m.group(0)}' in {what} uses '{n}', which is not a choice", loc,
                           suggest(n, names) or "expressions in a search space may use choice names")


def _check_choice_use(choices: list[Choice], params: list[tuple[Any, Any, Any]], raw: YMap) -> None:
    used: set[str] = set()

    def collect(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                collect(x)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x)
        elif is_expr(v):
            import re

            for m in re.finditer(r"\$\{(.*?)\}", v, re.S):
                used.update(compile_expr(m.group(1)).names)

    for _, v, _ in params:
        collect(v)
    ev = raw.get("evaluator")
    if isinstance(ev, dict):
        collect(ev.get("proxy"))
    for c in choices:
        used.update(name for name, _ in c.when)
    for c in choices:
        if c.target is None and c.name not in used:
            raise _err(f"choice '{c.name}' sets nothing: it is not a param of the base spec, no expression uses it and no "
                       "condition tests it", c.loc,
                       "name it after a base-spec param, give it a 'target', or use it in 'params' as '${" + c.name + "}'")


def _parse_data(d: YMap, p: Path, dwhat: str) -> DataConfig:
    """A ``data:`` mapping (the evaluator's, or the one-shot strategies' under ``strategy:``)."""
    _check_keys(d, DATA_KEYS, dwhat)
    source = _string(d, "source", dwhat, "digits", SOURCES)
    dpath = None
    if source in ("folder", "npz"):
        if "path" not in d:
            raise _err(f"data source '{source}' needs 'path'", d.loc, "a path relative to the space file")
        rel = _string(d, "path", dwhat)
        dpath = (p.parent / rel).resolve()
        if not dpath.exists():
            raise _err(f"data path '{rel}' does not exist", d.loc_of("path"), f"looked for {dpath}")
        if source == "folder" and not dpath.is_dir():
            raise _err(f"data path '{rel}' is not a folder", d.loc_of("path"), "a folder with one sub-folder per class")
    elif "path" in d:
        raise _err("the digits data set ships with scikit-learn: 'path' does not apply", d.key_loc("path"))
    hard = _bool(d, "hard", dwhat, False)
    if hard and source != "digits":
        raise _err(f"'hard' makes a harder variant of the bundled digits; it does not apply to source '{source}'",
                   d.loc_of("hard"), "remove 'hard', or use 'source: digits'")
    vf = _number(d, "val_fraction", dwhat, 0.2, positive=True)
    if vf >= 1:
        raise _err(f"'val_fraction' must be below 1, got {vf}", d.loc_of("val_fraction"))
    return DataConfig(source, dpath, _number(d, "train", dwhat, None, integer=True, positive=True),
                      _number(d, "val", dwhat, None, integer=True, positive=True), float(vf),
                      _number(d, "seed", dwhat, 0, integer=True, nonneg=True), d.loc, hard)


def _parse_evaluator(raw: YMap, p: Path, sparams: Mapping[str, Any], names: set[str]) -> EvaluatorConfig:
    ev = _mapping(raw, "evaluator", "the search space")
    what = "'evaluator'"
    _check_keys(ev, EVAL_KEYS, what)
    task = _string(ev, "task", what, None, TASKS)
    data = _parse_data(_mapping(ev, "data", what), p, "evaluator 'data'") if "data" in ev else DataConfig()
    proxy = tuple(_parse_params(raw, "proxy", "evaluator 'proxy'", sparams, names, _mapping(ev, "proxy", what)))
    train = None
    if "train" in ev and ev["train"] is not False:
        t = _mapping(ev, "train", what)
        twhat = "evaluator 'train'"
        _check_keys(t, TRAIN_KEYS, twhat)
        train = TrainConfig(
            epochs=_number(t, "epochs", twhat, 1, integer=True, positive=True),
            batch_size=_number(t, "batch_size", twhat, 32, integer=True, positive=True),
            optimizer=_string(t, "optimizer", twhat, "adam", OPTIMIZERS),
            lr=float(_number(t, "lr", twhat, 1e-3, positive=True)),
            weight_decay=float(_number(t, "weight_decay", twhat, 0.0, nonneg=True)),
            momentum=float(_number(t, "momentum", twhat, 0.9, nonneg=True)),
            schedule=_string(t, "schedule", twhat, "cosine", SCHEDULES),
            seed=_number(t, "seed", twhat, 0, integer=True, nonneg=True),
            max_batches=_number(t, "max_batches", twhat, None, integer=True, positive=True, allow_none=True),
            device=_device(t, twhat),
        )
        if task is None:
            raise _err("proxy training needs a 'task' (classification or depth)", ev.loc, "add 'task: classification' to the evaluator")
    zero = None
    if "zero_cost" in ev:
        z = ev["zero_cost"]
        zloc = ev.loc_of("zero_cost")
        if isinstance(z, YList):
            zm = YMap({"metrics": z})
            zm.loc = zloc
            zm.locs = {"metrics": zloc}
            zm.key_locs = {"metrics": ev.key_loc("zero_cost")}
            z = zm
        if not isinstance(z, YMap):
            raise _err(f"'zero_cost' must be a list of proxies or a mapping, got {z!r}", zloc, f"proxies: {', '.join(ZERO_COST_METRICS)}")
        zwhat = "evaluator 'zero_cost'"
        _check_keys(z, ZERO_KEYS, zwhat)
        metrics = z.get("metrics", YList(ZERO_COST_METRICS))
        if not isinstance(metrics, list) or not metrics:
            raise _err("'metrics' of zero_cost must be a non-empty list", z.loc_of("metrics"))
        for k, m in enumerate(metrics):
            if m not in ZERO_COST_METRICS:
                mloc = metrics.loc_of(k) if isinstance(metrics, YList) else z.loc
                raise _err(f"unknown zero-cost proxy {m!r}", mloc, suggest(str(m), ZERO_COST_METRICS) or f"proxies: {', '.join(ZERO_COST_METRICS)}")
        if "grad_norm" in metrics and task is None:
            raise _err("the grad_norm proxy needs a 'task' (its loss)", z.loc, "add 'task: classification' or 'task: depth' to the evaluator")
        screen = None
        if "screen" in z:
            s = _mapping(z, "screen", zwhat)
            _check_keys(s, SCREEN_KEYS, "zero_cost 'screen'")
            sm = _string(s, "metric", "zero_cost 'screen'", metrics[0])
            if sm not in metrics:
                raise _err(f"screening metric '{sm}' is not computed", s.loc_of("metric"), f"computed: {', '.join(metrics)}")
            q = float(_number(s, "quantile", "zero_cost 'screen'", 0.25, positive=True))
            if q >= 1:
                raise _err(f"'quantile' must be below 1, got {q}", s.loc_of("quantile"))
            screen = (sm, q, _number(s, "after", "zero_cost 'screen'", 5, integer=True, positive=True))
        zero = ZeroCostConfig(tuple(metrics), _number(z, "batch_size", zwhat, 32, integer=True, positive=True), screen)
    latency = None
    if "latency" in ev:
        lt = _mapping(ev, "latency", what)
        lwhat = "evaluator 'latency'"
        _check_keys(lt, LATENCY_KEYS, lwhat)
        latency = LatencyConfig(
            runs=_number(lt, "runs", lwhat, 10, integer=True, positive=True),
            warmup=_number(lt, "warmup", lwhat, 2, integer=True, nonneg=True),
            batch=_number(lt, "batch", lwhat, 1, integer=True, positive=True),
            threads=_number(lt, "threads", lwhat, 1, integer=True, positive=True),
            model=_string(lt, "model", lwhat, "target", ("target", "proxy")),
            check=_bool(lt, "check", lwhat, False),
        )
    threads = _number(ev, "threads", what, None, integer=True, positive=True, allow_none=True)
    return EvaluatorConfig(task, data, proxy, train, zero, latency, threads)


def _device(t: YMap, what: str) -> str:
    name = str(_string(t, "device", what, "auto")).strip().lower()
    if name not in ("auto", "cpu") and re.fullmatch(r"cuda(:\d+)?", name) is None:
        raise _err(f"unknown device '{name}' in the {what}", t.loc_of("device"), "use auto (CUDA when present), cpu, cuda or cuda:N")
    return name


def _parse_objectives(raw: YMap, evaluator: EvaluatorConfig) -> list[Objective]:
    if "objectives" not in raw:
        raise _err("a search space needs 'objectives'", raw.loc, "e.g. 'objectives: {val_loss: minimize}'")
    obj = raw["objectives"]
    oloc = raw.loc_of("objectives")
    if not isinstance(obj, YMap) or not obj:
        raise _err(f"'objectives' must map metrics to directions, got {obj!r}", oloc, "e.g. 'objectives: {val_acc: maximize, latency_ms: minimize}'")
    available = list(evaluator.metrics())
    if LATENCY_METRIC not in available:
        available.append(LATENCY_METRIC)  # measured on demand
    out = []
    for metric, direction in obj.items():
        if metric not in available:
            hint = suggest(str(metric), available) or f"metrics of this evaluator: {', '.join(available)}"
            if metric in sum(TRAIN_METRICS.values(), ()) and evaluator.train is None:
                hint = "training metrics need an 'evaluator: {train: ...}' section"
            elif metric in ZERO_COST_METRICS:
                hint = "zero-cost metrics need 'evaluator: {zero_cost: [...]}'"
            raise _err(f"unknown objective metric '{metric}'", obj.key_loc(metric), hint)
        if direction not in ("minimize", "maximize"):
            raise _err(f"direction of '{metric}' must be minimize or maximize, got {direction!r}", obj.loc_of(metric),
                       suggest(str(direction), ("minimize", "maximize")))
        out.append(Objective(str(metric), direction, obj.key_loc(metric)))
    return out


def _parse_constraints(raw: YMap) -> dict[str, float]:
    c = _mapping(raw, "constraints", "the search space")
    out = {}
    for k in c:
        if k not in CONSTRAINT_METRICS:
            raise _err(f"unknown constraint '{k}'", c.key_loc(k), suggest(str(k), CONSTRAINT_METRICS) or f"constraints: {', '.join(CONSTRAINT_METRICS)} (upper bounds)")
        out[str(k)] = float(_number(c, k, f"constraint '{k}'", positive=True))
    return out


def _parse_points(raw: YMap, choices: list[Choice], cells: list[CellSpace]) -> dict[str, dict[str, Any]]:
    section = _mapping(raw, "points", "the search space")
    by_name = {c.name: c for c in choices}
    by_cell = {c.name: c for c in cells}
    out: dict[str, dict[str, Any]] = {}
    for pname, body in section.items():
        what = f"point '{pname}'"
        if not isinstance(body, YMap):
            raise _err(f"{what} must map choices and cells to values", section.loc_of(pname))
        vals: dict[str, Any] = {}
        for k, v in body.items():
            loc = body.loc_of(k)
            if k in by_name:
                c = by_name[k]
                if not c.contains(v):
                    raise _err(f"{what}: {v!r} is not a value of choice '{k}'", loc)
                vals[str(k)] = _encode(_plain(v))
            elif k in by_cell:
                vals.update(_cell_point(by_cell[k], v, loc, what))
            else:
                raise _err(f"{what}: '{k}' is neither a choice nor a cell", body.key_loc(k),
                           suggest(str(k), list(by_name) + list(by_cell)))
        out[str(pname)] = vals
    return out


def _cell_point(cell: CellSpace, v: Any, loc: SourceLoc, what: str) -> dict[str, Any]:
    if not isinstance(v, YMap) or "out" not in v:
        raise _err(f"{what}: cell '{cell.name}' takes {{edges: {{'i-j': op, ...}}, out: k}}", loc,
                   "edges not listed are 'none'")
    for key in v:
        if key not in ("edges", "out"):
            raise _err(f"{what}: unknown key '{key}' in cell '{cell.name}'", v.key_loc(key), "use edges and out")
    edges: dict[tuple[int, int], str] = {}
    e = v.get("edges", YMap())
    if not isinstance(e, YMap):
        raise _err(f"{what}: 'edges' of cell '{cell.name}' must map 'i-j' to op names", v.loc_of("edges"))
    for key, op in e.items():
        parts = str(key).split("-")
        if len(parts) != 2 or not all(s.strip().isdigit() for s in parts) or (int(parts[0]), int(parts[1])) not in cell.edges:
            raise _err(f"{what}: '{key}' is not an edge of cell '{cell.name}'", e.key_loc(key),
                       f"edges are 'i-j' with 0 <= i < j <= {cell.nodes}")
        if op not in cell.ops:
            raise _err(f"{what}: '{op}' is not in the op set of cell '{cell.name}'", e.loc_of(key), suggest(str(op), cell.ops))
        edges[(int(parts[0]), int(parts[1]))] = op
    out = v["out"]
    if isinstance(out, bool) or not isinstance(out, int) or not 1 <= out <= cell.nodes:
        raise _err(f"{what}: 'out' of cell '{cell.name}' must be a node 1..{cell.nodes}, got {out!r}", v.loc_of("out"))
    return cell.point(edges, out)


def _parse_study(raw: YMap, name: str, objectives: list[Objective], choices: list[Choice], points: Mapping[str, Any]) -> StudyConfig:
    import optuna

    st = _mapping(raw, "study", "the search space")
    what = "'study'"
    _check_keys(st, STUDY_KEYS, what)
    sname = _string(st, "name", what, name)
    sampler, skw, sseed = _component(st, "sampler", "tpe", SAMPLERS, optuna.samplers)
    pruner, pkw, _ = _component(st, "pruner", "none", PRUNERS, optuna.pruners)
    if pruner != "none" and len(objectives) > 1:
        raise _err("pruning needs a single objective (Optuna does not prune multi-objective studies)", st.loc_of("pruner"),
                   "use 'pruner: none' or one objective")
    if sampler == "grid":
        for c in choices:
            if c.when:
                raise _err(f"the grid sampler needs a fixed search space: choice '{c.name}' is conditional", c.loc,
                           "use another sampler, or drop the 'when'")
            if c.grid_values() is None:
                raise _err(f"the grid sampler needs finite choices: float choice '{c.name}' has no 'step'", c.loc)
    seed = _number(st, "seed", what, None, integer=True, nonneg=True, allow_none=True)
    if sseed is not None:
        seed = sseed
    enqueue = st.get("enqueue", YList())
    if isinstance(enqueue, str):
        enqueue = YList([enqueue])
    if not isinstance(enqueue, list):
        raise _err(f"'enqueue' must list point names, got {enqueue!r}", st.loc_of("enqueue"))
    for k, pn in enumerate(enqueue):
        if pn not in points:
            eloc = enqueue.loc_of(k) if isinstance(enqueue, YList) else st.loc_of("enqueue")
            raise _err(f"enqueue: unknown point '{pn}'", eloc, suggest(str(pn), points) or "declare it under 'points'")
    storage = _string(st, "storage", what, None)
    out = _string(st, "out", what, None)
    timeout = _number(st, "timeout", what, None, positive=True, allow_none=True)
    return StudyConfig(sname, sampler, skw, pruner, pkw, _number(st, "trials", what, 20, integer=True, positive=True),
                       timeout, storage, seed, tuple(enqueue),
                       _number(st, "max_attempts", what, None, integer=True, positive=True, allow_none=True), out, st.loc)


def _parse_strategy(raw: YMap, p: Path) -> tuple[dict[str, dict[str, tuple[Any, SourceLoc | None]]], DataConfig | None]:
    """``strategy: {data: {...}, darts: {epochs: 8}, pcdarts: {...}}``: the one-shot strategies' data set
    (None: the evaluator's) and options per strategy (checked by the strategy)."""
    from archc.search.strategies import STRATEGIES

    section = _mapping(raw, "strategy", "the search space")
    out: dict[str, dict[str, tuple[Any, SourceLoc | None]]] = {}
    data = _parse_data(_mapping(section, "data", "'strategy'"), p, "strategy 'data'") if "data" in section else None
    for name, body in section.items():
        if name == "data":
            continue
        if name not in STRATEGIES:
            raise _err(f"unknown strategy '{name}' under 'strategy'", section.key_loc(name),
                       suggest(str(name), STRATEGIES) or f"strategies: {', '.join(STRATEGIES)}")
        if STRATEGIES[name].options is None:
            raise _err(f"strategy '{name}' takes no options here", section.key_loc(name),
                       "its settings are the 'study' and 'evaluator' sections")
        if not isinstance(body, YMap):
            raise _err(f"options of strategy '{name}' must be a mapping, got {body!r}", section.loc_of(name),
                       "e.g. 'pcdarts: {epochs: 12}'")
        for k, v in body.items():
            if isinstance(v, (YMap, YList)):
                raise _err(f"option '{k}' of strategy '{name}' must be a single value", body.loc_of(k))
        out[str(name)] = {str(k): (_plain(v), body.loc_of(k)) for k, v in body.items()}
    return out, data


def _component(st: YMap, key: str, default: str, table: Mapping[str, str], module: Any) -> tuple[str, tuple[tuple[str, Any], ...], Any]:
    """``sampler: tpe`` or ``sampler: {name: tpe, n_startup_trials: 5}``; kwargs checked against Optuna's signature."""
    if key not in st:
        return default, (), None
    v = st[key]
    loc = st.loc_of(key)
    if isinstance(v, str):
        body = YMap({"name": v})
        body.loc = loc
        body.locs = {"name": loc}
        body.key_locs = {"name": loc}
    elif isinstance(v, YMap):
        body = v
    else:
        raise _err(f"'{key}' must be a name or a mapping with 'name', got {v!r}", loc, f"{key}s: {', '.join(table)}")
    name = _string(body, "name", f"'{key}'", None, tuple(table))
    if name is None:
        raise _err(f"'{key}' needs a 'name'", body.loc, f"{key}s: {', '.join(table)}")
    cls = getattr(module, table[name])
    params = inspect.signature(cls.__init__).parameters
    kwargs = []
    seed = None
    for k, val in body.items():
        if k == "name":
            continue
        if k == "seed" and key == "sampler":
            seed = _number(body, "seed", f"'{key}'", None, integer=True, nonneg=True, allow_none=True)
            continue
        if k in _MANAGED_KWARGS or k not in params or k == "self":
            allowed = [p for p in params if p not in ("self", *_MANAGED_KWARGS)]
            raise _err(f"{key} '{name}' has no option '{k}'", body.key_loc(k),
                       suggest(str(k), allowed) or (f"options: {', '.join(allowed)}" if allowed else "it takes no options"))
        kwargs.append((str(k), _plain(val)))
    return name, tuple(kwargs), seed
