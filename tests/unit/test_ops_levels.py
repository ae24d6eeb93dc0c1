"""shared_conv2d and level_batchnorm: one conv / one BatchNorm over the levels of a pyramid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from archc.cli import main
from archc.ops import OpCheckError
from tests.unit.ops.harness import check, infer

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:DeprecationWarning")
torch.set_num_threads(1)

LEVELS = [(2, 4, 9, 9), (2, 4, 5, 4), (2, 4, 3, 2)]


@pytest.mark.parametrize("attrs", [{"out": 6, "kernel": 3}, {"out": 6, "kernel": 3, "stride": 2, "bias": False},
                                   {"out": 8, "kernel": 1, "groups": 2}])
def test_shared_conv2d_is_one_conv_per_level(attrs: dict) -> None:
    r = check("shared_conv2d", attrs, *LEVELS)  # shapes, params (counted once) and MACs (summed) equal PyTorch's
    conv = r.module.m
    assert isinstance(conv, torch.nn.Conv2d)
    xs = [torch.randn(*s) for s in LEVELS]
    got = r.module(*xs)
    assert len(got) == len(xs)
    for x, y in zip(xs, got):
        torch.testing.assert_close(y, conv(x))
    single = check("shared_conv2d", attrs, LEVELS[0])  # one input: a plain conv
    assert single.params == r.params and single.macs < r.macs


def test_level_batchnorm_trains_on_all_levels_at_once() -> None:
    r = check("level_batchnorm", {"momentum": 0.2}, *LEVELS)
    bn = r.module.m.train()
    xs = [torch.randn(*s, dtype=torch.float32) * (k + 1) + k for k, s in enumerate(LEVELS)]
    got = bn(xs)
    flat = torch.cat([x.flatten(2) for x in xs], dim=2)  # (N, C, Σ HW): the statistics of the whole pyramid
    mean, var = flat.mean((0, 2)), flat.var((0, 2), unbiased=False)
    for x, y in zip(xs, got):
        want = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, 0.2 * mean)
    torch.testing.assert_close(bn.running_var, 0.8 + 0.2 * flat.var((0, 2), unbiased=True))
    assert int(bn.num_batches_tracked) == 1
    bn.eval()  # eval: the same running statistics on every level
    for x, y in zip(xs, bn(xs)):
        torch.testing.assert_close(y, F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, 1e-5))


def test_level_batchnorm_single_input_and_params() -> None:
    r = check("level_batchnorm", {"affine": False}, (2, 3, 4, 4))
    assert r.params == 0
    assert check("level_batchnorm", {}, *LEVELS).params == 8


@pytest.mark.parametrize("name,attrs", [("shared_conv2d", {"out": 4, "kernel": 3}), ("level_batchnorm", {})])
def test_levels_need_one_channel_count(name: str, attrs: dict) -> None:
    with pytest.raises(OpCheckError, match="input 1 is f32"):
        infer(name, attrs, (1, 4, 8, 8), (1, 6, 4, 4))
    with pytest.raises(OpCheckError, match="NCHW"):
        infer(name, attrs, (1, 4, 8))


def test_channel_mismatch_is_one_line_at_the_node(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t.yaml").write_text(
        "archc: 1\nname: t\ninputs:\n  x: [B, 4, 16, 16]\ngraph:\n"
        "  - a: {op: conv2d, out: 8, kernel: 3, stride: 2}\n"
        "  - s: {op: shared_conv2d, in: [x, a], out: 4, kernel: 3}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "t.yaml", "-o", "out.py"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("t.yaml:7:") and "the same channels" in err and "Traceback" not in err
    assert not (tmp_path / "out.py").exists()
