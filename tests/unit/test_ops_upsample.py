"""conv_transpose2d and resize to a reference input / by per-axis scales: shapes, params, MACs against PyTorch."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from archc.backends.pytorch.single import build_single

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check, infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")
torch.set_num_threads(1)


@pytest.mark.parametrize(
    "attrs,shape",
    [
        ({"out": 8, "kernel": 2, "stride": 2}, (2, 4, 5, 6)),
        ({"out": 6, "kernel": 4, "stride": 2, "padding": 1}, (1, 4, 7, 7)),
        ({"out": 6, "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, (1, 6, 5, 4)),
        ({"out": 8, "kernel": [3, 5], "stride": [1, 2], "groups": 2, "bias": False}, (2, 4, 3, 3)),
        ({"out": 4, "kernel": 3, "dilation": 2, "output_padding": 1, "stride": 1}, (1, 2, 4, 4)),
    ],
)
def test_conv_transpose2d_against_pytorch(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = check("conv_transpose2d", attrs, shape)  # shapes, params and MACs equal what PyTorch observes
    m = r.module.m
    assert isinstance(m, torch.nn.ConvTranspose2d)
    x = torch.randn(*shape)
    ref = F.conv_transpose2d(x, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)
    torch.testing.assert_close(r.module(x), ref)
    assert r.macs > 0 and r.params == m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)


@pytest.mark.parametrize(
    "attrs,shape,match",
    [
        ({"out": 4, "kernel": 2, "stride": 2, "output_padding": 2}, (1, 4, 5, 5), "output_padding 2 must be smaller"),
        ({"out": 3, "kernel": 2, "groups": 2}, (1, 4, 5, 5), "groups=2 must divide"),
        ({"out": 4, "kernel": 1, "padding": 3}, (1, 4, 5, 5), "empty"),
        ({"out": 4, "kernel": 2}, (1, 4, 5), "NCHW"),
    ],
)
def test_conv_transpose2d_errors(attrs: dict[str, Any], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        infer("conv_transpose2d", attrs, shape)


def test_resize_to_a_reference_input() -> None:
    op = get_op("resize")
    types = [TensorType(("B", 8, 7, 9)), TensorType(("B", 16, 14, 18))]
    (t,) = op.infer(op.bind({"mode": "bilinear"}), types)
    assert t.shape == ("B", 8, 14, 18)
    mod = build_single("resize", {"mode": "bilinear"}, [TensorType((2, 8, 7, 9)), TensorType((2, 16, 14, 18))])[0]
    x, ref = torch.randn(2, 8, 7, 9), torch.randn(2, 16, 13, 5)  # a reference of another size at run time
    want = F.interpolate(x, size=(13, 5), mode="bilinear", align_corners=False)
    torch.testing.assert_close(mod(x, ref), want)
    torch.testing.assert_close(torch.jit.script(mod)(x, ref), want)
    with pytest.raises(OpCheckError, match="exactly one of 'size', 'scale' and a reference input, got more than one"):
        op.infer(op.bind({"size": 4}), types)


def test_resize_per_axis_scale() -> None:
    r = check("resize", {"scale": [2, 0.5], "mode": "bilinear"}, (1, 3, 5, 8))
    x = torch.randn(1, 3, 5, 8)
    torch.testing.assert_close(r.module(x), F.interpolate(x, scale_factor=[2.0, 0.5], mode="bilinear"))
    assert r.inferred == [(1, 3, 10, 4)]
    for bad, match in [([2.0], "a number or a pair"), ([2.0, -1.0], "must be > 0"), ([float("inf"), 1.0], "finite number"), ("x", "a number or a pair")]:
        with pytest.raises(OpCheckError, match=match):
            infer("resize", {"scale": bad}, (1, 3, 5, 8))
