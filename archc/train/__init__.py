"""Training: one trainer for proxies, supernets, retraining and ``archc train``.

>>> from archc.train import Trainer, TrainOptions, load_source        # doctest: +SKIP
>>> data = load_source("digits", "classification", (1, 8, 8))         # doctest: +SKIP
>>> Trainer(model, TrainOptions(epochs=5, lr=1e-2)).fit(data, out="runs/digits")  # doctest: +SKIP

Pieces: :class:`TrainOptions` (config), :class:`Trainer` (loop), :class:`TensorData` /
:class:`DatasetData` (data; in-memory tensors skip the DataLoader), losses and metrics of the
``classification`` and ``depth`` tasks, checkpoints, device selection, DDP under ``torchrun``.
See ``docs/train.md``. Heavy modules are imported when first used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TrainOptions", "Trainer", "TrainError", "NonFiniteError",
    "TensorData", "DatasetData", "TensorBatches", "LoaderBatches", "make_batches",
    "task_loss", "depth_loss", "contrast_depth", "as_maps", "check_output",
    "validate", "validate_batches", "auc",
    "make_optimizer", "make_schedule", "steps_per_epoch",
    "resolve_device", "autocast", "DistContext",
    "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state",
    "load_source", "scan_image_folder", "ImageDataset", "train_spec", "TrainRun",
]

_WHERE = {
    "TrainOptions": "config", "Trainer": "loop", "TrainError": "errors", "NonFiniteError": "errors",
    "TensorData": "data", "DatasetData": "data", "TensorBatches": "data", "LoaderBatches": "data", "make_batches": "data",
    "task_loss": "losses", "depth_loss": "losses", "contrast_depth": "losses", "as_maps": "losses",
    "check_output": "losses", "validate": "metrics", "validate_batches": "metrics", "auc": "metrics",
    "make_optimizer": "optim", "make_schedule": "optim", "steps_per_epoch": "optim",
    "resolve_device": "device", "autocast": "device", "DistContext": "distributed",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "rng_state": "checkpoint",
    "set_rng_state": "checkpoint", "load_source": "sources", "scan_image_folder": "images",
    "ImageDataset": "images", "train_spec": "run", "TrainRun": "run",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"archc.train.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'archc.train' has no attribute {name!r}")
