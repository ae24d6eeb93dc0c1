"""Fixtures of the int8 tests: one torch thread, the fixture specs, a planted outlier checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
SMALL = ROOT / "tests" / "train" / "fixtures" / "small.yaml"
TINY_REPVGG = FIXTURES / "tiny_repvgg.yaml"
#: the layer whose output channel 5 is scaled by 100 in the planted checkpoint (its name in the report)
PLANTED = "stage1.0.a.conv"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def planted_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A train-form checkpoint of the mini spec whose layer PLANTED has one output channel scaled by 100."""
    from archc.compiler import CompileOptions
    from archc.targets import prepare

    torch.set_num_threads(1)
    prep = prepare(MINI, CompileOptions(pipeline="train"))
    sd = {k: v.clone() for k, v in prep.state_dict.items()}
    sd[PLANTED + ".weight"][5] *= 100.0
    path = tmp_path_factory.mktemp("planted") / "planted.pth"
    torch.save(sd, path)
    return path
