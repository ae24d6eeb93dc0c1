"""Proxy data sets, losses, zero-cost proxies, latency and screening."""

from __future__ import annotations

import builtins
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from optuna.trial import TrialState

from archc.search import load_data, run_search
from archc.search.data import DataError
from archc.search.evaluate import (
    contrast_depth,
    depth_loss,
    grad_norm,
    measure_latency,
    naswot,
    synflow,
    train_proxy,
    validate,
)
from archc.search.space import DataConfig, TrainConfig

from .conftest import make_npz, write_space


def test_digits_depth_task_is_derived_deterministically() -> None:
    pytest.importorskip("sklearn")
    cfg = DataConfig("digits", None, 200, 100, 0.2, 0)
    d = load_data(cfg, "depth", (3, 16, 16), (8, 8))
    assert d.x_train.shape == (200, 3, 16, 16) and d.y_train.shape == (200, 8, 8) and d.classes == 2
    from sklearn.datasets import load_digits

    digits = load_digits()
    perm = np.random.RandomState(0).permutation(len(digits.target))
    labels = digits.target[perm[100:300]]
    assert torch.equal(d.live_train, torch.from_numpy((labels < 5).astype(np.float32)))
    live = d.live_train > 0.5
    assert float(d.y_train[~live].abs().max()) == 0.0            # spoof: zero maps
    assert float(d.y_train[live].amax(dim=(1, 2)).min()) == pytest.approx(1.0)  # live: intensity maps in [0, 1]
    assert float(d.y_train.min()) >= 0.0
    again = load_data(DataConfig("digits", None, 200, 100, 0.2, 0), "depth", (3, 16, 16), (8, 8))
    assert again is d  # cached
    c = load_data(cfg, "classification", (1, 8, 8))
    assert c.classes == 10 and c.y_train.dtype == torch.int64 and abs(float(c.x_train.mean())) < 1e-4


