"""The harder bundled digits (``data: {source: digits, hard: true}``): deterministic, leak-free, harder, parsed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from archc.search import data as pdata
from archc.search import load_data
from archc.search.space import DataConfig, load_space

from .conftest import DATA_SPACE, assert_load_error_at, write_space

pytest.importorskip("sklearn")
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]


def _hard(train: int, val: int, seed: int = 0, task: str = "classification", shape: tuple[int, int, int] = (1, 16, 16),
          out: tuple[int, int] | None = None) -> pdata.ProxyData:
    return load_data(DataConfig("digits", None, train, val, 0.2, seed, hard=True), task, shape, out)


def _centroid_acc(x_tr: torch.Tensor, y_tr: torch.Tensor, x_va: torch.Tensor, y_va: torch.Tensor) -> float:
    """Nearest-class-mean accuracy on raw pixels: a fixed, weak classifier that only template-matches."""
    a, b = x_tr.flatten(1), x_va.flatten(1)
    means = torch.stack([a[y_tr == c].mean(0) for c in range(10)])
    return float((torch.cdist(b, means).argmin(1) == y_va).float().mean())


def test_hard_digits_are_deterministic_and_sized_by_the_config() -> None:
    pdata._CACHE.clear()
    d = _hard(2500, 300)  # more training samples than the 1,797 originals: every copy is a new draw
    assert d.x_train.shape == (2500, 1, 16, 16) and d.x_val.shape == (300, 1, 16, 16) and d.classes == 10
    assert set(d.y_train.tolist()) == set(range(10)) and set(d.y_val.tolist()) == set(range(10))
    pdata._CACHE.clear()
    again = _hard(2500, 300)
    assert torch.equal(again.x_train, d.x_train) and torch.equal(again.y_val, d.y_val)
    other = _hard(2500, 300, seed=1)
    assert not torch.equal(other.x_train, d.x_train)
    # training samples beyond the originals are not repeats of earlier ones
    flat = d.x_train.flatten(1)
    assert torch.cdist(flat[1797:1897], flat[:1797]).min() > 1e-3


def test_validation_set_is_independent_of_the_training_count() -> None:
    small, big = _hard(200, 300), _hard(1200, 300)
    assert torch.equal(small.y_val, big.y_val)
    # standardization uses the training split's statistics, so compare the validation images up to it
    zs = (small.x_val - small.x_val.mean()) / small.x_val.std()
    zb = (big.x_val - big.x_val.mean()) / big.x_val.std()
    assert torch.allclose(zs, zb, atol=1e-4)


def test_validation_digits_are_not_transforms_of_training_digits() -> None:
    imgs, labels = pdata._digits()
    cfg = DataConfig("digits", None, 1000, 500, 0.2, 0, hard=True)
    seen: list[np.ndarray] = []
    real = pdata._hard_digits

    def spy(images: np.ndarray, lab: np.ndarray, pool: np.ndarray, n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
        seen.append(np.asarray(pool))
        return real(images, lab, pool, n, seed)

    pdata._hard_digits = spy  # type: ignore[assignment]
    try:
        pdata._hard_split(imgs, labels, cfg)
    finally:
        pdata._hard_digits = real  # type: ignore[assignment]
    tr_pool, va_pool = seen
    assert not set(tr_pool.tolist()) & set(va_pool.tolist())
    assert len(tr_pool) + len(va_pool) == len(labels)
    assert abs(len(va_pool) / len(labels) - 0.2) < 0.01  # val_fraction of the originals feed validation


def test_hard_digits_defeat_template_matching_that_solves_the_plain_digits() -> None:
    plain = load_data(DataConfig("digits", None, 1000, 500, 0.2, 0), "classification", (1, 16, 16))
    hard = _hard(1000, 500)
    acc_plain = _centroid_acc(plain.x_train, plain.y_train, plain.x_val, plain.y_val)
    acc_hard = _centroid_acc(hard.x_train, hard.y_train, hard.x_val, hard.y_val)
    assert acc_plain > 0.85
    assert 0.1 < acc_hard < 0.5, acc_hard  # above chance (the digit is there) but far from solved


def test_hard_digits_for_the_depth_task() -> None:
    d = _hard(300, 200, task="depth", shape=(3, 16, 16), out=(8, 8))
    assert d.x_train.shape == (300, 3, 16, 16) and d.y_train.shape == (300, 8, 8) and d.classes == 2
    live = d.live_train > 0.5
    assert 0.3 < float(live.float().mean()) < 0.7
    assert float(d.y_train[~live].abs().max()) == 0.0
    assert float(d.y_train[live].amax(dim=(1, 2)).min()) == pytest.approx(1.0)


def test_space_file_parses_hard(tmp_path: Path) -> None:
    space = load_space(write_space(tmp_path, DATA_SPACE, task="classification", data="{source: digits, hard: true, train: 64, val: 32}"))
    assert space.evaluator.data.hard and space.evaluator.data.train == 64
    plain = load_space(write_space(tmp_path, DATA_SPACE, task="classification", name="p.yaml", data="{source: digits}"))
    assert not plain.evaluator.data.hard


@pytest.mark.parametrize(("data", "match"), [
    ("{source: npz, path: data.npz, hard: true}", "'hard' makes a harder variant of the bundled digits"),
    ("{source: digits, hard: yes please}", "'hard' in evaluator 'data' must be true or false"),
])
def test_hard_errors_are_positioned(tmp_path: Path, data: str, match: str) -> None:
    assert_load_error_at(write_space(tmp_path, DATA_SPACE, task="classification", data=data), 10, match)


def test_schema_accepts_hard_and_rejects_a_string() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "search_space.schema.json").read_text(encoding="utf-8"))
    data_schema = schema["$defs"]["evaluator"]["properties"]["data"]
    assert not list(jsonschema.Draft202012Validator(data_schema).iter_errors({"source": "digits", "hard": True}))
    assert list(jsonschema.Draft202012Validator(data_schema).iter_errors({"source": "digits", "hard": "yes"}))
