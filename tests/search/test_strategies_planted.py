"""Planted search: the target is the input shifted by two pixels on independent noise, so only the op
with a 5×5 receptive field ('conv5') can predict it; darts and pcdarts must pick it in at least 4 of 5
seeds (a search whose α did not learn picks it with probability ~0.016)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from archc.search.space import load_space
from archc.search.strategies.darts import run_darts
from archc.search.strategies.pcdarts import run_pcdarts

torch.set_num_threads(1)

PLANTED = Path(__file__).resolve().parent / "fixtures" / "planted_cells.yaml"

SPACE = """\
archc: 1
name: planted
base: {base}
cells:
  cell: {{nodes: 1, ops: [none, skip, conv3, conv5, avg], edges: edges, output: out, op_table: ops}}
objectives: {{val_loss: minimize}}
evaluator:
  task: depth
  data: {{source: npz, path: data.npz}}
  train: {{epochs: 1, batch_size: 32}}
strategy:
  darts: {{epochs: 10}}
  pcdarts: {{epochs: 10}}
"""


def planted_space(tmp_path: Path, shift: int = 2) -> Path:
    rng = np.random.RandomState(0)
    x_train, x_val = rng.randn(256, 8, 8).astype(np.float32), rng.randn(256, 8, 8).astype(np.float32)
    y = (np.arange(256) % 2).astype(np.int64)  # live/spoof labels: unused by the depth loss
    np.savez(tmp_path / "data.npz", x_train=x_train, y_train=y, x_val=x_val, y_val=y,
             depth_train=np.roll(x_train, shift, axis=2), depth_val=np.roll(x_val, shift, axis=2))
    p = tmp_path / "planted.yaml"
    p.write_text(SPACE.format(base=PLANTED.as_posix()), encoding="utf-8")
    return p


@pytest.mark.parametrize("run", [run_darts, run_pcdarts], ids=["darts", "pcdarts"])
def test_differentiable_search_finds_the_planted_op(tmp_path: Path, run) -> None:
    space = load_space(planted_space(tmp_path))
    picked = []
    for seed in range(5):
        res = run(space, {"seed": seed}, out=tmp_path / f"run{seed}")
        picked.append(res.derived["cell.e0_1"])
        assert len(res.history) == 10  # the space file's strategy options were applied
    assert picked.count("conv5") >= 4, picked
