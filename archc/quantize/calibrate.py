"""Calibration: the inputs to run, and the activation range each tensor gets from them.

Inputs come from the data sources the trainer and the search read (``digits``, a ``.npz`` file, an
image folder — :func:`archc.train.sources.load_source`, training split, the model's input size and
standardization) or, only when asked, from seeded standard-normal noise.

Ranges are per tensor and asymmetric (uint8 with a zero point), computed from what a
:class:`RangeCollector` saw:

* ``minmax`` — the smallest and largest value seen.
* ``percentile`` — the :data:`PERCENTILE` and 1 − :data:`PERCENTILE` quantiles of the values
  (outliers beyond them are clipped).
* ``mse`` — the range ``a · [min, max]`` whose uint8 quantize-dequantize has the least mean squared
  error (rounding and clipping together) over the values, ``a`` searched on a grid from 1 down to
  :data:`MSE_MIN_FRACTION`. This is archc's own search, used by both backends.

Every range contains 0 so that zero (padding, ReLU) is exact. The values are kept as an exact
min/max plus a seeded random sample of each batch (at most :data:`SAMPLE_PER_BATCH` values, at most
:data:`SAMPLE_CAP` in all), so memory stays bounded on big activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from archc.diagnostics import ArchcError

__all__ = ["METHODS", "PERCENTILE", "CalibrationData", "RangeCollector", "calibration_data", "compute_range",
           "fake_quant_uint8"]

#: calibration methods (``--calib-method``)
METHODS = ("minmax", "percentile", "mse")
#: the upper quantile kept by ``percentile`` (the lower one is 1 − this)
PERCENTILE = 0.9999
#: ``mse`` searches ranges down to this fraction of the min/max range
MSE_MIN_FRACTION = 0.2
MSE_STEPS = 81
SAMPLE_PER_BATCH = 32768
SAMPLE_CAP = 1 << 18


class QuantizeError(ArchcError):
    """A quantization request that cannot be carried out as asked."""


@dataclass
class CalibrationData:
    """The calibration batches (float32 tensors of the model's input shape) and where they came from."""

    batches: list[torch.Tensor]
    description: str

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    @property
    def samples(self) -> int:
        return sum(len(b) for b in self.batches)


def calibration_data(source: str | None, random: bool, input_shape: Sequence[int], batches: int, batch_size: int = 16,
                     task: str = "classification", out_hw: tuple[int, int] | None = None, seed: int = 0) -> CalibrationData:
    """``batches`` batches of ``batch_size`` inputs of ``input_shape`` (C, H, W) from ``source`` or, with ``random``, noise.

    >>> calibration_data("digits", False, (1, 8, 8), batches=2).samples   # doctest: +SKIP
    32
    """
    if batches < 1:
        raise QuantizeError(f"--calib-batches must be at least 1, got {batches}", hint="e.g. --calib-batches 8")
    if source is not None and random:
        raise QuantizeError("--calib and --calib-random exclude each other", hint="drop one of them")
    shape = tuple(int(d) for d in input_shape)
    if source is None:
        if not random:
            raise QuantizeError("--quantize needs calibration inputs: pass --calib DATA (digits, a .npz file or an image "
                                "folder) or --calib-random", hint="e.g. --calib digits; random inputs give ranges that "
                                "need not fit real data, so they are used only when asked")
        gen = torch.Generator().manual_seed(seed)
        return CalibrationData([torch.randn((batch_size, *shape), generator=gen) for _ in range(batches)],
                               f"random normal inputs (seed {seed})")
    if len(shape) != 3:
        raise QuantizeError(f"--calib DATA feeds images [B, C, H, W]; the model takes input {list(shape)}",
                            hint="use --calib-random for this model")
    from archc.train.data import TensorData
    from archc.train.sources import load_source

    try:
        data = load_source(source, task, shape, out_hw, seed=seed)  # type: ignore[arg-type]
    except ArchcError as exc:
        raise QuantizeError(f"--calib: {exc.message}", hint=exc.hint) from None
    if isinstance(data, TensorData):
        pool = data.x_train
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
        images = pool.index_select(0, order[: batches * batch_size])
    else:  # an image folder: the first items of a seeded order, read and transformed by its Dataset
        n = len(data.train)  # type: ignore[arg-type]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: batches * batch_size]
        images = torch.stack([data.train[int(i)][0] for i in order])
    if len(images) == 0:
        raise QuantizeError(f"--calib '{source}' holds no training images", hint="give a data source with images")
    split = [images[i: i + batch_size].float().contiguous() for i in range(0, len(images), batch_size)]
    desc = getattr(data, "description", "") or source
    return CalibrationData(split, f"{desc}: {len(images)} training images in {len(split)} batch(es)")


class RangeCollector:
    """Exact min/max and a bounded seeded sample of every value one tensor took during calibration."""

    def __init__(self, seed: int = 0) -> None:
        self.lo = float("inf")
        self.hi = float("-inf")
        self._parts: list[np.ndarray] = []
        self._count = 0
        self._rng = np.random.default_rng(seed)

    def add(self, values: np.ndarray | torch.Tensor) -> None:
        """Record one batch of the tensor's values."""
        arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
        flat = arr.reshape(-1)
        if flat.size == 0:
            return
        self.lo = min(self.lo, float(flat.min()))
        self.hi = max(self.hi, float(flat.max()))
        if self._count >= SAMPLE_CAP:
            return
        if flat.size > SAMPLE_PER_BATCH:
            flat = flat[self._rng.choice(flat.size, SAMPLE_PER_BATCH, replace=False)]
        self._parts.append(flat.astype(np.float32, copy=True))
        self._count += flat.size

    @property
    def sample(self) -> np.ndarray:
        return np.concatenate(self._parts) if self._parts else np.zeros(1, np.float32)

    def range(self, method: str) -> tuple[float, float]:
        """The calibrated (rmin, rmax) under ``method``; always contains 0."""
        return compute_range(self.sample, self.lo, self.hi, method)


def fake_quant_uint8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Quantize-dequantize ``x`` with the uint8 asymmetric grid of range [lo, hi] (lo ≤ 0 ≤ hi)."""
    scale = max((hi - lo) / 255.0, 1e-12)
    zp = float(np.clip(np.round(-lo / scale), 0, 255))
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def compute_range(sample: np.ndarray, lo: float, hi: float, method: str) -> tuple[float, float]:
    """The range of a tensor whose exact extremes are ``lo``/``hi`` and whose values ``sample`` represents."""
    if method not in METHODS:
        raise QuantizeError(f"unknown calibration method '{method}'", hint=f"use one of: {', '.join(METHODS)}")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise QuantizeError("a calibration run produced a non-finite activation",
                            hint="check the weights and the calibration data (NaN or inf)")
    if method == "minmax" or hi - lo <= 0.0:
        return lo, hi
    if method == "percentile":
        qlo, qhi = np.quantile(sample.astype(np.float64), [1.0 - PERCENTILE, PERCENTILE])
        return min(float(qlo), 0.0), max(float(qhi), 0.0)
    x = sample.astype(np.float64)
    best, best_err = (lo, hi), float("inf")
    for a in np.linspace(1.0, MSE_MIN_FRACTION, MSE_STEPS):
        err = float(np.mean((fake_quant_uint8(x, lo * a, hi * a) - x) ** 2))
        if err < best_err:  # strict: ties keep the wider range
            best, best_err = (lo * a, hi * a), err
    return best
