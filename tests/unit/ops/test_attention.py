"""Unit tests of ``attention2d`` and ``sdpa``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from archc.backends.pytorch.single import build_single, check_op

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import load_file as _load
from tests.unit.ops.harness import scripted as _scripted

ROOT = Path(__file__).resolve().parents[3]



def _reference():
    return _load(ROOT / "benchmarks" / "reference" / "transxnet.py", "_ref_transxnet_attention")



ATT_CASES = [
    ({"heads": 1}, [(2, 8, 7, 7), (2, 8, 3, 3), (2, 8, 3, 3)]),
    ({"heads": 4}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4)]),
    ({"heads": 2, "scale": 0.1}, [(1, 12, 5, 6), (1, 12, 5, 6), (1, 6, 5, 6)]),
    ({"heads": 4}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4), (1, 4, 49, 16)]),  # exact-size bias
    ({"heads": 4}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4), (1, 4, 9, 4)]),  # resized bias
    ({"heads": 4}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4), (2, 1, 49, 16)]),  # per-sample, head-shared
]


@pytest.mark.parametrize("attrs, shapes", ATT_CASES)
def test_attention2d_check_op(attrs, shapes):
    r = check_op("attention2d", attrs, shapes)
    assert r.ok(), (r.inferred, r.observed, r.macs, r.observed_macs)
    (_, c, hq, wq), (_, _, hk, wk), (_, cv, _, _) = shapes[:3]
    n, m = hq * wq, hk * wk
    assert r.macs == shapes[0][0] * (n * m * c + n * m * cv)
    assert r.params == 0


def test_attention2d_symbolic_batch():
    op = get_op("attention2d")
    a = op.bind({"heads": 2})
    ins = [TensorType(("B", 8, 4, 4)), TensorType(("B", 8, 2, 2)), TensorType(("B", 6, 2, 2)), TensorType((1, 2, 9, 9))]
    out = op.infer(a, ins)
    assert out[0].shape == ("B", 6, 4, 4)
    assert op.macs(a, ins, out) == 16 * 4 * 8 + 16 * 4 * 6


def test_attention2d_matches_explicit_math():
    torch.manual_seed(0)
    r = check_op("attention2d", {"heads": 2, "scale": 0.3}, [(2, 8, 3, 4), (2, 8, 2, 2), (2, 6, 2, 2), (1, 2, 12, 4)])
    q, k, v, bias = torch.randn(2, 8, 3, 4), torch.randn(2, 8, 2, 2), torch.randn(2, 6, 2, 2), torch.randn(1, 2, 12, 4)
    qh = q.reshape(2, 2, 4, 12).transpose(-1, -2)
    kh = k.reshape(2, 2, 4, 4).transpose(-1, -2)
    vh = v.reshape(2, 2, 3, 4).transpose(-1, -2)
    attn = (qh @ kh.transpose(-1, -2) * 0.3 + bias).softmax(-1)
    expect = (attn @ vh).transpose(-1, -2).reshape(2, 6, 3, 4)
    torch.testing.assert_close(r.module(q, k, v, bias), expect)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("heads, sr, feat, bias_feat", [(1, 4, 14, 28), (2, 2, 8, 8), (4, 1, 7, 14), (2, 2, 9, 16)])
def test_attention2d_matches_transxnet_osra(fused, heads, sr, feat, bias_feat):
    """attention2d on OSRA's q, k, v (with the relative position encoding resized) equals OSRA."""
    ref = _reference()
    torch.manual_seed(1)
    dim = 8 * heads
    osra = ref.OSRA(dim, num_heads=heads, sr_ratio=sr, fused_attn=fused).eval()
    for p in osra.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, dim, feat, feat)
    rel = torch.randn(1, heads, bias_feat * bias_feat, math.ceil(bias_feat / sr) ** 2)
    with torch.no_grad():
        expect = osra(x, rel)
        q = osra.q(x)
        kv = osra.sr(x)
        kv = osra.local_conv(kv) + kv
        k, v = osra.kv(kv).chunk(2, dim=1)
        r = check_op("attention2d", {"heads": heads}, [tuple(q.shape), tuple(k.shape), tuple(v.shape), tuple(rel.shape)])
        assert r.ok()
        got = r.module(q, k, v, rel)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


def test_attention2d_script_and_export():
    shapes = [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4), (1, 4, 9, 4)]
    r = check_op("attention2d", {"heads": 4}, shapes)
    xs = [torch.randn(*s) for s in shapes]
    s = _scripted(r)
    torch.testing.assert_close(s(*xs), r.module(*xs))
    ep = torch.export.export(r.module, tuple(xs))
    torch.testing.assert_close(ep.module()(*xs), r.module(*xs))
    r3 = check_op("attention2d", {"heads": 4}, shapes[:3])
    torch.testing.assert_close(_scripted(r3)(*xs[:3]), r3.module(*xs[:3]))


