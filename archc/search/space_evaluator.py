"""The ``evaluator``, ``objectives`` and ``constraints`` sections of a search space, and ``data:`` mappings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archc.diagnostics import suggest
from archc.search.space_config import (
    CONSTRAINT_METRICS,
    DATA_KEYS,
    EVAL_KEYS,
    LATENCY_KEYS,
    LATENCY_METRIC,
    OPTIMIZERS,
    SCHEDULES,
    SCREEN_KEYS,
    SOURCES,
    TASKS,
    TRAIN_KEYS,
    TRAIN_METRICS,
    ZERO_COST_METRICS,
    ZERO_KEYS,
    DataConfig,
    EvaluatorConfig,
    LatencyConfig,
    Objective,
    TrainConfig,
    ZeroCostConfig,
)
from archc.search.space_params import parse_params
from archc.search.space_yaml import check_keys, err, get_bool, get_mapping, get_number, get_string
from archc.spec.loader import YList, YMap

__all__ = ["parse_data", "parse_evaluator", "parse_objectives", "parse_constraints"]


def parse_data(d: YMap, p: Path, dwhat: str) -> DataConfig:
    """A ``data:`` mapping (the evaluator's, or the one-shot strategies' under ``strategy:``)."""
    check_keys(d, DATA_KEYS, dwhat)
    source = get_string(d, "source", dwhat, "digits", SOURCES)
    dpath = None
    if source in ("folder", "npz"):
        if "path" not in d:
            raise err(f"data source '{source}' needs 'path'", d.loc, "a path relative to the space file")
        rel = get_string(d, "path", dwhat)
        dpath = (p.parent / rel).resolve()
        if not dpath.exists():
            raise err(f"data path '{rel}' does not exist", d.loc_of("path"), f"looked for {dpath}")
        if source == "folder" and not dpath.is_dir():
            raise err(f"data path '{rel}' is not a folder", d.loc_of("path"), "a folder with one sub-folder per class")
    elif "path" in d:
        what = "the digits data set ships with scikit-learn" if source == "digits" else "the glyphs are generated"
        raise err(f"{what}: 'path' does not apply", d.key_loc("path"), "remove 'path', or use 'source: folder' or 'source: npz'")
    hard = get_bool(d, "hard", dwhat, False)
    if hard and source != "digits":
        raise err(f"'hard' makes a harder variant of the bundled digits; it does not apply to source '{source}'",
                   d.loc_of("hard"), "remove 'hard', or use 'source: digits'")
    vf = get_number(d, "val_fraction", dwhat, 0.2, positive=True)
    if vf >= 1:
        raise err(f"'val_fraction' must be below 1, got {vf}", d.loc_of("val_fraction"))
    return DataConfig(source, dpath, get_number(d, "train", dwhat, None, integer=True, positive=True),
                      get_number(d, "val", dwhat, None, integer=True, positive=True), float(vf),
                      get_number(d, "seed", dwhat, 0, integer=True, nonneg=True), d.loc, hard)


def parse_evaluator(raw: YMap, p: Path, sparams: Mapping[str, Any], names: set[str]) -> EvaluatorConfig:
    """The ``evaluator:`` section (task, data, proxy params, train, zero_cost, latency, threads)."""
    ev = get_mapping(raw, "evaluator", "the search space")
    what = "'evaluator'"
    check_keys(ev, EVAL_KEYS, what)
    task = get_string(ev, "task", what, None, TASKS)
    data = parse_data(get_mapping(ev, "data", what), p, "evaluator 'data'") if "data" in ev else DataConfig()
    if data.source == "glyphs" and task == "depth":
        raise err("the glyphs are a classification task; the depth task needs live/spoof data",
                  get_mapping(ev, "data", what).loc_of("source"), "use 'source: digits', 'folder' or 'npz'")
    proxy = tuple(parse_params(raw, "proxy", "evaluator 'proxy'", sparams, names, get_mapping(ev, "proxy", what)))
    train = None
    if "train" in ev and ev["train"] is not False:
        t = get_mapping(ev, "train", what)
        twhat = "evaluator 'train'"
        check_keys(t, TRAIN_KEYS, twhat)
        train = TrainConfig(
            epochs=get_number(t, "epochs", twhat, 1, integer=True, positive=True),
            batch_size=get_number(t, "batch_size", twhat, 32, integer=True, positive=True),
            optimizer=get_string(t, "optimizer", twhat, "adam", OPTIMIZERS),
            lr=float(get_number(t, "lr", twhat, 1e-3, positive=True)),
            weight_decay=float(get_number(t, "weight_decay", twhat, 0.0, nonneg=True)),
            momentum=float(get_number(t, "momentum", twhat, 0.9, nonneg=True)),
            schedule=get_string(t, "schedule", twhat, "cosine", SCHEDULES),
            seed=get_number(t, "seed", twhat, 0, integer=True, nonneg=True),
            max_batches=get_number(t, "max_batches", twhat, None, integer=True, positive=True, allow_none=True),
            ema=_ema(t, twhat),
            device=_device(t, twhat),
        )
        if task is None:
            raise err("proxy training needs a 'task' (classification or depth)", ev.loc, "add 'task: classification' to the evaluator")
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
            raise err(f"'zero_cost' must be a list of proxies or a mapping, got {z!r}", zloc, f"proxies: {', '.join(ZERO_COST_METRICS)}")
        zwhat = "evaluator 'zero_cost'"
        check_keys(z, ZERO_KEYS, zwhat)
        metrics = z.get("metrics", YList(ZERO_COST_METRICS))
        if not isinstance(metrics, list) or not metrics:
            raise err("'metrics' of zero_cost must be a non-empty list", z.loc_of("metrics"))
        for k, m in enumerate(metrics):
            if m not in ZERO_COST_METRICS:
                mloc = metrics.loc_of(k) if isinstance(metrics, YList) else z.loc
                raise err(f"unknown zero-cost proxy {m!r}", mloc, suggest(str(m), ZERO_COST_METRICS) or f"proxies: {', '.join(ZERO_COST_METRICS)}")
        if "grad_norm" in metrics and task is None:
            raise err("the grad_norm proxy needs a 'task' (its loss)", z.loc, "add 'task: classification' or 'task: depth' to the evaluator")
        screen = None
        if "screen" in z:
            s = get_mapping(z, "screen", zwhat)
            check_keys(s, SCREEN_KEYS, "zero_cost 'screen'")
            sm = get_string(s, "metric", "zero_cost 'screen'", metrics[0])
            if sm not in metrics:
                raise err(f"screening metric '{sm}' is not computed", s.loc_of("metric"), f"computed: {', '.join(metrics)}")
            q = float(get_number(s, "quantile", "zero_cost 'screen'", 0.25, positive=True))
            if q >= 1:
                raise err(f"'quantile' must be below 1, got {q}", s.loc_of("quantile"))
            screen = (sm, q, get_number(s, "after", "zero_cost 'screen'", 5, integer=True, positive=True))
        zero = ZeroCostConfig(tuple(metrics), get_number(z, "batch_size", zwhat, 32, integer=True, positive=True), screen)
    latency = None
    if "latency" in ev:
        lt = get_mapping(ev, "latency", what)
        lwhat = "evaluator 'latency'"
        check_keys(lt, LATENCY_KEYS, lwhat)
        latency = LatencyConfig(
            runs=get_number(lt, "runs", lwhat, 10, integer=True, positive=True),
            warmup=get_number(lt, "warmup", lwhat, 2, integer=True, nonneg=True),
            batch=get_number(lt, "batch", lwhat, 1, integer=True, positive=True),
            threads=get_number(lt, "threads", lwhat, 1, integer=True, positive=True),
            model=get_string(lt, "model", lwhat, "target", ("target", "proxy")),
            check=get_bool(lt, "check", lwhat, False),
        )
    threads = get_number(ev, "threads", what, None, integer=True, positive=True, allow_none=True)
    return EvaluatorConfig(task, data, proxy, train, zero, latency, threads)


def _ema(t: YMap, what: str) -> float | None:
    decay = get_number(t, "ema", what, None, positive=True, allow_none=True)
    if decay is not None and not decay < 1:
        raise err(f"the {what}'s 'ema' is a decay below 1, got {decay}", t.loc_of("ema"),
                  "e.g. 'ema: 0.99' (an average over about the last 100 steps)")
    return None if decay is None else float(decay)


def _device(t: YMap, what: str) -> str:
    name = str(get_string(t, "device", what, "auto")).strip().lower()
    if name not in ("auto", "cpu") and re.fullmatch(r"cuda(:\d+)?", name) is None:
        raise err(f"unknown device '{name}' in the {what}", t.loc_of("device"), "use auto (CUDA when present), cpu, cuda or cuda:N")
    return name


def parse_objectives(raw: YMap, evaluator: EvaluatorConfig) -> list[Objective]:
    """The ``objectives:`` section: metrics the evaluator reports (latency on demand), each with a direction."""
    if "objectives" not in raw:
        raise err("a search space needs 'objectives'", raw.loc, "e.g. 'objectives: {val_loss: minimize}'")
    obj = raw["objectives"]
    oloc = raw.loc_of("objectives")
    if not isinstance(obj, YMap) or not obj:
        raise err(f"'objectives' must map metrics to directions, got {obj!r}", oloc, "e.g. 'objectives: {val_acc: maximize, latency_ms: minimize}'")
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
            raise err(f"unknown objective metric '{metric}'", obj.key_loc(metric), hint)
        if direction not in ("minimize", "maximize"):
            raise err(f"direction of '{metric}' must be minimize or maximize, got {direction!r}", obj.loc_of(metric),
                       suggest(str(direction), ("minimize", "maximize")))
        out.append(Objective(str(metric), direction, obj.key_loc(metric)))
    return out


def parse_constraints(raw: YMap) -> dict[str, float]:
    """The ``constraints:`` section: upper bounds on cost metrics and latency."""
    c = get_mapping(raw, "constraints", "the search space")
    out = {}
    for k in c:
        if k not in CONSTRAINT_METRICS:
            raise err(f"unknown constraint '{k}'", c.key_loc(k), suggest(str(k), CONSTRAINT_METRICS) or f"constraints: {', '.join(CONSTRAINT_METRICS)} (upper bounds)")
        out[str(k)] = float(get_number(c, k, f"constraint '{k}'", positive=True))
    return out
