"""Unit tests of ``ska`` (LSNet small-kernel aggregation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from archc.backends.pytorch.single import check_op

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import scripted as _scripted


def reference_ska(x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """Straightforward loops: y[b,c,i,j] = Σ_{p,q} x[b,c,i+p−r,j+q−r] · w[b, c mod G, p·k+q, i, j]."""
    b, c, h, wd = x.shape
    w = w.reshape(b, -1, k * k, h, wd)
    g, r = w.shape[1], (k - 1) // 2
    xp = F.pad(x, (r, r, r, r))
    y = torch.zeros_like(x)
    for ch in range(c):
        for p in range(k):
            for q in range(k):
                y[:, ch] += xp[:, ch, p : p + h, q : q + wd] * w[:, ch % g, p * k + q]
    return y


def reference_ska_pixels(x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """The same sum written per output pixel with explicit bounds checks (tiny inputs only)."""
    b, c, h, wd = x.shape
    w = w.reshape(b, -1, k * k, h, wd)
    g, r = w.shape[1], (k - 1) // 2
    y = torch.zeros_like(x)
    for n in range(b):
        for ch in range(c):
            for i in range(h):
                for j in range(wd):
                    s = 0.0
                    for p in range(k):
                        for q in range(k):
                            ii, jj = i + p - r, j + q - r
                            if 0 <= ii < h and 0 <= jj < wd:
                                s += float(x[n, ch, ii, jj]) * float(w[n, ch % g, p * k + q, i, j])
                    y[n, ch, i, j] = s
    return y


CASES = [
    ({}, (2, 64, 28, 28), (2, 8, 9, 28, 28)),  # LSNet-T stage 2: G = C/8, official (B, G, k², H, W) layout
    ({}, (2, 64, 28, 28), (2, 72, 28, 28)),  # the same weights flat, as the LKP GroupNorm emits them
    ({}, (1, 256, 7, 7), (1, 32, 9, 7, 7)),
    ({"kernel": 5}, (2, 16, 6, 9), (2, 2, 25, 6, 9)),  # H != W, k = 5
    ({}, (3, 8, 5, 5), (3, 8, 9, 5, 5)),  # G = C: a plain per-pixel depthwise conv
    ({}, (2, 12, 4, 3), (2, 9, 4, 3)),  # G = 1, flat
    ({"kernel": 1}, (2, 6, 3, 3), (2, 3, 1, 3, 3)),
]


@pytest.mark.parametrize("attrs, xs, ws", CASES)
def test_ska_check_op(attrs, xs, ws):
    r = check_op("ska", attrs, [xs, ws])
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params, r.macs, r.observed_macs)
    assert r.inferred == [xs]
    # SKA is not counted (LSNet's 0.315 G MACs exclude it) and its lowering has no conv/matmul
    assert r.macs == 0 and r.observed_macs == 0
    assert r.params == 0 and not list(r.module.parameters())


@pytest.mark.parametrize("attrs, xs, ws", CASES)
def test_ska_matches_reference_loop(attrs, xs, ws):
    k = attrs.get("kernel", 3)
    r = check_op("ska", attrs, [xs, ws])
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(*xs, generator=g), torch.randn(*ws, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(r.module(x, w), reference_ska(x, w, k), rtol=1e-5, atol=1e-5)


def test_ska_matches_per_pixel_loop():
    x, w = torch.randn(2, 16, 4, 5), torch.randn(2, 2, 9, 4, 5)
    r = check_op("ska", {}, [tuple(x.shape), tuple(w.shape)])
    with torch.no_grad():
        torch.testing.assert_close(r.module(x, w), reference_ska_pixels(x, w, 3), rtol=1e-5, atol=1e-5)


def test_ska_channel_grouping_is_strided():
    """Channel c uses weight channel c mod G (LSNet's layout), not c // (C/G)."""
    x = torch.ones(1, 4, 3, 3)
    w = torch.zeros(1, 2, 9, 3, 3)
    w[:, 0, 4] = 1.0  # weight channel 0: centre tap only → identity for channels 0 and 2
    r = check_op("ska", {}, [(1, 4, 3, 3), (1, 2, 9, 3, 3)])
    y = r.module(x, w)
    assert torch.equal(y[:, 0], x[:, 0]) and torch.equal(y[:, 2], x[:, 2])
    assert torch.equal(y[:, 1], torch.zeros(1, 3, 3)) and torch.equal(y[:, 3], torch.zeros(1, 3, 3))


def test_ska_flat_and_grouped_layouts_agree():
    x, w = torch.randn(2, 32, 7, 7), torch.randn(2, 36, 7, 7)
    r5 = check_op("ska", {}, [(2, 32, 7, 7), (2, 4, 9, 7, 7)])
    r4 = check_op("ska", {}, [(2, 32, 7, 7), (2, 36, 7, 7)])
    with torch.no_grad():
        torch.testing.assert_close(r5.module(x, w.view(2, 4, 9, 7, 7)), r4.module(x, w))


def test_ska_script_and_batch():
    r = check_op("ska", {}, [(2, 16, 6, 6), (2, 2, 9, 6, 6)])
    s = _scripted(r)
    for b in (1, 3):
        x, w = torch.randn(b, 16, 6, 6), torch.randn(b, 2, 9, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(s(x, w), r.module(x, w))


def test_ska_gradients_flow_to_both_inputs():
    r = check_op("ska", {}, [(1, 8, 4, 4), (1, 1, 9, 4, 4)])
    x = torch.randn(1, 8, 4, 4, requires_grad=True)
    w = torch.randn(1, 1, 9, 4, 4, requires_grad=True)
    r.module(x, w).sum().backward()
    assert x.grad is not None and w.grad is not None and w.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "attrs, xs, ws, match",
    [
        ({"kernel": 4}, (2, 16, 8, 8), (2, 2, 16, 8, 8), "needs an odd kernel"),
        ({}, (2, 16, 8, 8), (2, 2, 25, 8, 8), "needs 9 taps"),
        ({}, (2, 16, 8, 8), (2, 20, 8, 8), "G·k² channels"),
        ({}, (2, 16, 8, 8), (2, 2, 9, 4, 4), "spatial size"),
        ({}, (2, 16, 8, 8), (2, 3, 9, 8, 8), "must divide the 16 channels"),
        ({}, (2, 16, 8, 8), (1, 2, 9, 8, 8), "batch of the weights"),
        ({}, (2, 16, 64), (2, 2, 9, 8, 8), "expects an NCHW input"),
        ({}, (2, 16, 8, 8), (2, 2, 9), r"must be \(B, G, k², H, W\)"),
    ],
)
def test_ska_errors(attrs, xs, ws, match):
    op = get_op("ska")
    with pytest.raises(OpCheckError, match=match):
        op.infer(op.bind(attrs), [TensorType(xs), TensorType(ws)])
