"""Helpers of the cluster tests: storage kinds (journal, SQLite, PostgreSQL), spaces, worker processes.

PostgreSQL: the URL comes from ``ARCHC_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets it).
Without a reachable server the PostgreSQL cases skip with a one-line reason, except under CI (``CI``
set), where they fail: CI must prove the cluster path on a real server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest

from .conftest import ROOT

POSTGRES_ENV = "ARCHC_TEST_POSTGRES_URL"
KINDS = ["journal", "sqlite", "postgresql"]

#: a space of 192 architectures scored by a zero-cost proxy (a forward and backward pass: fast)
WORKER_SPACE = """\
archc: 1
name: {name}
base: {base}
choices:
  width: {{type: int, low: 4, high: 64, step: 4}}
  depth: {{type: int, low: 1, high: 3}}
  kernel: [1, 3]
  act: {{type: op, values: [relu, gelu]}}
points:
  first: {{width: 8, depth: 1, kernel: 3, act: relu}}
objectives: {{naswot: maximize}}
evaluator: {{task: classification, data: {{source: npz, path: data.npz, val: 32}}, zero_cost: [naswot]}}
study: {{sampler: {{name: random, seed: 0}}, trials: 10, enqueue: [first]}}
"""

#: the same space with real training that takes seconds per trial (for killing a worker mid-trial)
SLOW_SPACE = WORKER_SPACE.replace(
    "objectives: {{naswot: maximize}}\nevaluator: {{task: classification, data: {{source: npz, path: data.npz, val: 32}}, "
    "zero_cost: [naswot]}}",
    "objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, data: {{source: npz, path: slow.npz, val: 64}}, "
    "train: {{epochs: {epochs}, batch_size: 8}}}}")


def postgres_url() -> str:
    """The test server's URL, or skip (fail under CI) with a one-line reason."""
    url = os.environ.get(POSTGRES_ENV)
    why = ""
    if not url:
        why = f"no PostgreSQL server: set {POSTGRES_ENV}=postgresql://user@host:port/db (see README, 'cluster tests')"
    else:
        try:
            import sqlalchemy

            from archc.search.storage import normalize_url

            eng = sqlalchemy.create_engine(normalize_url(url)[0])
            with eng.connect() as c:
                c.execute(sqlalchemy.text("SELECT 1"))
            eng.dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error means: not reachable
            why = f"PostgreSQL at {POSTGRES_ENV} is not reachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    assert url is not None
    return url


def storage_for(kind: str, tmp_path: Path) -> str:
    """A storage of ``kind`` for one test (PostgreSQL: the shared server; tests use unique study names)."""
    if kind == "journal":
        return str(tmp_path / "study.log")
    if kind == "sqlite":
        pytest.importorskip("sqlalchemy")
        return f"sqlite:///{tmp_path / 'study.db'}"
    return postgres_url()


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_space(tmp_path: Path, name: str, text: str = WORKER_SPACE, epochs: int = 3) -> Path:
    if "slow.npz" in text and not (tmp_path / "slow.npz").exists():
        from .conftest import make_npz

        make_npz(tmp_path / "slow.npz", n=1536, size=8)
    return _write(tmp_path, text, name, epochs)


def _write(tmp_path: Path, text: str, name: str, epochs: int) -> Path:
    from .conftest import TINY, make_npz

    if not (tmp_path / "data.npz").exists():
        make_npz(tmp_path / "data.npz")
    p = tmp_path / f"{name}.yaml"
    p.write_text(text.format(base=TINY.as_posix(), name=name, epochs=epochs), encoding="utf-8")
    return p


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


def archc(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """``python -m archc search ...`` as a process (stdout and stderr captured as text), with Ctrl-C at its
    default disposition whatever the suite inherited."""
    return subprocess.Popen([sys.executable, "-m", "archc", "search", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=str(ROOT),
                            preexec_fn=default_sigint, **kw)


def default_sigint() -> None:
    """Run in the child before exec: a suite started in the background inherits SIGINT ignored, and Python
    then installs no KeyboardInterrupt handler, so a test that sends Ctrl-C would test how the suite was
    launched instead of archc."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archc", "search", *args], capture_output=True, text=True,
                          env=env(), cwd=str(ROOT), timeout=timeout)


def load(storage: str, name: str) -> Any:
    """The study as a user would open it with ``optuna.load_study``."""
    if "://" not in storage:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    return optuna.load_study(study_name=name, storage=storage)


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def child_pids(pid: int, contains: str = "") -> list[int]:
    """The live children of ``pid`` (Linux ``/proc``) whose command line contains ``contains``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and contains in cmd:
            kids.append(int(stat.parent.name))
    return kids
