"""SPOS child search: an Optuna study over the cells, each child scored with the supernet's weights.

Per trial: sample the cells → normalize them (dead edges become ``none``) → expand and cost the
child's *full-size* graph → reject it if it is infeasible or over the space's budgets (it is never
run) → fix the supernet to the normalized path → recalibrate BatchNorm on a few fixed training
batches → the task's validation metrics → tell Optuna. Children that normalize to an architecture
scored before reuse its metrics. Rejected children are told as pruned with their constraint
violations, so constraint-aware samplers (TPE, NSGA-II) learn where the budget ends.

The study lives in the run folder's storage like a black-box study, so a rerun resumes it; it records
the digest of the supernet that scored it and refuses to mix scores of two different supernets.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from archc.diagnostics import SpecError
from archc.search.bn_recal import recalibrate_bn
from archc.search.data import ProxyData
from archc.search.evaluate import validate
from archc.search.runner import ModelBuilder, SearchError
from archc.search.space import SearchSpace
from archc.search.trial import Rejected, check_budget, finite, sample_candidate

__all__ = ["ChildScorer", "normalized_choice", "run_children", "bn_batches"]


def normalized_choice(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """The Optuna values of ``values`` with every cell normalized (dead edges set to ``none``).

    The supernet then runs exactly the ops that the compiled child has.
    """
    m = space.materialize(values)
    out = dict(values)
    for cell in space.cells:
        edges, node = m.cells[cell.name]
        out.update(cell.point(dict(zip(cell.edges, edges)), node))
    return out


def bn_batches(data: ProxyData, batches: int, batch_size: int, seed: int) -> list[torch.Tensor]:
    """The fixed training batches every child's BatchNorm statistics are recalibrated on."""
    perm = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(seed)).to(data.x_train.device)
    n = min(len(perm), batches * batch_size)
    return [data.x_train.index_select(0, perm[s:s + batch_size]) for s in range(0, n, batch_size)]


@dataclass
class ChildScorer:
    """Scores children of ``supernet`` with inherited weights (BN recalibrated on ``recal``)."""

    supernet: Any
    data: ProxyData
    recal: list[torch.Tensor]

    def __call__(self, choice: Mapping[str, Any]) -> dict[str, float]:
        self.supernet.fix(dict(choice))
        try:
            recalibrate_bn(self.supernet.model, self.recal)
            return validate(self.supernet.model, self.data)
        finally:
            self.supernet.fix(None)


class _Children:
    def __init__(self, space: SearchSpace, study: Any, score: Callable[[Mapping[str, Any]], dict[str, float]],
                 say: Callable[[str], None], want: int) -> None:
        self.space = space
        self.study = study
        self.score = score
        self.say = say
        self.want = want
        self.builder = ModelBuilder(space)
        self.keys = sorted(space.constraints)
        self.cache: dict[str, tuple[dict[str, float], int]] = {}
        self.counts = {"scored": 0, "reused": 0, "rejected": 0, "infeasible": 0, "failed": 0}
        self.seconds: list[float] = []
        from archc.search.trial import host

        self.worker = f"{host()}:{os.getpid()}"
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            arch, m = t.user_attrs.get("arch"), t.user_attrs.get("eval_metrics")
            if arch and isinstance(m, dict) and arch not in self.cache:
                self.cache[arch] = (m, t.number)

    def run_trial(self, trial: Any, done: int) -> str:
        from optuna.trial import TrialState

        t0 = time.perf_counter()
        metrics: dict[str, Any] = {}
        violation = [0.0] * (1 + len(self.keys))
        trial.set_user_attr("worker", self.worker)
        status, reason, values = "complete", "", None
        try:
            c = sample_candidate(self.space, self.builder, trial, metrics, violation)
            arch = c.arch
            check_budget(self.space.constraints, metrics, violation)  # an over-budget child never runs
            choice = normalized_choice(self.space, c.values)
            trial.set_user_attr("choice", choice)
            if arch in self.cache:
                scored, number = self.cache[arch]
                trial.set_user_attr("duplicate_of", number)
                self.counts["reused"] += 1
                status = "duplicate"
            else:
                s0 = time.perf_counter()
                scored = self.score(choice)
                self.seconds.append(time.perf_counter() - s0)
                bad = [k for k, v in scored.items() if not finite(v)]
                if bad:
                    raise FloatingPointError(f"the inherited-weight {bad[0]} is {scored[bad[0]]}")
                self.cache[arch] = (scored, trial.number)
                self.counts["scored"] += 1
            trial.set_user_attr("eval_metrics", scored)
            metrics.update(scored)
            values = []
            for o in self.space.objectives:
                v = metrics.get(o.metric)
                if not finite(v):
                    raise FloatingPointError(f"objective {o.metric} is {v} (not a finite number)")
                values.append(float(v))
            state = TrialState.COMPLETE
        except Rejected as exc:
            self.counts["rejected" if exc.status == "rejected" else "infeasible"] += 1
            status, reason, state, values = exc.status, str(exc), TrialState.PRUNED, None
        except (FloatingPointError, SpecError, RuntimeError, ValueError) as exc:
            # one child that cannot run (e.g. a shape the proxy size cannot take) must not end the search
            self.counts["failed"] += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            status, reason, state, values = "failed", f"{type(exc).__name__}: {first}", TrialState.FAIL, None
        trial.set_user_attr("status", status)
        if reason:
            trial.set_user_attr("reason", reason)
        trial.set_user_attr("metrics", {k: v for k, v in metrics.items() if finite(v)})
        trial.set_user_attr("constraints", violation)
        if hasattr(trial, "set_constraint"):
            for cname, cval in zip(["valid", *self.keys], violation):
                trial.set_constraint(cname, cval)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 4))
        if values is not None:
            self.study.tell(trial, values, state=state)
        else:
            self.study.tell(trial, state=state)
        self._progress(trial, status, reason, metrics, done + (status == "complete"))
        return status

    def _progress(self, trial: Any, status: str, reason: str, metrics: Mapping[str, Any], done: int) -> None:
        if status in ("complete", "duplicate"):
            shown = ", ".join(f"{o.metric} {metrics[o.metric]:.5g}" for o in self.space.objectives)
            cost = f"{metrics['params'] / 1e6:.3g} M params, {metrics['macs'] / 1e9:.4g} G MACs"
            dup = f", same as #{trial.user_attrs['duplicate_of']}" if status == "duplicate" else ""
            head = f"child {done}/{self.want}" if status == "complete" else "duplicate"
            self.say(f"spos: {head} (trial {trial.number}): {shown} ({cost}{dup}) — {_best(self)}")
        else:
            self.say(f"spos: trial {trial.number} {status}: {reason}")


