"""The export target: a ``torch.export`` program saved as one ``.pt2`` file (``torch.export.load`` reads it).

The batch dimension is exported as dynamic (``Dim("batch")``, traced with a batch of at least 2 so
that it is not specialized to 1). When the graph pins the batch (a reshape to a constant, ...), the
program is exported with the static example shape and a note says so. The oneDNN path of fused
convs is switched off first: an exported program is a graph of portable ATen ops.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence

import torch

from archc.diagnostics import first_line

__all__ = ["build_export", "load_export", "MAX_BATCH"]

#: upper bound of the dynamic batch dimension
MAX_BATCH = 4096


def load_export(data: bytes) -> torch.nn.Module:
    """The callable module of a saved program (what ``torch.export.load(PATH).module()`` gives)."""
    return torch.export.load(io.BytesIO(data)).module()


def build_export(make_model: Callable[[], torch.nn.Module], example_inputs: Sequence[torch.Tensor],
                 dynamic_batch: bool = True) -> tuple[bytes, list[str], bool]:
    """Export a fresh ``make_model()``; returns the saved bytes, notes and whether the batch is dynamic."""
    from archc.passes.fusion import set_onednn

    model = set_onednn(make_model().eval(), False)
    notes: list[str] = []
    ep = None
    dynamic = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamic_batch:
            batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
            traced = tuple(torch.cat([x] * max(1, -(-2 // x.shape[0])))[: max(2, x.shape[0])] for x in example_inputs)
            try:
                ep = torch.export.export(model, traced, dynamic_shapes=tuple({0: batch} for _ in traced))
                dynamic = True
            except Exception as exc:  # noqa: BLE001 - the graph pins the batch: export it static
                notes.append(f"batch exported static ({tuple(example_inputs[0].shape)}): the graph does not allow a "
                             f"dynamic batch ({first_line(exc)[:160]})")
        if ep is None:
            ep = torch.export.export(model, tuple(example_inputs))
        buf = io.BytesIO()
        torch.export.save(ep, buf)
    return buf.getvalue(), notes, dynamic
