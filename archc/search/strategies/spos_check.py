"""Confirming SPOS children by training them from scratch, and the one-shot proxy check.

* :func:`retrain` trains one child alone at the proxy size with the space's own training budget
  (``evaluator.train``), initialized exactly as a black-box trial of the same architecture is
  (``torch.manual_seed(seed)`` before the module is built), so its metrics are directly comparable
  with a ``sample`` study's.
* :func:`oneshot_check` answers "do the inherited-weight scores rank children as stand-alone training
  does?": it takes K distinct scored children spread evenly over the inherited ranking (best to worst,
  so the check sees the whole range and not only near-ties at the top), trains each from scratch with
  ``seeds`` seeds, and reports Kendall τ and Spearman ρ between the inherited score and the mean
  stand-alone score, with percentile bootstrap intervals (resampling children), plus the seed-to-seed
  noise of stand-alone training (τ between two seeds, and the standard deviation of the metric).

Retrained metrics are stored in the study (user attributes keyed by architecture, seed and training
setup), so rerunning a search or a check never trains the same child twice.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch

from archc.search.data import ProxyData
from archc.search.evaluate import train_proxy, validate
from archc.search.ranking import bootstrap_interval, kendall_tau, spearman_rho
from archc.search.runner import ModelBuilder, SearchError
from archc.search.space import SearchSpace

__all__ = ["retrain", "retrain_cached", "oneshot_check", "format_check", "ranked_children", "spread"]


def retrain(space: SearchSpace, builder: ModelBuilder, choice: dict[str, Any], data: ProxyData, seed: int,
            log: Callable[[str], None] | None = None, device: torch.device | None = None,
            epochs: int | None = None) -> dict[str, float]:
    """The last-epoch metrics of ``choice`` trained from scratch at the proxy size with ``seed``.

    On the CPU (the default) and without ``epochs`` this is exactly a black-box trial's training;
    ``device`` runs the same training with the trainer on another device, ``epochs`` replaces the
    evaluator's (a longer stand-alone budget).
    """
    cfg = space.evaluator.train
    if cfg is None:
        raise SearchError("the space's evaluator has no 'train' section, so children cannot be retrained",
                          hint="add evaluator.train to the space, or set topk to 0")
    cfg = dataclasses.replace(cfg, seed=seed, epochs=epochs or cfg.epochs)
    m = space.materialize(choice)
    g = builder.graph(m.proxy_overrides())
    torch.manual_seed(cfg.seed)
    model = builder.module(g)
    if device is None or device.type == "cpu":
        return train_proxy(model, data, cfg, log=log)
    from archc.train.config import TrainOptions
    from archc.train.distributed import DistContext
    from archc.train.loop import Trainer

    opts = TrainOptions.from_config(cfg, device=str(device))
    return Trainer(model, opts, data.task, dist=DistContext(), evaluate=validate).fit(data, log=log)


def retrain_cached(study: Any, space: SearchSpace, builder: ModelBuilder, trial: Any, data: ProxyData, seed: int,
                   say: Callable[[str], None] = lambda s: None, device: torch.device | None = None,
                   epochs: int | None = None) -> dict[str, float]:
    """:func:`retrain` of a child trial, looked up in (and stored into) the study's user attributes."""
    from archc.search.strategies.spos_children import choice_of

    on = "" if device is None or device.type == "cpu" else f":{device.type}"  # CUDA trains in bf16: other numbers
    own = space.evaluator.train.epochs if space.evaluator.train else 0
    epochs = epochs or own
    key = f"retrained:{trial.user_attrs.get('arch')}:{seed}:{space.evaluator.digest()}{on}" + \
        (f":{epochs}ep" if epochs != own else "")
    hit = study.user_attrs.get(key)
    if isinstance(hit, dict):
        return dict(hit)
    say(f"spos: retraining child #{trial.number} from scratch (seed {seed}, {epochs} epochs at the proxy size)")
    metrics = retrain(space, builder, choice_of(trial), data, seed,
                      log=lambda line: say(f"spos:   #{trial.number} seed {seed} {line}"), device=device, epochs=epochs)
    study.set_user_attr(key, metrics)
    return metrics


