"""Optimizers and per-step learning-rate schedules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["make_optimizer", "make_schedule", "steps_per_epoch"]


def make_optimizer(params: nn.Module | Iterable[nn.Parameter], cfg: Any) -> torch.optim.Optimizer:
    """SGD (with ``cfg.momentum``), Adam or AdamW over the trainable ``params`` (or a module's parameters)."""
    plist = list(params.parameters() if isinstance(params, nn.Module) else params)
    plist = [p for p in plist if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(plist, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(plist, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(plist, lr=cfg.lr, weight_decay=cfg.weight_decay)


def steps_per_epoch(n: int, cfg: Any, world: int = 1, drop_last: bool = False) -> int:
    """Optimizer steps of one epoch over ``n`` samples at ``cfg.batch_size`` per process × ``world`` processes."""
    per_step = cfg.batch_size * world
    steps = n // per_step if drop_last else math.ceil(n / per_step)
    return min(steps, cfg.max_batches) if cfg.max_batches else steps


def make_schedule(opt: torch.optim.Optimizer, cfg: Any, steps: int) -> Any:
    """A per-step LR schedule over ``cfg.epochs`` × ``steps``: cosine (to 0), step (÷10 at 50% and 75%) or
    none for ``constant``."""
    total = max(1, steps * cfg.epochs)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[total // 2, (3 * total) // 4], gamma=0.1)
    return None
