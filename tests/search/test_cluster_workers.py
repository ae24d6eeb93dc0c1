"""Many workers on one study, on the journal, SQLite and PostgreSQL: exact counts, safe creation, seeds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from .clusterkit import KINDS, archc, load, make_space, run, storage_for, unique_name


@pytest.mark.parametrize("kind", KINDS)
def test_four_workers_forty_trials_exactly(tmp_path: Path, kind: str) -> None:
    storage = storage_for(kind, tmp_path)
    name = unique_name("w4")
    space = make_space(tmp_path, name)
    p = run(str(space), "--workers", "4", "--trials", "40", "--storage", storage, "--study", name,
            "--out", str(tmp_path / "run"), "--no-progress", timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "started 4 workers" in p.stderr and "40 trials complete" in p.stdout
    study = load(storage, name)
    trials = study.get_trials(deepcopy=False)
    assert len({t.number for t in trials}) == len(trials)
    evaluated = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["status"] == "complete"]
    assert len(evaluated) == 40
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # no architecture trained twice: each evaluated trial has its own evaluation key; the rest reused or stepped aside
    keys = Counter(t.user_attrs["eval_key"] for t in evaluated)
    assert keys.most_common(1)[0][1] == 1
    for t in trials:
        if t.user_attrs.get("status") == "duplicate":
            assert t.user_attrs["eval_key"] in keys
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 4  # every worker ran trials
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_two_workers_started_together_on_an_empty_database(tmp_path: Path, kind: str) -> None:
    storage = storage_for(kind, tmp_path)
    name = unique_name("pair")
    space = make_space(tmp_path, name)
    procs = [archc(str(space), "--trials", "6", "--storage", storage, "--study", name, "--out", str(tmp_path / f"r{i}"),
                   "--seed", "1", "--no-progress") for i in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    study = load(storage, name)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and t.user_attrs["status"] == "complete"]
    assert len(done) == 6
    # the enqueued point was queued once, not once per worker
    assert sum(1 for t in study.trials if t.params == {"width": 8, "depth": 1, "kernel": 3, "act": "relu"}) == 1
    # the same --seed on both: each worker still draws its own sequence (seeded by its slot in the study)
    by_worker: dict[str, list[dict]] = {}
    for t in sorted(study.trials, key=lambda t: t.number):
        if "failed_trial" not in t.system_attrs and t.number > 0:
            by_worker.setdefault(t.user_attrs["worker"], []).append(t.params)
    seqs = list(by_worker.values())
    assert len(seqs) == 2 and seqs[0][:2] != seqs[1][:2]


def test_worker_seeds_differ_and_repeat() -> None:
    from archc.search.workers import worker_seed

    # the old scheme (seed + trials in the study) made seed 1 after one trial equal seed 2 after none
    assert worker_seed(1, 1) != worker_seed(2, 0)
    assert len({worker_seed(1, k) for k in range(64)} | {worker_seed(2, k) for k in range(64)}) == 128
    assert worker_seed(7, 3) == worker_seed(7, 3) and worker_seed(None, 3) is None


def test_thread_split_and_gpu_assignment(monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.search import workers

    assert workers.split_threads(4, cpus=16) == 4 and workers.split_threads(3, cpus=2) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2,3")
    assert workers.visible_gpus() == ["0", "2", "3"]
    pool = workers.WorkerPool(["true"], 4)
    assert pool.gpus == ["0", "2", "3"]


def _open_at_once(args: tuple) -> int:
    storage, out, space, name, barrier = args
    from archc.search.runner import _open_study
    from archc.search.space import load_space
    from archc.search.storage import make_storage

    s = load_space(space)
    barrier.wait(timeout=60)
    handle = make_storage(storage, Path(out))
    _, slot = _open_study(s, space, handle, name, lambda line: None)
    return slot


@pytest.mark.parametrize("kind", KINDS)
def test_six_processes_create_one_study_at_the_same_instant(tmp_path: Path, kind: str) -> None:
    """Tables, study, first attributes and the enqueued point are created once; every worker gets its own slot."""
    import multiprocessing as mp

    storage = storage_for(kind, tmp_path)
    name = unique_name("race")
    space = make_space(tmp_path, name)
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(6)
    with ctx.Pool(6) as pool:
        slots = pool.map(_open_at_once, [(storage, str(tmp_path / "run"), str(space), name, barrier)] * 6)
    assert sorted(slots) == list(range(6))
    study = load(storage, name)
    assert len(study.trials) == 1 and study.trials[0].state == TrialState.WAITING  # the enqueued point, once
    assert study.user_attrs["space_digest"]
