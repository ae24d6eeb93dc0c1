"""Trained on the bundled digits, int8 keeps accuracy within 1 point — plain and RepVGG-style, ONNX and PyTorch.

Each model is trained with the project trainer (seeded), compiled with the deploy pipeline and its
checkpoint, quantized with ``--calib digits``, and both int8 artifacts are run in a fresh process in
which archc cannot be imported (so they load without archc).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions
from archc.quantize import QuantOptions, compile_quantized
from archc.targets import prepare
from archc.train.config import TrainOptions
from archc.train.run import train_spec
from archc.train.sources import load_source

from .conftest import SMALL, TINY_REPVGG

HERE = Path(__file__).resolve().parent


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@pytest.mark.parametrize(("spec", "params", "epochs"), [(SMALL, ["num_classes=10", "width=16"], 12), (TINY_REPVGG, [], 6)],
                         ids=["small", "tiny_repvgg"])
def test_int8_keeps_accuracy_within_one_point(tmp_path: Path, spec: Path, params: list[str], epochs: int) -> None:
    run = train_spec(spec, data="digits", out=tmp_path / "run", params=params,
                     options=TrainOptions(epochs=epochs, lr=3e-3, seed=0, device="cpu"))
    weights = str(run.files["weights"])
    data = load_source("digits", "classification", (1, 8, 8))
    x, y = data.x_val, data.y_val
    prep = prepare(spec, CompileOptions(pipeline="deploy", params=params, weights=weights))
    with torch.no_grad():
        float_acc = _accuracy(prep.factory(True)()(x), y)
    assert float_acc > 0.85, f"the float model did not learn (accuracy {float_acc:.3f})"

    artifacts = []
    for target, suffix in (("onnx", ".onnx"), ("pytorch", ".py")):
        out = tmp_path / f"int8{suffix}"
        res = compile_quantized(spec, CompileOptions(pipeline="deploy", target=target, params=params, weights=weights),
                                QuantOptions(calib="digits", calib_batches=4), out)
        assert res.report.model_sqnr > 20.0
        artifacts.append(str(out))
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run([sys.executable, "-I", str(HERE / "standalone_eval.py"), str(tmp_path / "x.pt"),
                           str(tmp_path / "out.pt"), *artifacts], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs = torch.load(tmp_path / "out.pt", weights_only=True)
    for path in artifacts:
        acc = _accuracy(outs[path], y)
        print(f"{spec.stem} {Path(path).name}: int8 accuracy {acc:.4f}, float {float_acc:.4f}")
        assert abs(acc - float_acc) <= 0.01, f"{Path(path).name}: int8 accuracy {acc:.4f} vs float {float_acc:.4f}"

    report = json.loads((tmp_path / "int8.onnx.quant.json").read_text())
    if spec == TINY_REPVGG:  # the deploy pipeline merged branches: the report compares both forms
        rep = report["reparameterization"]
        assert rep["branch_merges"] == 3
        assert rep["merged"]["weighted_layers"] < rep["unmerged"]["weighted_layers"]
        assert rep["merged_minus_unmerged_db"] == pytest.approx(
            rep["merged"]["model_output_sqnr_db"] - rep["unmerged"]["model_output_sqnr_db"])
    else:
        assert "reparameterization" not in report
