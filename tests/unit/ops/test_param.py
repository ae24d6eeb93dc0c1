"""Unit tests of the ``param`` op (a free-standing learnable tensor)."""

from __future__ import annotations

import math

import pytest
import torch
from archc.backends.pytorch.single import check_op

from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import scripted as _scripted


@pytest.mark.parametrize(
    "attrs",
    [
        {"shape": [1, 2, 49, 7]},
        {"shape": [3], "init": "ones"},
        {"shape": [4, 5], "init": "normal", "std": 0.5},
        {"shape": [1, 1, 16], "init": "trunc_normal"},
        {"shape": [2, 3], "init": "constant", "value": 2.5},
    ],
)
def test_check_op(attrs):
    r = check_op("param", attrs, [])
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params)
    assert r.observed == [tuple(attrs["shape"])]
    assert r.macs == 0
    # the attribute itself is the parameter: suffix "" ↔ state_dict key "m"
    assert set(get_op("param").params(get_op("param").bind(attrs), [])) == {""}
    assert list(r.module.state_dict()) == ["m"]


def test_init_values():
    assert torch.equal(check_op("param", {"shape": [2, 3]}, []).module(), torch.zeros(2, 3))
    assert torch.equal(check_op("param", {"shape": [2, 3], "init": "ones"}, []).module(), torch.ones(2, 3))
    c = check_op("param", {"shape": [4], "init": "constant", "value": -1.5}, []).module()
    assert torch.equal(c, torch.full((4,), -1.5))
    t = check_op("param", {"shape": [2000], "init": "trunc_normal", "std": 0.02}, []).module().detach()
    assert t.abs().max() <= 2.0 and 0.01 < float(t.std()) < 0.03
    n = check_op("param", {"shape": [4000], "init": "normal", "std": 3.0}, []).module()
    assert 2.5 < float(n.detach().std()) < 3.5
    assert isinstance(n, torch.nn.Parameter) and n.requires_grad


def test_transxnet_t_relative_pos_enc_count():
    """The four relative position encodings of TransXNet-T total 288,120 parameters."""
    op = get_op("param")
    total, feat = 0, 56
    for heads, sr in zip((1, 2, 4, 8), (8, 4, 2, 1)):
        shape = [1, heads, feat * feat, math.ceil(feat / sr) ** 2]
        a = op.bind({"shape": shape})
        assert op.infer(a, [])[0].shape == tuple(shape)
        total += math.prod(op.params(a, [])[""])
        feat = math.ceil(feat / 2)
    assert total == 288_120


def test_script():
    r = check_op("param", {"shape": [2, 3], "init": "normal"}, [])
    s = _scripted(r)
    assert torch.equal(s(), r.module())


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"shape": [2, 3], "init": "constant"}, "needs a 'value'"),
        ({"shape": [2, 3], "value": 1.0}, "only used with init 'constant'"),
        ({"shape": [2, 3], "init": "xavier"}, "must be one of"),
        ({"shape": [2, 0]}, "must be >= 1"),
        ({"shape": 5}, "list of ints"),
        ({}, "needs attribute 'shape'"),
    ],
)
def test_errors(attrs, match):
    with pytest.raises(OpCheckError, match=match):
        get_op("param").bind(attrs)