@pytest.mark.parametrize(
    "attrs, shapes, match",
    [
        ({"heads": 3}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 24, 4, 4)], r"heads=3 must divide the q/k channels \(16\)"),
        ({"heads": 4}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 18, 4, 4)], r"v channels \(18\)"),
        ({"heads": 2}, [(2, 16, 7, 7), (2, 12, 4, 4), (2, 16, 4, 4)], r"q and k channels must match, got q 16 and k 12"),
        ({"heads": 2}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 16, 3, 4)], "k and v spatial sizes must match"),
        ({"heads": 2}, [(2, 16, 7, 7), (3, 16, 4, 4), (3, 16, 4, 4)], r"batch of k \(3\) differs"),
        ({"heads": 2}, [(2, 16, 49), (2, 16, 4, 4), (2, 16, 4, 4)], "expects NCHW inputs, got q"),
        ({"heads": 2}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 16, 4, 4), (1, 4, 49, 16)], r"bias has 4 heads, the attention has heads=2"),
        ({"heads": 2}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 16, 4, 4), (2, 49, 16)], r"bias must be \(1 or B, heads, N, M\)"),
        ({"heads": 2}, [(2, 16, 7, 7), (2, 16, 4, 4), (2, 16, 4, 4), (3, 2, 49, 16)], "bias batch must be 1 or 2"),
    ],
)
def test_attention2d_errors(attrs, shapes, match):
    op = get_op("attention2d")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind(attrs), [TensorType(s) for s in shapes])


SDPA_CASES = [
    ({}, [(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 6, 8)]),
    ({"scale": 0.2}, [(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 6, 5)]),
    ({}, [(1, 4, 16, 16), (1, 4, 16, 16), (1, 4, 16, 16), (1, 4, 16, 16)]),
    ({}, [(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 6, 8), (10, 6)]),
]


@pytest.mark.parametrize("attrs, shapes", SDPA_CASES)
def test_sdpa_check_op(attrs, shapes):
    r = check_op("sdpa", attrs, shapes)
    assert r.ok(), (r.inferred, r.observed, r.macs, r.observed_macs)
    b, h, n, d = shapes[0]
    m, dv = shapes[1][2], shapes[2][3]
    assert r.macs == b * n * m * h * (d + dv)
    if d == dv:
        assert r.macs == b * n * m * d * h * 2


def test_sdpa_math_and_script():
    torch.manual_seed(0)
    shapes = [(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 6, 5), (1, 3, 10, 6)]
    r = check_op("sdpa", {"scale": 0.25}, shapes)
    q, k, v, bias = (torch.randn(*s) for s in shapes)
    expect = ((q @ k.transpose(-1, -2)) * 0.25 + bias).softmax(-1) @ v
    torch.testing.assert_close(r.module(q, k, v, bias), expect)
    torch.testing.assert_close(_scripted(r)(q, k, v, bias), expect)
    r0 = check_op("sdpa", {}, shapes[:3])  # default scale d^-0.5
    expect0 = ((q @ k.transpose(-1, -2)) * 8**-0.5).softmax(-1) @ v
    torch.testing.assert_close(r0.module(q, k, v), expect0)


@pytest.mark.parametrize(
    "shapes, match",
    [
        ([(2, 3, 10, 8), (2, 3, 6, 4), (2, 3, 6, 8)], r"q and k head dims must match, got q 8 and k 4"),
        ([(2, 3, 10, 8), (2, 2, 6, 8), (2, 3, 6, 8)], "head counts differ"),
        ([(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 5, 8)], r"k and v lengths must match, got k 6 and v 5"),
        ([(2, 3, 10, 8), (2, 3, 6, 8), (2, 3, 6, 8), (1, 3, 10, 7)], "does not broadcast"),
        ([(2, 30, 8), (2, 6, 8), (2, 6, 8)], "expects \\(B, heads, N, d\\) inputs"),
    ],
)
def test_sdpa_errors(shapes, match):
    op = get_op("sdpa")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind({}), [TensorType(s) for s in shapes])


def test_sdpa_matches_torch_sdpa_and_bool_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.rand(2, 1, 10, 6) > 0.3
    mask[..., 0] = True  # every query keeps at least one key
    types = [TensorType(tuple(t.shape)) for t in (q, k, v)]
    mod, src, outs, _ = build_single("sdpa", {}, types + [TensorType((2, 1, 10, 6), "bool")])
    assert "masked_fill" in src
    torch.testing.assert_close(mod(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    bias = torch.randn(1, 3, 10, 6)
    mod, _, _, _ = build_single("sdpa", {"scale": 0.2}, types + [TensorType((1, 3, 10, 6))])
    torch.testing.assert_close(mod(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.2))


def test_attention2d_macs_counted_for_contiguous_equal_dims():
    """Equal head dims and contiguous tensors (where CPU SDPA would go uncounted) still count exactly."""
    r = check_op("attention2d", {"heads": 1}, [(1, 8, 4, 4), (1, 8, 4, 4), (1, 8, 4, 4), (1, 1, 16, 16)])
    assert r.ok() and r.observed_macs == 16 * 16 * 8 * 2
    r = check_op("sdpa", {}, [(1, 2, 16, 8), (1, 2, 16, 8), (1, 2, 16, 8), (1, 2, 16, 16)])
    assert r.ok() and r.observed_macs == 16 * 16 * 8 * 2 * 2
