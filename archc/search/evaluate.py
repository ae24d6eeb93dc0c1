"""Evaluators: proxy training, zero-cost proxies and latency of compiled artifacts.

* :func:`train_proxy` — a lean training loop (in-memory tensors, a seeded permutation per epoch, no
  data-loader workers) for ``classification`` (cross-entropy) or ``depth`` (pixel-wise depth-map
  supervision as CDCN trains: MSE plus the contrastive depth loss, 8 fixed 3×3 neighbour-minus-centre
  kernels applied depthwise to prediction and label, MSE between them). It validates and reports after
  every epoch, so Optuna pruners can stop a poor trial early.
* :func:`zero_cost` — NASWOT, SynFlow and grad-norm scores of an untrained model, for fast screening.
* :func:`measure_latency` — the median wall time of timed runs of a module on this machine.

:class:`ProxyEvaluator` combines the first two as a trial's evaluator; :func:`archc.search.run_search`
accepts any object with the same ``evaluate(model, ctx)`` method.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from archc.diagnostics import ArchcError
from archc.search.data import ProxyData, load_data
from archc.search.space import EvaluatorConfig, LatencyConfig, TrainConfig, ZeroCostConfig

__all__ = ["TrialContext", "ProxyEvaluator", "EvaluationError", "train_proxy", "validate", "task_loss", "depth_loss",
           "contrast_depth", "zero_cost", "naswot", "synflow", "grad_norm", "measure_latency", "NonFiniteError"]


class EvaluationError(ArchcError):
    """A model cannot be evaluated on the configured task (e.g. its output does not fit the data)."""


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrialContext:
    """What an evaluator may use of the trial it serves.

    ``report(epoch, metrics)`` hands per-epoch metrics to the study (it raises ``optuna.TrialPruned``
    when the pruner stops the trial); ``screen(metrics)`` may reject the trial after zero-cost scoring;
    ``log`` writes a line to the trial's log file.
    """

    number: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    report: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None
    screen: Callable[[dict[str, float]], None] = lambda metrics: None
    log: Callable[[str], None] = lambda line: None
    extra: dict[str, Any] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------------------
# losses
# -------------------------------------------------------------------------------------------------------
def _contrast_kernels() -> torch.Tensor:
    k = torch.zeros(8, 1, 3, 3)
    for n, (i, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]):
        k[n, 0, 1, 1] = -1.0
        k[n, 0, i, j] = 1.0
    return k


_KERNELS = _contrast_kernels()


def contrast_depth(x: torch.Tensor) -> torch.Tensor:
    """The 8 neighbour-minus-centre differences of depth maps ``x`` (N×h×w) → N×8×(h−2)×(w−2)."""
    k = _KERNELS.to(dtype=x.dtype, device=x.device)
    return F.conv2d(x.unsqueeze(1).expand(-1, 8, -1, -1), k, groups=8)


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CDCN's loss: MSE(pred, target) + MSE(contrast(pred), contrast(target))."""
    return F.mse_loss(pred, target) + F.mse_loss(contrast_depth(pred), contrast_depth(target))


def _as_maps(out: torch.Tensor) -> torch.Tensor:
    if out.dim() == 4 and out.shape[1] == 1:
        return out[:, 0]
    return out


