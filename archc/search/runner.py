"""The search driver: one Optuna study, trial by trial, with outputs in a run folder.

Per trial: sample → materialize fixed spec params → expand and cost the target model → reject it if
it is infeasible or over budget (never building or training it) → latency if asked → build the proxy
model (unless an identical architecture was evaluated before: its metrics are reused) → evaluate
(per-epoch reports drive the pruner) → tell Optuna.

Nothing assumes a single process: the study lives in the storage (a journal file in the run folder by
default, or any Optuna storage URL such as PostgreSQL), completed trials are counted there, metrics of
identical architectures are looked up there, and outputs are written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError, SpecError
from archc.ir.graph import Graph
from archc.search.canon import canonical_hash
from archc.search.evaluate import NonFiniteError, ProxyEvaluator, TrialContext, measure_latency
from archc.search.export import (
    export_spec,
    overrides_from_json,
    overrides_to_json,
    pareto_trials,
    trials_table,
    write_csv,
    write_plot,
)
from archc.search.space import (
    CONSTRAINED_SAMPLERS,
    LATENCY_METRIC,
    PRUNERS,
    SAMPLERS,
    Materialized,
    SearchSpace,
    load_space,
)

__all__ = ["run_search", "SearchResult", "SearchError", "ModelBuilder", "make_storage", "default_storage_path",
           "write_outputs", "STORAGE_FILE"]

STORAGE_FILE = "study.log"
#: stop after this many trials in a row fail (a broken evaluator or data, not a bad architecture)
MAX_CONSECUTIVE_FAILURES = 10


class SearchError(ArchcError):
    """The search cannot run (storage, a study that does not fit the space, an evaluator that always fails)."""


@dataclass
class SearchResult:
    """What :func:`run_search` did; ``study`` is the Optuna study (reloadable with ``optuna.load_study``)."""

    study: Any
    space: SearchSpace
    out: Path
    storage: str
    completed: int
    new_trials: int
    trained: int
    reused: int
    rejected: int
    failed: int
    pruned: int
    files: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    stopped: str = ""

    @property
    def best(self) -> Any:
        front = self.pareto
        return front[0] if front else None

    @property
    def pareto(self) -> list[Any]:
        return _ranked_front(self.study, self.space)


# -------------------------------------------------------------------------------------------------------
# building models from a space
# -------------------------------------------------------------------------------------------------------
class ModelBuilder:
    """Expands, costs and lowers the base spec under param overrides (the spec is loaded once)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.doc = space.spec
        try:
            rel = Path(self.doc.path).resolve().relative_to(self.doc.root.resolve())
            self.label = rel.as_posix()
        except ValueError:
            self.label = Path(self.doc.path).name

    def graph(self, overrides: Mapping[tuple[str | int, ...], Any]) -> Graph:
        """The typed graph of the base spec with ``overrides`` (raises SpecError for an invalid one)."""
        from archc.spec.document import resolve_params
        from archc.spec.expand import expand

        variant, env = resolve_params(self.doc, self.space.variant, dict(overrides))
        g = expand(self.doc, env, variant)
        g.meta["spec_label"] = self.label
        return g

    def source(self, graph: Graph) -> str:
        """Generated PyTorch source of ``graph``."""
        from archc.backends.pytorch.codegen import generate
        from archc.compiler import block_info

        return generate(graph, graph.meta["spec_label"], self.doc.name, block_info(self.doc))

    def module(self, graph: Graph, source: str | None = None) -> Any:
        """A freshly initialized torch module of ``graph``."""
        from archc.passes.equivalence import module_from_source

        return module_from_source(source or self.source(graph)).create_model()

    def deploy(self, graph: Graph, check: bool = False) -> tuple[Graph, str]:
        """The deploy-pipeline graph of ``graph`` and its generated source (the compiled artifact)."""
        from archc.passes.pipeline import run_pipeline

        res = run_pipeline(graph, "deploy", check=check)
        return res.graph, self.source(res.graph)


# -------------------------------------------------------------------------------------------------------
# storage, sampler, pruner
# -------------------------------------------------------------------------------------------------------
def default_storage_path(out: Path) -> Path:
    return out / STORAGE_FILE


