"""Inputs that used to end in an internal error or a raw PyTorch error: each is one clean, positioned line."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.cli import main

HEAD = "archc: 1\nname: t\ninputs:\n  x: [B, 4, 8, 8]\n"

CASES = {
    # "$" matched before a final newline, so the id passed the identifier check and compile hit a SyntaxError
    "id_trailing_newline": (HEAD + 'graph:\n  - "conv\\n": {op: conv2d, out: 4}\n', "t.yaml:6:5:", "is not a valid identifier"),
    "surrogate_in_name": ('archc: 1\nname: "t\\ud800"\ninputs:\n  x: [B, 4, 8, 8]\ngraph:\n  - relu\n', "t.yaml:2:7:",
                          "lone surrogate \\ud800"),
    "surrogate_in_doc": (HEAD + 'doc: "x\\udc00"\ngraph:\n  - relu\n', "t.yaml:5:6:", "lone surrogate \\udc00"),
    "int_too_long": (HEAD + "graph:\n  - {op: conv2d, out: " + "9" * 5000 + "}\n", "t.yaml:6:23:", "cannot read the number"),
    "resize_scale_inf": (HEAD + "graph:\n  - {op: resize, scale: .inf}\n", "t.yaml:6:", "must be a finite number"),
    "resize_scale_huge": (HEAD + "graph:\n  - {op: resize, scale: 1.0e300}\n", "t.yaml:6:", "larger than 2,147,483,647"),
    "attribute_huge": (HEAD + "graph:\n  - {op: conv2d, out: 3000000000, kernel: 1}\n", "t.yaml:6:23:", "beyond ±2,147,483,647"),
    "input_dimension_huge": ("archc: 1\nname: t\ninputs:\n  x: [B, 3, 3000000000, 8]\ngraph:\n  - relu\n", "t.yaml:4:",
                             "dimension 2 is 3,000,000,000, above the limit"),
    "input_numel_huge": ("archc: 1\nname: t\ninputs:\n  x: [B, 3, 2000000000, 2000000000]\ngraph:\n  - relu\n", "t.yaml:4:",
                         "beyond what a tensor can hold"),
    "dimension_huge": (HEAD + "graph:\n  - {op: pad, pads: [2000000000, 2000000000]}\n", "t.yaml:6:", "above the limit"),
    "mapping_as_output_name": (HEAD + "graph:\n  - s: {op: chunk, chunks: 2, names: [{a: 1}, b]}\n", "t.yaml:6:", "is not a valid identifier"),
    "mapping_as_input_ref": (HEAD + "graph:\n  - {op: relu, in: [{a: x}]}\n", "t.yaml:6:21:", "must be a node name"),
    "mapping_as_op": (HEAD + "graph:\n  - {op: {a: 1}}\n", "t.yaml:6:", "'op' must name an op or block"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    text, where, what = CASES[name]
    (tmp_path / "t.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for cmd in (["validate", "t.yaml"], ["compile", "t.yaml", "-o", "out.py"]):
        code = main(cmd)
        err = capsys.readouterr().err
        assert code == 1, (cmd, err)
        assert err.startswith(where) and what in err, err
        assert "internal error" not in err and "Traceback" not in err
    assert not (tmp_path / "out.py").exists()


def test_input_shape_with_wrong_channels(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.yaml").write_text(HEAD + "graph:\n  - {op: conv2d, out: 4, kernel: 3}\n")
    monkeypatch.chdir(tmp_path)
    code = main(["compile", "t.yaml", "--target", "torchscript", "--input-shape", "1,3,8,8", "-o", "t.pt"])
    err = capsys.readouterr().err
    assert code == 1
    assert "has 3 channels; the spec's input 'x' has 4" in err
    assert "RuntimeError" not in err and "another target" not in err
    assert not (tmp_path / "t.pt").exists()


def test_input_shape_the_model_cannot_take(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = "archc: 1\nname: v\ninputs:\n  x: [B, 16, 8]\ngraph:\n  - p: {op: param, shape: [16, 8]}\n  - {op: add, in: [x, p]}\n"
    (tmp_path / "v.yaml").write_text(spec)
    monkeypatch.chdir(tmp_path)
    code = main(["compile", "v.yaml", "--target", "torchscript", "--input-shape", "1,17,8", "-o", "v.pt"])
    err = capsys.readouterr().err
    assert code == 1 and "the model does not accept --input-shape 1,17,8" in err, err
    assert main(["compile", "v.yaml", "--target", "torchscript", "--input-shape", "3,16,8", "-o", "v.pt"]) == 0
