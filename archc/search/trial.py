"""One trial, start to end: sample → materialize → cost → reject over budget → latency → evaluate → tell.

The rejected, infeasible and pruned outcomes end as PRUNED trials (the sampler learns from them); a
trial that raises or gives a non-finite metric ends FAIL and is never run again automatically (it would
fail again). Metrics of an architecture evaluated before, by any worker, are reused; an architecture
another worker is evaluating right now is skipped (it would be trained twice); one that failed by itself
before fails again without training.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError, SpecError
from archc.ir.graph import Graph
from archc.search.canon import canonical_hash
from archc.search.evaluate import NonFiniteError, TrialContext, measure_latency
from archc.search.export import overrides_to_json
from archc.search.space import LATENCY_METRIC, Materialized, SearchSpace

__all__ = ["ModelBuilder", "TrialRunner", "STATUSES", "host", "pid_alive", "Rejected", "Candidate", "sample_candidate",
           "check_budget", "finite"]

#: every status a trial ends with (user attribute ``status``)
STATUSES = ("complete", "duplicate", "rejected", "infeasible", "in_flight", "pruned", "failed")
#: user attributes a retried trial inherits from its failed original and must not keep
_INHERITED = ("duplicate_of", "eval_metrics", "reason", "epochs_done", "status")


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



class Rejected(Exception):
    """A sample that is never built or trained: ``status`` is ``infeasible``, ``rejected`` (over budget) or
    ``in_flight`` (another worker evaluates the same architecture now)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Candidate:
    """A trial's sampled architecture, materialized, expanded and costed at full size."""

    values: dict[str, Any]
    materialized: Materialized
    graph: Graph
    arch: str


def sample_candidate(space: SearchSpace, builder: ModelBuilder, trial: Any, metrics: dict[str, Any],
                     violation: list[float]) -> Candidate:
    """Sample ``trial``, materialize and expand the architecture, and cost it into ``metrics``.

    Raises :class:`Rejected` (``infeasible``, with ``violation[0]`` set) for a sample that has no valid
    architecture; budgets are left to :func:`check_budget` so callers can add metrics (latency) first.
    """
    from archc.cost.model import graph_cost

    values = space.sample(trial)
    m = space.materialize(values)
    trial.set_user_attr("spec_params", overrides_to_json(m.overrides))
    if m.reason:
        violation[0] = 1.0
        raise Rejected("infeasible", m.reason)
    try:
        g = builder.graph(m.overrides)
    except SpecError as exc:
        violation[0] = 1.0
        raise Rejected("infeasible", f"invalid architecture: {exc}") from None
    cost = graph_cost(g)
    metrics.update(params=cost.params, macs=cost.macs, acts=cost.acts)
    arch = canonical_hash(g)
    trial.set_user_attr("arch", arch)
    return Candidate(values, m, g, arch)


def check_budget(constraints: Mapping[str, float], metrics: Mapping[str, Any], violation: list[float],
                 skip: Sequence[str] = ()) -> None:
    """Record each constraint's relative violation (``violation[1:]``, in sorted constraint order) and raise
    :class:`Rejected` (``rejected``) when a measured metric is over its limit."""
    over = []
    for k, key in enumerate(sorted(constraints), 1):
        if key in skip or key not in metrics:
            continue
        limit = constraints[key]
        v = float(metrics[key])
        violation[k] = (v - limit) / limit
        if v > limit:
            over.append(f"{key} {v:,.6g} > max {limit:,.6g}")
    if over:
        raise Rejected("rejected", "over budget: " + "; ".join(over))


class _FailedBefore(Exception):
    """The architecture failed by itself in an earlier trial: failing again costs nothing, training would."""


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


