"""SPOS supernet training: one uniformly sampled path per batch, plain SGD on the shared weights.

Each step fixes the supernet to a path drawn uniformly from the feasible paths (``Supernet.sample_path``)
and takes one SGD step on the task loss of that path alone. Ops off the path do not run, so their
weights get no gradient (``grad is None``) and the optimizer leaves them untouched: no momentum, no
weight decay. Every op is therefore trained only by the batches whose path contains it, which is what
makes the inherited weights a fair stand-in for each child (Guo et al., ECCV 2020).

The state after each epoch (weights, optimizer, schedule, epoch) is checkpointed atomically, so an
interrupted run resumes at the next epoch and reproduces the uninterrupted run: the batch order and the
sampled paths of epoch ``e`` depend only on the seed and ``e``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archc.compiler import write_atomic
from archc.search.data import ProxyData
from archc.search.evaluate import task_loss

__all__ = ["SupernetTraining", "train_supernet", "supernet_step", "epoch_rng", "CHECKPOINT"]

CHECKPOINT = "supernet.pt"


@dataclass(frozen=True)
class SupernetTraining:
    """Hyper-parameters of the supernet training (SGD with momentum, cosine to ``lr_min``)."""

    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.025
    lr_min: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    seed: int = 0

    def digest(self, space_digest: str) -> str:
        """What a checkpoint must match to be resumed: the space and every hyper-parameter (the number
        of epochs too, since it shapes the cosine schedule)."""
        return hashlib.sha256(json.dumps([space_digest, self.__dict__], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TrainingLog:
    """Per-epoch records of the supernet training (``train_loss``, ``lr``, ``seconds``, ``paths``)."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0


def epoch_rng(seed: int, epoch: int) -> tuple[random.Random, torch.Generator]:
    """The path sampler and batch-order generator of one epoch (independent of earlier epochs)."""
    return random.Random(f"spos:{seed}:{epoch}"), torch.Generator().manual_seed(seed * 100_003 + epoch)


def supernet_step(supernet: Any, choice: dict[str, Any], xb: torch.Tensor, yb: torch.Tensor,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer,
                  grad_clip: float | None) -> torch.Tensor:
    """One SPOS step: fix ``choice``, forward, backward, clip, step; returns the (detached) loss."""
    supernet.fix(choice)
    loss = loss_fn(supernet.model(xb), yb)
    opt.zero_grad(set_to_none=True)  # None (not zero) grads keep the off-path weights out of the step
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"] if p.grad is not None],
                                       grad_clip)
    opt.step()
    return loss.detach()


def _make_opt(supernet: Any, cfg: SupernetTraining, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    opt = torch.optim.SGD(supernet.weight_parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps * cfg.epochs), eta_min=cfg.lr_min)
    return opt, sched


def _load(path: Path, digest: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is retrained, never trusted
        return None
    if not isinstance(state, dict) or state.get("digest") != digest:
        return None
    return state


def train_supernet(supernet: Any, data: ProxyData, cfg: SupernetTraining, *, checkpoint: Path | None = None,
                   space_digest: str = "", say: Callable[[str], None] = lambda s: None) -> TrainingLog:
    """Train ``supernet`` for ``cfg.epochs`` with one uniformly sampled path per batch.

    With ``checkpoint`` the state is saved after every epoch and a matching checkpoint (same space and
    hyper-parameters) is resumed; a finished one is loaded without training. Progress goes to ``say``
    (one line per epoch). Raises ``FloatingPointError`` on a NaN or infinite loss.
    """
    model = supernet.model
    n = len(data.x_train)
    bs = cfg.batch_size
    steps = math.ceil(n / bs)
    opt, sched = _make_opt(supernet, cfg, steps)
    loss_fn = task_loss(data.task)
    log = TrainingLog()
    digest = cfg.digest(space_digest)
    start = 0
    state = _load(checkpoint, digest) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        start = int(state["epoch"])
        log.epochs = json.loads(state["log"])
        log.resumed_from = start
        say(f"spos: supernet checkpoint {checkpoint} holds {start}/{cfg.epochs} epochs"
            + (" (resuming)" if start < cfg.epochs else " (nothing to train)"))
    for epoch in range(start, cfg.epochs):
        rng, gen = epoch_rng(cfg.seed, epoch)
        perm = torch.randperm(n, generator=gen)
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=data.x_train.device)
        seen = 0
        t0 = time.perf_counter()
        for b in range(steps):
            idx = perm[b * bs:(b + 1) * bs].to(data.x_train.device)
            loss = supernet_step(supernet, supernet.sample_path(rng), data.x_train.index_select(0, idx),
                                 data.y_train.index_select(0, idx), loss_fn, opt, cfg.grad_clip)
            sched.step()
            total += loss.double() * len(idx)
            seen += len(idx)
        train_loss = float(total) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"the supernet's training loss is {train_loss} in epoch {epoch + 1}")
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - t0, 3), "paths": steps}
        log.epochs.append(rec)
        if checkpoint is not None:
            buf = io.BytesIO()
            torch.save({"digest": digest, "epoch": epoch + 1, "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                        "log": json.dumps(log.epochs)}, buf)
            write_atomic(checkpoint, buf.getvalue())
        say(f"spos: supernet epoch {epoch + 1}/{cfg.epochs}: train_loss {train_loss:.5g}, lr {rec['lr']:.4g}, "
            f"{steps} paths, {rec['seconds']:.1f} s")
    supernet.fix(None)
    return log
