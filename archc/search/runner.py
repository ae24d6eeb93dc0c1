"""The search driver: one Optuna study, trial by trial, by one or many workers, with outputs in a run folder.

A worker runs :func:`run_search`: checks that the search can succeed (:mod:`archc.search.preflight`),
opens the storage and the study safely (:mod:`archc.search.storage`), claims a slot for its sampler
seed, then loops: fail the trials of dead workers (heartbeats, dead processes of this host) and queue
them again, stop when the study holds the wanted number of *evaluated* trials, otherwise reserve one
trial under the storage lock (so that N workers never overshoot the target) and run it
(:mod:`archc.search.trial`). ``--workers N`` starts N such workers (:mod:`archc.search.workers`).

Accounting: ``trials`` counts evaluated architectures, those the study trained or scored itself. A
trial whose architecture was evaluated before reuses the metrics and is reported as a duplicate, not
counted; rejected, infeasible and pruned samples are not counted either.

A search that cannot succeed stops with a one-line :class:`SearchError`: ``MAX_CONSECUTIVE_FAILURES``
failed evaluations in a row (rejected samples in between neither count nor reset the count), or no
sample within the constraints among the first ``NO_FEASIBLE_AFTER`` attempts of a run. The first
failure of a run is printed when it happens, not only written to its trial log.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError
from archc.search.evaluate import ProxyEvaluator
from archc.search.outputs import ranked_front, write_outputs
from archc.search.space import CONSTRAINED_SAMPLERS, PRUNERS, SAMPLERS, SearchSpace, load_space
from archc.search.storage import DEFER, STORAGE_FILE, Resilience, StorageHandle, default_storage_path, retry_callback
from archc.search.storage import make_storage as open_storage
from archc.search.trial import ModelBuilder, TrialRunner, host, pid_alive
from archc.search.workers import worker_seed

__all__ = ["run_search", "SearchResult", "SearchError", "ModelBuilder", "make_storage", "default_storage_path",
           "write_outputs", "STORAGE_FILE", "make_sampler", "make_pruner", "Resilience"]

#: stop after this many failed evaluations in a row (a broken evaluator or data, not a bad architecture)
MAX_CONSECUTIVE_FAILURES = 10
#: stop when none of the first this many samples of a run is within the constraints and valid
NO_FEASIBLE_AFTER = 50
#: seconds between looks at the storage while the last trials run on other workers
POLL_SECONDS = 0.5
#: the study system attribute counting the worker slots handed out (see archc.search.workers)
SLOT_ATTR = "archc:worker_slots"


class SearchError(ArchcError):
    """The search cannot run (storage, a study that does not fit the space, an evaluator that always fails)."""


@dataclass
class SearchResult:
    """What :func:`run_search` did; ``study`` is the Optuna study (reloadable with ``optuna.load_study``).

    ``completed`` counts the evaluated trials of the study (duplicates excluded), ``want`` the target;
    the other counts are this run's (all workers of it with ``workers`` > 1).
    """

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
    want: int = 0
    skipped: int = 0
    workers: int = 1
    seed: int | None = None
    timed_out: bool = False

    @property
    def best(self) -> Any:
        front = self.pareto
        return front[0] if front else None

    @property
    def pareto(self) -> list[Any]:
        return ranked_front(self.study, self.space)

    @property
    def ok(self) -> bool:
        """Whether the run did what was asked: the study holds ``want`` evaluated trials (or a timeout ended it)."""
        return not self.interrupted and (self.completed >= self.want or self.timed_out)


# -------------------------------------------------------------------------------------------------------
# storage, sampler, pruner
# -------------------------------------------------------------------------------------------------------
def make_storage(storage: str | None, out: Path) -> tuple[Any, str]:
    """An Optuna storage and its description (see :func:`archc.search.storage.make_storage`)."""
    h = open_storage(storage, out)
    return h.storage, h.desc


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
# the study: opening, slots, dead workers
# -------------------------------------------------------------------------------------------------------
def _open_study(space: SearchSpace, space_path: str | Path, handle: StorageHandle, name: str,
                say: Callable[[str], None], claim: bool = True) -> tuple[Any, int]:
    """Create or load the study and claim a worker slot, all under the storage lock (safe at any concurrency)."""
    import optuna

    with handle.lock():
        try:
            study = optuna.create_study(study_name=name, storage=handle.storage, directions=space.directions,
                                        load_if_exists=True)
        except Exception as exc:  # noqa: BLE001 - storage drivers raise their own errors
            raise SearchError(f"cannot open study '{name}' in {handle.desc}: {type(exc).__name__}: {exc}") from None
        if [d.name.lower() for d in study.directions] != space.directions:
            have = ", ".join(d.name.lower() for d in study.directions)
            raise SearchError(f"study '{name}' in {handle.desc} has directions [{have}], the space wants "
                              f"[{', '.join(space.directions)}]", hint="use another --study name or --out folder")
        if study.metric_names is None:
            study.set_metric_names(space.metric_names)
        attrs = study.user_attrs
        if "space_digest" not in attrs:
            study.set_user_attr("space", str(space_path))
            study.set_user_attr("space_digest", space.digest)
            study.set_user_attr("base_spec", str(space.base))
            for pname in space.study.enqueue:
                study.enqueue_trial(space.point(pname), skip_if_exists=True)
        elif attrs["space_digest"] != space.digest:
            say(f"note: the space or its base spec changed since study '{name}' started; continuing")
        slot = int(study._storage.get_study_system_attrs(study._study_id).get(SLOT_ATTR, 0))
        if claim:
            study._storage.set_study_system_attr(study._study_id, SLOT_ATTR, slot + 1)
    return study, slot


def _fail_dead_workers(study: Any, retries: int, grace: float, say: Callable[[str], None]) -> int:
    """Fail and queue again the RUNNING trials of dead workers.

    Any host: Optuna's heartbeat check (``fail_stale_trials``, which runs the retry callback). This
    host: a trial whose worker process is gone is failed at once, without waiting for the grace period.
    """
    import optuna
    from optuna.trial import TrialState

    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    optuna.storages.fail_stale_trials(study)
    n = len({t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))} - before)
    me, here = os.getpid(), host()
    callback = retry_callback(retries)
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        h, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if "worker" not in t.user_attrs:
            # asked, then killed before it recorded its worker or a heartbeat (RDBStorage never calls
            # such a trial stale): failed once it is older than the grace period
            start = t.datetime_start
            if start is None or (now - start.replace(tzinfo=None)).total_seconds() <= grace:
                continue
        elif h != here or not pid.isdigit() or int(pid) == me or pid_alive(int(pid)):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        n += 1
        callback(study, study._storage.get_trial(t._trial_id))
    if n:
        say(f"failed {n} trial(s) of stopped workers and queued them again (same parameters, at most {retries} retries)")
    return n


def _interrupted(study: Any, trial: Any) -> None:
    """Fail an interrupted trial (if still RUNNING) and queue it again, so that a resume runs it."""
    import optuna
    from optuna.trial import TrialState

    if trial is None:
        return
    try:
        t = study._storage.get_trial(trial._trial_id)
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(trial._trial_id, "status", "failed")
            study._storage.set_trial_user_attr(trial._trial_id, "reason", "interrupted (KeyboardInterrupt): queued again")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        t = study._storage.get_trial(trial._trial_id)
        if t.state == TrialState.FAIL:
            retry_callback(None)(study, t)  # an interrupt is not the trial's fault: no retry limit
    except (optuna.exceptions.OptunaError, KeyError, OSError):  # a later run fails it as stale instead
        pass


def _interrupt_once() -> Callable[[], None]:
    """Raise KeyboardInterrupt on the first SIGINT only; later ones are ignored while the trial is failed and
    queued again (Ctrl-C reaches a worker twice under ``--workers``: from the terminal and from the parent).
    Returns the function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    seen = []
    DEFER.pending = False

    def handler(signum: int, frame: Any) -> None:
        if not seen:
            seen.append(signum)
            if DEFER.depth:  # inside a storage write or a reservation: raised when it ends
                DEFER.pending = True
                return
            raise KeyboardInterrupt

    prev = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, prev)


