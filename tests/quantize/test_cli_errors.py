"""``archc compile --quantize``: every refused request exits 1 with one error line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.cli import main

from .conftest import MINI


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str, out: str = "m.onnx") -> tuple[int, str]:
    rc = main(["-q", "compile", str(MINI), "-o", str(tmp_path / out), *args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(("args", "out", "message"), [
    (["--pipeline", "train", "--target", "onnx", "--calib-random"], "m.onnx", "use --pipeline deploy"),
    (["--pipeline", "fused", "--target", "onnx", "--calib-random"], "m.onnx", "use --pipeline deploy"),
    (["--pipeline", "deploy", "--target", "export", "--calib-random"], "m.pt2", "does not support --target export"),
    (["--pipeline", "deploy", "--target", "torchscript", "--calib-random"], "m.pt", "does not support --target torchscript"),
    (["--pipeline", "deploy", "--target", "onnx"], "m.onnx", "pass --calib DATA"),
    (["--pipeline", "deploy", "--target", "onnx", "--calib", "digits", "--calib-random"], "m.onnx", "exclude each other"),
    (["--pipeline", "deploy", "--target", "onnx", "--calib", "no/such/folder"], "m.onnx", "does not exist"),
    (["--pipeline", "deploy", "--target", "onnx", "--calib-random", "--calib-batches", "0"], "m.onnx", "--calib-batches must be at least 1"),
])
def test_refused_before_anything_is_built(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], out: str,
                                          message: str) -> None:
    rc, err = _run(capsys, tmp_path, "--quantize", "int8", *args, out=out)
    assert rc == 1
    assert message in err
    assert "error: " in err.splitlines()[0] and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_keep_float_layer_names_the_closest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, err = _run(capsys, tmp_path, "--quantize", "int8", "--pipeline", "deploy", "--target", "onnx", "--calib-random",
                   "--calib-batches", "1", "--keep-float", "stage1.0.a.con")
    assert rc == 1
    assert "--keep-float: no layer 'stage1.0.a.con'" in err and "stage1.0.a.conv" in err
    assert list(tmp_path.iterdir()) == []


def test_bad_calib_file_kind(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "data.txt"
    bad.write_text("not data")
    rc, err = _run(capsys, tmp_path, "--quantize", "int8", "--pipeline", "deploy", "--target", "onnx", "--calib", str(bad))
    assert rc == 1 and "is a file but not a .npz archive" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt"]
