"""The trainer: one loop for proxies, supernets, retraining and ``archc train``.

Per step: forward (bf16 autocast on CUDA), task loss in float32, backward, optional gradient-norm
clipping, optimizer step, per-step LR schedule, optional weight EMA (validated and saved instead of the
raw weights). Per epoch: the mean training loss (a NaN or infinite
one raises :class:`NonFiniteError`), validation metrics, then — with an output folder — the checkpoint
``last.pth`` and ``metrics.csv`` (rank 0 only, atomically), a log line, and the ``report`` callback
(Optuna pruning raises from there). In-memory data never passes through a DataLoader (see
:mod:`archc.train.data`); under ``torchrun`` the model runs in DistributedDataParallel.

>>> trainer = Trainer(model, TrainOptions(epochs=3, lr=1e-2), task="classification")  # doctest: +SKIP
>>> trainer.fit(data, out=Path("runs/x"))                                            # doctest: +SKIP
{'train_loss': 0.41, 'val_loss': 0.39, 'val_acc': 0.91}
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from archc.compiler import write_atomic
from archc.diagnostics import CheckpointError
from archc.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, save_state_dict, set_rng_state
from archc.train.config import TrainOptions
from archc.train.data import DatasetData, LoaderBatches, TensorBatches, TensorData, make_batches
from archc.train.device import autocast, resolve_device, to_channels_last
from archc.train.distributed import DistContext
from archc.train.ema import WeightEma
from archc.train.errors import NonFiniteError, TrainError
from archc.train.losses import task_loss
from archc.train.metrics import validate, validate_batches
from archc.train.optim import make_optimizer, make_schedule

__all__ = ["Trainer", "CHECKPOINT", "METRICS", "WEIGHTS"]

CHECKPOINT = "last.pth"
METRICS = "metrics.csv"
WEIGHTS = "model.pth"

Report = Callable[[int, dict[str, float]], None]
Log = Callable[[str], None]
StepHook = Callable[[int, torch.Tensor, torch.Tensor], None]


class Trainer:
    """Trains one model.

    ``task`` picks the loss (``classification``: cross-entropy; ``depth``: MSE + contrastive depth loss)
    unless ``loss`` is given. ``parameters`` limits what the optimizer updates (default: every trainable
    parameter of ``model``; a supernet passes its weights and keeps α/β for its own optimizer).
    ``dist`` defaults to the initialized process group, if any. ``before_step(step, x, y)`` runs before
    each optimizer step's forward pass (a bi-level search updates its architecture parameters there).
    ``evaluate(model, data)`` replaces :func:`archc.train.metrics.validate` for in-memory data.

    The model moves to the device; :attr:`model` is the plain module, :attr:`net` the one trained (the
    DDP wrapper in a distributed run).
    """

    def __init__(self, model: nn.Module, options: TrainOptions | None = None, task: str = "classification", *,
                 loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 parameters: Iterable[nn.Parameter] | None = None, dist: DistContext | None = None,
                 device: torch.device | str | None = None, before_step: StepHook | None = None,
                 evaluate: Callable[[nn.Module, TensorData], dict[str, float]] | None = None) -> None:
        options = options if options is not None else TrainOptions()
        self.options = options
        self.validate_fn = evaluate
        self.task = task
        self.dist = dist if dist is not None else DistContext.current()
        self.device = self.dist.device_for(resolve_device(device if device is not None else options.device))
        cuda = self.device.type == "cuda"
        self.amp = options.amp and cuda
        self.channels_last = options.channels_last and cuda
        self.loss_fn = loss or task_loss(task)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.net = self.dist.wrap(model, self.device)
        # the SyncBatchNorm conversion may replace modules: train and save what DDP holds
        self.model: nn.Module = getattr(self.net, "module", self.net) if self.dist.active else model
        if parameters is None:
            parameters = self.model.parameters()
        self.optimizer = make_optimizer(parameters, options)
        self.ema = WeightEma(self.model, options.ema) if options.ema is not None else None
        self.scheduler: Any = None
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.before_step = before_step

    # ---------------------------------------------------------------------------------------------------
    def fit(self, data: TensorData | DatasetData, *, report: Report | None = None, log: Log | None = None,
            out: str | Path | None = None, resume: bool = False, meta: dict[str, Any] | None = None) -> dict[str, float]:
        """Train for ``options.epochs`` epochs (from the checkpoint in ``out`` with ``resume``); returns the
        last epoch's metrics (``train_loss`` and the validation metrics; the history and the CSV also
        hold each epoch's final ``lr`` and its training ``seconds``).

        ``report(epoch, metrics)`` is called after every epoch on every process (it may raise, e.g.
        ``optuna.TrialPruned``); ``log`` gets one progress line per epoch on rank 0. With ``out`` the
        checkpoint, the metrics CSV and finally the weights (``model.pth``) are written there; ``meta``
        (plain values) is stored in the checkpoint.
        """
        opts = self.options
        outdir = Path(out) if out is not None else None
        if isinstance(data, TensorData):
            data = data.to(self.device)
        batches = make_batches(data, opts, self.dist.rank, self.dist.world, pin_memory=self.device.type == "cuda")
        self.scheduler = make_schedule(self.optimizer, opts, len(batches))
        if resume:
            if outdir is None:
                raise TrainError("resuming needs the output folder of the run to continue")
            self._restore(outdir / CHECKPOINT, batches)
        elif outdir is not None and (outdir / CHECKPOINT).exists():
            raise TrainError(f"'{outdir}' already holds a training run ({CHECKPOINT})",
                             hint="pass --resume to continue it, or choose another --out folder")
        metrics = self.history[-1] if self.history else {}
        for epoch in range(self.epoch, opts.epochs):
            t0 = time.perf_counter()
            train_loss, seen = self._train_epoch(batches, epoch)
            if not math.isfinite(train_loss):
                raise NonFiniteError(f"the training loss is {train_loss} in epoch {epoch + 1}")
            seconds = time.perf_counter() - t0
            self.dist.broadcast_buffers(self.model)
            metrics = {"train_loss": train_loss, **self.evaluate(data)}
            lr = self.optimizer.param_groups[0]["lr"] if self.optimizer.param_groups else 0.0
            self.epoch = epoch + 1
            self.history.append({"epoch": float(self.epoch), **metrics, "lr": float(lr), "seconds": seconds})
            if outdir is not None and self.dist.is_main:
                self._save(outdir, batches, meta)
            if log is not None and self.dist.is_main:
                shown = ", ".join(f"{k} {v:.5g}" for k, v in metrics.items())
                log(f"epoch {epoch + 1}/{opts.epochs}: {shown} ({seen / max(seconds, 1e-9):.0f} samples/s)")
            if report is not None:
                report(epoch, metrics)
        if outdir is not None and self.dist.is_main:
            save_state_dict(self.validated_model, outdir / WEIGHTS)
        self.dist.barrier()
        return {k: v for k, v in metrics.items() if k not in ("epoch", "lr", "seconds")}

    def _train_epoch(self, batches: TensorBatches | LoaderBatches, epoch: int) -> tuple[float, int]:
        """One epoch of optimizer steps; the sample-weighted mean loss over all processes and the samples seen."""
        net, opt, sched, loss_fn = self.net, self.optimizer, self.scheduler, self.loss_fn
        clip, hook, ema = self.options.clip_grad, self.before_step, self.ema
        fast = not (self.amp or self.channels_last or isinstance(batches, LoaderBatches))
        device = self.device
        net.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        seen = 0
        for step, (xb, yb) in enumerate(batches.epoch(epoch)):
            if not fast:  # disk data or CUDA settings; the in-memory CPU path skips all of this
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                if self.channels_last:
                    xb = to_channels_last(xb)
            if hook is not None:
                hook(step, xb, yb)
            if self.amp:
                with autocast(device, True):
                    out = net(xb)
                loss = loss_fn(out.float(), yb)
            else:
                loss = loss_fn(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
            opt.step()
            if sched is not None:
                sched.step()
            if ema is not None:
                ema.update()
            total += loss.detach().double() * len(yb)
            seen += len(yb)
        if self.dist.active:
            both = self.dist.sum(torch.stack([total, torch.tensor(float(seen), dtype=torch.float64, device=device)]))
            return float(both[0]) / max(float(both[1]), 1.0), int(both[1])
        return float(total) / max(seen, 1), seen

    @property
    def validated_model(self) -> nn.Module:
        """What is validated and saved: the weights' moving average with ``ema``, else the model itself."""
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, data: TensorData | DatasetData) -> dict[str, float]:
        """Validation metrics of :attr:`validated_model` on ``data``'s validation split (every process
        validates all of it)."""
        opts = self.options
        model = self.validated_model
        if isinstance(data, TensorData):
            if self.validate_fn is not None:
                return self.validate_fn(model, data.to(self.device))
            return validate(model, data.to(self.device), opts.val_batch_size, self.loss_fn, amp=self.amp)
        from torch.utils.data import DataLoader

        def loader(ds: Any) -> DataLoader | None:
            return None if ds is None else DataLoader(ds, batch_size=opts.val_batch_size, shuffle=False,
                                                      num_workers=opts.workers, pin_memory=self.device.type == "cuda")

        return validate_batches(model, loader(data.val), data.task, self.device, data.live_val,  # type: ignore[arg-type]
                                loader(data.calibration), data.calibration_live, self.loss_fn, amp=self.amp,
                                channels_last=self.channels_last)

    # ---------------------------------------------------------------------------------------------------
    def state_dict(self, batches: TensorBatches | LoaderBatches, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint contents (see :mod:`archc.train.checkpoint`)."""
        return {"model": {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "epoch": self.epoch, "history": self.history, "batches": batches.state_dict(), "rng": rng_state(),
                "options": {k: v for k, v in asdict(self.options).items()}, "meta": dict(meta or {})}

    def _save(self, outdir: Path, batches: TensorBatches | LoaderBatches, meta: dict[str, Any] | None) -> None:
        save_checkpoint(outdir / CHECKPOINT, self.state_dict(batches, meta))
        write_atomic(outdir / METRICS, metrics_csv(self.history))

    def _restore(self, path: Path, batches: TensorBatches | LoaderBatches) -> None:
        if not path.exists():
            raise TrainError(f"nothing to resume: '{path}' does not exist", hint="run without --resume to start training")
        ck = load_checkpoint(path)
        self._check_options(path, ck.get("options") or {})
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"'{path}' does not fit this model: {str(exc).splitlines()[0]}",
                                  hint="resume with the same spec, variant and params as the run that wrote it") from None
        try:
            self.optimizer.load_state_dict(ck["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"'{path}': the optimizer state does not fit: {exc}",
                                  hint="resume with the same --optimizer as the run that wrote it") from None
        if self.scheduler is not None and ck.get("scheduler") is not None:
            self.scheduler.load_state_dict(ck["scheduler"])
        if self.ema is not None and ck.get("ema") is not None:
            self.ema.load_state_dict(ck["ema"])
        batches.load_state_dict(ck.get("batches") or {})
        self.epoch = int(ck["epoch"])
        self.history = list(ck.get("history") or [])
        set_rng_state(ck["rng"])


    def _check_options(self, path: Path, saved: dict[str, Any]) -> None:
        """Refuse to resume with settings that would make the continued run differ from the interrupted one."""
        now = asdict(self.options)
        keys = ["batch_size", "optimizer", "schedule", "seed", "max_batches", "ema"]
        if self.options.schedule != "constant":  # the schedule spans all epochs: another count changes every LR
            keys.append("epochs")
        diff = [f"{k} {saved[k]} → {now[k]}" for k in keys if k in saved and saved[k] != now[k]]
        if diff:
            raise TrainError(f"'{path}' was written by a run with other settings ({'; '.join(diff)})",
                             hint="resume with the settings of the interrupted run (the epochs may grow only with "
                                  "--schedule constant), or train into another --out folder")


def metrics_csv(history: list[dict[str, float]]) -> str:
    """The metrics history as CSV text: one row per epoch, one column per metric (first-seen order)."""
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (int(v) if k == "epoch" else f"{v:.8g}") for k, v in row.items()})
    return buf.getvalue()
