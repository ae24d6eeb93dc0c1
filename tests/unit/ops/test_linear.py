"""linear, matmul and softmax: shapes, params and MACs against PyTorch + FlopCounterMode, numerics, scripting, errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check as _check
from tests.unit.ops.harness import infer as _infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


@pytest.mark.parametrize(
    "attrs,shape,macs",
    [
        ({"out": 7}, (2, 5), 5 * 7),
        ({"out": 7, "bias": False}, (3, 4, 5), 4 * 5 * 7),
        ({"out": 16}, (2, 3, 4, 8), 3 * 4 * 8 * 16),
    ],
)
def test_linear(attrs: dict[str, Any], shape: tuple[int, ...], macs: int) -> None:
    r = _check("linear", attrs, shape)
    assert r.macs == macs * shape[0]
    assert r.params == shape[-1] * attrs["out"] + (attrs["out"] if attrs.get("bias", True) else 0)
    x = torch.randn(*shape)
    lin = r.module.m
    torch.testing.assert_close(r.module(x), F.linear(x, lin.weight, lin.bias))
    op = get_op("linear")
    assert op is not None and op.counts_activations
    a = op.bind(attrs)
    ins = [TensorType(("B", *shape[1:]))]
    assert op.macs(a, ins, op.infer(a, ins)) == macs  # per sample, symbolic batch untouched


@pytest.mark.parametrize(
    "shapes,macs",
    [
        ([(2, 3, 4, 5), (3, 5, 6)], 3 * 4 * 5 * 6),
        ([(2, 3, 4, 5), (2, 3, 5, 6)], 3 * 4 * 5 * 6),  # attention-style q @ k^T
        ([(2, 1, 4, 5), (2, 3, 5, 6)], 3 * 4 * 5 * 6),  # broadcast a head axis of the first input
        ([(2, 3, 4, 5), (1, 3, 5, 6)], 3 * 4 * 5 * 6),
        ([(2, 4, 5), (5, 6)], 4 * 5 * 6),
        ([(3, 5), (5, 6)], 5 * 6),
    ],
)
def test_matmul(shapes: list[tuple[int, ...]], macs: int) -> None:
    r = _check("matmul", {}, *shapes)
    assert r.macs == macs * shapes[0][0] and r.params == 0
    xs = [torch.randn(*s) for s in shapes]
    torch.testing.assert_close(r.module(*xs), torch.matmul(*xs))


@pytest.mark.parametrize(
    "shapes,out,macs",
    [
        ([("B", 3, 4, 5), ("B", 3, 5, 6)], ("B", 3, 4, 6), 3 * 4 * 5 * 6),
        ([("B", 1, 4, 5), (1, 3, 5, 6)], ("B", 3, 4, 6), 3 * 4 * 5 * 6),
        ([("B", 4, 5), (5, 6)], ("B", 4, 6), 4 * 5 * 6),
        ([("B", 5), (5, 6)], ("B", 6), 5 * 6),
    ],
)
def test_matmul_symbolic_batch(shapes: list[tuple[Any, ...]], out: tuple[Any, ...], macs: int) -> None:
    op = get_op("matmul")
    assert op is not None
    ins = [TensorType(s) for s in shapes]
    outs = op.infer({}, ins)
    assert outs[0].shape == out and op.macs({}, ins, outs) == macs


@pytest.mark.parametrize("attrs,shape", [({}, (2, 3, 5)), ({"dim": 1}, (2, 3, 4, 4)), ({"dim": -2}, (2, 6, 4))])
def test_softmax(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("softmax", attrs, shape)
    x = torch.randn(*shape)
    torch.testing.assert_close(r.module(x), torch.softmax(x, attrs.get("dim", -1)))


@pytest.mark.parametrize(
    "name,attrs,shapes,match",
    [
        ("linear", {"out": 4}, [(2,)], "rank >= 2"),
        ("linear", {}, [(2, 3)], "needs attribute 'out'"),
        ("linear", {"out": 0}, [(2, 3)], ">= 1"),
        ("linear", {"out": 4, "bias": "yes"}, [(2, 3)], "true or false"),
        ("matmul", {}, [(2, 4, 5), (2, 6, 6)], r"inner dims differ"),
        ("matmul", {}, [(2, 4, 5), (3, 5, 6)], "do not broadcast"),
        ("matmul", {}, [(1, 4, 5), (3, 5, 6)], "batch axis"),
        ("matmul", {}, [(2, 5), (2, 3, 5, 6)], "higher rank"),
        ("matmul", {}, [(2, 5), (5,)], "rank >= 2"),
        ("softmax", {"dim": 0}, [(2, 3)], "batch axis 0"),
        ("softmax", {"dim": 2}, [(2, 3)], "out of range"),
    ],
)
def test_errors(name: str, attrs: dict[str, Any], shapes: list[tuple[int, ...]], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        _infer(name, attrs, *shapes)
