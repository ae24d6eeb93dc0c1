"""DistributedDataParallel under torchrun (2 CPU processes, gloo): W processes of batch B take the same
steps as one process of batch W·B (models without BatchNorm: torch's SyncBatchNorm needs CUDA)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archc.cli import main

from .conftest import SMALL

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONPATH=str(ROOT))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_port()), *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120, cwd=ROOT)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_two_gloo_processes_equal_one_process_on_the_doubled_batch(tmp_path: Path) -> None:
    r = _torchrun([str(HERE / "_ddp_worker.py"), str(tmp_path / "res.pth"), "4"])
    assert r.returncode == 0, r.stderr[-3000:]
    res = torch.load(tmp_path / "res.pth", weights_only=True)
    assert res["world"] == 2
    assert any(not torch.allclose(res["init"][k], res["one"][k]) for k in res["init"])  # the steps moved the weights
    _assert_same(res["ddp"], res["one"])
    assert abs(res["ddp_metrics"]["train_loss"] - res["one_metrics"]["train_loss"]) < 1e-5


def test_archc_train_under_torchrun(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The command itself under torchrun: rank 0 writes the run; the weights equal a one-process run on 2×batch.

    The validation share is chosen so the 1,408 training digits fill every step (44 × 32): the distributed
    sampler drops a partial last step, a single process would take it.
    """
    pytest.importorskip("sklearn")
    common = ["train", str(SMALL), "-p", "bn=false", "-p", "num_classes=10", "--data", "digits", "--epochs", "1",
              "--optimizer", "sgd", "--lr", "0.1", "--val-fraction", "0.2165", "--device", "cpu", "--threads", "1"]
    r = _torchrun(["-m", "archc", *common, "--batch-size", "16", "--out", str(tmp_path / "ddp")])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("epoch 1/1:") == 1 and "2 processes" in r.stdout  # rank 0 alone logs
    assert main([*common, "--batch-size", "32", "--out", str(tmp_path / "one")]) == 0
    assert "1408 train" in capsys.readouterr().out
    _assert_same(torch.load(tmp_path / "ddp" / "model.pth", weights_only=True),
                 torch.load(tmp_path / "one" / "model.pth", weights_only=True))
