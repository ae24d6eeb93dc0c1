"""Where a study lives: storage URLs, heartbeats, safe concurrent opening, journal repair.

Three kinds of storage hold an archc study, all opened by :func:`make_storage`:

* a journal file (the default ``<run folder>/study.log``, or any path): Optuna's ``JournalStorage``;
  processes on one machine, or on several machines sharing the folder (NFS), append to it;
* ``sqlite:///path.db``: Optuna's ``RDBStorage`` on one machine;
* ``postgresql://user:pw@host/db`` (``mysql://...``): ``RDBStorage`` on a server, for many machines.
  A plain ``postgresql://`` picks psycopg 3 when it is installed (``pip install -e ".[cluster]"``),
  else psycopg2; SQLAlchemy alone would insist on psycopg2.

Every storage gets heartbeats: a running trial records one every ``heartbeat`` seconds, and a RUNNING
trial whose last heartbeat is older than ``grace`` seconds belongs to a dead worker; any worker on any
host then fails it (``optuna.storages.fail_stale_trials``) and Optuna's retry callback queues the same
parameters again, at most ``retries`` times. ``RDBStorage`` has this built in; the journal gets it
from :class:`HeartbeatJournalStorage` (``JournalStorage`` has no heartbeat of its own in Optuna 5.1),
which keeps the heartbeat as a trial system attribute.

Opening is safe when many workers start at once: table creation, study creation and the study's first
attributes happen under one lock per storage (a PostgreSQL advisory lock, a MySQL named lock, or a
lock file beside a SQLite database or journal), so no worker sees half-created tables. Under the same
lock each worker claims a *slot*, a number unique in the study, from which its sampler seed derives.

A journal whose last record was torn (a worker killed while writing) is repaired on opening: the
file is backed up, the partial record dropped and a warning logged; Optuna itself would read such a
file but the next append would glue onto the torn line and leave the study unreadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError

__all__ = ["STORAGE_FILE", "DEFER", "StorageError", "Resilience", "StorageHandle", "default_storage_path", "make_storage",
           "normalize_url", "mask_url", "repair_journal", "HeartbeatJournalStorage", "storage_lock",
           "retry_callback"]

STORAGE_FILE = "study.log"
#: the advisory-lock key archc takes on a PostgreSQL database while it creates tables and studies
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"archc.search.storage").digest()[:8], "big", signed=True)


class StorageError(ArchcError):
    """A storage cannot be opened (driver missing, server unreachable, unreadable journal)."""


@dataclass(frozen=True)
class Resilience:
    """How dead workers are noticed and their trials retried.

    ``heartbeat``: seconds between a running trial's heartbeats; ``grace``: seconds without one after
    which any worker fails the trial; ``retries``: how many times a trial whose worker died is queued
    again with the same parameters (a trial that fails by itself, raising or giving NaN, never is).
    """

    heartbeat: int = 10
    grace: int = 60
    retries: int = 2

    def __post_init__(self) -> None:
        if self.heartbeat < 1 or self.grace < 1 or self.retries < 0:
            raise StorageError(f"heartbeat and grace must be at least 1 s and retries at least 0, got "
                               f"{self.heartbeat}, {self.grace}, {self.retries}")
        if self.grace <= self.heartbeat:
            raise StorageError(f"the grace period ({self.grace} s) must exceed the heartbeat interval ({self.heartbeat} s)",
                               hint="e.g. --heartbeat 10 --grace 60")


@dataclass
class StorageHandle:
    """An opened storage: the Optuna storage object, its printable description and its lock."""

    storage: Any
    desc: str
    kind: str  # journal, sqlite, postgresql, mysql, ...
    url: str | None = None  # the normalized URL of an RDB storage
    path: Path | None = None  # the journal file or SQLite database
    repaired: Path | None = None  # the backup of a repaired journal

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The storage-wide lock that serializes study creation (see :func:`storage_lock`)."""
        return storage_lock(self)