def ranked_children(study: Any, space: SearchSpace) -> list[Any]:
    """Complete children, one per architecture, best inherited first-objective score first."""
    from optuna.trial import TrialState

    sign = 1.0 if space.objectives[0].direction == "minimize" else -1.0
    seen: set[str] = set()
    out = []
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: (sign * t.values[0], t.number)):
        arch = t.user_attrs.get("arch") or str(t.number)
        if arch not in seen:
            seen.add(arch)
            out.append(t)
    return out


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` items evenly spaced over ``items`` (first and last included), in order.

    >>> spread(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    n = len(items)
    if k >= n:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


def _stat(x: Sequence[float], y: Sequence[float], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, fn in (("kendall_tau", kendall_tau), ("spearman_rho", spearman_rho)):
        v = fn(x, y)
        lo, hi = bootstrap_interval(x, y, fn, seed=seed)
        out[name] = None if math.isnan(v) else v
        out[f"{name}_ci95"] = None if math.isnan(lo) else [lo, hi]
    return out


def oneshot_check(study: Any, space: SearchSpace, builder: ModelBuilder, data: ProxyData, k: int, seeds: int = 2,
                  say: Callable[[str], None] = lambda s: None, device: torch.device | None = None,
                  epochs: int | None = None, metric: str | None = None) -> dict[str, Any]:
    """τ/ρ between inherited-weight scores and stand-alone training over ``k`` scored children.

    The metric is ``metric`` (a validation metric of the task), else the space's first objective;
    children are picked by their first-objective rank; stand-alone training uses the evaluator's
    budget, or ``epochs`` epochs of it. Raises :class:`SearchError` when fewer than 3 distinct
    children were scored or ``k``/``seeds`` are out of range.
    """
    if k < 3:
        raise SearchError(f"the one-shot check needs at least 3 children, got {k}", hint="e.g. --check-proxy 8")
    if seeds < 1:
        raise SearchError(f"the one-shot check needs at least 1 seed, got {seeds}")
    ranked = ranked_children(study, space)
    if len(ranked) < 3:
        raise SearchError(f"only {len(ranked)} distinct children were scored; the one-shot check needs at least 3",
                          hint="score more children (--trials)")
    picked = spread(ranked, k)
    metric = metric or space.objectives[0].metric
    have = ranked[0].user_attrs.get("eval_metrics") or {}
    if metric not in have and metric not in (ranked[0].user_attrs.get("metrics") or {}):
        raise SearchError(f"the one-shot check cannot rank by '{metric}': children are scored on "
                          f"{', '.join(sorted(have))}", hint=f"e.g. --metric {next(iter(sorted(have)), 'val_loss')}")
    rows = []
    for rank_i, t in enumerate(picked, 1):
        per_seed = [retrain_cached(study, space, builder, t, data, s, say, device, epochs) for s in range(seeds)]
        vals = [float(m[metric]) for m in per_seed]
        inh = {**(t.user_attrs.get("metrics") or {}), **(t.user_attrs.get("eval_metrics") or {})}[metric]
        rows.append({"trial": t.number, "arch": t.user_attrs.get("arch"), "inherited": float(inh),
                     "standalone": vals, "standalone_mean": statistics.fmean(vals),
                     "inherited_rank": ranked.index(t) + 1})
        say(f"spos: check {rank_i}/{len(picked)}: child #{t.number} inherited {metric} {inh:.5g}, "
            f"stand-alone {' / '.join(f'{v:.5g}' for v in vals)}")
    inherited = [r["inherited"] for r in rows]
    standalone = [r["standalone_mean"] for r in rows]
    result: dict[str, Any] = {
        "kind": "oneshot", "strategy": "spos", "space": space.path, "metric": metric, "k": len(rows),
        "scored_children": len(ranked), "seeds": seeds,
        "standalone_budget": dataclasses.asdict(dataclasses.replace(space.evaluator.train, epochs=epochs or
                                                                    space.evaluator.train.epochs))
        if space.evaluator.train else None,
        **_stat(inherited, standalone, seed=0), "children": rows}
    if seeds >= 2:
        s0 = [r["standalone"][0] for r in rows]
        s1 = [r["standalone"][1] for r in rows]
        noise = _stat(s0, s1, seed=1)
        noise["metric_std"] = statistics.fmean(statistics.stdev(r["standalone"]) for r in rows)
        result["seed_noise"] = noise
    return result


def format_check(result: dict[str, Any]) -> str:
    """The check as a printed table plus the summary lines."""
    metric = result["metric"]
    lines = [f"{'trial':>6} {'inh. rank':>9} {'inherited ' + metric:>22} {'stand-alone ' + metric + ' (mean)':>30}"]
    for r in result["children"]:
        lines.append(f"{r['trial']:>6} {r['inherited_rank']:>9} {r['inherited']:>22.5g} {r['standalone_mean']:>30.5g}")

    def fmt(d: dict[str, Any], name: str) -> str:
        v, ci = d.get(name), d.get(f"{name}_ci95")
        if v is None:
            return f"{name} undefined (a constant ranking)"
        return f"{name} {v:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")

    lines.append(f"inherited vs stand-alone over {result['k']} children: {fmt(result, 'kendall_tau')}, "
                 f"{fmt(result, 'spearman_rho')} (95% bootstrap)")
    if "seed_noise" in result:
        n = result["seed_noise"]
        lines.append(f"stand-alone seed 0 vs seed 1: {fmt(n, 'kendall_tau')}; {metric} std across seeds "
                     f"{n['metric_std']:.3g}")
    return "\n".join(lines)

