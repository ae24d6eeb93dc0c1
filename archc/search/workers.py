"""Several worker processes on one study: seeds, threads, GPUs, and a clean Ctrl-C.

``archc search SPACE --workers N`` starts N copies of the same search as child processes (``python -m
archc search ... --worker-index i``); each opens the same storage and runs trials until the study holds
the wanted number, so the processes need no channel besides the storage. On several machines the same
command with the same ``--storage``/``--study`` joins the one study.

Seeds: each worker claims a *slot* in the study (a counter kept in the study and bumped under the
storage's creation lock, see :mod:`archc.search.storage`), and seeds its sampler with
``SeedSequence([seed, slot])``. Slots are unique across processes and machines, so no two workers draw
the same sequence, and a resumed worker gets a new slot, so it does not replay its old draws. A fresh
study with the same seed and worker count hands out the same slots, hence the same seeds.

Threads: the CPU cores (``os.sched_getaffinity``) are split evenly, at least one per worker (and no more
than the space's ``evaluator.threads`` when it sets them; ``--threads`` overrides both).
GPUs: with several visible (``CUDA_VISIBLE_DEVICES`` or all the devices torch sees), worker i gets
device ``i mod count`` as its only visible device.

Ctrl-C: the terminal sends SIGINT to every process of the group; each worker fails its running trial,
queues it again (it resumes with the same parameters) and exits. A SIGINT or SIGTERM sent to the parent
alone is forwarded. Workers that outlive a grace period are terminated, then killed, so none is left
behind; on Linux a worker also dies with its parent (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["worker_seed", "split_threads", "visible_gpus", "WorkerPool", "run_workers"]

#: seconds the workers get to finish their interrupted trial before SIGTERM, then SIGKILL
STOP_GRACE = 20.0


def worker_seed(base: int | None, slot: int) -> int | None:
    """The sampler seed of the worker holding ``slot`` (None without a base seed: unseeded)."""
    if base is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([int(base), int(slot)]).generate_state(1, dtype=np.uint32)[0])


def available_cpus() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def split_threads(workers: int, cpus: int | None = None) -> int:
    """Torch threads per worker: the cores split evenly, at least one each."""
    return max(1, (cpus or available_cpus()) // max(1, workers))


def visible_gpus() -> list[str]:
    """The CUDA devices a child may be given (ids as CUDA_VISIBLE_DEVICES spells them)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001 - no usable torch CUDA: no GPUs to hand out
        return []


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to send this process SIGTERM when its parent dies (elsewhere a no-op: the parent's own
    handlers stop its children there)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the parent's handlers still stop the workers
        pass


@dataclass
class WorkerExit:
    """How one worker ended."""

    index: int
    pid: int
    returncode: int


class WorkerPool:
    """N child processes running ``argv`` with ``--worker-index i``; stops them all on the way out."""

    def __init__(self, argv: Sequence[str], workers: int, threads: int | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.argv = list(argv)
        self.n = workers
        self.threads = threads or split_threads(workers)
        self.say = say or (lambda s: None)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gpus = visible_gpus()

    def start(self) -> None:
        for i in range(self.n):
            env = dict(os.environ)
            env["OMP_NUM_THREADS"] = str(self.threads)
            if len(self.gpus) > 1:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus[i % len(self.gpus)]
            cmd = [*self.argv, "--worker-index", str(i), "--threads", str(self.threads)]
            self.procs.append(subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent))  # noqa: S603,PLW1509
        gpu = f", GPU {', '.join(self.gpus[i % len(self.gpus)] for i in range(self.n))}" if len(self.gpus) > 1 else ""
        self.say(f"started {self.n} workers (pids {', '.join(str(p.pid) for p in self.procs)}), "
                 f"{self.threads} thread(s) each{gpu}")

    def signal_all(self, sig: int) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:  # pragma: no cover - ended meanwhile
                    pass

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Wait ``grace`` seconds for interrupted workers, then SIGTERM, then SIGKILL: none outlives this."""
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            alive = [p for p in self.procs if p.poll() is None]
            if not alive:
                return
            self.say(f"{len(alive)} worker(s) still running: sending {signal.Signals(sig).name}")
            for p in alive:
                p.send_signal(sig)
            for p in alive:
                try:
                    p.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass

    def wait(self, tick: Callable[[], None] | None = None) -> list[WorkerExit]:
        """Wait for every worker (calling ``tick`` about once a second, e.g. to draw progress); Ctrl-C (or
        SIGTERM to this process) interrupts them all and re-raises."""
        interrupted = threading.Event()
        prev: dict[int, Any] = {}

        def on_signal(signum: int, frame: Any) -> None:
            interrupted.set()
            # the terminal already sent SIGINT to the whole group; a signal aimed at the parent alone is passed on
            self.signal_all(signal.SIGINT)

        for sig in (signal.SIGINT, signal.SIGTERM):
            prev[sig] = signal.signal(sig, on_signal)
        try:
            last = time.monotonic()
            while any(p.poll() is None for p in self.procs) and not interrupted.is_set():
                time.sleep(0.1)
                if tick is not None and time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    try:
                        tick()
                    except Exception:  # noqa: BLE001 - progress is cosmetic; the workers matter
                        tick = None
            if interrupted.is_set():
                self.stop()
                raise KeyboardInterrupt
        finally:
            for sig, h in prev.items():
                signal.signal(sig, h)
            if any(p.poll() is None for p in self.procs):
                self.signal_all(signal.SIGINT)
                self.stop()
        return [WorkerExit(i, p.pid, p.returncode) for i, p in enumerate(self.procs)]


def run_workers(argv: Sequence[str], workers: int, threads: int | None = None,
                say: Callable[[str], None] | None = None, tick: Callable[[], None] | None = None) -> list[WorkerExit]:
    """Run ``argv`` (an ``archc search`` command line without ``--workers``) in ``workers`` processes."""
    pool = WorkerPool(argv, workers, threads, say)
    try:
        pool.start()
    except BaseException:
        pool.signal_all(signal.SIGINT)
        pool.stop(grace=2.0)
        raise
    return pool.wait(tick)


def worker_command(space: str, options: Sequence[str]) -> list[str]:
    """``python -m archc search SPACE OPTIONS`` with this interpreter."""
    return [sys.executable, "-m", "archc", "search", space, *options]
