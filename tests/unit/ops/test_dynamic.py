"""Unit tests of ``dynamic_dwconv`` (TransXNet IDConv) and ``layer_scale``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from archc.backends.pytorch.single import check_op

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import load_file as _load
from tests.unit.ops.harness import scripted as _scripted

ROOT = Path(__file__).resolve().parents[3]



def _reference():
    return _load(ROOT / "benchmarks" / "reference" / "transxnet.py", "_ref_transxnet_dynamic")



def _randomize(m: torch.nn.Module) -> None:
    """Non-trivial weights and BN statistics so that equivalence tests mean something."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in list(m.parameters()) + [b for b in m.buffers() if b.is_floating_point()]:
            t.copy_(torch.rand(t.shape, generator=g) + 0.5 if "var" in str(t.shape) else torch.randn(t.shape, generator=g) * 0.5)
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


# -- dynamic_dwconv ---------------------------------------------------------------------------

DYN_CASES = [
    ({}, (2, 24, 56, 56)),  # TransXNet-T stage 1 half width
    ({}, (1, 112, 14, 14)),
    ({"groups": 4}, (2, 224, 7, 7)),  # TransXNet-B stage 4 style, H == K
    ({"kernel": 3, "groups": 3, "reduction": 2}, (3, 8, 5, 6)),
    ({}, (2, 16, 3, 3)),  # H < K: adaptive pool upsamples
]


@pytest.mark.parametrize("attrs, shape", DYN_CASES)
def test_dynamic_dwconv_check_op(attrs, shape):
    r = check_op("dynamic_dwconv", attrs, [shape])
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params, r.macs, r.observed_macs)
    op = get_op("dynamic_dwconv")
    a = op.bind(attrs)
    ins = [TensorType(shape)]
    _, c, h, w = shape
    k, g, hid = a["kernel"], a["groups"], c // a["reduction"]
    assert op.macs(a, ins, ins) == c * h * w * k * k + (c * hid + hid * g * c) * (k * k + 1)
    sd = r.module.m.state_dict()
    expect = {**op.params(a, ins), **op.buffers(a, ins)}
    assert {key: tuple(v.shape) for key, v in sd.items()} == expect


@pytest.mark.parametrize("dim, k, g, red, hw", [(24, 7, 2, 4, 56), (56, 7, 2, 4, 28), (32, 5, 3, 4, 9), (16, 7, 4, 2, 5)])
def test_dynamic_dwconv_matches_transxnet_idconv(dim, k, g, red, hw):
    ref = _reference().IDConv(dim, kernel_size=k, num_groups=g, reduction=red)
    _randomize(ref)
    ref.eval()
    r = check_op("dynamic_dwconv", {"kernel": k, "groups": g, "reduction": red}, [(2, dim, hw, hw)])
    r.module.m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, dim, hw, hw)  # a batch size other than the checked one
    with torch.no_grad():
        torch.testing.assert_close(r.module(x), ref(x), rtol=1e-5, atol=1e-5)


def test_dynamic_dwconv_reference_macs_match():
    """The op's MAC formula equals what the flop counter sees on the reference IDConv."""
    from torch.utils.flop_counter import FlopCounterMode

    ref = _reference().IDConv(48, 7, 2).eval()
    x = torch.randn(1, 48, 28, 28)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        ref(x)
    op = get_op("dynamic_dwconv")
    a = op.bind({})
    ins = [TensorType(("B", 48, 28, 28))]
    assert op.macs(a, ins, ins) == fc.get_total_flops() // 2
    assert sum(p.numel() for p in ref.parameters()) == sum(
        torch.Size(s).numel() for s in op.params(a, ins).values()
    )


def test_dynamic_dwconv_script_and_export():
    r = check_op("dynamic_dwconv", {"groups": 3}, [(2, 16, 9, 9)])
    s = _scripted(r)
    for b in (1, 2, 5):  # batch-size agnostic
        x = torch.randn(b, 16, 9, 9)
        with torch.no_grad():
            torch.testing.assert_close(s(x), r.module(x))
    x = torch.randn(2, 16, 9, 9)
    ep = torch.export.export(r.module, (x,))
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x), r.module(x))


@pytest.mark.parametrize(
    "attrs, shape, match",
    [
        ({"kernel": 4}, (2, 16, 8, 8), "needs an odd kernel"),
        ({"reduction": 32}, (2, 16, 8, 8), r"reduction=32 leaves no hidden channels for C=16"),
        ({}, (2, 16, 64), "expects an NCHW input"),
        ({"groups": 0}, (2, 16, 8, 8), "must be >= 1"),
        ({"kernel": 7.0}, (2, 16, 8, 8), "must be an integer"),
    ],
)
def test_dynamic_dwconv_errors(attrs, shape, match):
    op = get_op("dynamic_dwconv")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind(attrs), [TensorType(shape)])