def make_storage(storage: str | None, out: Path) -> tuple[Any, str]:
    """An Optuna storage and its description.

    ``None``: a journal file ``study.log`` in the run folder (several processes may share it); a value
    with ``://`` is an Optuna storage URL passed through (``sqlite:///x.db``, ``postgresql://...``);
    anything else is the path of a journal file.
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if storage is not None and "://" in storage:
        return storage, storage
    path = Path(storage) if storage else default_storage_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return JournalStorage(JournalFileBackend(str(path))), str(path)
    except (OSError, ValueError, optuna.exceptions.OptunaError) as exc:
        raise SearchError(f"cannot open the study journal '{path}': {exc}") from None


def _constraints_func(n: int) -> Callable[[Any], Sequence[float]]:
    def fn(trial: Any) -> Sequence[float]:
        v = trial.user_attrs.get("constraints")
        return list(v) if isinstance(v, list) and len(v) == n else [0.0] * n

    return fn


def make_sampler(space: SearchSpace, seed: int | None) -> Any:
    """The configured Optuna sampler (constraint-aware samplers learn from rejected samples)."""
    import optuna

    cfg = space.study
    cls = getattr(optuna.samplers, SAMPLERS[cfg.sampler])
    kwargs = dict(cfg.sampler_kwargs)
    if cfg.sampler == "grid":
        kwargs["search_space"] = space.grid()
    if cfg.sampler in CONSTRAINED_SAMPLERS and not hasattr(optuna.trial.Trial, "set_constraint"):
        # Optuna < 5: constraints reach the sampler through constraints_func (trial.set_constraint since 5.0)
        kwargs["constraints_func"] = _constraints_func(1 + len(space.constraints))
    if cfg.sampler != "bruteforce" or seed is not None:
        kwargs["seed"] = seed
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, ImportError) as exc:
        raise SearchError(f"cannot create the {cfg.sampler} sampler: {exc}", cfg.loc) from None


def make_pruner(space: SearchSpace) -> Any:
    import optuna

    cfg = space.study
    cls = getattr(optuna.pruners, PRUNERS[cfg.pruner])
    try:
        return cls(**dict(cfg.pruner_kwargs))
    except (TypeError, ValueError) as exc:
        raise SearchError(f"cannot create the {cfg.pruner} pruner: {exc}", cfg.loc) from None


# -------------------------------------------------------------------------------------------------------
# trial bookkeeping
# -------------------------------------------------------------------------------------------------------
class _Rejected(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _TrialLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __call__(self, line: str) -> None:
        if self.f.closed:
            return
        self.f.write(f"[{time.strftime('%H:%M:%S')}] {line}\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ranked_front(study: Any, space: SearchSpace) -> list[Any]:
    """The Pareto front, best first by the first objective (then by trial number)."""
    front = pareto_trials(study)
    sign = 1.0 if space.objectives[0].direction == "minimize" else -1.0
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))


def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover
        return "localhost"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _fail_stale(study: Any, log: Callable[[str], None]) -> int:
    """Mark RUNNING trials left by dead processes of this host as failed (a killed run, e.g. SIGKILL)."""
    from optuna.trial import TrialState

    host = _host()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        h, _, pid = worker.rpartition(":")
        if h == host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            study._storage.set_trial_user_attr(t._trial_id, "status", "failed")
            study._storage.set_trial_user_attr(t._trial_id, "reason", "stale: its worker process ended without finishing it")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
    if n:
        log(f"marked {n} stale running trial(s) of dead processes as failed")
    return n


# -------------------------------------------------------------------------------------------------------
# the driver
# -------------------------------------------------------------------------------------------------------
class _Search:
    def __init__(self, space: SearchSpace, study: Any, out: Path, evaluator: Any, threads: int | None, verbose: bool) -> None:
        self.space = space
        self.study = study
        self.out = out
        self.builder = ModelBuilder(space)
        self.evaluator = evaluator
        self.threads = threads
        self.verbose = verbose
        self.cache: dict[str, dict[str, Any]] = {}
        self.latency_cache: dict[str, float] = {}
        self.counts = {"trained": 0, "reused": 0, "rejected": 0, "failed": 0, "pruned": 0}
        self.constraint_keys = sorted(space.constraints)
        self.needs_latency = (LATENCY_METRIC in space.metric_names or LATENCY_METRIC in space.constraints)
        self.host_worker = f"{_host()}:{os.getpid()}"
        self._metrics: dict[str, Any] = {}
        #: set when the sampler has nothing left to sample (GridSampler after its last point)
        self.exhausted = False

    # -- lookups in the storage (other workers' trials count too) --------------------------------
    def _lookup(self, key: str, attr: str) -> dict[str, Any] | None:
        from optuna.trial import TrialState

        if key in self.cache:
            return self.cache[key]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get(attr) == key and isinstance(t.user_attrs.get("eval_metrics"), dict):
                hit = {"metrics": t.user_attrs["eval_metrics"], "number": t.number}
                self.cache[key] = hit
                return hit
        return None

    def _latency_lookup(self, arch: str) -> float | None:
        from optuna.trial import TrialState

        if arch in self.latency_cache:
            return self.latency_cache[arch]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            m = t.user_attrs.get("metrics") or {}
            if t.user_attrs.get("arch") == arch and _finite(m.get(LATENCY_METRIC)):
                self.latency_cache[arch] = float(m[LATENCY_METRIC])
                return self.latency_cache[arch]
        return None

    def _screen_values(self, metric: str, exclude: int) -> list[float]:
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.number == exclude:
                continue
            v = (t.user_attrs.get("metrics") or {}).get(metric)
            if _finite(v):
                out.append(float(v))
        return out

    # -- one trial --------------------------------------------------------------------------------
    def run_trial(self, trial: Any) -> str:
        """Run one asked trial to its end and tell the study; returns its status."""
        log = _TrialLog(self.out / "logs" / f"trial_{trial.number:05d}.log")
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        self._metrics = metrics  # per-epoch and zero-cost metrics land here too (kept when a trial is pruned)
        violation = [0.0] * (1 + len(self.constraint_keys))
        trial.set_user_attr("worker", self.host_worker)

        def finish(state: Any, status: str, reason: str = "", values: list[float] | None = None) -> str:
            trial.set_user_attr("status", status)
            if reason:
                trial.set_user_attr("reason", reason)
            trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if _finite(v)})
            trial.set_user_attr("constraints", violation)
            if hasattr(trial, "set_constraint"):
                for cname, cval in zip(["valid", *self.constraint_keys], violation):
                    trial.set_constraint(cname, cval)
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
            log(f"{status.upper()}{': ' + reason if reason else ''}" + (f" — values {values}" if values else ""))
            try:
                self.study.tell(trial, values, state=state) if values is not None else self.study.tell(trial, state=state)
            except RuntimeError as exc:
                # GridSampler calls study.stop() after the last grid point, which Optuna only allows inside
                # optimize(); the trial's state is stored all the same (Optuna sets it in a finally)
                if "Study.stop" not in str(exc):
                    raise
                self.exhausted = True
            return status

        try:
            return self._run_trial(trial, log, metrics, violation, finish)
        finally:
            log.close()

    def _run_trial(self, trial: Any, log: _TrialLog, metrics: dict[str, Any], violation: list[float],
                   finish: Callable[..., str]) -> str:
        import optuna
        from optuna.trial import TrialState

        try:
            values = self.space.sample(trial)
            log(f"trial {trial.number} ({self.host_worker}): params {json.dumps(values, default=str)}")
            m = self.space.materialize(values)
            trial.set_user_attr("spec_params", overrides_to_json(m.overrides))
            if m.reason:
                violation[0] = 1.0
                raise _Rejected("infeasible", m.reason)
            try:
                g = self.builder.graph(m.overrides)
            except SpecError as exc:
                violation[0] = 1.0
                raise _Rejected("infeasible", f"invalid architecture: {exc}") from None
            from archc.cost.model import graph_cost

            cost = graph_cost(g)
            metrics.update(params=cost.params, macs=cost.macs, acts=cost.acts)
            arch = canonical_hash(g)
            trial.set_user_attr("arch", arch)
            log(f"target: {cost.params:,} params, {cost.macs:,} MACs, {cost.acts:,} activations (arch {arch})")
            self._check_budget(metrics, violation, skip=(LATENCY_METRIC,))
            if self.needs_latency:
                metrics[LATENCY_METRIC] = self._latency(g, m, arch, log)
                self._check_budget(metrics, violation)
            if self.evaluator is not None and getattr(self.evaluator, "needs_model", True):
                metrics.update(self._evaluate(trial, g, m, log))
            objective = []
            for o in self.space.objectives:
                v = metrics.get(o.metric)
                if not _finite(v):
                    return finish(TrialState.FAIL, "failed", f"objective {o.metric} is {v} (not a finite number)")
                objective.append(float(v))
            return finish(TrialState.COMPLETE, "complete" if "duplicate_of" not in trial.user_attrs else "duplicate",
                          values=objective)
        except _Rejected as exc:
            self.counts["rejected"] += 1
            return finish(TrialState.PRUNED, exc.status, exc.reason)
        except optuna.TrialPruned as exc:
            self.counts["pruned"] += 1
            return finish(TrialState.PRUNED, "pruned", str(exc) or "pruned")
        except KeyboardInterrupt:
            self.counts["failed"] += 1
            finish(TrialState.FAIL, "failed", "interrupted (KeyboardInterrupt): resume to evaluate it again")
            raise
        except Exception as exc:  # an architecture that raises: recorded, the study goes on
            self.counts["failed"] += 1
            log(traceback.format_exc().rstrip())
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            if isinstance(exc, ArchcError):
                reason = str(exc)
            elif isinstance(exc, NonFiniteError):
                reason = first
            else:
                reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
            return finish(TrialState.FAIL, "failed", reason)

    def _check_budget(self, metrics: Mapping[str, Any], violation: list[float], skip: Sequence[str] = ()) -> None:
        over = []
        for k, key in enumerate(self.constraint_keys, 1):
            if key in skip or key not in metrics:
                continue
            limit = self.space.constraints[key]
            v = float(metrics[key])
            violation[k] = (v - limit) / limit
            if v > limit:
                over.append(f"{key} {v:,.6g} > max {limit:,.6g}")
        if over:
            raise _Rejected("rejected", "over budget: " + "; ".join(over))

    def _latency(self, g: Graph, m: Materialized, arch: str, log: Callable[[str], None]) -> float:
        cached = self._latency_lookup(arch)
        if cached is not None:
            log(f"latency {cached:.3f} ms (measured before for this architecture)")
            return cached
        cfg = self.space.evaluator.latency
        assert cfg is not None
        graph = g if cfg.model == "target" else self.builder.graph(m.proxy_overrides())
        dg, source = self.builder.deploy(graph, check=cfg.check)
        model = self.builder.module(dg, source)
        shape = next(iter(dg.inputs.values())).concrete(cfg.batch)
        ms = measure_latency(model, shape, cfg)
        self.latency_cache[arch] = ms
        log(f"latency {ms:.3f} ms (deploy artifact, batch {cfg.batch}, {cfg.threads} thread(s), median of {cfg.runs})")
        return ms

    def _evaluate(self, trial: Any, g: Graph, m: Materialized, log: Callable[[str], None]) -> dict[str, Any]:
        import optuna
        import torch

        pg = self.builder.graph(m.proxy_overrides()) if m.proxy else g
        digest = self.space.evaluator.digest() + getattr(self.evaluator, "digest", lambda: "")()
        key = canonical_hash(pg) + ":" + digest
        trial.set_user_attr("eval_key", key)
        hit = self._lookup(key, "eval_key")
        if hit is not None:
            self.counts["reused"] += 1
            trial.set_user_attr("duplicate_of", hit["number"])
            trial.set_user_attr("eval_metrics", hit["metrics"])
            log(f"same architecture as trial {hit['number']}: its metrics are reused, nothing is trained")
            return dict(hit["metrics"])
        source = self.builder.source(pg)
        train_cfg = self.space.evaluator.train
        torch.manual_seed(train_cfg.seed if train_cfg is not None else 0)
        model = self.builder.module(pg, source)
        nparams = sum(p.numel() for p in model.parameters())
        in_shape = next(iter(pg.inputs.values())).concrete(1)
        out_shape = pg.output_types[0].concrete(1)
        log(f"proxy model: {nparams:,} params, input {list(in_shape)} → output {list(out_shape)}")
        single = not self.space.multi_objective
        metric0 = self.space.objectives[0].metric
        epochs = train_cfg.epochs if train_cfg is not None else 1

        def report(epoch: int, ms: dict[str, float]) -> None:
            trial.set_user_attr("epochs_done", epoch + 1)
            self._metrics.update(ms)
            if not single or metric0 not in ms:
                return
            v = ms[metric0]
            if not _finite(v):
                return
            trial.report(float(v), epoch)
            if epoch + 1 < epochs and trial.should_prune():
                raise optuna.TrialPruned(f"pruned by the {self.space.study.pruner} pruner after epoch {epoch + 1} "
                                         f"({metric0} {v:.5g})")

        def screen(ms: dict[str, float]) -> None:
            zc = self.space.evaluator.zero_cost
            if zc is None or zc.screen is None:
                return
            metric, q, after = zc.screen
            self._metrics.update(ms)
            earlier = self._screen_values(metric, trial.number)
            v = ms.get(metric)
            if len(earlier) < after or not _finite(v):
                return
            import numpy as np

            limit = float(np.quantile(earlier, q))
            if v < limit:
                raise optuna.TrialPruned(f"screened: {metric} {v:.5g} is below the {q:.0%} quantile {limit:.5g} "
                                         f"of {len(earlier)} earlier samples")

        ctx = TrialContext(trial.number, tuple(in_shape), tuple(out_shape), report, screen, log,
                           {"params": nparams, "trial": trial})
        self.counts["trained"] += 1
        result = dict(self.evaluator.evaluate(model, ctx))
        bad = [k for k, v in result.items() if not _finite(v)]
        if bad:
            raise NonFiniteError(f"the evaluator returned {bad[0]} = {result[bad[0]]}")
        trial.set_user_attr("eval_metrics", result)
        self.cache[key] = {"metrics": result, "number": trial.number}
        return result


def _fail_if_running(study: Any, trial: Any) -> None:
    """An interrupt outside the trial's own handler (e.g. right after ``ask``) must not leave it RUNNING."""
    from optuna.trial import TrialState

    if trial is None:
        return
    try:
        if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, "status", "failed")
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted (KeyboardInterrupt)")
            study.tell(trial, state=TrialState.FAIL)
    except Exception:  # noqa: BLE001 - best effort while interrupted; a later run fails it as stale
        pass


