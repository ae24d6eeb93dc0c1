"""Device selection, the CUDA execution settings (bf16 autocast, channels-last) and the CPU thread count."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import torch

from archc.train.errors import TrainError

__all__ = ["resolve_device", "autocast", "to_channels_last", "torch_threads"]

_HINT = "use --device cpu (or auto: CUDA when present, else the CPU)"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device named by ``spec``: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises :class:`TrainError` for an unknown name or for CUDA asked for on a machine without it.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(spec, torch.device):
        return spec
    name = (spec or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise TrainError(f"unknown device '{spec}' (rule: auto, cpu, cuda or cuda:N)", hint=_HINT)
    if not torch.cuda.is_available():
        raise TrainError(f"device '{spec}' was asked for but CUDA is not available on this machine", hint=_HINT)
    if m.group(1) is None:  # the current device, named by its index (so devices compare equal)
        return torch.device("cuda", torch.cuda.current_device())
    index = int(m.group(1))
    if index >= torch.cuda.device_count():
        raise TrainError(f"device '{spec}' does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)",
                         hint=f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def autocast(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on CUDA when ``enabled``; a no-op context otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in NHWC memory order when it is a 4-D tensor (other tensors unchanged)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block and restored after, also on an exception.

    Trainings, latency timings and searches pin their own count: results of reductions are only
    bit-identical at one count, and a worker per core must not start a thread pool of its own per core.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)
