"""abs, clamp, n-ary sum, comparisons and where: shapes, dtypes and values against PyTorch; errors."""

from __future__ import annotations

import pytest
import torch
from archc.backends.pytorch.single import build_single

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check, infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")
torch.set_num_threads(1)


def test_abs_and_clamp() -> None:
    x = torch.randn(2, 3, 4)
    assert torch.equal(check("abs", {}, (2, 3, 4)).module(x), x.abs())
    for attrs, ref in [({"min": 0.0}, x.clamp(min=0.0)), ({"max": 0.5}, x.clamp(max=0.5)),
                       ({"min": -0.2, "max": 0.3}, x.clamp(-0.2, 0.3))]:
        r = check("clamp", attrs, (2, 3, 4))
        assert torch.equal(r.module(x), ref) and r.macs == 0
    with pytest.raises(OpCheckError, match="needs 'min', 'max' or both"):
        infer("clamp", {}, (2, 3))
    with pytest.raises(OpCheckError, match="min 1 is above max 0"):
        infer("clamp", {"min": 1.0, "max": 0.0}, (2, 3))


def test_sum_of_many_broadcasts() -> None:
    r = check("sum", {}, (2, 3, 4, 5), (2, 3, 1, 5), (1, 5))
    a, b, c = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 1, 5), torch.randn(1, 5)
    torch.testing.assert_close(r.module(a, b, c), a + b + c)
    assert infer("sum", {}, ("B", 3, 4), ("B", 3, 4))[0].shape == ("B", 3, 4)
    with pytest.raises(OpCheckError, match="do not broadcast"):
        infer("sum", {}, (2, 3, 4), (2, 3, 5))