def default_storage_path(out: Path) -> Path:
    """The journal of a run folder."""
    return out / STORAGE_FILE


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and summaries)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_DRIVERS = {  # SQLAlchemy dialect+driver -> (module, package to install)
    "postgresql+psycopg": ("psycopg", 'psycopg[binary] (pip install -e ".[cluster]")'),
    "postgresql+psycopg2": ("psycopg2", "psycopg2-binary"),
    "postgresql+pg8000": ("pg8000", "pg8000"),
    "mysql+pymysql": ("pymysql", 'PyMySQL (pip install -e ".[cluster]")'),
    "mysql+mysqldb": ("MySQLdb", "mysqlclient"),
}


#: a plain dialect → (kind, the package the cluster extra installs, (module, SQLAlchemy scheme) in order of preference)
_DEFAULT_DRIVERS = {
    "postgresql": ("PostgreSQL", "psycopg 3", (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))),
    "mysql": ("MySQL", "PyMySQL", (("MySQLdb", "mysql+mysqldb"), ("pymysql", "mysql+pymysql"))),
}


def normalize_url(url: str) -> tuple[str, str]:
    """The SQLAlchemy URL for an Optuna storage URL, and the storage kind.

    ``postgresql://`` (or ``postgres://``) becomes ``postgresql+psycopg://`` when psycopg 3 is
    installed, else ``postgresql+psycopg2://``; ``mysql://`` becomes ``mysql+pymysql://`` unless
    mysqlclient is installed. A missing driver is a :class:`StorageError` that names the package.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(f"'{url}' is not a storage URL", hint="e.g. sqlite:///study.db or postgresql://user@host/db")
    scheme = scheme.lower()
    dialect = scheme.split("+")[0]
    if dialect == "postgres":
        dialect, scheme = "postgresql", "postgresql" + scheme[len("postgres"):]
    if not _have("sqlalchemy"):
        raise StorageError(f"the storage '{mask_url(url)}' needs SQLAlchemy, which is not installed",
                           hint='pip install -e ".[cluster]"')
    if scheme in _DEFAULT_DRIVERS:
        kind, package, candidates = _DEFAULT_DRIVERS[scheme]
        found = next((full for module, full in candidates if _have(module)), None)
        if found is None:
            raise StorageError(f"the storage '{mask_url(url)}' needs a {kind} driver; none is installed",
                               hint=f'pip install -e ".[cluster]" ({package})')
        scheme = found
    if scheme in _DRIVERS and not _have(_DRIVERS[scheme][0]):
        raise StorageError(f"the storage '{mask_url(url)}' needs the {_DRIVERS[scheme][0]} driver, which is not installed",
                           hint=f"install {_DRIVERS[scheme][1]}, or write postgresql:// to use the installed driver")
    return f"{scheme}://{rest}", dialect


# -------------------------------------------------------------------------------------------------------
# interrupts held back around writes
# -------------------------------------------------------------------------------------------------------
class _Deferral:
    """Ctrl-C that arrives while the main thread writes to the storage waits for the write to end.

    A KeyboardInterrupt inside Optuna's journal lock leaves the lock or a half-written line behind, and
    one between ``ask`` and its bookkeeping leaves a trial nobody owns. The worker's SIGINT handler
    (:func:`archc.search.runner`) asks :data:`DEFER` whether to raise now or when the section ends.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.pending = False

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.pending:
                self.pending = False
                raise KeyboardInterrupt


DEFER = _Deferral()


def _safe_backend_class() -> type:
    from optuna.storages.journal import JournalFileBackend

    class _SafeJournalFileBackend(JournalFileBackend):
        """Optuna's journal file whose appends finish before a Ctrl-C takes effect."""

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with DEFER.section():
                super().append_logs(logs)

    return _SafeJournalFileBackend


