"""Shape and layout ops: shapes against PyTorch, numerics vs direct torch calls, scripting and errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check as _check
from tests.unit.ops.harness import infer as _infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


def _x(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(*shape)


@pytest.mark.parametrize(
    "attrs,shapes",
    [
        ({}, [(2, 3, 4, 4)]),
        ({}, [(2, 3, 4, 4), (2, 5, 4, 4)]),
        ({"dim": -1}, [(2, 3, 4), (2, 3, 1), (2, 3, 7)]),
        ({"dim": 2}, [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ],
)
def test_concat(attrs: dict[str, Any], shapes: list[tuple[int, ...]]) -> None:
    r = _check("concat", attrs, *shapes)
    xs = [torch.randn(*s) for s in shapes]
    torch.testing.assert_close(r.module(*xs), torch.cat(xs, attrs.get("dim", 1)))


@pytest.mark.parametrize(
    "attrs,shape",
    [({"sizes": [1, 2]}, (2, 3, 4)), ({"sizes": [2, 2, 4], "dim": -1}, (2, 3, 8)), ({"sizes": [3]}, (2, 3, 5))],
)
def test_split(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("split", attrs, shape)
    assert get_op("split").num_outputs(get_op("split").bind(attrs)) == len(attrs["sizes"])  # type: ignore[union-attr]
    x = _x(shape)
    y = r.module(x)
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    for a, b in zip(ys, torch.split(x, attrs["sizes"], attrs.get("dim", 1))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attrs,shape", [({"chunks": 2}, (2, 4, 3)), ({"chunks": 3, "dim": -1}, (2, 4, 9)), ({"chunks": 1}, (1, 2))])
def test_chunk(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("chunk", attrs, shape)
    assert len(r.inferred) == attrs["chunks"]
    x = _x(shape)
    y = r.module(x)
    ys = list(y) if isinstance(y, (tuple, list)) else [y]
    for a, b in zip(ys, torch.chunk(x, attrs["chunks"], attrs.get("dim", 1))):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "shape_attr,shape,expect",
    [([12], (2, 3, 4), (2, 12)), ([-1, 2], (2, 3, 4), (2, 6, 2)), ([4, 3, 1], (3, 12), (3, 4, 3, 1)), ([], (2, 1, 1), (2,))],
)
def test_reshape(shape_attr: list[int], shape: tuple[int, ...], expect: tuple[int, ...]) -> None:
    r = _check("reshape", {"shape": shape_attr}, shape)
    assert r.observed == [expect]
    x = _x(shape)
    torch.testing.assert_close(r.module(x), x.reshape(expect))
    assert _infer("reshape", {"shape": shape_attr}, ("B", *shape[1:]))[0].shape == ("B", *expect[1:])


@pytest.mark.parametrize("dims,shape", [([0, 2, 3, 1], (2, 3, 4, 5)), ([0, -1, 1, 2], (2, 3, 4, 5)), ([0, 2, 1], (2, 3, 4))])
def test_permute(dims: list[int], shape: tuple[int, ...]) -> None:
    r = _check("permute", {"dims": dims}, shape)
    x = _x(shape)
    torch.testing.assert_close(r.module(x), x.permute(dims))


@pytest.mark.parametrize(
    "attrs,shape", [({}, (2, 3, 4, 5)), ({"start": 2}, (2, 3, 4, 5)), ({"start": 1, "end": 2}, (2, 3, 4, 5)), ({}, (2, 7))]
)
def test_flatten(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("flatten", attrs, shape)
    x = _x(shape)
    torch.testing.assert_close(r.module(x), torch.flatten(x, attrs.get("start", 1), attrs.get("end", -1)))


@pytest.mark.parametrize("attrs,shape", [({"dim0": 1, "dim1": 2}, (2, 3, 4)), ({"dim0": -1, "dim1": -2}, (2, 3, 4, 5))])
def test_transpose(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("transpose", attrs, shape)
    x = _x(shape)
    torch.testing.assert_close(r.module(x), x.transpose(attrs["dim0"], attrs["dim1"]))


@pytest.mark.parametrize("name,fn", [("mean", torch.mean), ("amax", torch.amax)])
@pytest.mark.parametrize(
    "attrs,shape,expect",
    [
        ({"dims": [1]}, (2, 8, 5, 5), (2, 1, 5, 5)),  # CDCN++ spatial attention: channel mean / max
        ({"dims": [2, 3]}, (2, 8, 5, 5), (2, 8, 1, 1)),
        ({"dims": [-1], "keepdim": False}, (2, 8, 5), (2, 8)),
        ({"dims": [1, 3], "keepdim": False}, (2, 8, 5, 6), (2, 5)),
    ],
)
def test_reductions(name: str, fn: Any, attrs: dict[str, Any], shape: tuple[int, ...], expect: tuple[int, ...]) -> None:
    r = _check(name, attrs, shape)
    assert r.observed == [expect]
    x = _x(shape)
    torch.testing.assert_close(r.module(x), fn(x, attrs["dims"], keepdim=attrs.get("keepdim", True)))


@pytest.mark.parametrize(
    "attrs,shape",
    [({"pads": [1, 1]}, (2, 3, 4)), ({"pads": [1, 2, 0, 3], "value": -1.5}, (2, 3, 4, 4)), ({"pads": [-1, 0, 1, 1, 2, 2]}, (2, 3, 4, 4))],
)
def test_pad(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("pad", attrs, shape)
    x = _x(shape)
    torch.testing.assert_close(r.module(x), F.pad(x, attrs["pads"], value=attrs.get("value", 0.0)))


def test_symbolic_batch_passes_through() -> None:
    assert _infer("concat", {}, ("B", 3, 4), ("B", 5, 4))[0].shape == ("B", 8, 4)
    assert _infer("flatten", {}, ("B", 3, 4, 5))[0].shape == ("B", 60)
    assert _infer("permute", {"dims": [0, 2, 1]}, ("B", 3, 4))[0].shape == ("B", 4, 3)
    assert _infer("pad", {"pads": [1, 1, 2, 2]}, ("B", 3, 4, 4))[0].shape == ("B", 3, 8, 6)
    assert [t.shape for t in _infer("split", {"sizes": [1, 2]}, ("B", 3))] == [("B", 1), ("B", 2)]


@pytest.mark.parametrize(
    "name,attrs,shapes,match",
    [
        ("concat", {"dim": 0}, [(2, 3), (2, 3)], "batch axis 0"),
        ("concat", {}, [(2, 3, 4), (2, 3, 5)], "axis 2 of input 1 is 5 vs 4"),
        ("concat", {}, [(2, 3, 4), (2, 3)], "share rank"),
        ("concat", {"dim": 3}, [(2, 3, 4)], "out of range"),
        ("split", {"sizes": [1, 1]}, [(2, 3)], r"sum to 2, but axis 1 .* has length 3"),
        ("split", {"sizes": []}, [(2, 3)], "at least one size"),
        ("split", {"sizes": [0, 3]}, [(2, 3)], ">= 1"),
        ("chunk", {"chunks": 2}, [(2, 3)], "divisible"),
        ("chunk", {"chunks": 2, "dim": -2}, [(2, 4)], "batch axis"),
        ("reshape", {"shape": [-1, -1]}, [(2, 4)], "more than one -1"),
        ("reshape", {"shape": [0, 4]}, [(2, 4)], ">= 1 or a single -1"),
        ("reshape", {"shape": [5]}, [(2, 4)], "holds 5 elements per sample"),
        ("reshape", {"shape": [3, -1]}, [(2, 4)], "not divisible by 3"),
        ("permute", {"dims": [1, 0, 2]}, [(2, 3, 4)], "must start with 0"),
        ("permute", {"dims": [0, 1, 1]}, [(2, 3, 4)], "not a permutation"),
        ("permute", {"dims": [0, 1]}, [(2, 3, 4)], "must list all 3 axes"),
        ("flatten", {"start": 0}, [(2, 3, 4)], "batch axis"),
        ("flatten", {"start": 2, "end": 1}, [(2, 3, 4)], "after end"),
        ("transpose", {"dim0": 0, "dim1": 1}, [(2, 3, 4)], "batch axis"),
        ("transpose", {"dim0": 1}, [(2, 3, 4)], "needs attribute 'dim1'"),
        ("mean", {"dims": [0]}, [(2, 3, 4)], "batch axis"),
        ("amax", {"dims": [1, -2]}, [(2, 3, 4)], "twice"),
        ("mean", {"dims": []}, [(2, 3, 4)], "at least one axis"),
        ("pad", {"pads": [1, 1, 1]}, [(2, 3, 4)], "even-length"),
        ("pad", {"pads": [1, 1, 1, 1, 1, 1]}, [(2, 3, 4)], "only 2 non-batch axes"),
        ("pad", {"pads": [-2, -2]}, [(2, 3, 4)], "length 0"),
    ],
)
def test_errors(name: str, attrs: dict[str, Any], shapes: list[tuple[int, ...]], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        _infer(name, attrs, *shapes)
