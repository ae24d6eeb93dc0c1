"""Pooling ops: shapes/params/MACs against PyTorch, numerics, scripting and attribute errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check as _check
from tests.unit.ops.harness import infer as _infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


@pytest.mark.parametrize(
    "attrs,shape",
    [
        ({"kernel": 2}, (2, 3, 8, 8)),
        ({"kernel": 3, "stride": 2, "padding": 1}, (2, 4, 9, 7)),
        ({"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 3, 5, 5)),  # ceil-mode correction
        ({"kernel": 3, "stride": 2, "ceil_mode": True}, (2, 3, 8, 10)),
        ({"kernel": [2, 3], "stride": [1, 2], "dilation": 2}, (2, 3, 9, 11)),
        ({"kernel": 3, "stride": 1, "padding": 1}, (3, 2, 6, 6)),
    ],
)
def test_maxpool2d(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("maxpool2d", attrs, shape)
    x = torch.randn(*shape)
    k = attrs["kernel"]
    ref = F.max_pool2d(x, k, attrs.get("stride", k), attrs.get("padding", 0), attrs.get("dilation", 1),
                       ceil_mode=attrs.get("ceil_mode", False))
    torch.testing.assert_close(r.module(x), ref)


def test_maxpool_ceil_mode_last_window_correction() -> None:
    # n=5, k=2, s=2, p=1: the ceil formula gives 4, but the 4th window would start in the padding
    assert _infer("maxpool2d", {"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, ("B", 3, 5, 5))[0].shape == (
        "B", 3, 3, 3)


@pytest.mark.parametrize(
    "attrs,shape",
    [
        ({"kernel": 2}, (2, 3, 8, 8)),
        ({"kernel": 3, "stride": 2, "padding": 1}, (2, 4, 9, 7)),
        ({"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 4, 9, 7)),
        ({"kernel": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False, "padding": 1}, (2, 3, 8, 10)),
        ({"kernel": [3, 1], "stride": 1, "padding": [1, 0]}, (1, 2, 5, 5)),
    ],
)
def test_avgpool2d(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("avgpool2d", attrs, shape)
    x = torch.randn(*shape)
    k = attrs["kernel"]
    ref = F.avg_pool2d(x, k, attrs.get("stride", k), attrs.get("padding", 0), attrs.get("ceil_mode", False),
                       attrs.get("count_include_pad", True))
    torch.testing.assert_close(r.module(x), ref)


@pytest.mark.parametrize("name,fn", [("adaptive_avgpool2d", F.adaptive_avg_pool2d),
                                     ("adaptive_maxpool2d", F.adaptive_max_pool2d)])
@pytest.mark.parametrize("size,shape", [(1, (2, 3, 7, 7)), ([3, 5], (2, 3, 10, 11)), (7, (1, 4, 14, 14)), (4, (2, 2, 3, 3))])
def test_adaptive(name: str, fn: Any, size: Any, shape: tuple[int, ...]) -> None:
    r = _check(name, {"size": size}, shape)
    x = torch.randn(*shape)
    torch.testing.assert_close(r.module(x), fn(x, size))


@pytest.mark.parametrize("keepdim", [True, False])
def test_global_pools(keepdim: bool) -> None:
    x = torch.randn(2, 5, 6, 7)
    r = _check("global_avgpool", {"keepdim": keepdim}, tuple(x.shape))
    ref = F.adaptive_avg_pool2d(x, 1)
    torch.testing.assert_close(r.module(x), ref if keepdim else ref.flatten(1))
    r = _check("global_maxpool", {"keepdim": keepdim}, tuple(x.shape))
    ref = F.adaptive_max_pool2d(x, 1)
    torch.testing.assert_close(r.module(x), ref if keepdim else ref.flatten(1))
    expect = ("B", 5, 1, 1) if keepdim else ("B", 5)
    assert _infer("global_avgpool", {"keepdim": keepdim}, ("B", 5, 6, 7))[0].shape == expect


def test_defaults_and_flags() -> None:
    op = get_op("maxpool2d")
    assert op is not None
    a = op.bind({"kernel": 3})
    assert a["stride"] == (3, 3) and a["padding"] == (0, 0) and a["dilation"] == (1, 1) and a["ceil_mode"] is False
    a = get_op("avgpool2d").bind({"kernel": 2})  # type: ignore[union-attr]
    assert a["count_include_pad"] is True and a["stride"] == (2, 2)
    for name in ("maxpool2d", "avgpool2d", "adaptive_avgpool2d", "adaptive_maxpool2d", "global_avgpool", "global_maxpool"):
        op = get_op(name)
        assert op is not None and op.counts_activations and not op.train_only


def test_symbolic_batch_passes_through() -> None:
    assert _infer("maxpool2d", {"kernel": 3, "stride": 2, "padding": 1}, ("B", 8, 16, 16))[0].shape == ("B", 8, 8, 8)
    assert _infer("adaptive_avgpool2d", {"size": [2, 3]}, ("B", 8, 16, 16))[0].shape == ("B", 8, 2, 3)


@pytest.mark.parametrize(
    "name,attrs,shape,match",
    [
        ("maxpool2d", {"kernel": 2, "padding": 2}, (1, 3, 8, 8), "at most half the kernel"),
        ("avgpool2d", {"kernel": 3, "padding": [1, 2]}, (1, 3, 8, 8), "at most half the kernel"),
        ("maxpool2d", {"kernel": 5}, (1, 3, 3, 3), "too small"),
        ("maxpool2d", {"kernel": 2}, (1, 3, 8), "NCHW"),
        ("global_avgpool", {}, (1, 3), "NCHW"),
        ("adaptive_maxpool2d", {"size": [1, 2, 3]}, (1, 3, 8, 8), "pair"),
        ("maxpool2d", {"kernel": 2, "stride": 0}, (1, 3, 8, 8), ">= 1"),
        ("maxpool2d", {}, (1, 3, 8, 8), "needs attribute 'kernel'"),
        ("avgpool2d", {"kernel": 2, "dilation": 2}, (1, 3, 8, 8), "unknown attribute 'dilation'"),
        ("global_maxpool", {"keepdim": 1}, (1, 3, 8, 8), "true or false"),
    ],
)
def test_errors(name: str, attrs: dict[str, Any], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        _infer(name, attrs, shape)
