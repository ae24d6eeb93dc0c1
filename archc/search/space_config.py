"""The records a search-space file is read into, and the tables of its keys, metrics, samplers and pruners.

The key tables are what ``docs/search_space.md`` documents (a test holds the two together); the records
are plain frozen values the evaluators, the runner and the strategies take.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import SourceLoc
from archc.search.space_yaml import plain

__all__ = [
    "FORMAT_VERSION", "TOP_KEYS", "CHOICE_KEYS", "CHOICE_TYPES", "CELL_KEYS", "EVAL_KEYS", "DATA_KEYS", "TRAIN_KEYS",
    "ZERO_KEYS", "SCREEN_KEYS", "LATENCY_KEYS", "STUDY_KEYS", "TASKS", "SOURCES", "OPTIMIZERS", "SCHEDULES",
    "COST_METRICS", "LATENCY_METRIC", "ZERO_COST_METRICS", "TRAIN_METRICS", "CONSTRAINT_METRICS", "SAMPLERS",
    "CONSTRAINED_SAMPLERS", "PRUNERS", "Objective", "DataConfig", "TrainConfig", "ZeroCostConfig", "LatencyConfig",
    "EvaluatorConfig", "StudyConfig",
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
              "ema", "device")
ZERO_KEYS = ("metrics", "batch_size", "screen")
SCREEN_KEYS = ("metric", "quantile", "after")
LATENCY_KEYS = ("runs", "warmup", "batch", "threads", "model", "check")
STUDY_KEYS = ("name", "sampler", "pruner", "trials", "timeout", "storage", "seed", "enqueue", "max_attempts", "out")

TASKS = ("classification", "depth")
SOURCES = ("digits", "glyphs", "folder", "npz")
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


@dataclass(frozen=True)
class Objective:
    """One objective of the study: a metric the evaluator reports and its direction."""

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
    """How a proxy trains (the ``evaluator: {train: ...}`` section)."""

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    seed: int = 0
    max_batches: int | None = None
    #: decay of the weights' moving average that is validated instead of the last weights (None: none);
    #: outside the repr, which the evaluator's digest hashes (see :meth:`EvaluatorConfig.digest`)
    ema: float | None = field(default=None, repr=False)
    #: where proxies train: auto (CUDA when present), cpu, cuda or cuda:N
    device: str = "auto"


@dataclass(frozen=True)
class ZeroCostConfig:
    """Which zero-cost proxies score each sample, on how large a batch, and the optional screen."""

    metrics: tuple[str, ...] = ZERO_COST_METRICS
    batch_size: int = 32
    #: screening: (metric, quantile, after) — reject a sample scoring below the quantile of earlier ones
    screen: tuple[str, float, int] | None = None


@dataclass(frozen=True)
class LatencyConfig:
    """How latency is measured: timed runs after warm-up, batch, threads, and on which model."""

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
        parts = [self.task, repr(self.data), repr(self.train), repr(self.zero_cost),
                 [(list(p), plain(v)) for p, v, _ in self.proxy]]
        # options added later enter only when set: the keys of existing studies and run logs stay valid
        if self.train is not None and self.train.ema is not None:
            parts.append(["ema", self.train.ema])
        blob = json.dumps(parts, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StudyConfig:
    """The Optuna study: sampler and pruner with their options, budget, storage, seed, enqueued points."""

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
