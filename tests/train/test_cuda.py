"""The trainer on a CUDA device: bf16 autocast, channels-last, pinned DataLoader batches (skips without CUDA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.train.config import TrainOptions
from archc.train.images import image_folder_data
from archc.train.loop import Trainer
from archc.train.metrics import validate

from .conftest import SMALL, build, spec_source, tensor_data, write_images

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_in_memory_training_on_the_gpu_uses_bf16_and_channels_last() -> None:
    data = tensor_data()
    model = build(spec_source())
    dtypes: list[torch.dtype] = []
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    convs[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    trainer = Trainer(model, TrainOptions(epochs=4, batch_size=16, lr=0.02, device="cuda"))
    assert trainer.amp and trainer.channels_last
    metrics = trainer.fit(data)
    assert all(p.is_cuda for p in model.parameters())
    assert convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert metrics["val_acc"] > 0.6
    cpu = validate(model.float().cpu(), data)
    assert abs(cpu["val_acc"] - metrics["val_acc"]) <= 0.1  # bf16 on the GPU vs float32 on the CPU: same model


def test_image_folder_on_the_gpu_with_workers(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    write_images(tmp_path / "data", ["a", "b"], 24, size=14)
    data = image_folder_data(tmp_path / "data", "classification", (3, 12, 12), val_fraction=0.25)
    model = build(spec_source(params=["channels=3", "img=12", "num_classes=2"]))
    m = Trainer(model, TrainOptions(epochs=2, batch_size=8, lr=0.02, device="cuda:0", workers=2)).fit(data, out=tmp_path / "run")
    assert 0.0 <= m["val_acc"] <= 1.0 and (tmp_path / "run" / "model.pth").exists()
    sd = torch.load(tmp_path / "run" / "model.pth", weights_only=True)
    assert all(v.device.type == "cpu" and v.is_contiguous() for v in sd.values())


def test_cli_device_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    assert main(["train", str(SMALL), "-p", "num_classes=10", "--data", "digits", "--epochs", "1", "--device", "cuda",
                 "--out", str(tmp_path / "run")]) == 0
    assert "on cuda" in capsys.readouterr().out
    model = build(spec_source(params=["num_classes=10"]))
    model.load_state_dict(torch.load(tmp_path / "run" / "model.pth", weights_only=True))
