"""benchmarks/bench_cuda.py: its command line parses and checks, and without CUDA it refuses in one line."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_cuda.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("bench_cuda_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_help_runs() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--compile-modes" in out.stdout and "--batch" in out.stdout


def test_arguments_are_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    mod = _script()
    args = mod.parse_args([])
    assert args.batches == [1] and args.modes == mod.COMPILE_MODES == ("max-autotune-no-cudagraphs", "reduce-overhead")
    args = mod.parse_args(["--batch", "1,32", "--compile-modes", "reduce-overhead"])
    assert args.batches == [1, 32] and args.modes == ("reduce-overhead",)
    assert mod.parse_args(["--compile-modes", "none"]).modes == ()
    for bad in (["--batch", "x"], ["--batch", "0"], ["--compile-modes", "fastest"]):
        with pytest.raises(SystemExit) as exc:
            mod.parse_args(bad)
        assert exc.value.code == 2
    assert "unknown torch.compile mode 'fastest'" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_refuses_in_one_line() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "bench_cuda.py needs CUDA: torch.cuda.is_available() is False on this machine; nothing was timed"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="times CUDA graphs and torch.compile on CUDA")
def test_cuda_rows_with_torch_compile() -> None:
    mod = _script()
    rows = mod.run([1], rounds=3, warmup=1, modes=("reduce-overhead",))
    tc = [r for r in rows if r["compare"] == "tc:reduce-overhead/graph"]
    assert tc and all(r["compile_s"] > 0 and r["archc_build_s"] > 0 and r["max_rel_error"] <= 5e-3 for r in tc)
