"""Unit tests of ``levit_bias`` (LeViT / LSNet attention bias indexed by 2-D offset)."""

from __future__ import annotations

import itertools

import pytest
import torch
from archc.backends.pytorch.single import check_op

from archc.ops import OpCheckError, get_op


def first_seen_offsets(h: int, w: int) -> torch.Tensor:
    """LeViT's enumeration: number each new (|dy|, |dx|) in order of first appearance over all pairs."""
    points = list(itertools.product(range(h), range(w)))
    seen: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            seen.setdefault(off, len(seen))
            idxs.append(seen[off])
    return torch.tensor(idxs).view(len(points), len(points))


@pytest.mark.parametrize("heads, res", [(4, 4), (3, 7), (2, (3, 5)), (1, 1)])
def test_levit_bias_check_op_and_indices(heads, res):
    r = check_op("levit_bias", {"heads": heads, "resolution": res}, [])
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params, r.macs, r.observed_macs)
    h, w = (res, res) if isinstance(res, int) else res
    assert r.params == heads * h * w and r.macs == 0
    m = r.module.m
    assert torch.equal(m.attention_bias_idxs, first_seen_offsets(h, w))
    with torch.no_grad():
        m.attention_biases.copy_(torch.randn(heads, h * w))
    out = r.module()
    assert out.shape == (1, heads, h * w, h * w)
    torch.testing.assert_close(out[0], m.attention_biases[:, first_seen_offsets(h, w)])


def test_levit_bias_errors():
    op = get_op("levit_bias")
    with pytest.raises(OpCheckError, match="needs attribute 'resolution'"):
        op.bind({"heads": 2})
    with pytest.raises(OpCheckError, match="must be >= 1"):
        op.bind({"heads": 0, "resolution": 4})
