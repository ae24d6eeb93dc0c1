"""Does the proxy rank? Train sampled architectures at the search budget and at a long budget and compare.

:func:`check_proxy` samples ``k`` distinct architectures of a space (feasible and within its budgets,
from a seeded random sampler), trains each with the space's own evaluator
(:class:`archc.search.evaluate.ProxyEvaluator`: same data, proxy params, optimizer and schedule) at the
search budget (the space's ``epochs``) and at a long budget (default 10× the epochs), with ``seeds``
seeds each (the seed sets both the initialization and the data order), and reports:

* Kendall τ-b and Spearman ρ between the two budgets' rankings of the architectures (each ranked by
  its metric averaged over seeds), with a percentile bootstrap interval that resamples architectures;
* the seed-to-seed noise at each budget: τ between the rankings of seed 0 and seed 1 (the mean over
  seed pairs), and the standard deviation of the metric across seeds (mean over architectures) next to
  the spread of the metric across architectures — a ranking among architectures whose differences
  are smaller than the seed noise is a lottery;
* the rank correlation of every budget's metric with the target model's MACs and params, so that a
  proxy that rewards small (or large) models shows it;
* the same statistics for every other trained metric (``val_loss``, ``val_acc``, ...), and which of
  them are constant across architectures (a constant metric ranks nothing: it is a defect).

Trainings are appended to ``proxy_check_runs.jsonl`` in the run folder as they finish; rerunning the
same command reuses them (the key is the proxy graph, the evaluator and the budget), so an
interrupted check resumes. The summary goes to ``proxy_check.json`` (written atomically).
"""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError, SpecError
from archc.search.ranking import bootstrap_interval, kendall_tau, spearman_rho
from archc.search.space import LATENCY_METRIC, TRAIN_METRICS, SearchSpace, load_space
from archc.search.workers import die_with_parent

__all__ = ["check_proxy", "ProxyCheckError", "ProxyCheckResult", "Candidate", "sample_architectures",
           "format_table", "RESULT_FILE", "RUNS_FILE", "LONG_FACTOR"]

RESULT_FILE = "proxy_check.json"
RUNS_FILE = "proxy_check_runs.jsonl"
#: default long budget: this many times the search budget's epochs
LONG_FACTOR = 10
#: τ the bundled spaces' default proxies are required to reach
TARGET_TAU = 0.5


class ProxyCheckError(ArchcError):
    """The proxy check cannot run (no training in the space, too few distinct architectures, bad options)."""


@dataclass
class Candidate:
    """One sampled architecture: its Optuna values, fixed spec params, proxy graph hash and target costs."""

    index: int
    values: dict[str, Any]
    overrides: dict[tuple[str | int, ...], Any]
    proxy_overrides: dict[tuple[str | int, ...], Any]
    arch: str
    costs: dict[str, float]


@dataclass
class ProxyCheckResult:
    """What :func:`check_proxy` measured; ``report`` is the JSON document written to ``proxy_check.json``."""

    space: SearchSpace
    metric: str
    report: dict[str, Any]
    out: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def tau(self) -> float:
        return float(self.report["budgets"]["kendall_tau"])


# -------------------------------------------------------------------------------------------------------
# sampling
# -------------------------------------------------------------------------------------------------------
def sample_architectures(space: SearchSpace, k: int, seed: int = 0, builder: Any = None,
                         max_attempts: int | None = None) -> list[Candidate]:
    """``k`` distinct architectures of ``space``, feasible and within its budgets, from a seeded random sampler.

    Distinct means distinct proxy graphs (:func:`archc.search.canon.canonical_hash`): two samples that
    train the same model count once. Fewer than ``k`` come back when the space has fewer (after
    ``max_attempts`` samples, default ``50·k``).
    """
    import optuna
    import torch

    from archc.cost.model import graph_cost
    from archc.search.canon import canonical_hash
    from archc.search.evaluate import measure_latency
    from archc.search.runner import ModelBuilder

    builder = builder or ModelBuilder(space)
    prev = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(prev)
    out: list[Candidate] = []
    seen: set[str] = set()
    for _ in range(max_attempts or 50 * k):
        if len(out) >= k:
            break
        trial = study.ask()
        values = space.sample(trial)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        m = space.materialize(values)
        if m.reason:
            continue
        try:
            g = builder.graph(m.overrides)
            pg = builder.graph(m.proxy_overrides()) if m.proxy else g
        except SpecError:
            continue
        cost = graph_cost(g)
        costs = {"params": float(cost.params), "macs": float(cost.macs), "acts": float(cost.acts)}
        if any(key in costs and costs[key] > limit for key, limit in space.constraints.items()):
            continue
        arch = canonical_hash(pg)
        if arch in seen:
            continue
        if LATENCY_METRIC in space.constraints:
            # the budget is of the deployed artifact (as the search measures it), on this machine
            cfg = space.evaluator.latency
            dg, source = builder.deploy(g if cfg is None or cfg.model == "target" else pg)
            torch.manual_seed(0)
            shape = next(iter(dg.inputs.values())).concrete(cfg.batch if cfg else 1)
            costs[LATENCY_METRIC] = measure_latency(builder.module(dg, source), shape, cfg)
            if costs[LATENCY_METRIC] > space.constraints[LATENCY_METRIC]:
                continue
        seen.add(arch)
        out.append(Candidate(len(out), dict(values), m.overrides, m.proxy_overrides(), arch, costs))
    return out