def finite(v: Any) -> bool:
    """Whether ``v`` is a finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)



def host() -> str:
    """This machine's name (part of every trial's ``worker`` attribute)."""
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover
        return "localhost"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True



class TrialRunner:
    """Runs asked trials of one worker and tells the study; ``counts`` tallies this worker's outcomes."""

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
        self.counts = {"trained": 0, "reused": 0, "rejected": 0, "failed": 0, "pruned": 0, "skipped": 0}
        self.constraint_keys = sorted(space.constraints)
        self.needs_latency = (LATENCY_METRIC in space.metric_names or LATENCY_METRIC in space.constraints)
        self.host_worker = f"{host()}:{os.getpid()}"
        self._metrics: dict[str, Any] = {}
        #: set when the sampler has nothing left to sample (GridSampler after its last point)
        self.exhausted = False
        #: the trial a KeyboardInterrupt stopped (the driver queues it again)
        self.interrupted: Any = None
        self.duplicate = False
        self.last_reason = ""

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

    def _check_not_in_flight(self, trial: Any, key: str) -> None:
        """Refuse to train an architecture another running trial holds, or one that failed by itself before.

        The trial's ``eval_key`` is stored before this looks, so of two workers that start the same
        architecture at once at least one sees the other (a storage orders the writes): it is never
        trained twice; rarely both step aside and the sampler draws again.
        """
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
            if t.number == trial.number or t.user_attrs.get("eval_key") != key:
                continue
            if t.state == TrialState.RUNNING:
                raise Rejected("in_flight", f"the same architecture is being evaluated by trial {t.number} "
                                             f"({t.user_attrs.get('worker', 'another worker')}); not trained twice")
            reason = str(t.user_attrs.get("reason") or "")
            if t.user_attrs.get("status") == "failed" and reason and not reason.startswith("interrupted"):
                raise _FailedBefore(f"the same architecture failed in trial {t.number}: {reason}")

    def _latency_lookup(self, arch: str) -> float | None:
        from optuna.trial import TrialState

        if arch in self.latency_cache:
            return self.latency_cache[arch]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            m = t.user_attrs.get("metrics") or {}
            if t.user_attrs.get("arch") == arch and finite(m.get(LATENCY_METRIC)):
                self.latency_cache[arch] = float(m[LATENCY_METRIC])
                return self.latency_cache[arch]
        return None

    def _screen_values(self, metric: str, exclude: int) -> list[float]:
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.number == exclude:
                continue
            v = (t.user_attrs.get("metrics") or {}).get(metric)
            if finite(v):
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
        if trial.user_attrs.get("worker") != self.host_worker:
            trial.set_user_attr("worker", self.host_worker)
        self.duplicate = False
        self.last_reason = ""
        inherited = [k for k in _INHERITED if k in trial.user_attrs]
        if inherited:  # a retry of a trial whose worker died: it starts afresh, with the same params
            for k in inherited:
                trial.set_user_attr(k, None)
            log(f"retry of trial {self.study._storage.get_trial_system_attrs(trial._trial_id).get('failed_trial')} "
                "(its worker stopped before finishing it)")

        def finish(state: Any, status: str, reason: str = "", values: list[float] | None = None) -> str:
            trial.set_user_attr("status", status)
            if reason:
                trial.set_user_attr("reason", reason)
            self.last_reason = reason
            trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if finite(v)})
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
            c = sample_candidate(self.space, self.builder, trial, metrics, violation)
            g, m, arch = c.graph, c.materialized, c.arch
            log(f"trial {trial.number} ({self.host_worker}): params {json.dumps(c.values, default=str)}")
            log(f"target: {metrics['params']:,} params, {metrics['macs']:,} MACs, {metrics['acts']:,} activations "
                f"(arch {arch})")
            check_budget(self.space.constraints, metrics, violation, skip=(LATENCY_METRIC,))
            if self.needs_latency:
                metrics[LATENCY_METRIC] = self._latency(g, m, arch, log)
                check_budget(self.space.constraints, metrics, violation)
            if self.evaluator is not None and getattr(self.evaluator, "needs_model", True):
                metrics.update(self._evaluate(trial, g, m, log))
            objective = []
            for o in self.space.objectives:
                v = metrics.get(o.metric)
                if not finite(v):
                    return finish(TrialState.FAIL, "failed", f"objective {o.metric} is {v} (not a finite number)")
                objective.append(float(v))
            return finish(TrialState.COMPLETE, "duplicate" if self.duplicate else "complete",
                          values=objective)
        except Rejected as exc:
            self.counts["skipped" if exc.status == "in_flight" else "rejected"] += 1
            return finish(TrialState.PRUNED, exc.status, exc.reason)
        except _FailedBefore as exc:
            self.counts["failed"] += 1
            return finish(TrialState.FAIL, "failed", str(exc))
        except optuna.TrialPruned as exc:
            self.counts["pruned"] += 1
            return finish(TrialState.PRUNED, "pruned", str(exc) or "pruned")
        except KeyboardInterrupt:
            self.counts["failed"] += 1
            finish(TrialState.FAIL, "failed", "interrupted (KeyboardInterrupt): queued again, resume to evaluate it")
            self.interrupted = trial
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
        if hit is None:
            self._check_not_in_flight(trial, key)
        if hit is not None:
            self.counts["reused"] += 1
            self.duplicate = True
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
            if not finite(v):
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
            if len(earlier) < after or not finite(v):
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
        bad = [k for k, v in result.items() if not finite(v)]
        if bad:
            raise NonFiniteError(f"the evaluator returned {bad[0]} = {result[bad[0]]}")
        trial.set_user_attr("eval_metrics", result)
        self.cache[key] = {"metrics": result, "number": trial.number}
        return result

