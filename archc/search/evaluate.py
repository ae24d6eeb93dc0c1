"""Evaluators: proxy training, zero-cost proxies and latency of compiled artifacts.

* :func:`train_proxy` — proxy training with :class:`archc.train.Trainer` on in-memory tensors (a seeded
  permutation per epoch, no data-loader workers) for ``classification`` (cross-entropy) or ``depth``
  (pixel-wise depth-map supervision as CDCN trains: MSE plus the contrastive depth loss; the losses live
  in :mod:`archc.train.losses`). It validates and reports after every epoch, so Optuna pruners can stop
  a poor trial early.
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
from archc.train.device import torch_threads
from archc.train.errors import NonFiniteError, TrainError
from archc.train.losses import check_output as _check_output
from archc.train.losses import contrast_depth, depth_loss, task_loss
from archc.train.metrics import acer_threshold, validate
from archc.train.optim import make_optimizer, make_schedule, steps_per_epoch  # noqa: F401  (re-exported: benchmarks use them)

__all__ = ["TrialContext", "ProxyEvaluator", "EvaluationError", "train_proxy", "validate", "acer_threshold", "task_loss", "depth_loss",
           "contrast_depth", "zero_cost", "naswot", "synflow", "grad_norm", "measure_latency", "NonFiniteError"]


class EvaluationError(ArchcError):
    """A model cannot be evaluated on the configured task (e.g. its output does not fit the data)."""


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
# losses, training and validation metrics: archc.train (re-exported above: task_loss, depth_loss,
# contrast_depth, make_optimizer, make_schedule, steps_per_epoch, validate, acer_threshold)
# -------------------------------------------------------------------------------------------------------
def check_output(task: str, out_shape: tuple[int, ...], data: ProxyData) -> None:
    """Raise :class:`EvaluationError` when the model's output does not fit the task's targets."""
    try:
        _check_output(task, out_shape, data.classes, tuple(data.y_train.shape[-2:]) if task == "depth" else None)
    except TrainError as exc:
        hint = f"set the class count in the evaluator's proxy params, e.g. 'num_classes: {data.classes}'" \
            if task == "classification" else exc.hint
        raise EvaluationError(exc.message, hint=hint) from None


def train_proxy(model: nn.Module, data: ProxyData, cfg: TrainConfig,
                report: Callable[[int, dict[str, float]], None] | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train ``model`` on ``data`` for ``cfg.epochs``; returns the last epoch's metrics.

    After each epoch the validation metrics and ``train_loss`` go to ``report`` (which may raise
    ``optuna.TrialPruned``). A NaN or infinite loss raises :class:`NonFiniteError` at the end of the epoch.
    Proxies run on the CPU in the calling process unless ``cfg`` names a ``device``.
    """
    from archc.train.config import TrainOptions
    from archc.train.distributed import DistContext
    from archc.train.loop import Trainer

    opts = TrainOptions.from_config(cfg, device=getattr(cfg, "device", "cpu"))
    trainer = Trainer(model, opts, data.task, dist=DistContext(), evaluate=validate)
    return trainer.fit(data, report=report, log=log)


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
    with torch_threads(cfg.threads), torch.inference_mode():
        for _ in range(cfg.warmup):
            model(x)
        times = []
        for _ in range(cfg.runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
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

    def prepare(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> None:
        """Load (and cache) the proxy data now, under the thread count :meth:`evaluate` uses.

        Generated pools take minutes to draw at larger inputs; a caller that times trainings prepares
        first so that the one-time cost is not counted against the first training. The thread count
        matters: reductions over the pool (its mean and std) are only bit-identical at one count.
        """
        with torch_threads(self.threads):
            self.data(input_shape, output_shape)

    def evaluate(self, model: nn.Module, ctx: TrialContext) -> dict[str, float]:
        """Metrics of ``model`` (untrained, freshly initialized) for the trial ``ctx``."""
        cfg = self.config
        with torch_threads(self.threads):
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