def _evaluated(trials: Sequence[Any]) -> int:
    from optuna.trial import TrialState

    return sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("status", "complete") == "complete")


def _best_text(study: Any, space: SearchSpace) -> str:
    front = ranked_front(study, space)
    if not front:
        return "best: -"
    if space.multi_objective:
        return f"front {len(front)}"
    t = front[0]
    return f"best {space.objectives[0].metric} {t.values[0]:.5g} (#{t.number})"


# -------------------------------------------------------------------------------------------------------
# the driver
# -------------------------------------------------------------------------------------------------------
def run_search(space_path: str | Path, *, trials: int | None = None, timeout: float | None = None,
               storage: str | None = None, study_name: str | None = None, out: str | Path | None = None,
               seed: int | None = None, threads: int | None = None, evaluator: Any = None,
               progress: bool = True, outputs: bool = True, log: Callable[[str], None] | None = None,
               workers: int = 1, resilience: Resilience | None = None, preflight: bool = True) -> SearchResult:
    """Run (or resume) the study of a search-space file until it holds ``trials`` evaluated trials.

    Args:
        space_path: the search-space YAML (``docs/search_space.md``).
        trials: evaluated trials wanted in the study in total (default: the space's ``study.trials``).
            Trials already evaluated in the storage count, so rerunning the same command resumes;
            duplicates (metrics reused from an identical architecture) do not count.
        timeout: stop starting new trials after this many seconds of this call.
        storage: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or a journal file path;
            default ``<out>/study.log`` (a journal several processes can share).
        study_name: default the space's ``study.name`` (its ``name``).
        out: the run folder (default the space's ``study.out``, else ``runs/<name>``).
        seed: the base sampler seed (default the space's); each worker seeds its sampler from it and the
            slot it claims in the study (:func:`archc.search.workers.worker_seed`).
        threads: torch threads for evaluation (default the evaluator's ``threads``, else 1; with
            ``workers`` > 1 the cores split between the workers).
        evaluator: an object with ``evaluate(model, ctx) -> dict`` (default :class:`ProxyEvaluator`).
        progress: show a progress bar with the current best (stderr).
        outputs: write the trials table, Pareto front, plot and specs at the end.
        log: a callable receiving one-line messages (default: none).
        workers: worker processes to start (``python -m archc search ...``), 1 = this process.
        resilience: heartbeat interval, grace period and retries of trials whose worker died.
        preflight: run the checks before trial 0 (:mod:`archc.search.preflight`).

    Raises:
        SearchSpaceError: the space file is invalid (at ``file:line:col``).
        PreflightError: the search cannot succeed (missing dependency, data, target, impossible budget).
        SearchError: the storage or study does not fit, or evaluations keep failing.
        KeyboardInterrupt: after failing and queueing again the in-flight trial and writing the outputs.

    >>> res = run_search("search_spaces/cdc.yaml", trials=2)  # doctest: +SKIP
    >>> res.ok, res.completed, res.best.number                # doctest: +SKIP
    """
    import optuna

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # archc drives heartbeats itself around ask/tell (see _Driver._run_one)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        # a retried trial inherits its original's constraints (same params: the same values)
        warnings.filterwarnings("ignore", message="The constraint value is ignored because this constraint")
        if workers > 1:
            from archc.search.parallel import run_parallel

            return run_parallel(space_path, trials=trials, timeout=timeout, storage=storage, study_name=study_name,
                                out=out, seed=seed, threads=threads, evaluator=evaluator, outputs=outputs, log=log,
                                workers=workers, resilience=resilience, preflight=preflight, progress=progress)
        return _Driver(space_path, trials, timeout, storage, study_name, out, seed, threads, evaluator, progress, outputs,
                       log, resilience or Resilience(), preflight).run()


