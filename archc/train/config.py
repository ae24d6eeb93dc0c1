"""Training options: one frozen value passed explicitly to the trainer (no global configuration)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from archc.train.errors import TrainError

__all__ = ["TrainOptions", "OPTIMIZERS", "SCHEDULES", "TASKS"]

OPTIMIZERS = ("sgd", "adam", "adamw")
#: per-step learning-rate schedules: cosine to 0 over the run, ÷10 at 50% and 75% of the steps, constant
SCHEDULES = ("cosine", "step", "constant")
TASKS = ("classification", "depth")


@dataclass(frozen=True)
class TrainOptions:
    """How to train.

    The fields a search space's ``train`` section has (:class:`archc.search.space.TrainConfig`) have the
    same names here, so :meth:`from_config` carries a proxy's settings over unchanged.

    ``batch_size`` is per process: under ``torchrun`` with W processes a step sees W × batch_size
    samples. ``max_batches`` caps the steps of an epoch. ``clip_grad`` clips the global gradient norm.
    ``device`` is ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``. On CUDA, ``amp``
    runs forward passes under bf16 autocast and ``channels_last`` stores 4-D activations and weights
    NHWC; both are ignored on the CPU. ``ema`` (a decay such as 0.999) validates and saves an
    exponential moving average of the weights instead of the raw ones (:mod:`archc.train.ema`). ``workers`` is the number of DataLoader worker processes for
    data sets read from disk (in-memory tensors never go through a DataLoader).

    >>> TrainOptions(epochs=3, optimizer="sgd", lr=0.1).schedule
    'cosine'
    """

    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    seed: int = 0
    max_batches: int | None = None
    clip_grad: float | None = None
    ema: float | None = None
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    workers: int = 2
    #: validation batch size (validation needs no gradients: larger batches are cheaper)
    val_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise TrainError(f"unknown optimizer '{self.optimizer}'", hint=f"use one of: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise TrainError(f"unknown schedule '{self.schedule}'", hint=f"use one of: {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "val_batch_size"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise TrainError(f"workers must be 0 or more, got {self.workers}")
        if self.lr <= 0:
            raise TrainError(f"the learning rate must be positive, got {self.lr}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise TrainError(f"clip-grad must be positive, got {self.clip_grad}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise TrainError(f"the EMA decay must lie between 0 and 1, got {self.ema}",
                             hint="use e.g. 0.999 (an average over about the last 1,000 steps)")

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> TrainOptions:
        """Options from any object with (some of) the same attributes, e.g. a search space's ``TrainConfig``."""
        names = {f.name for f in fields(cls)}
        values = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)
