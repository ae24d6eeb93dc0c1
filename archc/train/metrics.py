"""Validation metrics.

``val_loss`` (the task loss, sample-weighted mean) and ``val_acc``; for ``depth`` also ``val_auc`` and
``val_acer``. A depth map's liveness score is its mean. The live/spoof threshold is chosen on training
samples, as anti-spoofing protocols choose it on a development set: the one with the lowest ACER on
the model's own scores of them (APCER: spoofs taken as live, BPCER: lives taken as spoof, ACER their
mean). A threshold fixed on the target scale (say half the live maps' mean) calls every sample spoof
while the predicted maps are still shrunk early in training, so accuracy and ACER stay constant and
rank nothing. AUC: of the scores against the live labels, ties counted half.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from archc.train.data import TensorData
from archc.train.device import autocast, to_channels_last
from archc.train.losses import as_maps, task_loss

__all__ = ["validate", "validate_batches", "auc", "acer_threshold", "depth_metrics"]


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (NaN when one class is missing)."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


def acer_threshold(scores: torch.Tensor, live: torch.Tensor) -> float:
    """The threshold ``t`` (live when score > t) with the lowest ACER of ``scores`` against ``live`` labels.

    Candidates: one below the lowest score and the midpoints between consecutive distinct scores; the
    lowest candidate wins ties.
    """
    s = scores.detach().double().flatten().cpu()
    is_live = live.detach().flatten().cpu() > 0.5
    u = torch.unique(s)
    cand = torch.cat([u[:1] - 1.0, 0.5 * (u[1:] + u[:-1])])
    above = s[None, :] > cand[:, None]
    acer = torch.zeros(len(cand), dtype=torch.float64)
    if bool((~is_live).any()):
        acer += above[:, ~is_live].double().mean(1)
    if bool(is_live.any()):
        acer += (~above[:, is_live]).double().mean(1)
    return float(cand[int(torch.argmin(acer))])


def depth_metrics(score: torch.Tensor, live: torch.Tensor, tau: float) -> dict[str, float]:
    """``val_acc``, ``val_auc`` and ``val_acer`` of liveness scores against live labels at threshold ``tau``."""
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
    train_scores = []
    for s in range(0, len(data.x_train), batch_size):
        with autocast(data.x_train.device, amp):
            train_scores.append(as_maps(model(data.x_train[s:s + batch_size]).float()).mean(dim=(1, 2)))
    tau = acer_threshold(torch.cat(train_scores), data.live_train)
    metrics.update(depth_metrics(as_maps(out).mean(dim=(1, 2)), data.live_val, tau))
    return metrics


def _scores(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device, amp: bool,
            channels_last: bool) -> torch.Tensor:
    out = []
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = to_channels_last(x)
        with autocast(device, amp):
            out.append(as_maps(model(x).float()).mean(dim=(1, 2)).cpu())
    return torch.cat(out)


@torch.no_grad()
def validate_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], task: str,
                     device: torch.device, live_val: torch.Tensor | None = None,
                     calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                     calibration_live: torch.Tensor | None = None,
                     loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     amp: bool = False, channels_last: bool = False) -> dict[str, float]:
    """Validation metrics of ``model`` over ``(x, y)`` batches (a DataLoader), in the order of ``live_val``.

    Depth task: the threshold is chosen on the ``calibration`` batches (training samples, labels
    ``calibration_live``).
    """
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
    assert live_val is not None and calibration is not None and calibration_live is not None
    tau = acer_threshold(_scores(model, calibration, device, amp, channels_last), calibration_live)
    metrics.update(depth_metrics(torch.cat(scores), live_val.cpu(), tau))
    return metrics
