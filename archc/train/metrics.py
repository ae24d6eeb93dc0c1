"""Validation metrics.

``val_loss`` (the task loss, sample-weighted mean) and ``val_acc``; for ``depth`` also ``val_auc`` and
``val_acer``. A depth map's liveness score is its mean; the threshold is half the mean value of the
live training maps (APCER: spoofs taken as live, BPCER: lives taken as spoof, ACER their mean; AUC of
the scores against the live labels, ties counted half).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from archc.train.data import TensorData
from archc.train.device import autocast, to_channels_last
from archc.train.losses import as_maps, task_loss

__all__ = ["validate", "validate_batches", "auc", "depth_metrics"]


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (NaN when one class is missing)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


def depth_metrics(score: torch.Tensor, live: torch.Tensor, live_mean: float) -> dict[str, float]:
    """``val_acc``, ``val_auc`` and ``val_acer`` of liveness scores against live labels."""
    tau = 0.5 * float(live_mean)
    live = live > 0.5
    pred_live = score > tau
    apcer = float(pred_live[~live].float().mean()) if bool((~live).any()) else 0.0
    bpcer = float((~pred_live[live]).float().mean()) if bool(live.any()) else 0.0
    return {"val_acc": float((pred_live == live).float().mean()), "val_auc": auc(score, live.float()),
            "val_acer": 0.5 * (apcer + bpcer)}


@torch.no_grad()
def validate(model: nn.Module, data: TensorData, batch_size: int = 256,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, amp: bool = False) -> dict[str, float]:
    """Validation metrics of ``model`` on in-memory ``data`` (eval mode; see the module docstring).

    ``amp``: forward under bf16 autocast when the data is on a CUDA device (the loss in float32).
    """
    model.eval()
    loss_fn = loss_fn or task_loss(data.task)
    total = 0.0
    outs = []
    n = len(data.x_val)
    for s in range(0, n, batch_size):
        if amp:
            with autocast(data.x_val.device, True):
                out = model(data.x_val[s:s + batch_size])
            out = out.float()
        else:
            out = model(data.x_val[s:s + batch_size])
        y = data.y_val[s:s + batch_size]
        total += float(loss_fn(out, y)) * len(y)
        outs.append(out)
    out = torch.cat(outs)
    metrics = {"val_loss": total / max(n, 1)}
    if data.task == "classification":
        metrics["val_acc"] = float((out.argmax(1) == data.y_val).float().mean())
        return metrics
    assert data.live_val is not None and data.live_train is not None
    metrics.update(depth_metrics(as_maps(out).mean(dim=(1, 2)), data.live_val, data.live_mean))
    return metrics


@torch.no_grad()
def validate_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], task: str,
                     device: torch.device, live_val: torch.Tensor | None = None, live_mean: float = 1.0,
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     amp: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Validation metrics of ``model`` over ``(x, y)`` batches (a DataLoader), in the order of ``live_val``."""
    model.eval()
    loss_fn = loss_fn or task_loss(task)
    total = 0.0
    n = 0
    correct = 0
    scores = []
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = to_channels_last(x)
        with autocast(device, amp):
            out = model(x)
        out = out.float()
        total += float(loss_fn(out, y)) * len(y)
        n += len(y)
        if task == "classification":
            correct += int((out.argmax(1) == y).sum())
        else:
            scores.append(as_maps(out).mean(dim=(1, 2)).cpu())
    metrics = {"val_loss": total / max(n, 1)}
    if task == "classification":
        metrics["val_acc"] = correct / max(n, 1)
        return metrics
    assert live_val is not None
    metrics.update(depth_metrics(torch.cat(scores), live_val.cpu(), live_mean))
    return metrics