def task_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of ``task``."""
    if task == "depth":
        return lambda out, y: depth_loss(_as_maps(out), y)
    return F.cross_entropy


def check_output(task: str, out_shape: tuple[int, ...], data: ProxyData) -> None:
    """Raise :class:`EvaluationError` when the model's output does not fit the task's targets."""
    if task == "classification":
        if len(out_shape) != 2 or out_shape[1] != data.classes:
            raise EvaluationError(
                f"the model outputs {list(out_shape)} but the data has {data.classes} classes (expected [B, {data.classes}])",
                hint=f"set the class count in the evaluator's proxy params, e.g. 'num_classes: {data.classes}'")
    else:
        hw = tuple(out_shape[-2:])
        ok = (len(out_shape) == 3 or (len(out_shape) == 4 and out_shape[1] == 1)) and hw == tuple(data.y_train.shape[-2:])
        if not ok:
            raise EvaluationError(f"the model outputs {list(out_shape)}; the depth task needs depth maps [B, h, w] or [B, 1, h, w]")


# -------------------------------------------------------------------------------------------------------
# training
# -------------------------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    steps = math.ceil(n / cfg.batch_size)
    return min(steps, cfg.max_batches) if cfg.max_batches else steps


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, steps: int) -> Any:
    """A per-step LR schedule: constant, cosine (to 0 over all steps) or step (÷10 at 50% and 75%)."""
    total = max(1, steps * cfg.epochs)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[total // 2, (3 * total) // 4], gamma=0.1)
    return None


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).double().mean()
    eq = (pos[:, None] == neg[None, :]).double().mean()
    return float(gt + 0.5 * eq)


@torch.no_grad()
def validate(model: nn.Module, data: ProxyData, batch_size: int = 256) -> dict[str, float]:
    """Validation metrics: ``val_loss`` and ``val_acc``; for ``depth`` also ``val_auc`` and ``val_acer``.

    A depth map's liveness score is its mean; the threshold is half the mean score of the live
    training maps (APCER: spoofs taken as live, BPCER: lives taken as spoof, ACER their mean).
    """
    model.eval()
    loss_fn = task_loss(data.task)
    total = 0.0
    outs = []
    n = len(data.x_val)
    for s in range(0, n, batch_size):
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
    score = _as_maps(out).mean(dim=(1, 2))
    live_mean = data.y_train[data.live_train > 0.5].mean() if bool((data.live_train > 0.5).any()) else torch.tensor(1.0)
    tau = 0.5 * float(live_mean)
    live = data.live_val > 0.5
    pred_live = score > tau
    apcer = float(pred_live[~live].float().mean()) if bool((~live).any()) else 0.0
    bpcer = float((~pred_live[live]).float().mean()) if bool(live.any()) else 0.0
    metrics["val_acc"] = float((pred_live == live).float().mean())
    metrics["val_auc"] = _auc(score, data.live_val)
    metrics["val_acer"] = 0.5 * (apcer + bpcer)
    return metrics


def train_proxy(model: nn.Module, data: ProxyData, cfg: TrainConfig,
                report: Callable[[int, dict[str, float]], None] | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train ``model`` on ``data`` for ``cfg.epochs``; returns the last epoch's metrics.

    After each epoch the validation metrics and ``train_loss`` go to ``report`` (which may raise
    ``optuna.TrialPruned``). A NaN or infinite loss raises :class:`NonFiniteError` at once.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = make_optimizer(model, cfg)
    n = len(data.x_train)
    steps = steps_per_epoch(n, cfg)
    sched = make_schedule(opt, cfg, steps)
    loss_fn = task_loss(data.task)
    x_all, y_all = data.x_train, data.y_train
    bs = cfg.batch_size
    metrics: dict[str, float] = {}
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = torch.zeros((), dtype=torch.float64)
        seen = 0
        t0 = time.perf_counter()
        for b in range(steps):
            idx = perm[b * bs:(b + 1) * bs]
            xb, yb = x_all.index_select(0, idx), y_all.index_select(0, idx)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.detach().double() * len(idx)
            seen += len(idx)
        train_loss = float(total) / max(seen, 1)
        if not math.isfinite(train_loss):
            raise NonFiniteError(f"the training loss is {train_loss} in epoch {epoch + 1}")
        metrics = {"train_loss": train_loss, **validate(model, data)}
        if log is not None:
            shown = ", ".join(f"{k} {v:.5g}" for k, v in metrics.items())
            log(f"epoch {epoch + 1}/{cfg.epochs}: {shown} ({seen / max(time.perf_counter() - t0, 1e-9):.0f} samples/s)")
        if report is not None:
            report(epoch, metrics)
    return metrics


# -------------------------------------------------------------------------------------------------------
# zero-cost proxies
# -------------------------------------------------------------------------------------------------------
_ACTS = ("relu", "relu6", "leaky_relu", "gelu", "silu", "hardswish", "mish", "elu")


@contextlib.contextmanager
def _capture_activation_inputs(model: nn.Module, sink: Callable[[torch.Tensor], None]) -> Iterator[None]:
    """Call ``sink`` with the input of every activation: archc's generated code calls activations as
    ``F.relu(...)`` (so they are wrapped for the duration), hand-written code may use modules (hooked)."""
    saved = {name: getattr(F, name) for name in _ACTS}

    def wrap(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def inner(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            sink(x)
            return fn(x, *args, **kwargs)

        return inner

    hooks = []
    act_types = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Mish, nn.ELU)
    try:
        for name, fn in saved.items():
            setattr(F, name, wrap(fn))
        for m in model.modules():
            if isinstance(m, act_types):
                hooks.append(m.register_forward_pre_hook(lambda mod, inp: sink(inp[0])))
        yield
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)
        for h in hooks:
            h.remove()


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """NASWOT (Mellor et al., 2021): log|det K| of the Hamming-similarity kernel of the binary
    activation codes (activation input > 0) of a batch, on a copy of the untrained model in train mode."""
    m = copy.deepcopy(model).train()
    n = len(x)
    K = torch.zeros(n, n, dtype=torch.float64)

    def sink(a: torch.Tensor) -> None:
        c = (a.detach().reshape(n, -1) > 0).double()
        K.add_(c @ c.t()).add_((1.0 - c) @ (1.0 - c).t())

    with torch.no_grad(), _capture_activation_inputs(m, sink):
        m(x)
    if not bool(K.any()):
        raise EvaluationError("NASWOT needs activations (relu, gelu, ...): the model has none")
    return float(torch.linalg.slogdet(K)[1])


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """SynFlow (Tanaka et al., 2020) as a zero-cost proxy: log Σ|θ·∂R/∂θ| with R the sum of the output
    for an all-ones input, every parameter replaced by its absolute value, in float64 and eval mode."""
    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m.zero_grad(set_to_none=True)
    out = m(torch.ones((1, *input_shape[1:]), dtype=torch.float64))
    out = out if isinstance(out, torch.Tensor) else torch.cat([o.flatten() for o in out])
    out.sum().backward()
    with torch.no_grad():
        score = sum(float((p * p.grad).abs().sum()) for p in m.parameters() if p.grad is not None)
    return math.log(score) if score > 0 else float("-inf")


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str) -> float:
    """grad-norm (Abdelfattah et al., 2021): Σ over parameter tensors of ‖∂L/∂θ‖₂ for one batch."""
    m = copy.deepcopy(model).train()
    m.zero_grad(set_to_none=True)
    task_loss(task)(m(x), y).backward()
    return sum(float(p.grad.norm()) for p in m.parameters() if p.grad is not None)


def zero_cost(model: nn.Module, data: ProxyData | None, cfg: ZeroCostConfig, input_shape: tuple[int, ...],
              task: str | None) -> dict[str, float]:
    """The configured zero-cost scores of an untrained ``model`` (on copies; ``model`` is unchanged)."""
    out: dict[str, float] = {}
    x = y = None
    if data is not None:
        n = min(cfg.batch_size, len(data.x_train))
        x, y = data.x_train[:n], data.y_train[:n]
    elif any(mt in cfg.metrics for mt in ("naswot", "grad_norm")):
        x = torch.randn((cfg.batch_size, *input_shape[1:]), generator=torch.Generator().manual_seed(0))
    for metric in cfg.metrics:
        if metric == "naswot":
            assert x is not None
            out["naswot"] = naswot(model, x)
        elif metric == "synflow":
            out["synflow"] = synflow(model, input_shape)
        elif metric == "grad_norm":
            assert x is not None and y is not None and task is not None
            out["grad_norm"] = grad_norm(model, x, y, task)
    return out


# -------------------------------------------------------------------------------------------------------
# latency
# -------------------------------------------------------------------------------------------------------
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], cfg: LatencyConfig | None = None) -> float:
    """Median latency in milliseconds of ``cfg.runs`` timed forward passes (after ``cfg.warmup``), batch
    ``cfg.batch``, ``cfg.threads`` threads, eval mode under ``torch.inference_mode``."""
    cfg = cfg or LatencyConfig()
    model = model.eval()
    x = torch.randn((cfg.batch, *input_shape[1:]), generator=torch.Generator().manual_seed(0))
    prev = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with torch.inference_mode():
            for _ in range(cfg.warmup):
                model(x)
            times = []
            for _ in range(cfg.runs):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(prev)
    return 1000.0 * statistics.median(times)


# -------------------------------------------------------------------------------------------------------
# the evaluator
# -------------------------------------------------------------------------------------------------------
class ProxyEvaluator:
    """The default trial evaluator: optional zero-cost screening, then optional proxy training.

    ``threads`` (default: the config's ``threads``, else 1) is applied with ``torch.set_num_threads``
    for the evaluation. One thread is the default because proxy models are small: intra-op threads
    gain little on them and lose a lot on a busy machine; run one worker process per core instead.
    """

    def __init__(self, config: EvaluatorConfig, threads: int | None = None) -> None:
        self.config = config
        self.threads = threads or config.threads or 1

    @property
    def needs_model(self) -> bool:
        """Whether a torch model must be built at all (training or zero-cost scoring)."""
        return self.config.train is not None or self.config.zero_cost is not None

    def data(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> ProxyData | None:
        """The proxy data at the model's input size (None when the evaluator has no task)."""
        task = self.config.task
        if task is None:
            return None
        out_hw = tuple(output_shape[-2:]) if task == "depth" else None
        return load_data(self.config.data, task, tuple(input_shape[1:]), out_hw)  # type: ignore[arg-type]

    def evaluate(self, model: nn.Module, ctx: TrialContext) -> dict[str, float]:
        """Metrics of ``model`` (untrained, freshly initialized) for the trial ``ctx``."""
        cfg = self.config
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            data = self.data(ctx.input_shape, ctx.output_shape)
            if data is not None:
                check_output(data.task, ctx.output_shape, data)
            metrics: dict[str, float] = {}
            if cfg.zero_cost is not None:
                metrics.update(zero_cost(model, data, cfg.zero_cost, ctx.input_shape, cfg.task))
                ctx.log("zero-cost: " + ", ".join(f"{k} {v:.5g}" for k, v in metrics.items()))
                ctx.screen(metrics)
            if cfg.train is not None:
                assert data is not None
                metrics.update(train_proxy(model, data, cfg.train, report=ctx.report, log=ctx.log))
            return metrics
        finally:
            torch.set_num_threads(prev)
