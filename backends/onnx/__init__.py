"""The ONNX target: an ``.onnx`` file that passes ``onnx.checker`` (opset :data:`OPSET`).

Exported with PyTorch's TorchScript-based exporter (``dynamo=False``: it needs only the ``onnx``
package), batch axis dynamic; when that exporter lacks an op (a conv with input-dependent weights,
an adaptive pool of a non-divisible size, ...) and ``onnxscript`` is installed, with the
``torch.export``-based exporter instead. When ``onnxruntime`` is
installed, :func:`run_onnx` runs the model so the compile path can compare it with the eager module.
Install the optional extra: ``pip install 'archc[onnx]'``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["OPSET", "build_onnx", "run_onnx", "have_onnx", "have_onnxruntime"]

#: ONNX opset written
OPSET = 18


def have_onnx() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def have_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def build_onnx(make_model: Callable[[], torch.nn.Module], example_inputs: Sequence[torch.Tensor], input_names: Sequence[str],
               dynamic_batch: bool = True, opset: int = OPSET) -> tuple[bytes, list[str]]:
    """Export a fresh ``make_model()`` to ONNX and run ``onnx.checker``; returns the bytes and notes."""
    import onnx

    from archc.passes.fusion import set_onednn

    model = set_onednn(make_model().eval(), False)
    names = list(input_names)
    n_out = _count_outputs(model, example_inputs)
    out_names = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    notes: list[str] = []
    dyn = {n: {0: "batch"} for n in names + out_names} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, tuple(example_inputs), buf, dynamo=False, opset_version=opset, input_names=names,
                              output_names=out_names, dynamic_axes=dyn, do_constant_folding=True)
            data = buf.getvalue()
        except Exception as exc:  # noqa: BLE001 - an op the TorchScript-based exporter lacks: try torch.export's
            if not have_onnxscript():
                raise
            notes.append(f"exported with the torch.export-based exporter (the TorchScript-based one: {_first_line(exc)[:120]})")
            data = _export_dynamo(model, example_inputs, names, out_names, dynamic_batch, opset)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    return data, notes


def have_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _export_dynamo(model: torch.nn.Module, xs: Sequence[torch.Tensor], names: list[str], out_names: list[str],
                   dynamic_batch: bool, opset: int) -> bytes:
    """ONNX through ``torch.export`` (needs onnxscript); batch dynamic when asked (traced with a batch of 2)."""
    import contextlib

    args = tuple(torch.cat([x, x])[: max(2, x.shape[0])] for x in xs) if dynamic_batch else tuple(xs)
    shapes = tuple({0: torch.export.Dim("batch", min=1, max=4096)} for _ in xs) if dynamic_batch else None
    with contextlib.redirect_stdout(io.StringIO()):
        prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset, input_names=names, output_names=out_names,
                                 dynamic_shapes=shapes, verbose=False)
    return prog.model_proto.SerializeToString()


def _count_outputs(model: torch.nn.Module, xs: Sequence[torch.Tensor]) -> int:
    with torch.no_grad():
        y = model(*xs)
    return len(y) if isinstance(y, (tuple, list)) else 1


def run_onnx(data: bytes, inputs: Sequence[torch.Tensor], threads: int | None = None) -> list[np.ndarray]:
    """Run the model with onnxruntime on CPU; returns the outputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: x.detach().cpu().numpy() for i, x in zip(sess.get_inputs(), inputs)}
    return sess.run(None, feeds)


def session(data: bytes, threads: int | None = None):  # noqa: ANN201 - an onnxruntime.InferenceSession
    """An onnxruntime CPU session for ``data`` (for benchmarks)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
