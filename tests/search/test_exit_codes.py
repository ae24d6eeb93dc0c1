"""Searches that cannot succeed exit 1 before any training, with one line that says why and what to change."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from archc.search import run_search
from archc.search.runner import SearchError

from .clusterkit import run
from .conftest import TINY, CountingEvaluator, write_space


def _cli(space: Path, tmp_path: Path, *extra: str, env_path: Path | None = None) -> tuple[int, str, float]:
    """Exit code, stderr and wall seconds of one search run (the subprocess timeout only guards against a hang)."""
    t0 = time.monotonic()
    if env_path is None:
        p = run(str(space), "--trials", "2", "--out", str(tmp_path / "run"), "--no-progress", *extra, timeout=60)
    else:
        import os
        import subprocess
        import sys

        from .clusterkit import env

        e = env()
        e["PYTHONPATH"] = str(env_path) + os.pathsep + e["PYTHONPATH"]
        p = subprocess.run([sys.executable, "-m", "archc", "search", str(space), "--trials", "2", "--out",
                            str(tmp_path / "run"), "--no-progress", *extra], capture_output=True, text=True, env=e,
                           timeout=60)
    return p.returncode, p.stderr, time.monotonic() - t0


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _trials_run(tmp_path: Path) -> int:
    logs = tmp_path / "run" / "logs"
    return len(list(logs.iterdir())) if logs.exists() else 0


DIGITS = """\
archc: 1
base: {base}
choices:
  width: {{type: int, low: 4, high: 16, step: 4}}
objectives: {{val_acc: maximize}}
evaluator: {{task: classification, data: {{source: digits}}, train: {{epochs: 1}}}}
"""


def test_missing_scikit_learn_for_digits(tmp_path: Path) -> None:
    fake = tmp_path / "no_sklearn" / "sklearn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'sklearn'\")\n")
    space = write_space(tmp_path, DIGITS)
    rc, err, _ = _cli(space, tmp_path, env_path=tmp_path / "no_sklearn")
    line = _one_error_line(err)
    assert rc == 1, (rc, err)
    assert "scikit-learn" in line and "help:" in err and "pip install" in err
    assert _trials_run(tmp_path) == 0  # before trial 0


def test_unreadable_data(tmp_path: Path) -> None:
    space = write_space(tmp_path)
    (tmp_path / "data.npz").write_text("not an npz file")
    rc, err, _ = _cli(space, tmp_path)
    line = _one_error_line(err)
    assert rc == 1 and "cannot read" in line and "data.npz" in line
    assert _trials_run(tmp_path) == 0


def test_choice_target_not_in_the_base_spec(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(TINY.read_text().replace("params:\n", "params:\n  dims: [4, 8]\n", 1))
    space = write_space(tmp_path, """\
        archc: 1
        base: base.yaml
        choices:
          width: {{type: int, low: 4, high: 16, step: 4}}
          wide: {{type: int, low: 4, high: 16, step: 4, target: dims.99}}
        objectives: {{params: minimize}}
        """)
    rc, err, _ = _cli(space, tmp_path)
    line = _one_error_line(err)
    assert rc == 1
    assert "space.yaml:5:" in line and "dims.99" in line and "2 items" in line
    assert "use an index from 0 to 1" in err
    assert _trials_run(tmp_path) == 0


def test_smallest_cost_over_a_constraint(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 64, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
          kernel: [1, 3, 5]
        constraints: {{params: 20}}
        objectives: {{val_acc: maximize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        """)
    rc, err, _ = _cli(space, tmp_path)
    line = _one_error_line(err)
    assert rc == 1
    # the smallest architecture (width 4, depth 1, kernel 1): conv 4 + batchnorm 8 + linear 4×4+4 = 32 params
    assert "no architecture of the space fits the constraints: smallest params seen" in line and "> max 20" in line
    from archc.search import load_space
    from archc.search.preflight import smallest_costs
    from archc.search.runner import ModelBuilder

    s = load_space(space)
    found = smallest_costs(s, ModelBuilder(s))
    assert not found.feasible and found.point == {"width": 4, "depth": 1, "kernel": 1} and found.smallest["params"] == 32
    assert f"{found.smallest['params']:,.6g}" in line
    assert _trials_run(tmp_path) == 0


def test_feasible_space_passes_the_cost_check_quickly(tmp_path: Path) -> None:
    from archc.search import load_space
    from archc.search.preflight import smallest_costs
    from archc.search.runner import ModelBuilder

    s = load_space(Path(__file__).resolve().parents[2] / "search_spaces" / "cdc.yaml")
    found = smallest_costs(s, ModelBuilder(s))
    assert found.feasible and found.evaluated == 1  # the enqueued CDCN++ point fits: nothing else is searched


BOOM = """\
archc: 1
base: {base}
choices:
  width: {{type: int, low: 4, high: 64, step: 4}}
  boom: [true]
constraints: {{params: 500}}
objectives: {{val_loss: minimize}}
evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
study: {{sampler: {{name: random, seed: 0}}, trials: 5}}
"""


def test_consecutive_failed_evaluations_stop_the_run_and_rejections_do_not_reset(tmp_path: Path) -> None:
    space = write_space(tmp_path, BOOM)
    rc, err, _ = _cli(space, tmp_path)
    assert rc == 1, (rc, err)
    line = _one_error_line(err)
    assert "10 trials in a row failed; the last:" in line and "training loss is nan" in line
    # the first failure was printed when it happened, not only written to a log file
    first = [ln for ln in err.splitlines() if ln.startswith("trial failed:")]
    assert len(first) == 1 and "nan" in first[0] and err.index(first[0]) < err.index(line)
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "trials.csv").open()))
    statuses = [r["status"] for r in rows]
    assert statuses.count("failed") == 10 and "rejected" in statuses  # rejections in between did not reset it


def test_rejections_between_failures_do_not_reset_the_count(tmp_path: Path) -> None:
    space = write_space(tmp_path, BOOM.replace("  boom: [true]\n", ""))

    def fn(model: Any, ctx: Any, k: int) -> dict[str, float]:
        raise ValueError("broken data")

    with pytest.raises(SearchError, match="10 trials in a row failed; the last: ValueError: broken data") as e:
        run_search(space, out=tmp_path / "run", evaluator=CountingEvaluator(fn), progress=False, outputs=False)
    assert "per-trial logs" in str(e.value)
    study = __import__("optuna").load_study(study_name="space", storage=_journal(tmp_path / "run" / "study.log"))
    statuses = [t.user_attrs.get("status") for t in study.trials]
    assert statuses.count("failed") == 10 and statuses.count("rejected") >= 1


def test_no_feasible_sample_in_the_first_attempts(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 64, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
        constraints: {{params: 10}}
        objectives: {{params: minimize}}
        study: {{sampler: {{name: random, seed: 0}}}}
        """)
    # the checks before trial 0 would refuse this space; skip them to reach the check during the run
    rc, err, _ = _cli(space, tmp_path, "--no-preflight")
    line = _one_error_line(err)
    assert rc == 1, (rc, err)
    assert "none of the first 50 samples is a valid architecture within the constraints" in line
    assert "over budget: params" in line and "raise the limits" in err


def test_target_not_reached_exits_1(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: [4]
        objectives: {{params: minimize}}
        study: {{sampler: grid}}
        """)
    rc, err, _ = _cli(space, tmp_path)
    assert rc == 1 and "the study holds 1 of the 2 evaluated trials asked for" in err
    assert "grid is exhausted" in err


def _journal(path: Path) -> Any:
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