class _Driver:
    """One worker's run of a study (see the module docstring)."""

    def __init__(self, space_path: str | Path, trials: int | None, timeout: float | None, storage: str | None,
                 study_name: str | None, out: str | Path | None, seed: int | None, threads: int | None, evaluator: Any,
                 progress: bool, outputs: bool, log: Callable[[str], None] | None, resilience: Resilience,
                 preflight: bool) -> None:
        self.say = log or (lambda s: None)
        self.space_path = space_path
        self.space = load_space(space_path)
        cfg = self.space.study
        self.want = trials if trials is not None else cfg.trials
        if self.want < 1:
            raise SearchError(f"--trials must be at least 1, got {self.want}")
        self.timeout = timeout
        self.storage = storage if storage is not None else cfg.storage
        self.name = study_name or cfg.name
        self.out = Path(out) if out is not None else self.space.run_folder()
        self.seed = seed if seed is not None else cfg.seed
        self.threads = threads
        self.evaluator = evaluator if evaluator is not None else ProxyEvaluator(self.space.evaluator, threads)
        self.progress = progress
        self.outputs = outputs
        self.resilience = resilience
        self.preflight = preflight

    def run(self) -> SearchResult:
        import optuna

        space = self.space
        builder = ModelBuilder(space)
        if self.preflight:
            from archc.search.preflight import preflight

            preflight(space, builder, self.evaluator, self.say)
        self.out.mkdir(parents=True, exist_ok=True)
        handle = open_storage(self.storage, self.out, self.resilience, self.say)
        prev_level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study, slot = _open_study(space, self.space_path, handle, self.name, self.say)
            study.sampler = make_sampler(space, worker_seed(self.seed, slot))
            study.pruner = make_pruner(space)
            search = TrialRunner(space, study, self.out, self.evaluator, self.threads, self.progress)
            search.builder = builder
            result = SearchResult(study, space, self.out, handle.desc, 0, 0, 0, 0, 0, 0, 0, want=self.want,
                                  seed=worker_seed(self.seed, slot))
            try:
                self._loop(study, handle, search, result)
            finally:
                for k in ("trained", "reused", "rejected", "failed", "pruned", "skipped"):
                    setattr(result, k, search.counts[k])
                result.completed = _evaluated(study.get_trials(deepcopy=False))
                if self.outputs:
                    result.files = write_outputs(study, space, self.out, handle.desc, builder)
            if result.interrupted:
                raise KeyboardInterrupt
            return result
        finally:
            optuna.logging.set_verbosity(prev_level)

    def _loop(self, study: Any, handle: StorageHandle, search: TrialRunner, result: SearchResult) -> None:
        from optuna.trial import TrialState

        space, want = self.space, self.want
        max_attempts = space.study.max_attempts or max(100, 20 * want)
        start = time.monotonic()
        attempts = fails_in_row = 0
        feasible = False
        first_failure = ""
        current = None
        bar = self._bar(study) if self.progress else None
        restore = _interrupt_once()
        try:
            while True:
                if self.timeout is not None and time.monotonic() - start >= self.timeout:
                    result.stopped, result.timed_out = f"timeout after {self.timeout:g} s", True
                    break
                if attempts >= max_attempts:
                    result.stopped = (f"{attempts} trials attempted without reaching {want} evaluated "
                                      f"(max_attempts; {search.counts['reused']} duplicates, {search.counts['rejected']} "
                                      "rejected)")
                    break
                # under the lock: dead workers' trials are failed, and a trial is reserved and marked as this
                # worker's (a retry inherits its dead original's worker attribute) before anyone looks again
                with handle.lock(), DEFER.section():
                    _fail_dead_workers(study, self.resilience.retries, self.resilience.grace, self.say)
                    trials = study.get_trials(deepcopy=False)
                    done = _evaluated(trials)
                    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
                    if done < want and done + running < want:
                        current = study.ask()
                        current.set_user_attr("worker", search.host_worker)
                if done >= want:
                    break
                if current is None:
                    # the running trials may reach the target; if a worker dies, its trial comes back
                    self._update(bar, study, done)
                    time.sleep(POLL_SECONDS)
                    continue
                attempts += 1
                status = self._run_one(study, search, current)
                current = None
                result.new_trials += 1
                if status == "failed":
                    fails_in_row += 1
                    if not first_failure:
                        first_failure = search.last_reason
                        self.say(f"trial failed: {first_failure} (log: {self.out / 'logs'})")
                elif status in ("complete", "duplicate", "pruned"):
                    fails_in_row = 0
                if status not in ("rejected", "infeasible"):
                    feasible = True
                if fails_in_row >= MAX_CONSECUTIVE_FAILURES:
                    last = search.last_reason
                    raise SearchError(f"{fails_in_row} trials in a row failed; the last: {last}"
                                      + (f"; the first: {first_failure}" if first_failure != last else ""),
                                      hint=f"fix the evaluator or its data; per-trial logs in {self.out / 'logs'}")
                if not feasible and attempts >= NO_FEASIBLE_AFTER:
                    raise SearchError(f"none of the first {attempts} samples is a valid architecture within the "
                                      f"constraints; the last: {search.last_reason}",
                                      hint="raise the limits under 'constraints' or narrow the choices")
                if search.exhausted and _evaluated(study.get_trials(deepcopy=False)) < want:
                    result.stopped = "the sampler's grid is exhausted"
                    break
                self._update(bar, study, None)
        except KeyboardInterrupt:
            result.interrupted = True
            _interrupted(study, current or search.interrupted)
        finally:
            restore()
            if bar is not None:
                bar.close()

    def _run_one(self, study: Any, search: TrialRunner, trial: Any) -> str:
        """Run one trial with a heartbeat thread beside it (so other workers can tell it is alive)."""
        try:
            from optuna.storages._heartbeat import get_heartbeat_thread
        except ImportError:  # pragma: no cover - an Optuna without heartbeats
            return search.run_trial(trial)
        beat = get_heartbeat_thread(trial._trial_id, study._storage)
        beat.start()
        try:
            return search.run_trial(trial)
        finally:
            beat.join()

    def _bar(self, study: Any) -> Any:
        from archc.progress import progress_bar

        done = _evaluated(study.get_trials(deepcopy=False))
        # a tqdm bar on a terminal; in a log, a plain line every 30 s instead of carriage-return redraws
        bar = progress_bar(self.want, min(done, self.want), f"search {self.space.name}", "trial", sys.stderr)
        bar.set_postfix_str(_best_text(study, self.space))
        return bar

    def _update(self, bar: Any, study: Any, done: int | None) -> None:
        if bar is None:
            return
        if done is None:
            done = _evaluated(study.get_trials(deepcopy=False))
        bar.n = min(done, self.want)
        bar.set_postfix_str(_best_text(study, self.space))
        bar.refresh()


logging.getLogger("archc.search").addHandler(logging.NullHandler())