# -------------------------------------------------------------------------------------------------------
# training (through the space's evaluator), with a resumable log of finished trainings
# -------------------------------------------------------------------------------------------------------
class _RunLog:
    """Finished trainings of earlier (or interrupted) checks, keyed by proxy graph, evaluator and budget."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: that training runs again
                if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("metrics"), dict):
                    self.done[rec["key"]] = rec

    def add(self, rec: dict[str, Any]) -> None:
        self.done[rec["key"]] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()


def _run_key(cand: Candidate, cfg: Any) -> str:
    """The run log's key: the proxy graph and the evaluator at one budget and seed (:func:`_budget_config`)."""
    # the data's source position is not part of the key: moving lines in the space file changes no result
    return f"{cand.arch}:{replace(cfg, data=replace(cfg.data, loc=None)).digest()}"


def _budget_config(space: SearchSpace, epochs: int, seed: int) -> Any:
    base = space.evaluator
    assert base.train is not None
    # the search's evaluator with only the budget and the seed changed (no zero-cost screening: it ranks nothing here)
    return replace(base, train=replace(base.train, epochs=epochs, seed=seed), zero_cost=None, latency=None)


def _training(builder: Any, space: SearchSpace, cand: Candidate, epochs: int, seed: int,
              threads: int | None) -> dict[str, Any]:
    """Train ``cand`` once at ``epochs`` with ``seed``; the run-log record (metrics, status, seconds)."""
    import torch

    from archc.search.evaluate import NonFiniteError, ProxyEvaluator, TrialContext

    cfg = _budget_config(space, epochs, seed)
    pg = builder.graph(cand.proxy_overrides)
    source = builder.source(pg)
    torch.manual_seed(seed)  # the seed initializes the weights, as the search does with the train seed
    model = builder.module(pg, source)
    in_shape = tuple(next(iter(pg.inputs.values())).concrete(1))
    out_shape = tuple(pg.output_types[0].concrete(1))
    evaluator = ProxyEvaluator(cfg, threads)
    evaluator.prepare(in_shape, out_shape)  # drawing the data once per process is not part of a training's time
    t0 = time.perf_counter()
    try:
        metrics = evaluator.evaluate(model, TrialContext(cand.index, in_shape, out_shape))
        status = "ok"
    except NonFiniteError as exc:  # a diverging architecture is a result (it ranks last), not a crash
        metrics, status = {}, f"non-finite: {exc}"
    return {"key": _run_key(cand, cfg), "arch": cand.arch, "index": cand.index, "epochs": epochs,
            "seed": seed, "metrics": {k: float(v) for k, v in metrics.items()}, "status": status,
            "seconds": round(time.perf_counter() - t0, 3)}


#: per worker process: the space and its model builder, loaded once (worker processes run many trainings)
_WORKER_STATE: dict[str, tuple[SearchSpace, Any]] = {}


def _worker_training(space_path: str, cand: Candidate, epochs: int, seed: int, threads: int | None) -> dict[str, Any]:
    """:func:`_training` in a worker process (the space is loaded from its file there)."""
    from archc.search.runner import ModelBuilder

    if space_path not in _WORKER_STATE:
        space = load_space(space_path)
        _WORKER_STATE[space_path] = (space, ModelBuilder(space))
    space, builder = _WORKER_STATE[space_path]
    return _training(builder, space, cand, epochs, seed, threads)


