"""``archc train``: a bundled spec on the bundled data, image folders made here, resume, and one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from archc.cli import main
from archc.passes.equivalence import module_from_source

from .conftest import DEPTH, SMALL, write_images

ROOT = Path(__file__).resolve().parents[2]
RESNET = ["train", str(ROOT / "specs" / "resnet.yaml"), "-v", "resnet18", "-p", "num_classes=10", "-p", "img=16",
          "-p", "widths=[8,8,16,16]", "-p", "stem_width=8", "--threads", "1"]


def _load(out: Path) -> torch.nn.Module:
    model = module_from_source((out / "model.py").read_text()).create_model()
    model.load_state_dict(torch.load(out / "model.pth", weights_only=True))
    return model


def test_bundled_spec_on_bundled_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    out = tmp_path / "run"
    assert main([*RESNET, "--data", "digits", "--epochs", "2", "--out", str(out), "--lr", "0.01", "--batch-size", "64"]) == 0
    text = capsys.readouterr().out
    assert "epoch 1/2: train_loss" in text and "epoch 2/2" in text and "trained 2 epoch(s) on cpu" in text
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and float(rows[1]["val_acc"]) > 0.5  # 10 classes: chance is 0.1
    model = _load(out).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_image_folder_with_loader_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("PIL")
    write_images(tmp_path / "data" / "train", ["a", "b"], 24, size=14)
    write_images(tmp_path / "data" / "val", ["a", "b"], 8, size=14, seed=1)
    out = tmp_path / "run"
    args = ["train", str(SMALL), "-p", "channels=3", "-p", "img=12", "-p", "num_classes=2", "--data", str(tmp_path / "data"),
            "--epochs", "2", "--out", str(out), "--workers", "2", "--batch-size", "8", "--lr", "0.02", "--threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "48 train, 16 val, 2 DataLoader worker(s)" in text
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(np.isfinite(float(r["val_loss"])) for r in rows)
    assert 0.0 <= float(rows[-1]["val_acc"]) <= 1.0
    _load(out)


def test_depth_task_on_live_spoof_folders_with_depth_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("PIL")
    write_images(tmp_path / "faces", ["live", "spoof"], 10, size=20)
    for f in (tmp_path / "faces" / "live").iterdir():
        (tmp_path / "depth" / "live").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "depth" / "live" / f"{f.stem}.npy", np.full((10, 10), 0.8, np.float32))
    out = tmp_path / "run"
    assert main(["train", str(DEPTH), "--data", str(tmp_path / "faces"), "--depth", str(tmp_path / "depth"), "--epochs", "1",
                 "--out", str(out), "--workers", "0", "--batch-size", "4", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "task depth" in text and "depth maps from" in text
    row = next(csv.DictReader((out / "metrics.csv").open()))
    assert {"val_auc", "val_acer", "val_acc"} <= set(row)


def test_resume_continues_the_run_exactly(tmp_path: Path) -> None:
    """Also with --ema: the saved weights are the average, and resuming continues it."""
    pytest.importorskip("sklearn")
    common = [*RESNET, "--data", "digits", "--schedule", "constant", "--batch-size", "128", "--lr", "0.01", "--ema", "0.9"]
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main([*common, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    a, b = _load(tmp_path / "a").state_dict(), _load(tmp_path / "b").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a" / "metrics.csv").read_text().splitlines()[2].split(",")[:4] == \
        (tmp_path / "b" / "metrics.csv").read_text().splitlines()[2].split(",")[:4]


def _fails(args: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") <= 1, err  # one line (and a help line)
    for n in needles:
        assert n in err, err


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", str(SMALL), "--epochs", "1"]
    _fails([*base, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o1")], capsys, "does not exist")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    _fails([*base, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o2")], capsys, "holds no images")
    write_images(tmp_path / "two", ["a", "b"], 4)
    _fails([*base, "--data", str(tmp_path / "two"), "--out", str(tmp_path / "o3")], capsys,
           "outputs [1, 4] but the data has 2 classes", "num_classes=2")
    _fails([*base, "--data", str(tmp_path / "two"), "--task", "depth", "--out", str(tmp_path / "o4")], capsys, "'live' and 'spoof'")
    _fails([*base, "--device", "tpu", "--out", str(tmp_path / "o5")], capsys, "unknown device 'tpu'")
    if not torch.cuda.is_available():
        _fails([*base, "--device", "cuda", "--out", str(tmp_path / "o6")], capsys, "CUDA is not available")
    _fails([*base, "--data", "digits", "-p", "num_classes=10", "--out", str(tmp_path / "o7"), "--resume"], capsys, "nothing to resume")
    assert main([*base, "--data", "digits", "-p", "num_classes=10", "--out", str(tmp_path / "o8")]) == 0
    capsys.readouterr()
    before = (tmp_path / "o8" / "model.py").read_text()
    _fails([*base, "--data", "digits", "-p", "num_classes=10", "-p", "width=4", "--out", str(tmp_path / "o8")], capsys,
           "already holds a training run")
    assert (tmp_path / "o8" / "model.py").read_text() == before
    _fails([*base, "--data", "digits", "-p", "num_classes=10", "-p", "width=4", "--out", str(tmp_path / "o8"), "--resume"], capsys,
           "written for another model")
    _fails([*base, "--val-fraction", "1.5", "--out", str(tmp_path / "o11")], capsys, "between 0 and 1")
    _fails([*base, "--ema", "1.5", "--out", str(tmp_path / "o12")], capsys, "EMA decay must lie between 0 and 1")
    (tmp_path / "x.txt").write_text("x")
    _fails([*base, "--out", str(tmp_path / "x.txt")], capsys, "is a file, not a folder")
    _fails([*base, "--data", str(tmp_path / "x.txt"), "--out", str(tmp_path / "o9")], capsys, "not a .npz archive")
    bad = write_images(tmp_path / "bad", ["a", "b"], 6)
    for f in bad:
        f.write_bytes(b"broken")
    _fails([*base, "-p", "channels=3", "-p", "num_classes=2", "--data", str(tmp_path / "bad"), "--workers", "1",
            "--out", str(tmp_path / "o10")], capsys, "cannot read image")


def test_depth_task_on_digits_and_classification_on_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    assert main(["train", str(DEPTH), "--data", "digits", "--epochs", "1", "--batch-size", "64", "--out", str(tmp_path / "d"),
                 "--threads", "1"]) == 0
    assert "task depth" in capsys.readouterr().out
    row = next(csv.DictReader((tmp_path / "d" / "metrics.csv").open()))
    assert {"val_auc", "val_acer"} <= set(row) and 0.0 <= float(row["val_auc"]) <= 1.0
    from .conftest import textures

    x, y = textures(64)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    assert main(["train", str(SMALL), "--data", str(tmp_path / "t.npz"), "--epochs", "3", "--lr", "0.02", "--batch-size", "16",
                 "--out", str(tmp_path / "n"), "--threads", "1"]) == 0
    assert "arrays t.npz" in capsys.readouterr().out
    _fails(["train", str(SMALL), "-p", "num_classes=3", "--data", str(tmp_path / "t.npz"), "--epochs", "1",
            "--out", str(tmp_path / "m")], capsys, "outputs [1, 3] but the data has 4 classes")
