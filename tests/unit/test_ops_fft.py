"""rfft2 / irfft2 (archc.ops.fft): the stated FFT cost estimate, global filters with real-pair complex weights on every target.

Shapes, numerics against torch.fft and attribute errors of the two ops are in tests/unit/ops/test_misc.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.compiler import CompileOptions, build_graph, compile_spec
from archc.cost.model import graph_cost
from archc.ir.types import TensorType
from archc.ops import get_op
from archc.ops.fft import fft_macs
from tests.artifact import import_source

torch.set_num_threads(1)

#: GFNet's global filter with the filter stored at another size: resized (per real / imaginary plane) to the spectrum
SPEC = """\
archc: 1
name: gf
params: {c: 6, hw: 12, fh: 5, fw: 4}
inputs:
  x: [B, "${c}", "${hw}", "${hw}"]
graph:
  - spectrum: {op: rfft2, in: x, norm: ortho}
  - complex_weight: {op: param, shape: "${[c, fh, fw, 2]}", init: normal, std: 0.5}
  - planes: {op: permute, dims: [0, 3, 1, 2]}
  - sized: {op: resize, size: "${[hw, hw // 2 + 1]}", mode: bilinear, align_corners: true}
  - weight: {op: permute, dims: [0, 2, 3, 1]}
  - filtered: {op: complex_mul, in: [spectrum, weight]}
  - y: {op: irfft2, size: "${[hw, hw]}", norm: ortho}
"""


def _reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The same filter with complex tensors: W resized in (2, C, h, w) layout, as GFNet-style code does."""
    spec = torch.fft.rfft2(x, norm="ortho")
    w = torch.nn.functional.interpolate(w.permute(3, 0, 1, 2), size=spec.shape[-2:], mode="bilinear", align_corners=True)
    w = torch.view_as_complex(w.permute(1, 2, 3, 0).contiguous())
    return torch.fft.irfft2(spec * w, s=x.shape[-2:], norm="ortho")


def test_fft_macs_formula() -> None:
    assert fft_macs(1, 16, 16) == 1.25 * 256 * 8  # power of two: 1.25·N·log2 N exactly
    assert fft_macs(3, 14, 14) == round(3 * 1.25 * 196 * math.log2(196))
    assert fft_macs(5, 1, 1) == 0


def test_estimates_count_every_plane_and_stay_out_of_macs() -> None:
    rfft, irfft = get_op("rfft2"), get_op("irfft2")
    assert rfft is not None and irfft is not None
    x = TensorType(("B", 2, 3, 8, 16))  # planes: 2·3 of 8×16 points
    assert rfft.uncounted_macs({"norm": "ortho"}, [x], []) == 6 * 1.25 * 128 * 7
    assert rfft.macs({"norm": "ortho"}, [x], []) == 0
    spec = TensorType(("B", 2, 3, 8, 9, 2))
    assert irfft.uncounted_macs({"size": (8, 16), "norm": "ortho"}, [spec], []) == 6 * 1.25 * 128 * 7
    assert irfft.uncounted_macs({"size": (8, 17), "norm": "ortho"}, [spec], []) == round(6 * 1.25 * 136 * math.log2(136))


def test_graph_cost_and_reports_state_the_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gf.yaml").write_text(SPEC)
    _, g = build_graph(tmp_path / "gf.yaml", CompileOptions())
    c = graph_cost(g)
    each = round(6 * 1.25 * 144 * math.log2(144))
    assert c.macs == 0 and c.uncosted == ["rfft2", "irfft2"]
    assert c.uncosted_macs == {"rfft2": each, "irfft2": each}
    assert c.params == 6 * 5 * 4 * 2
    assert main(["validate", str(tmp_path / "gf.yaml")]) == 0
    assert f"not in MACs: rfft2 (≈{each:,}), irfft2 (≈{each:,})" in capsys.readouterr().out
    assert main(["show", str(tmp_path / "gf.yaml")]) == 0
    assert "not in MACs: rfft2 (≈" in capsys.readouterr().out


@pytest.mark.parametrize("hw", [12, 7])
def test_global_filter_with_real_pair_weights_matches_complex_reference(hw: int, tmp_path: Path) -> None:
    (tmp_path / "gf.yaml").write_text(SPEC)
    res = compile_spec(tmp_path / "gf.yaml", CompileOptions(params=[f"hw={hw}"]))
    model = import_source(res.source, tmp_path).create_model().double().eval()
    sd = model.state_dict()
    assert list(sd) == ["complex_weight"] and sd["complex_weight"].dtype == torch.float64  # state dicts stay real
    x = torch.randn(3, 6, hw, hw, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, want = model(x), _reference(x, sd["complex_weight"])
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-12
    # the filter learns: gradients reach the real-pair parameter
    model(x).square().sum().backward()
    assert model.complex_weight.grad is not None and model.complex_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("target,suffix", [("torchscript", "pt"), ("export", "pt2"), ("onnx", "onnx")])
def test_every_target_takes_the_fft_ops(target: str, suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """torch.export and ONNX (opset 18 DFT) take rfft2/irfft2; each compile checks its artifact against eager."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gf.yaml").write_text(SPEC)
    assert main(["compile", "gf.yaml", "--target", target, "-o", f"gf.{suffix}"]) == 0
    out = capsys.readouterr().out
    assert "max rel. error" in out and "not in MACs  rfft2: the FFT, 1.25·N·log2 N MACs" in out
    assert (tmp_path / f"gf.{suffix}").stat().st_size > 0


def test_onnx_without_onnxscript_names_the_fft_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Only the torch.export-based exporter (onnxscript) writes FFTs: without it the compile says so and writes nothing."""
    import archc.backends.onnx as onnx_backend

    monkeypatch.setattr(onnx_backend, "have_onnxscript", lambda: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gf.yaml").write_text(SPEC)
    assert main(["compile", "gf.yaml", "--target", "onnx", "-o", "gf.onnx"]) == 1
    err = capsys.readouterr().err
    assert "error: target 'onnx' cannot export op 'rfft2' without onnxscript" in err
    assert "pip install onnxscript" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gf.yaml"]
