"""ResNet-18 (specs/resnet.yaml) to int8 ONNX: passes onnx.checker, runs in onnxruntime on int8 kernels, SQNR reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from archc.compiler import CompileOptions
from archc.quantize import QuantOptions, compile_quantized, report_path
from archc.quantize.report import sqnr_db

from .conftest import ROOT


def test_resnet18_int8_onnx(tmp_path: Path) -> None:
    out = tmp_path / "r18_int8.onnx"
    options = CompileOptions(variant="resnet18", pipeline="deploy", target="onnx", params=["img=64"], check=False)
    res = compile_quantized(ROOT / "specs" / "resnet.yaml", options,
                            QuantOptions(calib_random=True, calib_batches=2, calib_batch_size=4), out)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops  # QDQ form

    # every conv and the classifier run on int8 kernels once onnxruntime optimizes the session
    assert res.report.kernels["QLinearConv"] == 20 and res.report.kernels["QGemm"] == 1
    assert res.report.kernels.get("Conv", 0) == 0

    # runs at another batch size than the calibration's, close to the float model
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert y.shape == (3, 1000) and np.isfinite(y).all()

    report = json.loads(report_path(out).read_text())
    assert report["model_output_sqnr_db"] == res.report.model_sqnr > 15.0
    weighted = [la for la in report["layers"] if la["weight_sqnr"] is not None]
    assert len(weighted) == 21
    assert all(la["own_sqnr"] is not None and la["own_sqnr"] > 15.0 for la in weighted)
    assert report["total_macs"] == sum(la["macs"] for la in weighted)
    assert report["float_layers"] == [] and report["calibration"].startswith("random normal inputs")

    # the float model at batch 3 against the int8 one: the report's SQNR is not a one-batch accident
    from archc.backends.onnx import build_onnx

    from archc.targets import prepare

    prep = prepare(ROOT / "specs" / "resnet.yaml", options)
    ref = ort.InferenceSession(build_onnx(prep.factory(True), prep.inputs, prep.input_names)[0],
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert sqnr_db(float(np.sum(ref.astype(np.float64) ** 2)), float(np.sum((ref - y).astype(np.float64) ** 2))) > 15.0
