"""The resize op: shapes against PyTorch, numerics vs F.interpolate, scripting and attribute errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from archc.backends.pytorch.single import check_op

from archc.ops import OpCheckError
from tests.unit.ops.harness import check as _check
from tests.unit.ops.harness import infer as _infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


@pytest.mark.parametrize(
    "attrs,shape",
    [
        ({"size": [16, 12]}, (2, 3, 8, 6)),
        ({"size": 5, "mode": "bilinear"}, (2, 3, 8, 8)),
        ({"size": [5, 9], "mode": "bilinear", "align_corners": True}, (2, 3, 8, 8)),
        ({"scale": 2.0}, (2, 3, 7, 5)),
        ({"scale": 0.5, "mode": "bilinear"}, (2, 3, 7, 9)),
        ({"scale": 1.5, "mode": "bicubic"}, (1, 2, 7, 5)),
        ({"scale": 3, "mode": "bicubic", "align_corners": True}, (1, 2, 4, 5)),
        ({"scale": 0.3, "mode": "nearest", "align_corners": False}, (1, 2, 10, 7)),
    ],
)
def test_resize(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("resize", attrs, shape)
    x = torch.randn(*shape)
    mode = attrs.get("mode", "nearest")
    kw: dict[str, Any] = {"mode": mode}
    if mode != "nearest":
        kw["align_corners"] = attrs.get("align_corners", False)
    if "size" in attrs:
        kw["size"] = attrs["size"]
    else:
        kw["scale_factor"] = float(attrs["scale"])
    torch.testing.assert_close(r.module(x), F.interpolate(x, **kw))
    assert r.macs == 0 and r.params == 0


def test_resize_scale_floor_and_symbolic_batch() -> None:
    assert _infer("resize", {"scale": 0.5}, ("B", 3, 7, 9))[0].shape == ("B", 3, 3, 4)
    assert _infer("resize", {"size": [4, 6]}, ("B", 3, 7, 9))[0].shape == ("B", 3, 4, 6)


def test_resize_lowering_omits_align_corners_for_nearest() -> None:
    r = check_op("resize", {"scale": 2.0}, [(1, 1, 2, 2)])
    assert "align_corners" not in r.source and "F.interpolate" in r.source


@pytest.mark.parametrize(
    "attrs,shape,match",
    [
        ({}, (1, 3, 8, 8), "exactly one of 'size', 'scale' and a reference input, got neither"),
        ({"size": 4, "scale": 2.0}, (1, 3, 8, 8), "exactly one of 'size' and 'scale', got both"),
        ({"scale": 0.0}, (1, 3, 8, 8), "scale must be > 0"),
        ({"scale": 2.0, "align_corners": True}, (1, 3, 8, 8), "align_corners=true is only valid"),
        ({"size": 4, "mode": "trilinear"}, (1, 3, 8, 8), "must be one of"),
        ({"size": 0}, (1, 3, 8, 8), ">= 1"),
        ({"scale": 0.1}, (1, 3, 8, 8), "empty 0x0"),
        ({"size": 4}, (1, 3, 8), "NCHW"),
    ],
)
def test_resize_errors(attrs: dict[str, Any], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        _infer("resize", attrs, shape)
