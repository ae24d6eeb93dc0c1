"""identity, dropout, drop_path, rfft2, irfft2: shapes against PyTorch, numerics, scripting and attribute errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from archc.backends.pytorch.single import check_op

from archc.ir.types import TensorType
from archc.ops import OpCheckError, get_op
from tests.unit.ops.harness import check as _check
from tests.unit.ops.harness import infer as _infer
from tests.unit.ops.harness import scripted as _scripted

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")


def test_identity() -> None:
    r = _check("identity", {}, (2, 3, 4))
    x = torch.randn(2, 3, 4)
    assert torch.equal(r.module(x), x)


@pytest.mark.parametrize("name", ["dropout", "drop_path"])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_regularizers_are_eval_identities(name: str, p: float) -> None:
    op = get_op(name)
    assert op is not None and op.train_only
    r = _check(name, {"p": p}, (4, 3, 5, 5))
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(r.module.eval()(x), x)


def test_defaults() -> None:
    assert get_op("dropout").bind({})["p"] == 0.5  # type: ignore[union-attr]
    assert get_op("drop_path").bind({})["p"] == 0.0  # type: ignore[union-attr]


def test_dropout_training_matches_torch_semantics() -> None:
    r = check_op("dropout", {"p": 0.25}, [(2, 3)])
    s = _scripted(r).train()
    x = torch.ones(64, 32, 8)
    y = s(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert 0.15 < 1 - kept.float().mean().item() < 0.35  # elementwise drop rate ≈ p


@pytest.mark.parametrize("scripted", [False, True])
def test_drop_path_training_drops_whole_samples(scripted: bool) -> None:
    r = check_op("drop_path", {"p": 0.5}, [(2, 3, 4, 4)])
    assert "class DropPath(nn.Module)" in r.source
    m = _scripted(r) if scripted else r.module
    m.train()
    torch.manual_seed(0)
    x = torch.randn(256, 3, 4, 4)
    y = m(x)
    per_sample = y.flatten(1)
    dropped = (per_sample == 0).all(dim=1)
    kept = ~dropped
    torch.testing.assert_close(per_sample[kept], x.flatten(1)[kept] * 2.0)
    assert 0.35 < dropped.float().mean().item() < 0.65


@pytest.mark.parametrize(
    "attrs,shape",
    [({}, (2, 3, 8, 8)), ({"norm": "ortho"}, (2, 3, 7, 9)), ({"norm": "forward"}, (2, 8, 6)), ({}, (1, 2, 3, 4, 5))],
)
def test_rfft2(attrs: dict[str, Any], shape: tuple[int, ...]) -> None:
    r = _check("rfft2", attrs, shape)
    assert r.observed[0] == (*shape[:-1], shape[-1] // 2 + 1, 2)
    x = torch.randn(*shape)
    y = r.module(x)
    assert y.dtype == x.dtype and not y.is_complex()
    torch.testing.assert_close(y, torch.view_as_real(torch.fft.rfft2(x, norm=attrs.get("norm", "backward"))))


def test_rfft2_keeps_dtype() -> None:
    r = check_op("rfft2", {}, [(2, 3, 4, 4)], dtype=torch.float64)
    assert r.ok()
    assert r.module(torch.randn(2, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64
    op = get_op("rfft2")
    assert op is not None
    assert op.infer(op.bind({}), [TensorType(("B", 3, 4, 4), "float64")])[0] == TensorType(("B", 3, 4, 3, 2), "float64")


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (6, 5)])
def test_irfft2_inverts_rfft2(norm: str, hw: tuple[int, int]) -> None:
    h, w = hw
    spec = (2, 3, h, w // 2 + 1, 2)
    r = _check("irfft2", {"size": [h, w], "norm": norm}, spec)
    assert r.observed == [(2, 3, h, w)]
    fwd = check_op("rfft2", {"norm": norm}, [(2, 3, h, w)])
    x = torch.randn(2, 3, h, w)
    torch.testing.assert_close(r.module(fwd.module(x)), x, atol=1e-5, rtol=1e-5)
    z = torch.randn(*spec)
    ref = torch.fft.irfft2(torch.view_as_complex(z), s=(h, w), norm=norm)
    torch.testing.assert_close(r.module(z), ref)
    # a non-contiguous packed spectrum works too (no view_as_complex stride requirement)
    zt = torch.randn(2, 3, 2, h, w // 2 + 1).permute(0, 1, 3, 4, 2)
    torch.testing.assert_close(r.module(zt), torch.fft.irfft2(torch.complex(zt[..., 0], zt[..., 1]), s=(h, w), norm=norm))


@pytest.mark.parametrize(
    "name,attrs,shape,match",
    [
        ("dropout", {"p": 1.0}, (2, 3), r"in \[0, 1\)"),
        ("dropout", {"p": -0.1}, (2, 3), ">= 0"),
        ("drop_path", {"p": 1.5}, (2, 3), r"in \[0, 1\)"),
        ("identity", {"p": 0.1}, (2, 3), "unknown attribute .p. for op .identity."),
        ("rfft2", {}, (2, 8), "rank >= 3"),
        ("rfft2", {"norm": "none"}, (2, 3, 8, 8), "must be one of"),
        ("irfft2", {"size": [8, 8]}, (2, 3, 8, 5, 3), "packed spectrum"),
        ("irfft2", {"size": [8, 8]}, (8, 5, 2), "rank >= 4"),
        ("irfft2", {"size": [8, 9]}, (2, 3, 8, 6, 2), r"needs a spectrum of \(\.\.\., 8, 5, 2\)"),
        ("irfft2", {"size": [7, 8]}, (2, 3, 8, 5, 2), r"needs a spectrum of \(\.\.\., 7, 5, 2\)"),
        ("irfft2", {}, (2, 3, 8, 5, 2), "needs attribute 'size'"),
    ],
)
def test_errors(name: str, attrs: dict[str, Any], shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(OpCheckError, match=match):
        _infer(name, attrs, shape)