def _pool_worker_init(parent: int) -> None:  # pragma: no cover - runs in the worker process
    """A check's training process ends with the check: killed or crashed, the check leaves no orphan
    training on for the tens of minutes a long budget takes."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _run_all(jobs: list[tuple[str, Candidate, int, int]], builder: Any, space: SearchSpace, threads: int | None,
             runs: _RunLog, say: Callable[[str], None], workers: int) -> dict[str, dict[tuple[int, int], dict[str, Any]]]:
    """Every (budget, candidate, epochs, seed) training, reusing the run log; ``workers`` at a time."""
    recs: dict[str, dict[tuple[int, int], dict[str, Any]]] = {}
    total = len(jobs)
    done = 0

    def label(job: tuple[str, Candidate, int, int]) -> str:
        return f"[{done}/{total}] arch {job[1].index} {job[0]} ({job[2]} ep) seed {job[3]}"

    todo = []
    for job in jobs:
        rec = runs.done.get(_run_key(job[1], _budget_config(space, job[2], job[3])))
        if rec is None:
            todo.append(job)
            continue
        done += 1
        recs.setdefault(job[0], {})[(job[1].index, job[3])] = rec
        say(f"{label(job)}: reused ({_fmt_metrics(rec['metrics'])})")

    pending = {id(job): job[2] for job in todo}  # the epochs of each training not finished yet
    spent = [0.0, 0]  # seconds and epochs of the trainings finished in this run

    def finish(job: tuple[str, Candidate, int, int], rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        runs.add(rec)
        recs.setdefault(job[0], {})[(job[1].index, job[3])] = rec
        pending.pop(id(job), None)
        spent[0] += rec["seconds"]
        spent[1] += job[2]
        say(f"{label(job)}: {_fmt_metrics(rec['metrics']) or rec['status']} ({rec['seconds']:.1f} s"
            f"{_time_left(list(pending.values()), spent[0], spent[1], workers)})")

    if workers <= 1 or len(todo) <= 1:
        for job in todo:
            finish(job, _training(builder, space, job[1], job[2], job[3], threads))
        return recs
    import concurrent.futures as cf
    import multiprocessing

    # spawn: a forked child would inherit the parent's torch thread pools; each worker loads the space once
    pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_pool_worker_init, initargs=(os.getpid(),))
    restore = _terminate_as_interrupt()
    try:
        futures = {pool.submit(_worker_training, str(space.path), job[1], job[2], job[3], threads): job for job in todo}
        for fut in cf.as_completed(futures):
            finish(futures[fut], fut.result())
    except BaseException:
        # finished trainings are in the run log (a rerun resumes); the running ones are stopped, not left to
        # finish: the executor would otherwise hold the exit until each had run its full budget
        _terminate_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        restore()
    pool.shutdown()
    return recs


def _terminate_workers(pool: Any) -> None:
    """SIGTERM to each of the executor's processes: Python 3.14's ``terminate_workers``, else the same
    through the process table that executor keeps (no public handle before 3.14)."""
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def _terminate_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM (a scheduler or ``kill``) stop the check as Ctrl-C does: its trainings are stopped and it
    exits with one line, instead of dying mid-write with the worker pool's resources left to the OS."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    prev = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, prev)


def _time_left(epochs_left: list[int], seconds: float, epochs: int, workers: int) -> str:
    """``; about N min left`` for trainings of ``epochs_left`` epochs at the rate of the finished ones
    (``seconds`` for ``epochs``), ``workers`` at a time; nothing before a rate exists or after the last."""
    if not epochs_left or epochs <= 0:
        return ""
    left = sum(epochs_left) * seconds / epochs / max(1, min(workers, len(epochs_left)))
    return f"; about {max(1, round(left / 60))} min left" if left < 5400 else f"; about {left / 3600:.1f} h left"


def _fmt_metrics(ms: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in ms.items() if k != "train_loss")


# -------------------------------------------------------------------------------------------------------
# statistics
# -------------------------------------------------------------------------------------------------------
def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _config_record(cfg: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready fields (paths as text, without its source position)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "loc"}


def _nan_to_none(v: float) -> float | None:
    return float(v) if _finite(v) else None


def _stat_block(short: Sequence[float], long: Sequence[float], resamples: int, seed: int) -> dict[str, Any]:
    return {
        "kendall_tau": _nan_to_none(kendall_tau(short, long)),
        "spearman_rho": _nan_to_none(spearman_rho(short, long)),
        "kendall_tau_interval": [_nan_to_none(v) for v in bootstrap_interval(short, long, kendall_tau,
                                                                              resamples=resamples, seed=seed)],
        "spearman_rho_interval": [_nan_to_none(v) for v in bootstrap_interval(short, long, spearman_rho,
                                                                               resamples=resamples, seed=seed)],
    }


def _noise(table: list[list[float]]) -> dict[str, Any]:
    """``table[a][s]``: metric of architecture a with seed s → seed-to-seed τ and standard deviations."""
    n_seeds = len(table[0]) if table else 0
    taus = [kendall_tau([row[i] for row in table], [row[j] for row in table]) for i, j in combinations(range(n_seeds), 2)]
    taus = [t for t in taus if _finite(t)]
    seed_std = statistics.fmean(statistics.stdev(row) for row in table) if n_seeds > 1 else float("nan")
    means = [statistics.fmean(row) for row in table]
    arch_std = statistics.stdev(means) if len(means) > 1 else float("nan")
    return {"seed_tau": _nan_to_none(statistics.fmean(taus)) if taus else None,
            "seed_std": _nan_to_none(seed_std), "arch_std": _nan_to_none(arch_std),
            "noise_ratio": _nan_to_none(seed_std / arch_std) if _finite(seed_std) and _finite(arch_std) and arch_std > 0 else None}


def _metric_table(recs: dict[tuple[int, int], dict[str, Any]], n: int, seeds: Sequence[int], metric: str) -> list[list[float]] | None:
    table = []
    for a in range(n):
        row = [recs[(a, s)]["metrics"].get(metric) for s in seeds]
        if not all(_finite(v) for v in row):
            return None
        table.append([float(v) for v in row])
    return table


def _trained_metric(space: SearchSpace, metric: str | None) -> str:
    task = space.evaluator.task
    assert task is not None
    names = TRAIN_METRICS[task]
    if metric is not None:
        if metric not in names:
            raise ProxyCheckError(f"--metric {metric!r} is not a trained metric of this space",
                                  hint=f"trained metrics ({task}): {', '.join(names)}")
        return metric
    for o in space.objectives:
        if o.metric in names:
            return o.metric
    return "val_loss"


# -------------------------------------------------------------------------------------------------------
# the check
# -------------------------------------------------------------------------------------------------------
def check_proxy(space_path: str | Path, k: int, *, long_epochs: int | None = None, seeds: int = 2, seed: int = 0,
                out: str | Path | None = None, metric: str | None = None, threads: int | None = None,
                resamples: int = 2000, log: Callable[[str], None] | None = None, workers: int = 1) -> ProxyCheckResult:
    """Measure whether the space's search-budget proxy ranks architectures as a long budget does.

    Args:
        space_path: the search-space YAML; its evaluator must train (``evaluator: {train: ...}``).
        k: architectures to sample (at least 3).
        long_epochs: the long budget (default ``LONG_FACTOR`` × the space's epochs).
        seeds: training seeds per architecture and budget (at least 2: the noise needs two). Seed ``i``
            is the space's train seed + i, for the initialization and the data order.
        seed: the architecture sampler's seed.
        out: the run folder (default the space's ``study.out``, else ``runs/<name>``).
        metric: the trained metric to rank by (default the first trained objective, else ``val_loss``).
        threads: torch threads (default the evaluator's, else 1).
        resamples: bootstrap resamples.
        log: receives one line per training.
        workers: trainings run at a time, each in its own process (with ``threads`` torch threads): the
            trainings are independent, so a machine with C cores runs the check about C times faster with
            ``workers=C`` and one thread each. Results do not depend on it.

    Example::

        res = check_proxy("search_spaces/cdc.yaml", 10)
        print(format_table(res.report)); res.tau

    Raises:
        ProxyCheckError: the space does not train, the options are out of range, or it has fewer
            than 3 distinct feasible architectures.
    """
    from archc.compiler import write_atomic
    from archc.search.runner import ModelBuilder

    say = log or (lambda s: None)
    space = load_space(space_path)
    train = space.evaluator.train
    if train is None or space.evaluator.task is None:
        loc = space.raw.loc_of("evaluator") if "evaluator" in space.raw else None
        raise ProxyCheckError(("" if loc else f"{space.path}: ") + "the evaluator does not train, so there is no proxy "
                              "budget to check", loc, hint="add 'evaluator: {task: ..., train: {epochs: N}}'")
    if k < 3:
        raise ProxyCheckError(f"--check-proxy needs at least 3 architectures to rank, got {k}")
    if seeds < 2:
        raise ProxyCheckError(f"--seeds must be at least 2 (the seed noise needs two), got {seeds}")
    if workers < 1:
        raise ProxyCheckError(f"--workers must be at least 1, got {workers}")
    long_epochs = long_epochs if long_epochs is not None else LONG_FACTOR * train.epochs
    if long_epochs <= train.epochs:
        raise ProxyCheckError(f"--long-epochs ({long_epochs}) must exceed the search budget ({train.epochs} epochs)")
    metric = _trained_metric(space, metric)
    out_dir = Path(out if out is not None else (space.study.out or Path("runs") / space.name))
    builder = ModelBuilder(space)
    t_start = time.perf_counter()
    cands = sample_architectures(space, k, seed, builder)
    if len(cands) < 3:
        raise ProxyCheckError(f"{space.path}: only {len(cands)} distinct feasible architecture(s) within budget were found",
                              hint="loosen the constraints or widen the choices")
    if len(cands) < k:
        say(f"note: the space has only {len(cands)} distinct feasible architectures within budget; checking those")
    say(f"{space.name}: {len(cands)} architectures × {seeds} seeds × budgets {train.epochs} and {long_epochs} epochs "
        f"(ranking by {metric}; run log {out_dir / RUNS_FILE})")
    runs = _RunLog(out_dir / RUNS_FILE)
    seed_list = [train.seed + i for i in range(seeds)]
    budgets = {"search": train.epochs, "long": long_epochs}
    # the short budget of every architecture first: a partial check already shows the search budget's noise
    jobs = [(bname, c, epochs, s) for bname, epochs in budgets.items() for c in cands for s in seed_list]
    recs = _run_all(jobs, builder, space, threads, runs, say, workers)
    report = _report(space, cands, recs, seed_list, budgets, metric, resamples, seed, k)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["command"] = (f"archc search {space.path} --check-proxy {k} --long-epochs {long_epochs} --seeds {seeds}"
                         + (f" --seed {seed}" if seed else "") + (f" --metric {metric}" if metric != report["default_metric"] else ""))
    path = out_dir / RESULT_FILE
    write_atomic(path, json.dumps(report, indent=2) + "\n")
    return ProxyCheckResult(space, metric, report, out_dir, {"report": path, "runs": runs.path})


def _report(space: SearchSpace, cands: list[Candidate], recs: dict[str, dict[tuple[int, int], dict[str, Any]]],
            seeds: list[int], budgets: dict[str, int], metric: str, resamples: int, seed: int, k: int) -> dict[str, Any]:
    task = space.evaluator.task
    assert task is not None
    n = len(cands)
    metrics_seen = [m for m in TRAIN_METRICS[task] if m != "train_loss"]
    for extra in ("val_auc", "val_acer"):
        if all(extra in r["metrics"] for r in recs["search"].values()) and extra not in metrics_seen:
            metrics_seen.append(extra)
    failed = [f"arch {a} {b} seed {s}: {r['status']}" for b in budgets for (a, s), r in recs[b].items() if r["status"] != "ok"]
    per_metric: dict[str, Any] = {}
    for m in metrics_seen:
        tables = {b: _metric_table(recs[b], n, seeds, m) for b in budgets}
        if any(t is None for t in tables.values()):
            per_metric[m] = {"defined": False, "reason": "not finite in every training"}
            continue
        means = {b: [statistics.fmean(row) for row in tables[b]] for b in budgets}  # type: ignore[union-attr]
        constant = {b: len(set(means[b])) == 1 for b in budgets}
        block: dict[str, Any] = {"defined": True, "constant": constant,
                                 **_stat_block(means["search"], means["long"], resamples, seed)}
        block["noise"] = {b: _noise(tables[b]) for b in budgets}  # type: ignore[arg-type]
        block["size_correlation"] = {
            b: {c: _nan_to_none(spearman_rho(means[b], [cd.costs[c] for cd in cands])) for c in ("macs", "params")}
            for b in budgets}
        block["means"] = means
        per_metric[m] = block
    main = per_metric.get(metric, {"defined": False})
    default_metric = _trained_metric(space, None)
    search_secs = [r["seconds"] for r in recs["search"].values()]
    return {
        "space": space.path, "name": space.name, "task": task, "metric": metric, "default_metric": default_metric,
        "direction": next((o.direction for o in space.objectives if o.metric == metric), None),
        "k": k, "architectures": n, "seeds": len(seeds), "sampler_seed": seed,
        "epochs": budgets, "data": _config_record(space.evaluator.data), "train": _config_record(space.evaluator.train),
        "target_tau": TARGET_TAU,
        "budgets": {key: main.get(key) for key in ("kendall_tau", "spearman_rho", "kendall_tau_interval", "spearman_rho_interval")}
        if main.get("defined") else {"kendall_tau": None, "spearman_rho": None, "kendall_tau_interval": [None, None],
                                     "spearman_rho_interval": [None, None]},
        "noise": main.get("noise"), "size_correlation": main.get("size_correlation"),
        "constant": main.get("constant"), "metrics": per_metric,
        "seconds_per_search_trial": round(statistics.fmean(search_secs), 2) if search_secs else None,
        "failed_trainings": failed,
        "candidates": [{"index": c.index, "arch": c.arch, "params": c.values, **c.costs,
                        "search": per_metric.get(metric, {}).get("means", {}).get("search", [None] * n)[c.index],
                        "long": per_metric.get(metric, {}).get("means", {}).get("long", [None] * n)[c.index]}
                       for c in cands],
    }


# -------------------------------------------------------------------------------------------------------
# printing
# -------------------------------------------------------------------------------------------------------
def _f(v: Any, spec: str = ".3f") -> str:
    return format(v, spec) if _finite(v) else "-"


def _iv(v: Sequence[Any] | None) -> str:
    return f"[{_f(v[0], '.2f')}, {_f(v[1], '.2f')}]" if v else "-"


def _verdict(report: dict[str, Any]) -> str:
    """τ against the target, read with its interval: a τ that meets the target on a few architectures can
    still be chance, and a user deciding whether to trust a search needs to be told so."""
    b = report["budgets"]
    tau, lo = b["kendall_tau"], (b["kendall_tau_interval"] or [None])[0]
    head = f"τ = {_f(tau)} (target ≥ {report['target_tau']}): the search budget"
    if not (_finite(tau) and tau >= report["target_tau"]):
        return f"{head} does NOT rank as the long budget does"
    if _finite(lo) and lo > 0:
        return f"{head} ranks as the long budget does (the 95% interval is clear of 0)"
    return (f"{head} meets the target, but its 95% interval reaches {_f(lo, '.2f')}: on "
            f"{report['architectures']} architectures that can be chance; confirm it on other architectures "
            f"(--seed N) or more of them (--check-proxy K)")


def format_table(report: dict[str, Any]) -> str:
    """The check as a text table: rank agreement per trained metric, seed noise, size correlation."""
    e = report["epochs"]
    lines = [f"{report['name']}: {report['architectures']} architectures × {report['seeds']} seeds, "
             f"{e['search']} vs {e['long']} epochs; ranking by {report['metric']} "
             f"({_f(report.get('seconds_per_search_trial'), '.1f')} s per search-budget training)",
             "",
             f"{'metric':10s} {'τ':>6s} {'τ 95% CI':>15s} {'ρ':>6s} {'ρ 95% CI':>15s} "
             f"{'seed τ s/l':>11s} {'seed sd / arch sd (s)':>22s} {'ρ(MACs) s/l':>12s}"]
    for m, b in report["metrics"].items():
        mark = "*" if m == report["metric"] else " "
        if not b.get("defined"):
            lines.append(f"{m:10s}{mark}undefined: {b.get('reason', '')}")
            continue
        if any(b["constant"].values()):
            which = " and ".join(k for k, v in b["constant"].items() if v)
            lines.append(f"{m:10s}{mark}CONSTANT across architectures at the {which} budget: it ranks nothing (a defect)")
            continue
        ns, nl = b["noise"]["search"], b["noise"]["long"]
        sc = b["size_correlation"]
        lines.append(f"{m:10s}{mark}{_f(b['kendall_tau'], '6.3f')} {_iv(b['kendall_tau_interval']):>15s} "
                     f"{_f(b['spearman_rho'], '6.3f')} {_iv(b['spearman_rho_interval']):>15s} "
                     f"{_f(ns['seed_tau'], '.2f'):>5s}/{_f(nl['seed_tau'], '.2f'):<5s} "
                     f"{_f(ns['seed_std'], '.4f'):>10s} / {_f(ns['arch_std'], '.4f'):<9s} "
                     f"{_f(sc['search']['macs'], '+.2f'):>5s}/{_f(sc['long']['macs'], '+.2f'):<5s}")
    lines += ["", f"* ranking metric; {_verdict(report)}"]
    if report["failed_trainings"]:
        lines.append(f"{len(report['failed_trainings'])} training(s) failed: {report['failed_trainings'][0]}")
    return "\n".join(lines)