def _best_text(study: Any, space: SearchSpace) -> str:
    front = _ranked_front(study, space)
    if not front:
        return "best: -"
    if space.multi_objective:
        return f"front {len(front)}"
    t = front[0]
    return f"best {space.objectives[0].metric} {t.values[0]:.5g} (#{t.number})"


def run_search(space_path: str | Path, *, trials: int | None = None, timeout: float | None = None,
               storage: str | None = None, study_name: str | None = None, out: str | Path | None = None,
               seed: int | None = None, threads: int | None = None, evaluator: Any = None,
               progress: bool = True, outputs: bool = True, log: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or resume) the study of a search-space file until ``trials`` trials are complete in total.

    Args:
        space_path: the search-space YAML (``docs/search_space.md``).
        trials: completed trials wanted in the study (default: the space's ``study.trials``); trials
            already complete in the storage count, so rerunning the same command resumes.
        timeout: stop starting new trials after this many seconds of this call.
        storage: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or a journal file path;
            default ``<out>/study.log`` (a journal several processes can share).
        study_name: default the space's ``study.name`` (its ``name``).
        out: the run folder (default the space's ``study.out``, else ``runs/<name>``).
        seed: the sampler's seed (default the space's); a resumed study offsets it by the number of
            trials already in it, so it does not replay the samples it already has.
        threads: torch threads for evaluation (default the evaluator's ``threads``, else 1).
        evaluator: an object with ``evaluate(model, ctx) -> dict`` (default :class:`ProxyEvaluator`).
        progress: show a progress bar with the current best (stderr).
        outputs: write the trials table, Pareto front, plot and specs at the end.
        log: a callable receiving one-line messages (default: none).

    Raises:
        SearchSpaceError: the space file is invalid (at ``file:line:col``).
        SearchError: the storage or study does not fit, or every trial keeps failing.
        KeyboardInterrupt: after marking the in-flight trial failed and writing the outputs.
    """
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return _run_search(space_path, trials, timeout, storage, study_name, out, seed, threads, evaluator, progress,
                           outputs, log)


def _run_search(space_path: str | Path, trials: int | None, timeout: float | None, storage: str | None,
                study_name: str | None, out: str | Path | None, seed: int | None, threads: int | None, evaluator: Any,
                progress: bool, outputs: bool, log: Callable[[str], None] | None) -> SearchResult:
    import optuna
    from optuna.trial import TrialState

    say = log or (lambda s: None)
    space = load_space(space_path)
    cfg = space.study
    want = trials if trials is not None else cfg.trials
    if want < 1:
        raise SearchError(f"--trials must be at least 1, got {want}")
    out_dir = Path(out if out is not None else (cfg.out or Path("runs") / space.name))
    out_dir.mkdir(parents=True, exist_ok=True)
    storage_obj, storage_desc = make_storage(storage if storage is not None else cfg.storage, out_dir)
    name = study_name or cfg.name
    prev_level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        try:
            study = optuna.create_study(study_name=name, storage=storage_obj, directions=space.directions, load_if_exists=True)
        except Exception as exc:  # noqa: BLE001 - storage drivers raise their own errors
            raise SearchError(f"cannot open study '{name}' in {storage_desc}: {type(exc).__name__}: {exc}") from None
        if [d.name.lower() for d in study.directions] != space.directions:
            have = ", ".join(d.name.lower() for d in study.directions)
            raise SearchError(f"study '{name}' in {storage_desc} has directions [{have}], the space wants [{', '.join(space.directions)}]",
                              hint="use another --study name or --out folder")
        if study.metric_names is None:
            study.set_metric_names(space.metric_names)
        attrs = study.user_attrs
        if "space_digest" not in attrs:
            study.set_user_attr("space", str(space_path))
            study.set_user_attr("space_digest", space.digest)
            study.set_user_attr("base_spec", str(space.base))
        elif attrs["space_digest"] != space.digest:
            say(f"note: the space or its base spec changed since study '{name}' started; continuing")
        _fail_stale(study, say)
        existing = len(study.get_trials(deepcopy=False))
        base_seed = seed if seed is not None else cfg.seed
        study.sampler = make_sampler(space, None if base_seed is None else base_seed + existing)
        study.pruner = make_pruner(space)
        if existing == 0:
            for pname in cfg.enqueue:
                study.enqueue_trial(space.point(pname), skip_if_exists=True)
        ev = evaluator if evaluator is not None else ProxyEvaluator(space.evaluator, threads)
        search = _Search(space, study, out_dir, ev, threads, progress)
        result = SearchResult(study, space, out_dir, storage_desc, 0, 0, 0, 0, 0, 0, 0)
        completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        max_attempts = cfg.max_attempts or max(100, 20 * want)
        start = time.monotonic()
        attempts = 0
        fails_in_row = 0
        current = None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=want, initial=min(completed, want), desc=f"archc search {space.name}", unit="trial",
                       file=sys.stderr, dynamic_ncols=True, leave=True)
            bar.set_postfix_str(_best_text(study, space))
        try:
            while completed < want:
                if timeout is not None and time.monotonic() - start >= timeout:
                    result.stopped = f"timeout after {timeout:g} s"
                    break
                if attempts >= max_attempts:
                    result.stopped = f"{attempts} trials attempted without reaching {want} complete (max_attempts)"
                    break
                attempts += 1
                current = study.ask()
                status = search.run_trial(current)
                current = None
                result.new_trials += 1
                fails_in_row = fails_in_row + 1 if status == "failed" else 0
                if fails_in_row >= MAX_CONSECUTIVE_FAILURES:
                    last = study.get_trials(deepcopy=False)[-1].user_attrs.get("reason", "")
                    raise SearchError(f"{fails_in_row} trials in a row failed; the last: {last}",
                                      hint=f"see the per-trial logs in {out_dir / 'logs'}")
                completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
                if search.exhausted and completed < want:
                    result.stopped = "the sampler's grid is exhausted"
                    break
                if bar is not None:
                    bar.n = min(completed, want)
                    bar.set_postfix_str(_best_text(study, space))
                    bar.refresh()
        except KeyboardInterrupt:
            result.interrupted = True
            _fail_if_running(study, current)
        finally:
            if bar is not None:
                bar.close()
        result.completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        for k in ("trained", "reused", "rejected", "failed", "pruned"):
            setattr(result, k, search.counts[k])
        if outputs:
            result.files = write_outputs(study, space, out_dir, storage_desc, search.builder)
        if result.interrupted:
            raise KeyboardInterrupt
        return result
    finally:
        optuna.logging.set_verbosity(prev_level)


# -------------------------------------------------------------------------------------------------------
# outputs
# -------------------------------------------------------------------------------------------------------
def _trial_overrides(space: SearchSpace, t: Any) -> dict[tuple[str | int, ...], Any]:
    if isinstance(t.user_attrs.get("spec_params"), list):
        return overrides_from_json(t.user_attrs["spec_params"])
    return space.materialize(t.params).overrides


def write_outputs(study: Any, space: SearchSpace, out: Path, storage: str, builder: ModelBuilder | None = None) -> dict[str, Any]:
    """Write trials.csv, pareto.csv, the Pareto plot, best.yaml, pareto/trial_*.yaml and summary.json."""
    from optuna.trial import TrialState

    builder = builder or ModelBuilder(space)
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    files: dict[str, Any] = {}
    header, rows = trials_table(trials, space.metric_names, space.param_names())
    files["trials"] = write_csv(out / "trials.csv", header, rows)
    front = _ranked_front(study, space)
    ph, prows = trials_table(front, space.metric_names, space.param_names())
    files["pareto"] = write_csv(out / "pareto.csv", ph, prows)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if space.multi_objective:
        pts = [(t.values[1], t.values[0], t.number) for t in complete]
        fr = [(t.values[1], t.values[0], t.number) for t in front]
        xlabel, ylabel = space.objectives[1].metric, space.objectives[0].metric
        title = f"{space.name}: Pareto front ({space.objectives[0].direction} {ylabel}, {space.objectives[1].direction} {xlabel})"
    else:
        pts = [(float(t.number), t.values[0], t.number) for t in complete]
        best: list[tuple[float, float, int]] = []
        sign = 1.0 if space.objectives[0].direction == "minimize" else -1.0
        for t in complete:
            if not best or sign * t.values[0] < sign * best[-1][1]:
                best.append((float(t.number), t.values[0], t.number))
        fr = best
        xlabel, ylabel = "trial", space.objectives[0].metric
        title = f"{space.name}: {ylabel} ({space.objectives[0].direction}), best so far"
    files["plot"] = write_plot(out / "pareto", pts, fr, xlabel, ylabel, title)
    specs: list[Path] = []
    pdir = out / "pareto"
    if pdir.exists():
        for old in pdir.glob("trial_*.yaml"):
            if int(old.stem.split("_")[1]) not in {t.number for t in front}:
                old.unlink()
    for rank, t in enumerate(front):
        ov = _trial_overrides(space, t)
        vals = ", ".join(f"{m} {v:.6g}" for m, v in zip(space.metric_names, t.values))
        header_lines = [f"Generated by archc search from {space.path} (study '{study.study_name}', trial {t.number}).",
                        f"Objectives: {vals}.", "No choices left: compile with 'archc compile <this file>'."]
        suffix = f"[archc search: {space.name}, trial {t.number}: {vals}]"
        p = export_spec(space.spec, space.variant, ov, pdir / f"trial_{t.number:05d}.yaml", header_lines, suffix)
        specs.append(p)
        if rank == 0:
            files["best"] = export_spec(space.spec, space.variant, ov, out / "best.yaml", header_lines, suffix)
    files["specs"] = specs
    counts: dict[str, int] = {}
    for t in trials:
        key = t.user_attrs.get("status") or t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    summary = {
        "space": space.path, "study": study.study_name, "storage": storage, "objectives": space.metric_names,
        "directions": space.directions, "trials": len(trials),
        "complete": sum(1 for t in trials if t.state == TrialState.COMPLETE), "by_status": counts,
        "pareto": [{"number": t.number, "values": list(t.values), "params": t.params,
                    "metrics": t.user_attrs.get("metrics", {})} for t in front],
        "best": front[0].number if front else None,
    }
    from archc.compiler import write_atomic

    files["summary"] = out / "summary.json"
    write_atomic(files["summary"], json.dumps(summary, indent=2, default=str) + "\n")
    return files


logging.getLogger("archc.search").addHandler(logging.NullHandler())
