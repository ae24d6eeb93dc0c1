"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint holds the model's state_dict, the optimizer's and the LR schedule's states, the number of
finished epochs, the metrics history, the batch sampler's state and every RNG state that training
draws from (torch CPU and CUDA, Python's ``random``, NumPy's global generator). It is written
atomically (temporary file + rename) and read back with ``torch.load(weights_only=True)``, so only
tensors and plain containers are stored.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archc.compiler import write_atomic
from archc.diagnostics import CheckpointError, first_line

__all__ = ["rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "save_state_dict", "FORMAT"]

#: bumped when the layout changes; a checkpoint of another format is refused with a clear message
FORMAT = 1


def rng_state() -> dict[str, Any]:
    """Every global RNG state training may draw from, as tensors and plain values."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [str(kind), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_state_dict(model: torch.nn.Module, path: Path) -> None:
    """``model``'s state_dict as contiguous CPU tensors (loadable into the same module anywhere), atomically."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    write_atomic(Path(path), _bytes(sd))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically (``format`` is added)."""
    write_atomic(Path(path), _bytes({"format": FORMAT, **state}))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, loaded on the CPU with ``weights_only=True``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: '{path}'") from None
    except Exception as exc:  # torch.load raises many types for a file that is not a checkpoint
        raise CheckpointError(f"cannot load checkpoint '{path}': {first_line(exc)}",
                              hint="resume from the last.pth a training run wrote") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "model" not in obj:
        raise CheckpointError(f"'{path}' is not a training checkpoint of this archc version",
                              hint="resume from the last.pth a training run wrote, or start a new run in another folder")
    return obj