def test_missing_sklearn_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_sklearn(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(DataError) as info:
        load_data(DataConfig("digits", None, 10, 10, 0.2, 99), "classification", (1, 8, 8))
    text = str(info.value)
    assert "needs scikit-learn" in text and "pip install 'archc[search]'" in text and "\n" not in text


def test_folder_and_npz_sources(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for cls, value in (("live", 1.0), ("spoof", 0.0)):
        (root / cls).mkdir(parents=True)
        for k in range(6):
            np.save(root / cls / f"{k}.npy", np.full((3, 12, 12), value + 0.01 * k, dtype=np.float32))
    d = load_data(DataConfig("folder", root, None, 4, 0.2, 0), "depth", (3, 16, 16), (4, 4))
    assert d.x_train.shape == (8, 3, 16, 16) and d.y_val.shape == (4, 4, 4)
    assert torch.equal(d.y_train.amax(dim=(1, 2)), d.live_train)  # binary maps: ones for live, zeros for spoof
    bad = tmp_path / "three"
    for cls in ("a", "b", "c"):
        (bad / cls).mkdir(parents=True)
        np.save(bad / cls / "0.npy", np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(DataError, match="exactly the sub-folders 'live' and 'spoof'"):
        load_data(DataConfig("folder", bad, None, 1, 0.2, 0), "depth", (1, 4, 4), (2, 2))
    c = load_data(DataConfig("folder", bad, None, 1, 0.2, 0), "classification", (1, 4, 4))
    assert c.classes == 3
    npz = make_npz(tmp_path / "d.npz", n=40)
    n = load_data(DataConfig("npz", npz, None, 8, 0.2, 0), "classification", (3, 8, 8))
    assert n.x_train.shape == (32, 3, 8, 8) and n.classes == 4
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="must hold arrays x, y"):
        load_data(DataConfig("npz", tmp_path / "bad.npz", None, 1, 0.2, 0), "classification", (1, 4, 4))


def test_contrastive_depth_loss() -> None:
    x = torch.zeros(1, 3, 3)
    x[0, 1, 1] = 1.0
    c = contrast_depth(x)
    assert c.shape == (1, 8, 1, 1) and torch.all(c == -1.0)  # every neighbour minus the centre
    x = torch.arange(9.0).view(1, 3, 3)
    assert sorted(contrast_depth(x).flatten().tolist()) == sorted(v - 4.0 for v in range(9) if v != 4)
    a = torch.rand(2, 6, 6)
    assert float(depth_loss(a, a)) == 0.0
    b = a + 0.5  # a constant shift: only the MSE term, the contrast term cancels
    assert float(depth_loss(b, a)) == pytest.approx(0.25, rel=1e-5)


def _tiny_net(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, classes))


def test_training_learns_and_reports_every_epoch(tmp_path: Path) -> None:
    d = load_data(DataConfig("npz", make_npz(tmp_path / "d.npz", n=128), None, 32, 0.2, 0), "classification", (1, 8, 8))
    model = _tiny_net()
    before = validate(model, d)["val_loss"]
    seen: list[tuple[int, dict[str, float]]] = []
    m = train_proxy(model, d, TrainConfig(epochs=3, batch_size=16, lr=0.02), report=lambda e, ms: seen.append((e, ms)))
    assert [e for e, _ in seen] == [0, 1, 2]
    assert m["val_loss"] < before and m["val_acc"] > 0.5
    assert {"train_loss", "val_loss", "val_acc"} <= set(m)


def test_zero_cost_proxies_are_finite_and_leave_the_model_alone(tmp_path: Path) -> None:
    model = _tiny_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(16, 1, 8, 8)
    y = torch.arange(16) % 4
    s1, s2, s3 = naswot(model, x), synflow(model, (1, 1, 8, 8)), grad_norm(model, x, y, "classification")
    assert all(math.isfinite(v) for v in (s1, s2, s3)) and s3 > 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # NASWOT also sees activations called functionally, as archc's generated code calls them
    from archc.search import ModelBuilder, load_space

    space = load_space(write_space(tmp_path))
    b = ModelBuilder(space)
    g = b.graph({("width",): 8})
    gen = b.module(g)
    assert math.isfinite(naswot(gen, torch.randn(8, 1, 8, 8)))


def test_latency_is_a_median_in_ms() -> None:
    ms = measure_latency(_tiny_net(), (1, 1, 8, 8))
    assert 0.0 < ms < 1000.0


def test_latency_objective_and_constraint(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: [4, 8]
        constraints: {{latency_ms: 1000}}
        objectives: {{latency_ms: minimize, params: minimize}}
        evaluator: {{latency: {{runs: 3, warmup: 1}}}}
        study: {{trials: 2}}
        """)
    res = run_search(space, out=tmp_path / "run", progress=False)
    for t in res.study.get_trials(states=(TrialState.COMPLETE,)):
        assert 0 < t.values[0] < 1000 and t.user_attrs["metrics"]["latency_ms"] == t.values[0]
    assert "latency" in (tmp_path / "run" / "logs" / "trial_00000.log").read_text()


def test_zero_cost_screening_rejects_before_training(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          width: {{type: int, low: 4, high: 32, step: 4}}
          depth: {{type: int, low: 1, high: 3}}
        objectives: {{val_acc: maximize}}
        evaluator:
          task: classification
          data: {{source: npz, path: data.npz}}
          train: {{epochs: 1}}
          zero_cost: {{metrics: [naswot], screen: {{metric: naswot, quantile: 0.6, after: 2}}}}
        study: {{sampler: {{name: random, seed: 5}}, trials: 5}}
        """)
    res = run_search(space, out=tmp_path / "run", progress=False)
    screened = [t for t in res.study.trials if "screened" in t.user_attrs.get("reason", "")]
    assert screened and all(t.state == TrialState.PRUNED and "epochs_done" not in t.user_attrs for t in screened)
    assert all("naswot" in t.user_attrs["metrics"] for t in screened)


def test_evaluator_output_mismatch_is_reported(tmp_path: Path) -> None:
    space = write_space(tmp_path, """\
        archc: 1
        base: {base}
        params: {{num_classes: 3}}
        objectives: {{val_acc: maximize}}
        evaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}
        study: {{trials: 1, max_attempts: 1}}
        """)
    res = run_search(space, out=tmp_path / "run", progress=False)
    t = res.study.trials[0]
    assert t.state == TrialState.FAIL and "the data has 4 classes" in t.user_attrs["reason"]
    assert "num_classes: 4" in t.user_attrs["reason"]
