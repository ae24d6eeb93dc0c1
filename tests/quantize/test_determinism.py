"""Same spec, data and options → byte-identical int8 artifacts and reports; .npz calibration of a dense-output model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archc.compiler import CompileOptions
from archc.quantize import QuantOptions, compile_quantized, report_path

from .conftest import MINI


@pytest.mark.parametrize(("target", "suffix", "method"), [("onnx", ".onnx", "mse"), ("pytorch", ".py", "percentile")])
def test_npz_calibration_is_deterministic(tmp_path: Path, target: str, suffix: str, method: str) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "cal.npz"
    # the mini spec ends in a 1x1 conv (maps, not logits): calibration reads only the images
    np.savez(data, x=rng.random((40, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 40))
    blobs = []
    for k in range(2):
        (tmp_path / str(k)).mkdir()
        out = tmp_path / str(k) / f"m{suffix}"  # one name: the report names the files beside it
        res = compile_quantized(MINI, CompileOptions(pipeline="deploy", target=target),
                                QuantOptions(calib=str(data), calib_batches=2, method=method), out)
        assert res.report.method == method and "cal.npz: 32 training images" in res.report.calibration
        blobs.append([f.read_bytes() for f in sorted(res.files)])
        assert report_path(out) in res.files
    assert blobs[0] == blobs[1]
