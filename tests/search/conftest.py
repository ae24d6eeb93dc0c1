"""Fixtures for the search tests: a tiny base spec, a small learnable .npz data set, space files."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY = Path(__file__).resolve().parent / "fixtures" / "tiny.yaml"
ROOT = Path(__file__).resolve().parents[2]


def make_npz(path: Path, n: int = 96, classes: int = 4, size: int = 8, seed: int = 0) -> Path:
    """Noisy textures whose class is the pattern (flat, horizontal/vertical stripes, checkerboard): a conv
    and a global pool tell them apart within an epoch. Saved as x (N×H×W) and y."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % classes
    r, c = np.mgrid[0:size, 0:size]
    patterns = [np.zeros((size, size)), (r % 2).astype(float), (c % 2).astype(float), ((r + c) % 2).astype(float)]
    x = rng.rand(n, size, size).astype(np.float32) * 0.4
    for i, k in enumerate(y):
        x[i] += patterns[int(k) % 4].astype(np.float32)
    np.savez(path, x=x, y=y.astype(np.int64))
    return path


BASE_SPACE = """\
archc: 1
name: tiny_space
base: {base}
choices:
  width: {{type: int, low: 4, high: 16, step: 4}}
  act: {{type: op, values: [relu, gelu]}}
  unused: {{type: categorical, values: [0, 1]}}
objectives:
  val_acc: maximize
evaluator:
  task: classification
  data: {{source: npz, path: data.npz, val: 32}}
  train: {{epochs: 1, batch_size: 32, lr: 0.01}}
study:
  sampler: {{name: random, seed: 0}}
  trials: 3
"""


@pytest.fixture
def data_npz(tmp_path: Path) -> Path:
    return make_npz(tmp_path / "data.npz")


def write_space(tmp_path: Path, text: str | None = None, name: str = "space.yaml", **fmt: Any) -> Path:
    """Write a space file into ``tmp_path`` (``{base}`` is the tiny spec) with the data set beside it."""
    if not (tmp_path / "data.npz").exists():
        make_npz(tmp_path / "data.npz")
    body = textwrap.dedent(text if text is not None else BASE_SPACE).format(base=TINY.as_posix(), **fmt)
    p = tmp_path / name
    p.write_text(body, encoding="utf-8")
    return p


class CountingEvaluator:
    """An instrumented evaluator: records every model it is handed; metrics from a callable."""

    needs_model = True

    def __init__(self, fn: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fn = fn

    def evaluate(self, model: Any, ctx: Any) -> dict[str, float]:
        n = sum(p.numel() for p in model.parameters())
        self.calls.append({"trial": ctx.number, "params": n})
        if self.fn is not None:
            return self.fn(model, ctx, len(self.calls))
        return {"val_acc": 1.0 / (1 + n), "val_loss": float(n), "train_loss": float(n)}


def assert_load_error_at(path: Path, line: int, match: str) -> None:
    """Loading the space file ``path`` fails with ``match``, and the message points at ``path:line``."""
    from archc.diagnostics import SearchSpaceError
    from archc.search.space import load_space

    with pytest.raises(SearchSpaceError, match=match) as info:
        load_space(path)
    msg = info.value.format() if hasattr(info.value, "format") else str(info.value)
    assert f"{path.name}:{line}:" in msg or f"{path}:{line}:" in msg, msg


#: a one-choice space whose evaluator takes ``{task}`` and ``{data}`` (the data tests fill them in)
DATA_SPACE = """\
archc: 1
name: s
base: {base}
choices:
  width: {{type: categorical, values: [4, 8]}}
objectives:
  val_loss: minimize
evaluator:
  task: {task}
  data: {data}
  train: {{epochs: 1}}
study:
  sampler: {{name: random, seed: 0}}
  trials: 2
"""