# -------------------------------------------------------------------------------------------------------
# heartbeats on the journal
# -------------------------------------------------------------------------------------------------------
def _journal_heartbeat_class() -> type:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class _HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        """``JournalStorage`` with Optuna's heartbeat protocol: the last beat is a trial system attribute
        (wall-clock seconds), so any process that reads the journal sees it. A RUNNING trial that never
        beat counts from its start time."""

        def __init__(self, backend: Any, heartbeat_interval: int, grace_period: int,
                     stale_callback: Callable[[Any, Any], None] | None) -> None:
            super().__init__(backend)
            self._hb_interval = heartbeat_interval
            self._hb_grace = grace_period
            self._hb_callback = stale_callback

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
                pass  # the trial ended (or was failed as stale) between two beats

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now = time.time()
            stale = []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                # a retry inherits its original's system attributes, old heartbeat included: its own
                # start time counts until it beats
                beat = t.system_attrs.get(HEARTBEAT_ATTR)
                start = t.datetime_start.timestamp() if t.datetime_start is not None else now
                last = max(float(beat), start) if isinstance(beat, (int, float)) else start
                if now - last > self._hb_grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._hb_interval

        def get_heartbeat_stale_trial_callback(self) -> Callable[[Any, Any], None] | None:
            return self._hb_callback

        def get_failed_trial_callback(self) -> Callable[[Any, Any], None] | None:  # Optuna < 4.9
            return self._hb_callback

    return _HeartbeatJournalStorage


HEARTBEAT_ATTR = "archc:heartbeat"


def HeartbeatJournalStorage(backend: Any, heartbeat_interval: int, grace_period: int,  # noqa: N802 - a class factory
                            stale_callback: Callable[[Any, Any], None] | None = None) -> Any:
    """A ``JournalStorage`` on ``backend`` that supports Optuna's heartbeat (see the module docstring)."""
    return _journal_heartbeat_class()(backend, heartbeat_interval, grace_period, stale_callback)


def retry_callback(retries: int) -> Callable[[Any, Any], None]:
    """Optuna's retry callback: queue a failed trial again with the same parameters, ``retries`` times."""
    import optuna.storages as st

    cls = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    return cls(max_retry=retries)


# -------------------------------------------------------------------------------------------------------
# journal repair
# -------------------------------------------------------------------------------------------------------
def _journal_lock(path: Path) -> Any:
    from optuna.storages.journal import JournalFileSymlinkLock

    # the lock Optuna's JournalFileBackend takes around every append: repairing under it never cuts a
    # record another worker is writing
    return JournalFileSymlinkLock(str(path))


def repair_journal(path: Path, warn: Callable[[str], None]) -> Path | None:
    """Drop a torn last record of the journal ``path``; returns the backup written, or None when intact.

    A record is torn when the file does not end with a newline or its last line is not JSON. Only the
    last line is ever dropped: damage before it is not a torn write, and is reported, not repaired.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = _journal_lock(path)
    lock.acquire()
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data.endswith(b"\n") and _last_line_ok(data):
            return None
        body = data if not data.endswith(b"\n") else data[:-1]
        cut = body.rfind(b"\n") + 1  # start of the torn line (0 when it is the only line)
        for k, line in enumerate(data[:cut].splitlines()):
            try:
                json.loads(line)
            except ValueError:
                raise StorageError(f"the study journal '{path}' is damaged at line {k + 1} (not only a torn last record)",
                                   hint="restore it from a backup, or start a new study with --out/--storage") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.torn-{stamp}")
        n = 1
        while backup.exists():
            backup = path.with_name(f"{path.name}.torn-{stamp}-{n}")
            n += 1
        shutil.copy2(path, backup)
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    warn(f"warning: the last record of the study journal '{path}' was torn (a worker killed while writing); "
         f"dropped it ({len(data) - cut} bytes), the original is kept as '{backup}'")
    return backup


def _last_line_ok(data: bytes) -> bool:
    last = data[:-1].rsplit(b"\n", 1)[-1]
    try:
        json.loads(last)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------------------------------------------
# opening
# -------------------------------------------------------------------------------------------------------
def make_storage(storage: str | None, out: Path, resilience: Resilience | None = None,
                 warn: Callable[[str], None] | None = None) -> StorageHandle:
    """Open the storage of a run (see the module docstring).

    ``None``: the journal ``study.log`` in the run folder; a value with ``://`` is a storage URL;
    anything else is the path of a journal file. Heartbeats and retries follow ``resilience``.
    """
    import optuna

    res = resilience or Resilience()
    say = warn or (lambda s: None)
    callback = retry_callback(res.retries)
    if storage is not None and "://" in storage:
        url, kind = normalize_url(storage)
        path = None
        engine_kwargs: dict[str, Any] = {}
        if kind == "sqlite":
            # writers queue on SQLite's file lock; its default 5 s wait is too short for many workers
            engine_kwargs = {"connect_args": {"timeout": 120}}
            db = url.split(":///", 1)[1] if ":///" in url else ""
            path = Path(db) if db and db != ":memory:" else None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        else:
            engine_kwargs = {"pool_pre_ping": True}
        handle = StorageHandle(None, mask_url(storage), kind, url, path)
        with storage_lock(handle):
            handle.storage = _open_rdb(url, engine_kwargs, res, callback, handle.desc)
        return handle
    path = Path(storage) if storage else default_storage_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        repaired = repair_journal(path, say)
        backend = _safe_backend_class()(str(path))
        st = HeartbeatJournalStorage(backend, res.heartbeat, res.grace, callback)
    except StorageError:
        raise
    except (OSError, ValueError, optuna.exceptions.OptunaError) as exc:
        raise StorageError(f"cannot open the study journal '{path}': {exc}",
                           hint="check that the folder is writable and the file is an Optuna journal") from None
    return StorageHandle(st, str(path), "journal", None, path, repaired)


def _open_rdb(url: str, engine_kwargs: dict[str, Any], res: Resilience, callback: Any, desc: str) -> Any:
    import optuna

    kwargs: dict[str, Any] = {"heartbeat_interval": res.heartbeat, "grace_period": res.grace}
    import inspect

    if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage.__init__).parameters:
        kwargs["heartbeat_stale_trial_callback"] = callback
    else:  # Optuna < 4.9
        kwargs["failed_trial_callback"] = callback
    last: Exception | None = None
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=dict(engine_kwargs), **kwargs)
        except Exception as exc:  # noqa: BLE001 - drivers raise their own errors
            last = exc
            if not _transient(exc):
                break
            time.sleep(0.2 * (attempt + 1))
    assert last is not None
    raise StorageError(f"cannot open the storage '{desc}': {type(last).__name__}: {_first_line(last)}",
                       hint="check that the server runs and the URL (user, password, host, database) is right") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _transient(exc: BaseException) -> bool:
    """Errors a concurrent creator causes (the other worker wins the race): worth one more try."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(k in text for k in ("already exists", "unique", "integrity", "duplicate", "locked", "deadlock"))


