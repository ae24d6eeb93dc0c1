"""BatchNorm recalibration: fresh running statistics for a sub-network of a weight-sharing supernet.

A supernet trained one sampled path at a time leaves every BatchNorm with running statistics averaged
over many *different* paths (exponential moving averages of the batch statistics of whatever path ran
last). A child evaluated with those statistics is scored with the wrong normalization, which ranks
children by noise rather than by quality. SPOS (Guo et al., ECCV 2020) therefore recomputes the
statistics of each child before it is scored: reset the running mean/variance, then run a few training
batches through the child in train mode without gradients. With ``momentum = None`` PyTorch keeps a
cumulative (equal-weight) average over those batches, so the result does not depend on their order and
equals the mean of the per-batch statistics:

    running_mean = (1/T) Σ_t mean_t          running_var = (1/T) Σ_t var_t (unbiased per batch)

Only BatchNorms that the forward pass reaches are updated; the others stay reset, which is harmless
because a path that does not run them does not read them either.

>>> import torch
>>> m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
>>> recalibrate_bn(m, [torch.randn(4, 1, 8, 8) for _ in range(3)])
1
>>> m.training, m[1].momentum
(False, 0.1)
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

__all__ = ["recalibrate_bn", "batchnorms"]


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` (1d/2d/3d/Sync) that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset the BatchNorm running statistics of ``model`` and re-estimate them on ``batches``.

    Every BatchNorm is reset; each batch is run through ``model`` in train mode without gradients with
    ``momentum = None`` (a cumulative average). Afterwards the layers' momenta are restored and the
    model is left in eval mode (ready to be scored). Returns the number of BatchNorm layers the batches
    reached (0 when the model has none or the batches do not reach them).
    """
    bns = batchnorms(model)
    momenta = [bn.momentum for bn in bns]
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for x in batches:
            model(x)
    finally:
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom
        model.eval()
    return sum(1 for bn in bns if bn.num_batches_tracked is not None and int(bn.num_batches_tracked) > 0)
