"""archc search SPACE --check-proxy K: sampling, statistics, resume, the CLI and its exits; the depth-task threshold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.cli import main
from archc.search.data import ProxyData
from archc.search.evaluate import ProxyEvaluator, acer_threshold, validate
from archc.search.proxy_check import (
    RESULT_FILE,
    RUNS_FILE,
    ProxyCheckError,
    _time_left,
    check_proxy,
    format_table,
    sample_architectures,
)
from archc.search.ranking import kendall_tau, spearman_rho
from archc.search.space import load_space

from .conftest import write_space

torch.set_num_threads(1)

CHECK_SPACE = """\
archc: 1
name: tiny_check
base: {base}
choices:
  width: {{type: int, low: 4, high: 16, step: 4}}
  depth: {{type: int, low: 1, high: 2}}
  unused: {{type: categorical, values: [0, 1]}}
constraints:
  params: {max_params}
objectives:
  val_loss: minimize
evaluator:
  task: classification
  data: {{source: npz, path: data.npz, val: 32}}
  train: {{epochs: 1, batch_size: 32, lr: 0.01}}
study:
  sampler: {{name: random, seed: 0}}
"""


def _space(tmp_path: Path, max_params: float = 1e9, text: str = CHECK_SPACE) -> Path:
    return write_space(tmp_path, text, max_params=max_params)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_sampling_is_seeded_distinct_and_within_budget(tmp_path: Path) -> None:
    space = load_space(_space(tmp_path, max_params=1000))
    a = sample_architectures(space, 5, seed=3)
    b = sample_architectures(space, 5, seed=3)
    assert [c.arch for c in a] == [c.arch for c in b]
    assert len({c.arch for c in a}) == len(a)          # 'unused' never yields a second copy of a model
    assert all(c.costs["params"] <= 1000 for c in a)
    # width × depth has 8 models; fewer fit the budget, and the sampler returns what exists
    everything = sample_architectures(load_space(_space(tmp_path)), 20, seed=0)
    assert len(everything) == 8
    assert len(sample_architectures(space, 20, seed=0)) < 8


def test_planted_rankings_give_exact_tau(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """val_loss = the model's size (short budget) and ∓ size at the long budget: τ must be exactly ±1,
    and a constant val_acc must be flagged, not reported as a correlation."""
    sign = {"value": 1.0}

    def fake(self: ProxyEvaluator, model: torch.nn.Module, ctx: Any) -> dict[str, float]:
        n = float(_params(model))
        long = self.config.train.epochs > 1
        return {"train_loss": 1.0, "val_loss": sign["value"] * n if long else n, "val_acc": 0.5}

    monkeypatch.setattr(ProxyEvaluator, "evaluate", fake)
    space = _space(tmp_path)
    res = check_proxy(space, 5, long_epochs=2, out=tmp_path / "agree", resamples=100)
    assert res.tau == 1.0 and res.report["budgets"]["spearman_rho"] == pytest.approx(1.0)
    assert res.report["budgets"]["kendall_tau_interval"] == [1.0, 1.0]
    acc = res.report["metrics"]["val_acc"]
    assert acc["constant"] == {"search": True, "long": True} and acc["kendall_tau"] is None
    noise = res.report["noise"]["search"]
    assert noise["seed_std"] == 0.0 and noise["seed_tau"] == 1.0   # the fake ignores the seed
    sign["value"] = -1.0
    res = check_proxy(space, 5, long_epochs=2, out=tmp_path / "reversed", resamples=100)
    assert res.tau == -1.0
    # size correlation: val_loss is the size at the short budget
    assert res.report["size_correlation"]["search"]["params"] == pytest.approx(1.0)


def test_real_training_report_and_resume(tmp_path: Path) -> None:
    space = _space(tmp_path)
    out = tmp_path / "run"
    res = check_proxy(space, 4, long_epochs=3, out=out, resamples=200)
    report = json.loads((out / RESULT_FILE).read_text())
    runs = [json.loads(line) for line in (out / RUNS_FILE).read_text().splitlines()]
    assert len(runs) == 4 * 2 * 2 and {r["epochs"] for r in runs} == {1, 3} and {r["seed"] for r in runs} == {0, 1}
    assert report["architectures"] == 4 and report["seeds"] == 2 and report["epochs"] == {"search": 1, "long": 3}
    # the report names its data and training settings as fields, so that the check can be rerun from it
    evaluator = load_space(space).evaluator
    assert report["data"]["source"] == evaluator.data.source and "loc" not in report["data"]
    assert report["train"]["batch_size"] == evaluator.train.batch_size
    # τ and ρ recomputed from the run log: the mean over seeds of each architecture at each budget
    means = {}
    for budget, epochs in (("search", 1), ("long", 3)):
        means[budget] = [sum(r["metrics"]["val_loss"] for r in runs if r["index"] == a and r["epochs"] == epochs) / 2
                         for a in range(4)]
    assert report["budgets"]["kendall_tau"] == pytest.approx(kendall_tau(means["search"], means["long"]))
    assert report["budgets"]["spearman_rho"] == pytest.approx(spearman_rho(means["search"], means["long"]))
    lo, hi = report["budgets"]["kendall_tau_interval"]
    assert -1.0 <= lo <= report["budgets"]["kendall_tau"] <= hi <= 1.0
    # rerunning trains nothing and reports the same numbers
    again = check_proxy(space, 4, long_epochs=3, out=out, resamples=200)
    assert len((out / RUNS_FILE).read_text().splitlines()) == len(runs)
    assert again.report["metrics"] == res.report["metrics"]


def test_drawing_the_data_is_not_timed_as_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a fake clock that the (first, uncached) data load advances by 1,000 s: a training's recorded seconds
    # must not include it, or the first training of every process reads as minutes long
    import archc.search.evaluate as evaluate_mod
    import archc.search.proxy_check as pc

    clock = {"now": 0.0, "loads": 0}
    real_load = evaluate_mod.load_data

    def slow_first_load(*args: Any, **kwargs: Any) -> ProxyData:
        clock["loads"] += 1
        if clock["loads"] == 1:
            clock["now"] += 1000.0
        return real_load(*args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "load_data", slow_first_load)
    monkeypatch.setattr(pc.time, "perf_counter", lambda: clock["now"])
    check_proxy(_space(tmp_path), 3, long_epochs=2, out=tmp_path / "run", resamples=50)
    runs = [json.loads(line) for line in (tmp_path / "run" / RUNS_FILE).read_text().splitlines()]
    assert clock["loads"] >= 2 and len(runs) == 12
    assert all(r["seconds"] < 1000.0 for r in runs)


def test_time_left_is_the_finished_trainings_rate_over_the_workers() -> None:
    assert _time_left([10, 10, 1], seconds=120.0, epochs=2, workers=2) == "; about 10 min left"  # 21 × 60 s / 2
    assert _time_left([20] * 16, seconds=30.0, epochs=1, workers=1) == "; about 2.7 h left"  # 9,600 s
    assert _time_left([1], seconds=5.0, epochs=1, workers=4) == "; about 1 min left"
    assert _time_left([], seconds=30.0, epochs=1, workers=2) == _time_left([3], seconds=0.0, epochs=0, workers=1) == ""


def test_workers_train_in_parallel_with_the_same_results(tmp_path: Path) -> None:
    """Two worker processes give the trainings (and so the statistics) one process gives, logged once each."""
    space = _space(tmp_path)
    one = check_proxy(space, 3, long_epochs=2, out=tmp_path / "one", resamples=100)
    lines: list[str] = []
    two = check_proxy(space, 3, long_epochs=2, out=tmp_path / "two", resamples=100, workers=2, log=lines.append)
    assert two.report["metrics"] == one.report["metrics"]
    runs = [json.loads(line) for line in (tmp_path / "two" / RUNS_FILE).read_text().splitlines()]
    assert len(runs) == 3 * 2 * 2 == len({r["key"] for r in runs})
    assert sum("[" in line and "seed" in line for line in lines) == 12 and "[12/12]" in "".join(lines)
    trained = [line for line in lines if line.startswith("[")]
    assert all("min left)" in line for line in trained[:-1]) and "left" not in trained[-1], trained
    with pytest.raises(ProxyCheckError, match="--workers must be at least 1"):
        check_proxy(space, 3, out=tmp_path / "bad", workers=0)


def test_cli_check_proxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _space(tmp_path)
    out = tmp_path / "cli"
    rc = main(["search", str(space), "--check-proxy", "3", "--long-epochs", "2", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "val_loss" in text and "τ" in text and (out / RESULT_FILE).exists()
    # the same run with an unreachable --min-tau: exit 1, one line (the trainings are reused, also by workers)
    rc = main(["search", str(space), "--check-proxy", "3", "--long-epochs", "2", "--out", str(out), "--no-progress",
               "--min-tau", "1.01", "--workers", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "below --min-tau" in err[0]


@pytest.mark.parametrize("argv, message", [
    (["--check-proxy", "2"], "at least 3 architectures"),
    (["--check-proxy", "3", "--seeds", "1"], "--seeds must be at least 2"),
    (["--check-proxy", "3", "--long-epochs", "1"], "must exceed the search budget"),
    (["--check-proxy", "3", "--metric", "val_auc"], "not a trained metric"),
    (["--check-proxy", "3", "--workers", "0"], "--workers must be at least 1"),
    (["--long-epochs", "5"], "only with --check-proxy"),
])
def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    rc = main(["search", str(_space(tmp_path)), *argv, "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err


def test_refuses_spaces_without_training_or_without_enough_models(tmp_path: Path) -> None:
    no_train = CHECK_SPACE.replace("  train: {{epochs: 1, batch_size: 32, lr: 0.01}}\n", "").replace(
        "  val_loss: minimize", "  params: minimize")
    with pytest.raises(ProxyCheckError, match="does not train"):
        check_proxy(write_space(tmp_path, no_train, name="nt.yaml", max_params=1e9), 3, out=tmp_path / "a")
    one_model = CHECK_SPACE.replace("low: 4, high: 16, step: 4", "low: 4, high: 4").replace("high: 2}}", "high: 1}}")
    with pytest.raises(ProxyCheckError, match="only 1 distinct"):
        check_proxy(write_space(tmp_path, one_model, name="one.yaml", max_params=1e9), 3, out=tmp_path / "b")


# -------------------------------------------------------------------------------------------------------
# the depth task's live/spoof threshold
# -------------------------------------------------------------------------------------------------------
def test_acer_threshold_hand_case() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4])
    live = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert acer_threshold(scores, live) == pytest.approx(0.25)
    # overlapping: spoof 0.35 above a live 0.3; 0.25 and 0.375 both err once (ACER 0.25): the lower wins
    assert acer_threshold(torch.tensor([0.1, 0.35, 0.3, 0.4]), live) == pytest.approx(0.2)


class _Scaled(torch.nn.Module):
    """Predicts the target maps shrunk by ``scale``: a model early in training."""

    def __init__(self, lookup: dict[bytes, torch.Tensor], scale: float) -> None:
        super().__init__()
        self.lookup, self.scale = lookup, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.lookup[row.numpy().tobytes()] for row in x]) * self.scale


def test_shrunk_maps_still_separate_live_from_spoof() -> None:
    """Early in training the predicted maps are small; a threshold fixed on the target scale (half the
    live maps' mean) called every sample spoof, so val_acc / ACER were constant across architectures."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 4, 4, generator=g)
    live = (torch.arange(40) % 2).float()
    maps = torch.rand(40, 4, 4, generator=g) * 0.5 + 0.5
    maps = maps * live.view(-1, 1, 1)
    lookup = {row.numpy().tobytes(): m for row, m in zip(x, maps)}
    data = ProxyData("depth", x[:24], maps[:24], x[24:], maps[24:], 2, live[:24], live[24:])
    for scale in (1.0, 0.05):
        m = validate(_Scaled(lookup, scale), data)
        assert m["val_acc"] == 1.0 and m["val_acer"] == 0.0 and m["val_auc"] == 1.0


@pytest.mark.parametrize(("tau", "interval", "verdict"), [
    (0.79, [0.36, 1.0], "ranks as the long budget does (the 95% interval is clear of 0)"),
    (0.5, [-0.25, 1.0], "meets the target, but its 95% interval reaches -0.25: on 8 architectures that can be chance"),
    (0.21, [-0.6, 0.83], "does NOT rank as the long budget does"),
    (float("nan"), [float("nan"), float("nan")], "does NOT rank as the long budget does"),
])
def test_verdict_reads_the_interval(tau: float, interval: list[float], verdict: str) -> None:
    report = {"name": "s", "architectures": 8, "seeds": 2, "epochs": {"search": 2, "long": 20}, "metric": "val_acc",
              "seconds_per_search_trial": 1.0, "metrics": {}, "target_tau": 0.5, "failed_trainings": [],
              "budgets": {"kendall_tau": tau, "kendall_tau_interval": interval}}
    assert verdict in format_table(report).splitlines()[-1]
