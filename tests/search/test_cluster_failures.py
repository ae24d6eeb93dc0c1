"""Workers that die or are interrupted: retried with the same parameters, resumable, no orphans; torn journals."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from .clusterkit import KINDS, SLOW_SPACE, archc, load, make_space, pid_alive, run, storage_for, unique_name, wait_for


def _running(storage: str, name: str, training: bool = False) -> list:
    """RUNNING trials; with ``training``, only those past sampling and costing (their model is training)."""
    try:
        trials = load(storage, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except (KeyError, FileNotFoundError):  # the run folder or the study is not created yet
        return []
    return [t for t in trials if not training or "eval_key" in t.user_attrs]


@pytest.mark.parametrize("kind,detect", [("journal", "pid"), ("journal", "heartbeat"), ("sqlite", "heartbeat"),
                                         ("postgresql", "heartbeat")])
def test_killed_worker_trial_is_retried_with_the_same_params(tmp_path: Path, kind: str, detect: str) -> None:
    """SIGKILL during the enqueued trial 0; another worker fails it (dead process on this host, or no
    heartbeat for the grace period as for a worker on another host) and runs it again."""
    storage = storage_for(kind, tmp_path)
    name = unique_name("kill")
    space = make_space(tmp_path, name, SLOW_SPACE, epochs=40)
    # the grace period is wide enough that a live worker starved of CPU (a loaded machine) is never taken for dead
    opts = ["--storage", storage, "--study", name, "--heartbeat", "2", "--grace", "10", "--no-progress"]
    a = archc(str(space), "--trials", "2", "--out", str(tmp_path / "a"), *opts)
    running = wait_for(lambda: _running(storage, name, training=True), 90, "worker A to train trial 0")
    assert running[0].number == 0
    killed_params = dict(running[0].params)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    if detect == "heartbeat":  # as if the dead worker ran on another machine: only its missing heartbeat tells
        study = load(storage, name)
        study._storage.set_trial_user_attr(running[0]._trial_id, "worker", "elsewhere:1")
    space.write_text(space.read_text().replace("epochs: 40", "epochs: 1"))  # the retry need not be slow
    b = run(str(space), "--trials", "2", "--out", str(tmp_path / "b"), *opts, timeout=240)
    assert b.returncode == 0, b.stderr[-2000:]
    study = load(storage, name)
    t0 = study.trials[0]
    assert t0.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].params == killed_params == t0.params
    assert retries[0].state == TrialState.COMPLETE and retries[0].user_attrs["status"] == "complete"
    assert sum(1 for t in study.trials if t.user_attrs.get("status") == "complete") == 2
    assert "queued them again" in b.stderr


def test_sigint_on_three_workers_leaves_no_orphan_and_a_resumable_study(tmp_path: Path) -> None:
    storage = str(tmp_path / "study.log")
    name = unique_name("int")
    space = make_space(tmp_path, name, SLOW_SPACE, epochs=20)
    opts = ["--storage", storage, "--study", name, "--out", str(tmp_path / "run"), "--no-progress"]
    p = archc(str(space), "--workers", "3", "--trials", "4", *opts, start_new_session=True)
    wait_for(lambda: len(_running(storage, name)) >= 2, 120, "two workers to run trials")
    os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    pids = [int(x) for x in re.search(r"started 3 workers \(pids ([\d, ]+)\)", err).group(1).split(", ")]
    assert len(pids) == 3 and not [q for q in pids if pid_alive(q)]
    study = load(storage, name)
    left = study.get_trials(states=(TrialState.RUNNING,))
    # a message string, not a tuple: pytest prints it whole (the workers' stderr says which one lagged)
    assert not left, (f"RUNNING after the interrupt: {[(t.number, t.user_attrs.get('worker')) for t in left]}; "
                      f"the parent's and workers' stderr:\n{err}")
    interrupted = study.get_trials(states=(TrialState.FAIL,))
    assert interrupted and all("interrupted" in t.user_attrs["reason"] for t in interrupted)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == sorted(t.number for t in interrupted)
    # resume (one worker, quick): the interrupted trials run again first, with the parameters they had
    space.write_text(space.read_text().replace("epochs: 20", "epochs: 1"))
    r = run(str(space), "--trials", "4", *opts, "--no-preflight", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    study = load(storage, name)
    for t in interrupted:
        again = [u for u in study.trials if u.system_attrs.get("failed_trial") == t.number]
        # (a trial interrupted while sampling has only the params drawn so far; the rest are drawn anew)
        assert len(again) == 1 and t.params.items() <= again[0].params.items() and again[0].state == TrialState.COMPLETE


def test_resume_reruns_a_killed_enqueued_trial_zero(tmp_path: Path) -> None:
    storage = str(tmp_path / "run" / "study.log")
    name = unique_name("zero")
    space = make_space(tmp_path, name, SLOW_SPACE, epochs=40)
    opts = ["--out", str(tmp_path / "run"), "--study", name, "--no-progress"]
    a = archc(str(space), "--trials", "1", *opts)
    wait_for(lambda: _running(storage, name, training=True), 90, "trial 0 to train")
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    space.write_text(space.read_text().replace("epochs: 40", "epochs: 1"))  # the resumed run need not be slow
    r = run(str(space), "--trials", "1", *opts, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    study = load(storage, name)
    again = [t for t in study.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(again) == 1 and again[0].params == {"width": 8, "depth": 1, "kernel": 3, "act": "relu"}
    assert again[0].state == TrialState.COMPLETE


def test_torn_journal_is_repaired_with_a_warning(tmp_path: Path) -> None:
    name = unique_name("torn")
    space = make_space(tmp_path, name)
    out = tmp_path / "run"
    r = run(str(space), "--trials", "2", "--out", str(out), "--study", name, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    log = out / "study.log"
    intact = log.read_bytes()
    with open(log, "ab") as f:  # a worker killed in the middle of a record
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "user_attr": {"k"')
    r = run(str(space), "--trials", "4", "--out", str(out), "--study", name, "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the last record of the study journal" in r.stderr and "torn" in r.stderr
    backups = list(out.glob("study.log.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(intact)
    study = load(str(log), name)  # Optuna reads the repaired journal, with the new trials
    assert sum(1 for t in study.trials if t.user_attrs.get("status") == "complete") == 4


def test_damage_before_the_last_record_is_reported_not_repaired(tmp_path: Path) -> None:
    from archc.search.storage import StorageError, repair_journal

    log = tmp_path / "study.log"
    log.write_bytes(b'{"a": 1}\n{broken\n{"b": 2}\n{"c"')
    with pytest.raises(StorageError, match="damaged at line 2"):
        repair_journal(log, print)
    assert log.read_bytes().endswith(b'{"c"')  # untouched


@pytest.mark.parametrize("kind", KINDS)
def test_optuna_and_dashboard_open_every_storage_kind(tmp_path: Path, kind: str) -> None:
    storage = storage_for(kind, tmp_path)
    name = unique_name("open")
    space = make_space(tmp_path, name)
    r = run(str(space), "--trials", "2", "--storage", storage, "--study", name, "--out", str(tmp_path / "run"),
            "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    if "://" in storage:
        from archc.search.storage import normalize_url

        study = optuna.load_study(study_name=name, storage=storage if kind == "sqlite" else normalize_url(storage)[0])
    else:
        study = load(storage, name)
    assert len(study.trials) >= 2
    dashboard = pytest.importorskip("optuna_dashboard")
    st = study._storage
    app = dashboard.wsgi(st)
    body = _wsgi_get(app, "/api/studies")
    assert name in body


def _wsgi_get(app, path: str) -> str:
    import io

    status: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.version": (1, 0), "wsgi.multithread": False,
               "wsgi.multiprocess": False, "wsgi.run_once": True}
    chunks = app(environ, lambda s, h, *a: status.append(s))
    body = b"".join(chunks).decode()
    assert status and status[0].startswith("200"), (status, body[:300])
    return body