def _best(ch: _Children) -> str:
    try:
        front = ch.study.best_trials
    except ValueError:
        return "best -"
    o = ch.space.objectives[0]
    sign = 1.0 if o.direction == "minimize" else -1.0
    t = min(front, key=lambda t: (sign * t.values[0], t.number))
    return f"best {o.metric} {t.values[0]:.5g} (#{t.number})"


def run_children(space: SearchSpace, study: Any, score: Callable[[Mapping[str, Any]], dict[str, float]],
                 want: int, *, say: Callable[[str], None] = lambda s: None, max_attempts: int | None = None,
                 timeout: float | None = None) -> dict[str, Any]:
    """Ask and score children until ``want`` distinct ones are scored in ``study`` (earlier ones count;
    duplicates of a scored architecture do not).

    Returns the counts of this call (``scored``, ``reused``, ``rejected``, ``infeasible``, ``failed``),
    ``seconds_per_child`` (mean wall time of one inherited-weight evaluation) and ``stopped`` (why it
    ended early, or "").
    """
    from optuna.trial import TrialState

    ch = _Children(space, study, score, say, want)

    def scored() -> int:  # distinct children: a duplicate is told to the sampler but does not count
        return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                   if t.user_attrs.get("status") == "complete")

    completed = scored()
    limit = max_attempts or max(100, 20 * want)
    attempts = 0
    fails = 0
    stopped = ""
    start = time.monotonic()
    while completed < want:
        if attempts >= limit:
            stopped = f"{attempts} children sampled without reaching {want} complete"
            break
        if timeout is not None and time.monotonic() - start >= timeout:
            stopped = f"timeout after {timeout:g} s"
            break
        attempts += 1
        trial = study.ask()
        try:
            status = ch.run_trial(trial, completed)
        except BaseException:
            if study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                study.tell(trial, state=TrialState.FAIL)
            raise
        fails = fails + 1 if status == "failed" else 0
        if fails >= 10:
            last = study.get_trials(deepcopy=False)[-1].user_attrs.get("reason", "")
            raise SearchError(f"{fails} children in a row failed; the last: {last}")
        completed = scored()
    secs = ch.seconds
    return {**ch.counts, "attempts": attempts, "stopped": stopped,
            "seconds_per_child": (sum(secs) / len(secs)) if secs else None,
            "scored_seconds": [round(s, 4) for s in secs]}


def choice_of(trial: Any) -> dict[str, Any]:
    """The normalized choice a complete child trial was scored with."""
    c = trial.user_attrs.get("choice")
    return dict(c) if isinstance(c, dict) else json.loads(json.dumps(trial.params))
