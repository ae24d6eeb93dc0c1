"""A planted outlier channel: the report names its layer as the worst, with the reason; --min-sqnr keeps it float."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from archc.cli import main
from archc.quantize import report_path
from archc.quantize.quantize_onnx import optimized_op_types

from .conftest import MINI, PLANTED


def _compile(tmp_path: Path, ckpt: Path, target: str, *extra: str) -> dict:
    out = tmp_path / ("m.onnx" if target == "onnx" else "m.py")
    rc = main(["-q", "compile", str(MINI), "--pipeline", "deploy", "--target", target, "--weights", str(ckpt),
               "--quantize", "int8", "--calib-random", "--calib-batches", "3", "-o", str(out), *extra])
    assert rc == 0
    return json.loads(report_path(out).read_text())


@pytest.mark.parametrize("target", ["onnx", "pytorch"])
def test_outlier_channel_is_the_worst_layer_and_kept_float(tmp_path: Path, planted_checkpoint: Path, target: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    report = _compile(tmp_path, planted_checkpoint, target)
    weighted = [la for la in report["layers"] if la["weight_sqnr"] is not None]
    worst = min(weighted, key=lambda la: la["own_sqnr"])
    assert worst["name"] == PLANTED
    others = [la["own_sqnr"] for la in weighted if la["name"] != PLANTED]
    assert worst["own_sqnr"] < min(others) - 5.0  # clearly apart, not by a hair
    assert worst["out_channel_ratio"] > 20.0 and worst["weight_channel_ratio"] > 20.0
    assert report["float_layers"] == [] and report["float_macs"] == 0

    threshold = (worst["own_sqnr"] + min(others)) / 2
    kept = _compile(tmp_path, planted_checkpoint, target, "--min-sqnr", f"{threshold:.2f}")
    assert kept["float_layers"] == [PLANTED]
    assert kept["below_threshold"][0]["name"] == PLANTED
    assert "outlier channels" in kept["below_threshold"][0]["reason"]
    assert kept["float_macs"] == worst["macs"] > 0
    assert kept["all_int8_model_output_sqnr_db"] == pytest.approx(report["model_output_sqnr_db"], abs=1e-6)
    assert "kept float: 1 layer(s)" in capsys.readouterr().out
    if target == "onnx":  # the artifact holds the layer's weights in float and onnxruntime runs it as a float Conv
        model = onnx.load(tmp_path / "m.onnx")
        names = {i.name for i in model.graph.initializer}
        assert PLANTED + ".weight" in names and PLANTED + ".weight_quantized" not in names
        ops = optimized_op_types((tmp_path / "m.onnx").read_bytes())
        assert ops.get("Conv", 0) >= 1 and ops["QLinearConv"] == 10
    else:
        assert f"INT8_FLOAT_LAYERS = ('{PLANTED}',)" in (tmp_path / "m.py").read_text()
        assert kept["kernels"]["quantized::conv2d_relu"] == report["kernels"]["quantized::conv2d_relu"] - 1


def test_keep_float_by_name(tmp_path: Path, planted_checkpoint: Path) -> None:
    report = _compile(tmp_path, planted_checkpoint, "onnx", "--keep-float", f"{PLANTED},pool")
    assert report["float_layers"] == [PLANTED, "pool"]
    assert report["float_macs_fraction"] == pytest.approx(report["float_macs"] / report["total_macs"])
    assert isinstance(report["sqnr_gained_db"], float)
