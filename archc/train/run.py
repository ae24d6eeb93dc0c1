"""``archc train``: compile a spec, load its data, train it, write the run folder.

The run folder holds ``model.py`` (the generated module), ``last.pth`` (the checkpoint, every epoch),
``metrics.csv`` (one row per epoch) and, when training ends, ``model.pth`` (the state_dict, loadable
into ``model.py``'s ``create_model()``). Under ``torchrun`` every process runs this; rank 0 writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from archc.compiler import CompileOptions, compile_spec, write_atomic
from archc.train.config import TASKS, TrainOptions
from archc.train.data import TensorData
from archc.train.device import resolve_device
from archc.train.distributed import DistContext
from archc.train.errors import NonFiniteError, TrainError
from archc.train.loop import CHECKPOINT, METRICS, WEIGHTS, Trainer
from archc.train.losses import check_output
from archc.train.sources import load_source

__all__ = ["TrainRun", "train_spec", "MODULE"]

MODULE = "model.py"


@dataclass
class TrainRun:
    """The outcome of :func:`train_spec`."""

    metrics: dict[str, float]
    epochs: int
    out: Path
    task: str
    data: str
    device: str
    files: dict[str, Path] = field(default_factory=dict)
    model: nn.Module | None = None
    #: this process's rank under torchrun (0 when not distributed): only rank 0 wrote the files
    rank: int = 0


def _task_of(out_shape: tuple[int, ...]) -> str:
    return "classification" if len(out_shape) == 2 else "depth"


def _worker_message(exc: BaseException) -> str:
    """A DataLoader re-raises a worker's error with the worker's traceback as its message: keep its last line."""
    text = str(exc)
    if "DataLoader worker" not in text:
        return text.splitlines()[0] if text else type(exc).__name__
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last


def train_spec(spec: str | Path, *, data: str = "digits", out: str | Path, options: TrainOptions,
               variant: str | None = None, params: Sequence[str] | Mapping[str, Any] = (), task: str | None = None,
               resume: bool = False, depth: str | Path | None = None, val_fraction: float = 0.2,
               log: Callable[[str], None] | None = None) -> TrainRun:
    """Train the model of ``spec`` on ``data`` (``digits``, a ``.npz`` file or an image folder) into ``out``.

    ``task`` defaults to the spec's output: logits [B, K] → ``classification``, maps → ``depth``.
    Raises :class:`TrainError` (or another :class:`~archc.diagnostics.ArchcError`) for anything the
    user can fix.

    >>> run = train_spec("specs/resnet.yaml", variant="r18", params=["num_classes=10", "img=32"],
    ...                  data="digits", out="runs/r18", options=TrainOptions(epochs=5))     # doctest: +SKIP
    """
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise TrainError(f"--val-fraction must lie between 0 and 1, got {val_fraction}", hint="e.g. --val-fraction 0.2")
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out '{out}' is a file, not a folder", hint="name a folder for the run's outputs")
    device = resolve_device(options.device)
    dist = DistContext.from_env(device)
    device = dist.device_for(device)
    res = compile_spec(spec, CompileOptions(variant=variant, params=params))
    g = res.graph
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise TrainError(f"'{spec}' has {len(g.inputs)} inputs and {len(g.outputs)} outputs; training needs one of each")
    in_shape = next(iter(g.inputs.values())).concrete(1)
    out_shape = g.output_types[0].concrete(1)
    if len(in_shape) != 4:
        raise TrainError(f"'{spec}' takes input {list(in_shape)}; training feeds images [B, C, H, W]")
    task = task or _task_of(out_shape)
    if task not in TASKS:
        raise TrainError(f"unknown task '{task}'", hint=f"use one of: {', '.join(TASKS)}")
    out_hw = tuple(out_shape[-2:]) if task == "depth" else None
    dataset = load_source(data, task, tuple(in_shape[1:]), out_hw, val_fraction=val_fraction, seed=options.seed,  # type: ignore[arg-type]
                          depth=depth)
    check_output(task, out_shape, dataset.classes, out_hw)
    source_hash = hashlib.sha256(res.source.encode()).hexdigest()[:16]
    if resume:
        _check_resume(out / CHECKPOINT, source_hash)
    elif (out / CHECKPOINT).exists():  # checked before model.py is written: another run's files stay as they are
        raise TrainError(f"'{out}' already holds a training run ({CHECKPOINT})",
                         hint="pass --resume to continue it, or choose another --out folder")
    from archc.passes.equivalence import module_from_source

    torch.manual_seed(options.seed)
    model = module_from_source(res.source).create_model()
    if dist.is_main:
        write_atomic(out / MODULE, res.source)
    if log is not None and dist.is_main:
        n_tr, n_va = dataset.sizes
        what = "in memory" if isinstance(dataset, TensorData) else f"{options.workers} DataLoader worker(s)"
        log(f"{g.meta.get('title', g.name)}: {sum(p.numel() for p in model.parameters()):,} params, input {list(in_shape)}, "
            f"task {task}; data {getattr(dataset, 'description', data)} ({n_tr} train, {n_va} val, {what}); "
            f"device {device}" + (f", {dist.world} processes" if dist.active else ""))
    trainer = Trainer(model, options, task, dist=dist, device=device)
    meta = {"spec": str(spec), "variant": variant or "", "params": [str(p) for p in params] if not isinstance(params, Mapping)
            else [f"{k}={v}" for k, v in params.items()], "data": str(data), "task": task, "source_sha256": source_hash}
    try:
        metrics = trainer.fit(dataset, out=out, resume=resume, log=log, meta=meta)
    except NonFiniteError as exc:
        raise TrainError(str(exc), hint="lower --lr, or clip gradients with --clip-grad") from None
    except TrainError as exc:  # a worker's error (an unreadable image) arrives with the worker's traceback as message
        if "DataLoader worker" in exc.message:
            raise TrainError(_worker_message(exc), hint="remove or replace the file") from None
        raise
    files = {"module": out / MODULE, "checkpoint": out / CHECKPOINT, "metrics": out / METRICS, "weights": out / WEIGHTS}
    return TrainRun(metrics, trainer.epoch, out, task, str(data), str(device), files, trainer.validated_model, dist.rank)


def _check_resume(path: Path, source_hash: str) -> None:
    from archc.train.checkpoint import load_checkpoint

    if not path.exists():
        raise TrainError(f"nothing to resume: '{path}' does not exist", hint="run without --resume to start training")
    meta = load_checkpoint(path).get("meta") or {}
    if meta.get("source_sha256") not in (None, source_hash):
        raise TrainError(f"'{path}' was written for another model (spec '{meta.get('spec')}', variant "
                         f"'{meta.get('variant') or 'default'}', params {meta.get('params') or '[]'})",
                         hint="resume with the same spec, variant and params, or train into another --out folder")


