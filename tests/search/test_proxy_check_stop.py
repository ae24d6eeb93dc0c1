"""A proxy check that is stopped leaves no training behind: killed (SIGTERM), its training processes die
with it; interrupted (SIGINT to the check alone), it stops them and exits at once instead of waiting for
each to finish a budget that can take tens of minutes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from .clusterkit import archc, child_pids, pid_alive, wait_for
from .conftest import BASE_SPACE, write_space

#: the shared tiny space with trainings that would run for hours: the check is always stopped inside them
ENDLESS_CHECK = BASE_SPACE.replace("epochs: 1,", "epochs: 100000,")
assert ENDLESS_CHECK != BASE_SPACE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["killed", "interrupted"])
def test_a_stopped_check_leaves_no_training_running(tmp_path: Path, sig: signal.Signals) -> None:
    space = write_space(tmp_path, ENDLESS_CHECK)
    proc = archc(str(space), "--check-proxy", "3", "--workers", "2", "--out", str(tmp_path / "run"), "--no-progress")
    workers: list[int] = []
    try:
        wait_for(lambda: len(child_pids(proc.pid, "spawn_main")) == 2, 120, "two training processes")
        workers = child_pids(proc.pid, "spawn_main")
        wait_for(lambda: _training(workers), 120, "the trainings to start")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and err.strip() == "archc: interrupted", err
        wait_for(lambda: not any(pid_alive(w) for w in workers), 30, "the training processes to end")
    finally:
        for pid in [proc.pid, *workers]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.communicate()


def _training(pids: list[int]) -> bool:
    """Every process has used 6 s of CPU: past its start-up (about 3 s), inside a training."""
    ticks = []
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
        except OSError:
            return False
        ticks.append(int(fields[11]) + int(fields[12]))  # utime + stime, in clock ticks
    return all(t > 6 * os.sysconf("SC_CLK_TCK") for t in ticks)
