"""BatchNorm recalibration for inherited-weight scoring (archc.search.bn_recal)."""

from __future__ import annotations

import torch
import torch.nn as nn

from archc.search.bn_recal import batchnorms, recalibrate_bn

torch.set_num_threads(1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 6 * 6, 4), nn.BatchNorm1d(4))


def test_running_stats_are_the_cumulative_average_of_the_batches() -> None:
    m = _net()
    # stale statistics, as a supernet trained on other paths leaves them
    m[1].running_mean.fill_(5.0)
    m[1].running_var.fill_(9.0)
    m[1].num_batches_tracked.fill_(1000)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 2, 8, 8, generator=g) * (1 + i) + i for i in range(3)]
    assert recalibrate_bn(m, batches) == 2
    with torch.no_grad():
        feats = [m[0](x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).reshape(3, -1).var(dim=1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(m[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m[1].running_var, var, rtol=1e-5, atol=1e-6)
    assert int(m[1].num_batches_tracked) == 3
    # the order of the batches does not matter (equal weights, unlike the exponential average)
    m2 = _net()
    recalibrate_bn(m2, batches[::-1])
    torch.testing.assert_close(m2[1].running_mean, m[1].running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m2[1].running_var, m[1].running_var, rtol=1e-5, atol=1e-6)


def test_weights_untouched_momentum_restored_eval_mode() -> None:
    m = _net()
    m[1].momentum = 0.3
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" not in k and "num_batches" not in k}
    recalibrate_bn(m, [torch.randn(4, 2, 8, 8)])
    after = m.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    assert m[1].momentum == 0.3 and m[5].momentum == 0.1
    assert not m.training and not any(x.training for x in m.modules())
    assert all(p.grad is None for p in m.parameters())


def test_unreached_batchnorms_are_reset_and_counted_out() -> None:
    class TwoPaths(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.BatchNorm2d(2)
            self.b = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x)

    m = TwoPaths()
    m.b.running_mean.fill_(3.0)
    assert len(batchnorms(m)) == 2
    assert recalibrate_bn(m, [torch.randn(4, 2, 3, 3) + 2.0]) == 1
    assert torch.all(m.b.running_mean == 0) and int(m.b.num_batches_tracked) == 0
    assert torch.all(m.a.running_mean > 1.0)


def test_recalibration_changes_the_eval_output() -> None:
    m = _net()
    x = torch.randn(16, 2, 8, 8) * 3 + 1
    m.eval()
    y0 = m(x)
    recalibrate_bn(m, [x])
    y1 = m(x)
    assert not torch.allclose(y0, y1)
    # with its own statistics, the eval-mode BN output of the first layer is normalized
    with torch.no_grad():
        h = m[1](m[0](x))
    assert abs(float(h.mean())) < 1e-4