@contextlib.contextmanager
def storage_lock(handle: StorageHandle, timeout: float = 300.0) -> Iterator[None]:
    """Serialize study creation across every worker of a storage.

    PostgreSQL: a session advisory lock; MySQL: ``GET_LOCK``; SQLite and the journal: ``flock`` on a
    ``.archc-lock`` file beside the database or journal (not on NFS without lock support: use
    PostgreSQL there). An in-memory database needs no lock.
    """
    if handle.kind in ("postgresql", "mysql"):
        with _server_lock(handle, timeout):
            yield
        return
    if handle.path is None:
        yield
        return
    lock_path = handle.path.with_name(handle.path.name + ".archc-lock")
    with open(lock_path, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(f"waited {timeout:g} s for the lock '{lock_path}'",
                                       hint="another archc process holds it; if none runs, delete the file") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _server_lock(handle: StorageHandle, timeout: float) -> Iterator[None]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    assert handle.url is not None
    try:
        engine = sqlalchemy.create_engine(handle.url, poolclass=NullPool)
        conn = engine.connect()
    except Exception as exc:  # noqa: BLE001 - drivers raise their own errors
        raise StorageError(f"cannot connect to the storage '{handle.desc}': {type(exc).__name__}: {_first_line(exc)}",
                           hint="check that the server runs and the URL (user, password, host, database) is right") from None
    try:
        if handle.kind == "postgresql":
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        else:
            got = conn.execute(sqlalchemy.text("SELECT GET_LOCK('archc.search.storage', :t)"), {"t": int(timeout)}).scalar()
            if got != 1:
                raise StorageError(f"waited {timeout:g} s for the study-creation lock of '{handle.desc}'")
        conn.commit()
        yield
    finally:
        try:
            if handle.kind == "postgresql":
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            else:
                conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK('archc.search.storage')"))
            conn.commit()
        except Exception:  # noqa: BLE001 - closing the session releases the lock anyway
            pass
        conn.close()
        engine.dispose()
