"""Non-finite numbers: refused in attributes (with a position) and checkpoints; never certified as exact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions, compile_spec
from archc.diagnostics import ArchcError, CheckpointError
from archc.passes.equivalence import check_state_dict, module_from_graph, rel_error

HEAD = "archc: 1\nname: t\ninputs:\n  x: [B, 4, 8, 8]\ngraph:\n"

# every float attribute of the ops where a NaN used to reach generated code
CASES = [
    ("{op: batchnorm, momentum: VALUE}", "momentum"),
    ("{op: batchnorm, eps: VALUE}", "eps"),
    ("{op: scale, value: VALUE}", "value"),
    ("{op: pad, pads: [1, 1], value: .nan}", "value"),
    ("{op: leaky_relu, slope: VALUE}", "slope"),
    ("{op: layer_scale, init: VALUE}", "init"),
    ("{op: layernorm2d, eps: VALUE}", "eps"),
]


def _compile(tmp_path: Path, graph: str, **kw: object) -> object:
    spec = tmp_path / "t.yaml"
    spec.write_text(HEAD + graph)
    return compile_spec(spec, CompileOptions(**kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("node,attr", CASES)
def test_nonfinite_attribute_is_a_positioned_error(tmp_path: Path, node: str, attr: str, value: str) -> None:
    line = f"  - {node.replace('VALUE', value)}\n"
    if "pad" in node and value != ".nan":
        pytest.skip("pad accepts ±inf (declared)")
    with pytest.raises(ArchcError) as exc:
        _compile(tmp_path, line)
    err = exc.value
    assert f"attribute '{attr}' must be" in err.message
    assert err.loc is not None and err.loc.line == 6 and err.loc.col > 1


def test_param_constant_nan_refused(tmp_path: Path) -> None:
    text = "  - p: {op: param, shape: [4, 8, 8], init: constant, value: .nan}\n  - {op: add, in: [x, p]}\n"
    with pytest.raises(ArchcError, match="'value' must be a finite number"):
        _compile(tmp_path, text)


def test_pad_declares_inf(tmp_path: Path) -> None:
    res = _compile(tmp_path, "  - {op: pad, pads: [1, 1], value: -.inf}\n")
    assert "float('-inf')" in res.source  # type: ignore[attr-defined]


def test_checkpoint_with_nan_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    res = _compile(tmp_path, "  - conv: {op: conv2d, out: 4, kernel: 3}\n  - bn: batchnorm\n")
    sd = module_from_graph(res.graph).state_dict()  # type: ignore[attr-defined]
    sd["bn.running_var"] = sd["bn.running_var"].clone()
    sd["bn.running_var"][1] = float("nan")
    with pytest.raises(CheckpointError, match="tensor 'bn.running_var' holds 1 non-finite"):
        check_state_dict(module_from_graph(res.graph).state_dict(), sd, "w.pth")  # type: ignore[attr-defined]
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="bn.running_var"):
        _compile(tmp_path, "  - conv: {op: conv2d, out: 4, kernel: 3}\n  - bn: batchnorm\n", pipeline="deploy", weights=str(path))


def test_sparse_and_meta_checkpoint_tensors_are_refused(tmp_path: Path) -> None:
    res = _compile(tmp_path, "  - conv: {op: conv2d, out: 4, kernel: 3}\n")
    expected = module_from_graph(res.graph).state_dict()  # type: ignore[attr-defined]
    sparse = dict(expected, **{"conv.bias": expected["conv.bias"].to_sparse()})
    with pytest.raises(CheckpointError, match="'conv.bias' is a sparse_coo tensor"):
        check_state_dict(expected, sparse, "w.pth")
    meta = dict(expected, **{"conv.weight": torch.empty(expected["conv.weight"].shape, device="meta")})
    with pytest.raises(CheckpointError, match="'conv.weight' is a meta tensor"):
        check_state_dict(expected, meta, "w.pth")


def test_relative_error_of_nonfinite_outputs_is_infinite() -> None:
    a = torch.ones(3)
    assert rel_error(a, a) == 0.0
    assert math.isinf(rel_error(a, torch.tensor([1.0, float("nan"), 1.0])))
    assert math.isinf(rel_error(torch.tensor([float("inf"), 1.0, 1.0]), a))
    assert math.isinf(rel_error(torch.full((3,), float("nan")), torch.full((3,), float("nan"))))
    from archc.targets import max_rel_error

    assert math.isinf(max_rel_error(a, torch.tensor([float("nan")] * 3)))
    assert max(0.0, float("nan")) == 0.0  # the trap the helpers avoid
