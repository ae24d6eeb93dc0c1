"""Named model outputs: ``outputs: {name: ref}`` makes forward return a dict, on every target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions, build_graph, compile_spec
from archc.diagnostics import SpecError
from archc.ir.printer import spec_text
from archc.targets import compile_target
from tests.artifact import import_source

torch.set_num_threads(1)

SPEC = """\
archc: 1
name: necked
params: {num_classes: 10}
inputs: {x: [B, 3, 16, 16]}
graph:
  - stem: {op: conv2d, out: 8, kernel: 3, stride: 2}
  - up: {op: conv_transpose2d, out: 4, kernel: 2, stride: 2}
  - lateral: {op: conv2d, in: x, out: 4, kernel: 1}
  - merged: {op: add, in: [up, lateral]}
  - pool: {op: global_avgpool, in: stem, keepdim: false}
  - fc: {op: linear, out: "${num_classes}"}
outputs: {logits: fc, features: stem, fpn: merged}
"""


def _write(tmp_path: Path, text: str = SPEC) -> Path:
    p = tmp_path / "necked.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_forward_returns_the_named_dict(tmp_path: Path) -> None:
    res = compile_spec(_write(tmp_path), CompileOptions())
    assert "-> Dict[str, torch.Tensor]:" in res.source
    assert "return {'logits': fc, 'features': stem, 'fpn': merged}" in res.source
    model = import_source(res.source, tmp_path).create_model().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
    assert list(out) == ["logits", "features", "fpn"]
    assert [tuple(v.shape) for v in out.values()] == [t.concrete(2) for t in res.graph.output_types]
    with torch.no_grad():
        torch.testing.assert_close(out["fpn"], model.up(model.stem(x)) + model.lateral(x))
        scripted = torch.jit.script(model)(x)
    assert list(scripted) == list(out) and all(torch.allclose(scripted[k], out[k]) for k in out)


def test_spec_round_trip_keeps_the_names(tmp_path: Path) -> None:
    _, g = build_graph(_write(tmp_path))
    text = spec_text(g)
    assert "outputs: {logits: fc, features: stem, fpn: merged}" in text
    _, g2 = build_graph(tmp_path / "again.yaml", text="archc: 1\n" + text)
    assert g2.meta["output_names"] == ("logits", "features", "fpn") and g2.outputs == g.outputs


@pytest.mark.parametrize("target,suffix,pipeline", [("torchscript", ".pt", "train"), ("export", ".pt2", "deploy"),
                                                    ("onnx", ".onnx", "deploy"), ("pytorch", ".py", "fused")])
def test_every_target_takes_named_outputs(tmp_path: Path, target: str, suffix: str, pipeline: str) -> None:
    if target == "onnx":
        pytest.importorskip("onnxruntime")
    res = compile_target(_write(tmp_path), CompileOptions(target=target, pipeline=pipeline), tmp_path / f"m{suffix}")
    assert res.errors and all(e <= 1e-4 for e in res.errors.values()), res.errors
    if target == "onnx":
        import onnx

        assert [o.name for o in onnx.load(str(tmp_path / "m.onnx")).graph.output] == ["logits", "features", "fpn"]


@pytest.mark.parametrize("outputs,match,line", [
    ("{}", "names no outputs", 12),
    ("{2d: fc}", "output name '2d'", 12),
    ("{logits: nothing}", "unknown input 'nothing'", 12),
])
def test_named_output_errors(tmp_path: Path, outputs: str, match: str, line: int) -> None:
    spec = _write(tmp_path, SPEC.replace("outputs: {logits: fc, features: stem, fpn: merged}", f"outputs: {outputs}"))
    with pytest.raises(SpecError, match=match) as info:
        compile_spec(spec, CompileOptions())
    assert info.value.loc is not None and info.value.loc.line == line


def test_blocks_and_heads_return_refs(tmp_path: Path) -> None:
    block = SPEC.replace("graph:\n", "blocks:\n  b:\n    graph: [relu]\n    outputs: {y: relu}\ngraph:\n  - bb: {op: b}\n", 1)
    with pytest.raises(SpecError, match="named outputs are for the model's 'outputs'"):
        compile_spec(_write(tmp_path, block), CompileOptions())
    headed = SPEC + "head: {features: stem, classifier: fc}\n"
    with pytest.raises(SpecError, match="returns one tensor, not named outputs"):
        compile_spec(_write(tmp_path, headed), CompileOptions())
