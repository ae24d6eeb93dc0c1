"""The TorchScript target: scripted, frozen and optimized for inference, saved as one ``.pt`` file.

``torch.jit.optimize_for_inference`` bakes oneDNN (MKLDNN) weight layouts into a frozen graph as
``prim::ConstantMKLDNNTensor`` constants, which TorchScript cannot serialize ("serialization is not
implemented following invoking optimize_for_inference"). So before scripting, every plain
``nn.Conv2d`` is swapped for the equivalent ``FusedConv2d`` of :mod:`archc.passes.fusion` (same
parameters, no post-ops): it reorders its weight into oneDNN's layout once, on the first call, in
an attribute that is empty when the module is saved — the oneDNN layout without the unserializable
constants. The result of ``freeze`` + ``optimize_for_inference`` is then saved and loaded back
in-process to prove the round trip; should the round trip fail (another op that
``optimize_for_inference`` turns into MKLDNN constants), the frozen module without
``optimize_for_inference`` is saved instead and a note says so.

The artifact needs only ``torch.jit.load``: the class definitions travel inside the archive.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from archc.diagnostics import first_line

__all__ = ["build_torchscript", "load_torchscript"]


def _save(module: torch.jit.ScriptModule) -> bytes:
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    """Load a saved TorchScript module from bytes (what ``torch.jit.load(PATH)`` does with the file)."""
    return torch.jit.load(io.BytesIO(data), map_location="cpu")


def build_torchscript(make_model: Callable[[], torch.nn.Module], example_inputs: Sequence[torch.Tensor],
                      pack: bool = True, optimize: bool = True) -> tuple[bytes, list[str], Any]:
    """Script, freeze and optimize a fresh ``make_model()`` (eval mode).

    ``pack`` swaps plain convs for oneDNN-prepacked ones first (see the module docstring). The
    module is never run before it is saved (its prepacked-weight caches are empty); the saved bytes
    are loaded back and run on ``example_inputs``. Returns the bytes, notes, and the outputs of the
    loaded-back module.
    """
    notes: list[str] = []
    steps = [("freeze + optimize_for_inference", True)] if optimize else []
    steps.append(("freeze", False))
    last: BaseException | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, ofi in steps:
            try:
                mod = torch.jit.freeze(torch.jit.script(_fresh(make_model, pack)))
                if ofi:
                    mod = torch.jit.optimize_for_inference(mod)
                data = _save(mod)
                with torch.no_grad():
                    outputs = load_torchscript(data)(*example_inputs)
            except Exception as exc:  # noqa: BLE001 - fall back to the next step, and say why
                last = exc
                notes.append(f"{label}: the module does not survive save/load ({first_line(exc)})")
                continue
            if not ofi and optimize:
                notes.append("saved the frozen module without optimize_for_inference")
            return data, notes, outputs
    raise RuntimeError(f"no TorchScript form of the module survives save/load: {first_line(last or RuntimeError())}")


def _fresh(make_model: Callable[[], torch.nn.Module], pack: bool) -> torch.nn.Module:
    from archc.passes.fusion import pack_convs, reset_packed

    model = make_model().eval()
    if pack:
        pack_convs(model)
    return reset_packed(model)
