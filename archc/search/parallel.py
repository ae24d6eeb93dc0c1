"""``run_search(workers=N)``: the parent side of a multi-process search.

The parent checks the space once (:mod:`archc.search.preflight`), opens the study (so that the workers
find it created), starts N ``archc search`` workers on the same storage (:mod:`archc.search.workers`),
waits for them, and writes the run folder's outputs from the storage. A worker's own error is printed
by the worker; the parent then fails with the worker's exit status.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from archc.search.evaluate import ProxyEvaluator
from archc.search.outputs import write_outputs
from archc.search.space import load_space
from archc.search.storage import Resilience, default_storage_path
from archc.search.storage import make_storage as open_storage
from archc.search.trial import ModelBuilder
from archc.search.workers import run_workers, split_threads, worker_command

__all__ = ["run_parallel"]


def run_parallel(space_path: str | Path, *, trials: int | None, timeout: float | None, storage: str | None,
                 study_name: str | None, out: str | Path | None, seed: int | None, threads: int | None, evaluator: Any,
                 outputs: bool, log: Callable[[str], None] | None, workers: int, resilience: Resilience | None,
                 preflight: bool, progress: bool) -> Any:
    """Run the search in ``workers`` processes; returns a :class:`~archc.search.runner.SearchResult` for all of them."""
    import optuna
    from optuna.trial import TrialState

    from archc.search.runner import SearchError, SearchResult, _evaluated, _open_study

    say = log or (lambda s: None)
    if evaluator is not None:
        raise SearchError("an evaluator object cannot be handed to worker processes",
                          hint="use workers=1 with a custom evaluator, or configure the evaluator in the space file")
    space = load_space(space_path)
    cfg = space.study
    want = trials if trials is not None else cfg.trials
    if want < 1:
        raise SearchError(f"--trials must be at least 1, got {want}")
    res = resilience or Resilience()
    out_dir = Path(out) if out is not None else space.run_folder()
    builder = ModelBuilder(space)
    if preflight:
        from archc.search.preflight import preflight as check

        check(space, builder, ProxyEvaluator(space.evaluator, threads), say)
    out_dir.mkdir(parents=True, exist_ok=True)
    where = storage if storage is not None else (cfg.storage or str(default_storage_path(out_dir)))
    if "://" not in where:
        where = str(Path(where).resolve())
    handle = open_storage(where, out_dir, res, say)
    name = study_name or cfg.name
    study, _ = _open_study(space, space_path, handle, name, say, claim=False)
    before = len(study.get_trials(deepcopy=False))
    opts = ["--trials", str(want), "--out", str(out_dir.resolve()), "--storage", where, "--study", name,
            "--heartbeat", str(res.heartbeat), "--grace", str(res.grace), "--retries", str(res.retries),
            "--no-progress", "--no-outputs", "--no-preflight"]
    if seed is not None:
        opts += ["--seed", str(seed)]
    if timeout is not None:
        opts += ["--timeout", str(timeout)]
    if threads is None:  # the cores split between the workers, but never more than the space asks for
        threads = split_threads(workers)
        if space.evaluator.threads:
            threads = min(threads, int(space.evaluator.threads))
    bar, tick = _progress(study, space, want) if progress else (None, None)
    interrupted = False
    try:
        exits = run_workers(worker_command(str(Path(space_path).resolve()), opts), workers, threads, say, tick)
    except KeyboardInterrupt:  # every worker has stopped: write what the study holds, then report the interrupt
        interrupted, exits = True, []
    finally:
        if bar is not None:
            if tick is not None:
                tick()
            bar.close()
    study = optuna.load_study(study_name=name, storage=handle.storage)
    trials_now = [t for t in study.get_trials(deepcopy=False) if t.number >= before]
    by = {}
    for t in trials_now:
        key = t.user_attrs.get("status") or ("died" if t.state == TrialState.FAIL else t.state.name.lower())
        by[key] = by.get(key, 0) + 1
    result = SearchResult(study, space, out_dir, handle.desc, _evaluated(study.get_trials(deepcopy=False)),
                          len(trials_now), by.get("complete", 0), by.get("duplicate", 0),
                          by.get("rejected", 0) + by.get("infeasible", 0), by.get("failed", 0) + by.get("died", 0),
                          by.get("pruned", 0), want=want, skipped=by.get("in_flight", 0), workers=workers, seed=seed)
    if outputs:
        result.files = write_outputs(study, space, out_dir, handle.desc, builder)
    bad = [e for e in exits if e.returncode != 0]
    if interrupted or any(e.returncode in (130, -2) for e in bad):
        result.interrupted = True
        raise KeyboardInterrupt
    if bad:
        e = bad[0]
        raise SearchError(f"worker {e.index} (pid {e.pid}) stopped with exit status {e.returncode}"
                          + (f" ({len(bad)} of {workers} workers failed)" if len(bad) > 1 else "")
                          + "; its error is printed above",
                          hint="fix that error and run the same command again: the study resumes")
    if timeout is not None and result.completed < want:
        result.timed_out, result.stopped = True, f"timeout after {timeout:g} s"
    elif result.completed < want:
        result.stopped = "the workers stopped before the study reached its target (see their messages above)"
    return result


def _progress(study: Any, space: Any, want: int) -> tuple[Any, Callable[[], None] | None]:
    """A progress bar of the study's evaluated trials, redrawn from the storage (the workers draw none)."""
    import sys

    from archc.progress import progress_bar
    from archc.search.runner import _best_text, _evaluated

    # a tqdm bar on a terminal; in a log, a plain line every 30 s instead of carriage-return redraws
    bar = progress_bar(want, min(_evaluated(study.get_trials(deepcopy=False)), want), f"search {space.name}", "trial",
                       sys.stderr)

    def tick() -> None:
        bar.n = min(_evaluated(study.get_trials(deepcopy=False)), want)
        bar.set_postfix_str(_best_text(study, space))
        bar.refresh()

    return bar, tick
