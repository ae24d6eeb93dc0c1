"""Bi-level differentiable search (DARTS, PC-DARTS) over a space's supernet.

``min_α L_val(w*(α), α)`` with ``w* = argmin_w L_train(w, α)``, alternating one step of each per batch:

* the architecture step (α per edge, β per cell, PC-DARTS edge β) on a batch of the **validation**
  split: first order by default (the gradient of L_val at the current weights); second order unrolls one
  virtual weight step ``w' = w − ξ·(momentum buffer·μ + ∇_w L_train + wd·w)`` (ξ = the current weight lr)
  and subtracts ``ξ·∇²_{α,w} L_train · ∇_{w'} L_val``, the Hessian-vector product taken by finite
  differences at ``w ± ε·∇_{w'} L_val`` with ``ε = 0.01 / ‖∇_{w'} L_val‖`` (Liu et al., 2019);
* the weight step on a batch of the **training** split: SGD with momentum, cosine schedule to
  ``lr_min``, weight decay, gradient-norm clipping.

α/β use Adam (betas 0.5, 0.999, weight decay 1e-3). The first ``warmup`` fraction of the epochs trains
the weights only (α/β frozen; PC-DARTS uses 15 of 50 epochs). The loss is the task's own (for depth:
MSE + contrastive depth loss). After each epoch the supernet is validated with the mixed forward and the
current discretization is recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from archc.search.runner import SearchError
from archc.search.strategies.options import options_from_mapping
from archc.search.supernet import Supernet
from archc.search.supernet.derive import alpha_table
from archc.train.data import TensorData
from archc.train.losses import task_loss
from archc.train.metrics import validate

__all__ = ["BilevelOptions", "EpochRecord", "train_bilevel", "OPTION_DOCS", "format_arch", "format_argmax"]

#: option name → meaning (CLI help, the space file's ``strategy:`` section, docs)
OPTION_DOCS = {
    "epochs": "search epochs (one pass over the training split each)",
    "batch_size": "batch size of both splits (default: the evaluator's train batch size)",
    "max_batches": "cap on the steps of an epoch (default: the whole training split)",
    "lr": "weight SGD learning rate (cosine to lr_min)",
    "lr_min": "final weight learning rate",
    "momentum": "weight SGD momentum",
    "weight_decay": "weight decay of the weights",
    "grad_clip": "gradient-norm clip of the weights (0: none)",
    "arch_lr": "Adam learning rate of α/β",
    "arch_beta1": "Adam β1 of α/β",
    "arch_beta2": "Adam β2 of α/β",
    "arch_weight_decay": "weight decay of α/β",
    "order": "1: first-order α gradient; 2: second order (one unrolled weight step)",
    "partial_channels": "K: 1/K of an edge's channels go through its mixed op (1: all)",
    "warmup": "fraction of the epochs that train the weights only (α/β frozen)",
    "device": "auto (CUDA when present), cpu, cuda or cuda:N",
    "seed": "seed of the supernet's initialization and the batch order (default: the space's)",
}


@dataclass(frozen=True)
class BilevelOptions:
    """Options of the bi-level strategies (``darts`` / ``pcdarts`` differ in their defaults only)."""

    epochs: int = 10
    batch_size: int | None = None
    max_batches: int | None = None
    lr: float = 0.025
    lr_min: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_beta1: float = 0.5
    arch_beta2: float = 0.999
    arch_weight_decay: float = 1e-3
    order: int = 1
    partial_channels: int = 1
    warmup: float = 0.0
    device: str = "auto"
    seed: int | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: BilevelOptions | None = None) -> BilevelOptions:
        """Options from a mapping (CLI or space file); ``None`` values keep ``base``'s. Raises SearchError."""
        return options_from_mapping(cls, values, base, "unknown option '{key}' of the bi-level strategies")

    def check(self) -> None:
        """Raise :class:`SearchError` for an option out of range."""
        for name, low in (("epochs", 1), ("partial_channels", 1), ("order", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SearchError(f"option {name} must be an integer ≥ {low}, got {v!r}")
        for name in ("batch_size", "max_batches", "seed"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "seed" else 1)):
                raise SearchError(f"option {name} must be a {'non-negative' if name == 'seed' else 'positive'} integer, "
                                  f"got {v!r}")
        if self.order not in (1, 2):
            raise SearchError(f"option order must be 1 (first order) or 2 (second order), got {self.order}")
        for name in ("lr", "lr_min", "momentum", "weight_decay", "grad_clip", "arch_lr", "arch_beta1", "arch_beta2",
                     "arch_weight_decay", "warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise SearchError(f"option {name} must be a non-negative number, got {v!r}")
        if self.lr == 0 or self.arch_lr == 0:
            raise SearchError("options lr and arch_lr must be positive")
        if self.warmup >= 1 or self.arch_beta1 >= 1 or self.arch_beta2 >= 1:
            raise SearchError("options warmup, arch_beta1 and arch_beta2 must be below 1")
        if not isinstance(self.device, str):
            raise SearchError(f"option device must be a name (auto, cpu, cuda, cuda:N), got {self.device!r}")

    @property
    def warmup_epochs(self) -> int:
        """Epochs with α/β frozen (``round(warmup · epochs)``)."""
        return int(round(self.warmup * self.epochs))


@dataclass
class EpochRecord:
    """One epoch of the search (what ``history.json`` stores)."""

    epoch: int
    train_loss: float
    arch_loss: float | None
    val_loss: float
    metrics: dict[str, float]
    lr: float
    seconds: float
    arch_frozen: bool
    derived: dict[str, Any]
    alpha: list[dict[str, Any]]


def format_arch(supernet: Supernet, choice: Mapping[str, Any]) -> str:
    """``low[0-1 cdc, 1-2 cdc_2_1.6 → n2] mid[...]``: the live edges and output node of each cell."""
    parts = []
    for a in supernet.anatomies:
        cell = a.cell
        edges = [f"{i}-{j} {choice[f'{cell.name}.e{i}_{j}']}" for i, j in cell.edges
                 if choice[f"{cell.name}.e{i}_{j}"] != cell.none]
        parts.append(f"{cell.name}[{', '.join(edges)} → n{choice[cell.output_key]}]")
    return " ".join(parts)


@torch.no_grad()
def format_argmax(supernet: Supernet) -> list[str]:
    """One line per cell: the argmax of softmax(α) on every edge (``none`` included) and of β."""
    lines = []
    for a in supernet.anatomies:
        m = supernet.cell_module(a.cell.name)
        best = m.alpha.detach().argmax(dim=-1).tolist()
        edges = " ".join(f"{i}-{j}:{a.cell.ops[b]}" for (i, j), b in zip(a.cell.edges, best))
        lines.append(f"{a.cell.name}: {edges} | out n{int(m.beta.detach().argmax()) + 1}")
    return lines


def _batches(n: int, bs: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[s:s + bs] for s in range(0, n, bs)]


def _clip(params: list[torch.nn.Parameter], clip: float) -> None:
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)


def _loss(model: torch.nn.Module, loss_fn: Callable[..., torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return loss_fn(model(x), y)


def _second_order(supernet: Supernet, loss_fn: Callable[..., torch.Tensor], opt: torch.optim.Optimizer,
                  xt: torch.Tensor, yt: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, xi: float,
                  opts: BilevelOptions) -> torch.Tensor:
    """Set α/β ``.grad`` to the unrolled (second-order) DARTS gradient; returns L_val(w')."""
    model = supernet.model
    ws = supernet.weight_parameters()
    arch = supernet.arch_parameters()
    saved = [w.detach().clone() for w in ws]
    # virtual step w' = w − ξ (μ·m + ∇L_train + wd·w), as the optimizer would take it
    grads = torch.autograd.grad(_loss(model, loss_fn, xt, yt), ws, allow_unused=True)
    with torch.no_grad():
        for w, g in zip(ws, grads):
            buf = opt.state.get(w, {}).get("momentum_buffer")
            step = (g if g is not None else torch.zeros_like(w)) + opts.weight_decay * w
            if buf is not None:
                step = step + opts.momentum * buf
            w.sub_(xi * step)
    val = _loss(model, loss_fn, xv, yv)
    g_all = torch.autograd.grad(val, arch + ws, allow_unused=True)
    d_arch = [g if g is not None else torch.zeros_like(a) for g, a in zip(g_all[:len(arch)], arch)]
    v = [g if g is not None else torch.zeros_like(w) for g, w in zip(g_all[len(arch):], ws)]
    with torch.no_grad():
        for w, s in zip(ws, saved):
            w.copy_(s)
    norm = torch.sqrt(sum((t * t).sum() for t in v))
    eps = 0.01 / max(float(norm), 1e-12)

    def arch_grad(sign: float) -> list[torch.Tensor]:
        with torch.no_grad():
            for w, t in zip(ws, v):
                w.add_(sign * eps * t)
        g = torch.autograd.grad(_loss(model, loss_fn, xt, yt), arch, allow_unused=True)
        return [x if x is not None else torch.zeros_like(a) for x, a in zip(g, arch)]

    g_pos = arch_grad(1.0)
    g_neg = arch_grad(-2.0)  # from w + εv to w − εv
    with torch.no_grad():
        for w, s in zip(ws, saved):
            w.copy_(s)
        for a, d, gp, gn in zip(arch, d_arch, g_pos, g_neg):
            a.grad = d - xi * (gp - gn) / (2 * eps)
    return val.detach()


def train_bilevel(supernet: Supernet, data: TensorData, opts: BilevelOptions, batch_size: int, seed: int,
                  device: torch.device, say: Callable[[str], None], name: str = "darts") -> list[EpochRecord]:
    """Run the bi-level search on ``supernet`` (in place); returns one record per epoch."""
    model = supernet.model.to(device)
    data = data.to(device)
    loss_fn = task_loss(data.task)
    ws = supernet.weight_parameters()
    arch = supernet.arch_parameters()
    opt = torch.optim.SGD(ws, lr=opts.lr, momentum=opts.momentum, weight_decay=opts.weight_decay)
    arch_opt = torch.optim.Adam(arch, lr=opts.arch_lr, betas=(opts.arch_beta1, opts.arch_beta2),
                                weight_decay=opts.arch_weight_decay)
    n_train, n_val = data.sizes
    steps = math.ceil(n_train / batch_size)
    if opts.max_batches:
        steps = min(steps, opts.max_batches)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps * opts.epochs), eta_min=opts.lr_min)
    gen = torch.Generator().manual_seed(seed)
    history: list[EpochRecord] = []
    val_iter: list[torch.Tensor] = []
    for epoch in range(opts.epochs):
        t0 = time.perf_counter()
        frozen = epoch < opts.warmup_epochs
        model.train()
        tr_total = torch.zeros((), dtype=torch.float64, device=device)
        ar_total = torch.zeros((), dtype=torch.float64, device=device)
        seen = arch_seen = 0
        lr_now = opt.param_groups[0]["lr"]
        for idx in _batches(n_train, batch_size, gen)[:steps]:
            idx = idx.to(device)
            xt, yt = data.x_train.index_select(0, idx), data.y_train.index_select(0, idx)
            if not frozen:
                if not val_iter:
                    val_iter = _batches(n_val, batch_size, gen)
                vidx = val_iter.pop().to(device)
                xv, yv = data.x_val.index_select(0, vidx), data.y_val.index_select(0, vidx)
                arch_opt.zero_grad(set_to_none=True)
                if opts.order == 2:
                    vloss = _second_order(supernet, loss_fn, opt, xt, yt, xv, yv, opt.param_groups[0]["lr"], opts)
                else:
                    vl = _loss(model, loss_fn, xv, yv)
                    grads = torch.autograd.grad(vl, arch)
                    for a, g in zip(arch, grads):
                        a.grad = g
                    vloss = vl.detach()
                arch_opt.step()
                ar_total += vloss.double() * len(vidx)
                arch_seen += len(vidx)
            opt.zero_grad(set_to_none=True)
            loss = _loss(model, loss_fn, xt, yt)
            loss.backward()
            for a in arch:  # the weight step never moves α/β
                a.grad = None
            _clip(ws, opts.grad_clip)
            opt.step()
            sched.step()
            tr_total += loss.detach().double() * len(idx)
            seen += len(idx)
        train_loss = float(tr_total) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise SearchError(f"{name}: the training loss is {train_loss} in epoch {epoch + 1}",
                              hint="lower the weight learning rate (lr) or the architecture learning rate (arch_lr)")
        metrics = validate(model, data, batch_size=max(batch_size, 256), loss_fn=loss_fn)
        derived = supernet.derive()
        table = [row for a in supernet.anatomies
                 for row in alpha_table(a.cell, supernet.cell_module(a.cell.name), bool(a.partial))]
        rec = EpochRecord(epoch + 1, train_loss, (float(ar_total) / arch_seen) if arch_seen else None,
                          metrics["val_loss"], metrics, lr_now, round(time.perf_counter() - t0, 3), frozen, derived, table)
        history.append(rec)
        arch_txt = "α frozen" if frozen else f"arch_loss {rec.arch_loss:.5g}"
        say(f"{name}: epoch {epoch + 1}/{opts.epochs}  train_loss {train_loss:.5g}  val_loss {rec.val_loss:.5g}  "
            f"{arch_txt}  ({rec.seconds:.1f}s)")
        for line in format_argmax(supernet):
            say(f"{name}:   α argmax {line}")
        say(f"{name}:   derived  {format_arch(supernet, derived)}")
    return history