@pytest.mark.parametrize("name,fn", [("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le),
                                     ("gt", torch.gt), ("ge", torch.ge)])
def test_comparisons_give_bool(name: str, fn) -> None:
    x = torch.randint(-2, 3, (2, 3, 4)).float()
    y = torch.randint(-2, 3, (1, 3, 1)).float()
    (t,) = infer(name, {}, (2, 3, 4), (1, 3, 1))
    assert t == TensorType((2, 3, 4), "bool")
    two = build_single(name, {}, [TensorType((2, 3, 4)), TensorType((1, 3, 1))])[0]
    assert torch.equal(two(x, y), fn(x, y)) and torch.jit.script(two)(x, y).dtype == torch.bool
    one = build_single(name, {"value": 0.0}, [TensorType((2, 3, 4))])[0]
    assert torch.equal(one(x), fn(x, torch.zeros(()))) and infer(name, {"value": 0.0}, (2, 3))[0].dtype == "bool"
    with pytest.raises(OpCheckError, match="second input or with 'value', got neither"):
        infer(name, {}, (2, 3))
    with pytest.raises(OpCheckError, match="got a second input and 'value'"):
        infer(name, {"value": 1.0}, (2, 3), (2, 3))


def test_where_selects_and_checks_the_condition() -> None:
    op = get_op("where")
    types = [TensorType((2, 1, 4), "bool"), TensorType((2, 3, 4)), TensorType((4,))]
    (t,) = op.infer(op.bind({}), types)
    assert t == TensorType((2, 3, 4))
    mod = build_single("where", {}, types)[0]
    c, a, b = torch.rand(2, 1, 4) > 0.5, torch.randn(2, 3, 4), torch.randn(4)
    assert torch.equal(mod(c, a, b), torch.where(c, a, b))
    with pytest.raises(OpCheckError, match="needs a bool condition"):
        op.infer(op.bind({}), [TensorType((2, 3, 4))] * 3)
    with pytest.raises(OpCheckError, match="dtypes of the two branches differ"):
        op.infer(op.bind({}), [types[0], TensorType((2, 3, 4)), TensorType((4,), "float64")])


def test_a_comparison_masks_attention() -> None:
    """A bool tensor from a comparison is a valid sdpa mask (True keeps the entry)."""
    op = get_op("gt")
    (mask,) = op.infer(op.bind({"value": 0.0}), [TensorType((1, 1, 5, 5))])
    sdpa = get_op("sdpa")
    q = TensorType((2, 3, 5, 8))
    assert sdpa.infer(sdpa.bind({}), [q, q, q, mask])[0] == q


def test_sum_of_one_input_reduces_over_dims() -> None:
    x = torch.randn(2, 3, 4, 5)
    for attrs, ref in [({"dims": [-1]}, x.sum(-1, keepdim=True)), ({"dims": [1, 3], "keepdim": False}, x.sum((1, 3)))]:
        r = check("sum", attrs, (2, 3, 4, 5))
        torch.testing.assert_close(r.module(x), ref)
    with pytest.raises(OpCheckError, match="none are given"):
        infer("sum", {}, (2, 3))
    with pytest.raises(OpCheckError, match="batch axis 0"):
        infer("sum", {"dims": [0]}, (2, 3))
    with pytest.raises(OpCheckError, match="takes no 'dims'"):
        infer("sum", {"dims": [1]}, (2, 3), (2, 3))


def test_expand_to_the_batch_of_a_reference() -> None:
    op = get_op("expand")
    (t,) = op.infer(op.bind({}), [TensorType((1, 1, 8)), TensorType(("B", 196, 8))])
    assert t.shape == ("B", 1, 8)
    mod = build_single("expand", {}, [TensorType((1, 1, 8)), TensorType((3, 5, 8))])[0]
    tok, x = torch.randn(1, 1, 8), torch.randn(4, 5, 8)  # another batch at run time
    assert torch.equal(mod(tok, x), tok.expand(4, -1, -1))
    assert torch.equal(torch.jit.script(mod)(tok, x), tok.expand(4, -1, -1))
    with pytest.raises(OpCheckError, match="axis 0 of size 1"):
        op.infer(op.bind({}), [TensorType((2, 1, 8)), TensorType(("B", 196, 8))])


GLOBAL_FILTER = """\
archc: 1
name: global_filter
inputs: {x: [B, 8, 14, 14]}
graph:
  - spectrum: {op: rfft2, norm: ortho}
  - complex_weight: {op: param, shape: [8, 14, 8, 2], init: normal, std: 0.02}
  - filtered: {op: complex_mul, in: [spectrum, complex_weight]}
  - back: {op: irfft2, size: 14, norm: ortho}
"""


def test_complex_mul_is_the_complex_product() -> None:
    op = get_op("complex_mul")
    (t,) = op.infer(op.bind({}), [TensorType(("B", 8, 14, 8, 2)), TensorType((8, 14, 8, 2))])
    assert t.shape == ("B", 8, 14, 8, 2)
    mod = build_single("complex_mul", {}, [TensorType((2, 3, 5, 2)), TensorType((5, 2))])[0]
    a, b = torch.randn(2, 3, 5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    want = torch.view_as_real(torch.view_as_complex(a) * torch.view_as_complex(b))
    torch.testing.assert_close(mod(a, b), want, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(torch.jit.script(mod)(a, b), want, rtol=1e-15, atol=1e-15)
    with pytest.raises(OpCheckError, match="trailing \\(real, imag\\) axis"):
        op.infer(op.bind({}), [TensorType(("B", 8, 14, 8)), TensorType((8, 14, 8, 2))])


def test_global_filter_matches_gfnet_and_exports_to_onnx(tmp_path) -> None:
    """GFNet's global filter: irfft2(rfft2(x) · W) with W complex, stored as real pairs."""
    from archc.compiler import CompileOptions, compile_spec
    from archc.targets import compile_target
    from tests.artifact import import_source

    spec = tmp_path / "global_filter.yaml"
    spec.write_text(GLOBAL_FILTER, encoding="utf-8")
    res = compile_spec(spec, CompileOptions())
    assert res.cost.params == 8 * 14 * 8 * 2 and res.cost.macs == 0
    model = import_source(res.source, tmp_path).create_model().eval().double()
    x = torch.randn(2, 8, 14, 14, dtype=torch.float64)
    w = torch.view_as_complex(model.complex_weight)
    want = torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho") * w, s=(14, 14), norm="ortho")
    with torch.no_grad():
        torch.testing.assert_close(model(x), want, rtol=1e-12, atol=1e-13)
    targets = [("torchscript", ".pt"), ("export", ".pt2")]
    try:
        import onnxruntime  # noqa: F401

        targets.append(("onnx", ".onnx"))
    except ImportError:
        pass
    for target, suffix in targets:
        out = compile_target(spec, CompileOptions(target=target), tmp_path / f"m{suffix}")
        assert all(e <= 1e-4 for e in out.errors.values()), out.errors


@pytest.mark.parametrize("graph,ok", [
    ("  - c: {op: gt, value: 0.0}\n  - r: {op: reshape, shape: [-1]}\n  - w: {op: where, in: [r, r, r]}\n", False),
    ("  - c: {op: gt, value: 0.0}\n  - r: {op: reshape, shape: [-1]}\n  - f: {op: reshape, in: x, shape: [-1]}\n"
     "  - w: {op: where, in: [r, f, f]}\n", True),
    ("  - c: {op: gt, value: 0.0}\n  - conv: {op: conv2d, out: 4, kernel: 1}\n", False),
    ("  - idx: {op: relative_position_index, window: 2}\n  - s: {op: add, in: [x, idx]}\n", False),
])
def test_bool_and_int_tensors_reach_only_ops_that_take_them(tmp_path, graph: str, ok: bool) -> None:
    from archc.diagnostics import ShapeError
    from archc.spec import load_spec

    spec = tmp_path / "m.yaml"
    spec.write_text("archc: 1\ninputs: {x: [B, 4, 4, 4]}\ngraph:\n" + graph, encoding="utf-8")
    if ok:
        assert load_spec(spec).output_types[0].dtype == "float32"
        return
    with pytest.raises(ShapeError, match="computes on floating-point tensors") as info:
        load_spec(spec)
    assert info.value.loc is not None and info.value.loc.line >= 5
