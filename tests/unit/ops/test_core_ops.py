"""Each op of the core modules (conv, norm, activation, elementwise) checked alone: analytic shape,
parameter count and MACs equal what PyTorch observes, and the lowering scripts and matches eager."""

from __future__ import annotations

import pytest
import torch
from archc.backends.pytorch.single import check_op

from archc.ops.activation import Activation
from archc.ops.base import REGISTRY, OpCheckError

CASES = [
    ("conv2d", {"out": 8, "kernel": 3}, [(2, 4, 9, 9)]),
    ("conv2d", {"out": 8, "kernel": [1, 5], "stride": 2, "groups": 4, "bias": False}, [(2, 4, 9, 9)]),
    ("conv2d", {"out": 6, "kernel": 3, "dilation": 2, "padding_mode": "reflect"}, [(1, 3, 12, 10)]),
    ("cdc_conv2d", {"out": 8, "kernel": 3, "theta": 0.7}, [(2, 4, 9, 9)]),
    ("cdc_conv2d", {"out": 8, "kernel": 3, "stride": 2, "groups": 2, "bias": False}, [(2, 4, 9, 9)]),
    ("batchnorm", {}, [(2, 4, 5, 5)]),
    ("batchnorm", {"affine": False, "eps": 1e-3}, [(3, 6)]),
    ("layernorm", {}, [(2, 5, 7)]),
    ("layernorm2d", {"eps": 1e-6}, [(2, 4, 5, 5)]),
    ("groupnorm", {"groups": 2}, [(2, 4, 5, 5)]),
    ("grn", {}, [(2, 4, 5, 5)]),
    ("grn", {"channels_last": True, "bias": False}, [(2, 5, 5, 4)]),
    ("add", {}, [(2, 4, 5, 5), (1, 4, 1, 1)]),
    ("sub", {}, [(2, 4, 5, 5), (2, 4, 5, 5)]),
    ("mul", {}, [(2, 4, 5, 5), (2, 1, 5, 5)]),
    ("div", {}, [(2, 4, 5, 5), (2, 4, 5, 5)]),
    ("scale", {"value": 0.5}, [(2, 4, 5, 5)]),
    ("scale", {"value": 2.0, "offset": 1.0}, [(2, 4)]),
] + [(name, {}, [(2, 4, 5, 5)]) for name, op in sorted(REGISTRY.items()) if isinstance(op, Activation)]


@pytest.mark.parametrize("name,attrs,shapes", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_analytic_equals_observed(name: str, attrs: dict, shapes: list) -> None:
    r = check_op(name, attrs, shapes)
    assert r.inferred == r.observed
    assert r.params == r.observed_params
    assert r.macs == r.observed_macs
    xs = [torch.rand(*s) + 0.5 for s in shapes]  # positive: div and the activations stay well-conditioned
    scripted = torch.jit.script(r.module)
    with torch.no_grad():
        torch.testing.assert_close(scripted(*xs), r.module(*xs))


def test_cdc_matches_definition() -> None:
    r = check_op("cdc_conv2d", {"out": 5, "kernel": 3, "theta": 0.7}, [(1, 3, 8, 8)])
    m = r.module.m
    x = torch.randn(1, 3, 8, 8)
    ref = torch.nn.functional.conv2d(x, m.weight, m.bias, padding=1) - 0.7 * torch.nn.functional.conv2d(
        x, m.weight.sum((2, 3), keepdim=True), m.bias)
    torch.testing.assert_close(r.module(x), ref)


@pytest.mark.parametrize("name,attrs,shapes,message", [
    ("conv2d", {"out": 8, "kernel": 3, "groups": 3}, [(1, 4, 9, 9)], "groups=3 must divide"),
    ("conv2d", {"out": 8, "kernel": 11, "padding": 0}, [(1, 4, 4, 4)], "too small"),
    ("cdc_conv2d", {"out": 8, "kernel": 2}, [(1, 4, 9, 9)], "odd kernel"),
    ("groupnorm", {"groups": 3}, [(1, 4, 5, 5)], "must divide"),
    ("groupnorm", {"groups": 4}, [(1, 4, 1, 1)], "more than one value per group"),
    ("conv2d", {"out": 2, "kernel": 5, "padding": 2, "padding_mode": "reflect"}, [(1, 2, 2, 8)], "smaller than the input height 2"),
    ("conv2d", {"out": 2, "kernel": 7, "padding": 3, "padding_mode": "circular"}, [(1, 2, 8, 2)], "at most the input width 2"),
    ("add", {}, [(1, 4, 5, 5), (1, 3, 5, 5)], "do not broadcast"),
    ("layernorm2d", {}, [(1, 4)], "NCHW"),
])
def test_errors(name: str, attrs: dict, shapes: list, message: str) -> None:
    with pytest.raises(OpCheckError, match=message):
        check_op(name, attrs, shapes)


@pytest.mark.parametrize("name,attrs,shape", [
    ("groupnorm", {"groups": 2}, (1, 4, 1, 1)),  # two values per group: PyTorch runs it
    ("conv2d", {"out": 2, "kernel": 3, "padding": 1, "padding_mode": "reflect"}, (1, 2, 2, 2)),  # pad 1 < 2
    ("conv2d", {"out": 2, "kernel": 5, "padding": 2, "padding_mode": "circular"}, (1, 2, 2, 2)),  # pad 2 <= 2
])
def test_limits_that_pytorch_accepts(name: str, attrs: dict, shape: tuple) -> None:
    r = check_op(name, attrs, [shape])  # runs the module
    assert r.inferred == r.observed