# -- layer_scale ------------------------------------------------------------------------------

LS_CASES = [
    ({"bias": True}, (2, 48, 14, 14), 48 * 14 * 14, 2 * 48),
    ({}, (2, 48, 14, 14), 0, 48),
    ({"init": 1e-6}, (2, 16, 10), 0, 16),
    ({"channels_last": True}, (2, 7, 7, 32), 0, 32),
    ({"channels_last": True, "bias": True}, (2, 49, 32), 0, 64),
]


@pytest.mark.parametrize("attrs, shape, macs, params", LS_CASES)
def test_layer_scale_check_op(attrs, shape, macs, params):
    r = check_op("layer_scale", attrs, [shape])
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params, r.macs, r.observed_macs)
    assert r.macs == macs * shape[0]
    assert r.params == params
    op = get_op("layer_scale")
    a = op.bind(attrs)
    expect = op.params(a, [TensorType(shape)])
    assert {k: tuple(v.shape) for k, v in r.module.m.state_dict().items()} == expect


@pytest.mark.parametrize("attrs, shape", [(a, s) for a, s, _, _ in LS_CASES])
def test_layer_scale_math_and_script(attrs, shape):
    r = check_op("layer_scale", attrs, [shape])
    _randomize(r.module)
    x = torch.randn(*shape)
    ps = dict(r.module.m.named_parameters())
    c = shape[-1] if attrs.get("channels_last") else shape[1]
    view = (c,) if attrs.get("channels_last") else (c,) + (1,) * (len(shape) - 2)
    if "weight" in ps:
        expect = x * ps["weight"].reshape(view) + ps["bias"].reshape(view)
    else:
        expect = x * ps["gamma"].reshape(view)
        if "beta" in ps:
            expect = expect + ps["beta"].reshape(view)
    with torch.no_grad():
        torch.testing.assert_close(r.module(x), expect)
        torch.testing.assert_close(_scripted(r)(x), expect)


def test_layer_scale_init():
    r = check_op("layer_scale", {"init": 0.5}, [(1, 4, 2, 2)])
    assert torch.equal(r.module.m.gamma, torch.full((4,), 0.5))
    r = check_op("layer_scale", {"bias": True}, [(1, 4, 2, 2)])
    assert torch.equal(r.module.m.weight, torch.full((4, 1, 1, 1), 1e-5))
    assert torch.equal(r.module.m.bias, torch.zeros(4))


def test_layer_scale_matches_transxnet():
    ref = _reference().LayerScale2d(48, 1e-5)
    _randomize(ref)
    r = check_op("layer_scale", {"bias": True}, [(2, 48, 14, 14)])
    r.module.m.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 48, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(r.module(x), ref(x))


def test_transxnet_block_pieces_macs():
    """IDConv + 2 LS per block: the ops' MACs equal the flop counter's on the reference modules."""
    from torch.utils.flop_counter import FlopCounterMode

    ref = _reference()
    x = torch.randn(1, 96, 28, 28)
    mods = [ref.IDConv(48, 7, 2).eval(), ref.LayerScale2d(96), ref.LayerScale2d(96)]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        mods[0](x[:, :48])
        mods[1](x)
        mods[2](x)
    ops = [("dynamic_dwconv", {}, (1, 48, 28, 28)), ("layer_scale", {"bias": True}, (1, 96, 28, 28))] + [
        ("layer_scale", {"bias": True}, (1, 96, 28, 28))
    ]
    total = 0
    for name, attrs, shape in ops:
        op = get_op(name)
        a = op.bind(attrs)
        ins = [TensorType(shape)]
        total += op.macs(a, ins, ins)
    assert total == fc.get_total_flops() // 2


@pytest.mark.parametrize(
    "attrs, shape, match",
    [
        ({"bias": True}, (2, 49, 32), "needs NCHW"),
        ({}, (32,), "at least 2 dims"),
        ({"init": "small"}, (2, 4, 3, 3), "must be a number"),
        ({"scale": 1.0}, (2, 4, 3, 3), "unknown attribute 'scale'"),
    ],
)
def test_layer_scale_errors(attrs, shape, match):
    op = get_op("layer_scale")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind(attrs), [TensorType(shape)])
