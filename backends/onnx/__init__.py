"""The ONNX target: an ``.onnx`` file that passes ``onnx.checker`` (opset :data:`OPSET`).

Exported with PyTorch's TorchScript-based exporter (``dynamo=False``: it needs only the ``onnx``
package), batch axis dynamic; when that exporter lacks an op (a conv with input-dependent weights,
an adaptive pool of a non-divisible size, ...) and ``onnxscript`` is installed, with the
``torch.export``-based exporter instead; where neither allows a dynamic batch, with the example's
static shape (:func:`build_onnx` says which in its notes). When ``onnxruntime`` is installed,
:func:`run_onnx` runs the model so the compile path can compare it with the eager module.
Install the optional extra: ``pip install 'archc[onnx]'``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from archc.diagnostics import first_line

__all__ = ["OPSET", "build_onnx", "run_onnx", "have_onnx", "have_onnxruntime"]

#: ONNX opset written
OPSET = 18

#: archc ops whose lowering the TorchScript-based exporter cannot write (the torch.export-based one, which
#: needs onnxscript, writes them as ONNX DFT), by the ATen operator it names when it refuses
_NEEDS_ONNXSCRIPT = {"aten::fft_rfft2": "rfft2", "aten::fft_irfft2": "irfft2"}


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
    """Export a fresh ``make_model()`` to ONNX and run ``onnx.checker``; returns the bytes and notes.

    Tried in order until one works: the TorchScript-based exporter with a dynamic batch, the
    ``torch.export``-based one with a dynamic batch, then the latter with the example's static
    shape. A tracing exporter can bake the batch size into an op (a conv whose groups are
    ``batch × channels``), so with onnxruntime installed a dynamic-batch model is also run at batch
    2 and compared with the eager module; where it differs, the static export is used instead.
    """
    import onnx

    from archc.passes.fusion import set_onednn

    model = set_onednn(make_model().eval(), False)
    names = list(input_names)
    with torch.no_grad():
        y = model(*example_inputs)
    n_out = len(y) if isinstance(y, (tuple, list, dict)) else 1
    out_names = ["output"] if n_out == 1 else [f"output{i}" for i in range(n_out)]
    if isinstance(y, dict):  # named outputs keep their names in the ONNX graph
        out_names = list(y)
    notes: list[str] = []
    attempts: list[tuple[str, Callable[[], bytes]]] = []
    if dynamic_batch:
        attempts.append(("torchscript-based exporter, dynamic batch",
                         lambda: _export_torchscript(model, example_inputs, names, out_names, True, opset)))
        if have_onnxscript():
            attempts.append(("torch.export-based exporter, dynamic batch",
                             lambda: _export_dynamo(model, example_inputs, names, out_names, True, opset)))
    attempts.append(("torchscript-based exporter, static shape",
                     lambda: _export_torchscript(model, example_inputs, names, out_names, False, opset)))
    if have_onnxscript():
        attempts.append(("torch.export-based exporter, static shape",
                         lambda: _export_dynamo(model, example_inputs, names, out_names, False, opset)))
    failures: list[str] = []
    for label, attempt in attempts:
        try:
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                data = attempt()
            proto = onnx.load_from_string(data)
            onnx.checker.check_model(proto, full_check=True)
            if "dynamic" in label and have_onnxruntime():
                _check_batch2(model, data, example_inputs)
        except Exception as exc:  # noqa: BLE001 - the next exporter or a static shape may work; say why
            failures.append(f"{label}: {first_line(exc)[:160]}")
            continue
        notes.append(f"exported with the {label}")
        if dynamic_batch and "static" in label:
            notes.append(f"batch exported static {tuple(example_inputs[0].shape)}: no ONNX exporter allows a dynamic one here "
                         f"({failures[0][:160]})")
        return data, notes
    refused = [(aten, op) for aten, op in _NEEDS_ONNXSCRIPT.items() if any(f"'{aten}'" in f for f in failures)]
    if refused and not have_onnxscript():
        from archc.targets import TargetError

        aten, op = refused[0]
        raise TargetError(f"target 'onnx' cannot export op '{op}' without onnxscript: the TorchScript-based exporter "
                          f"has no {aten}", hint="pip install onnxscript (or 'archc[onnx]'), whose exporter writes FFTs "
                          "as ONNX DFT; or pick another target (--target torchscript or export)")
    raise RuntimeError("no ONNX exporter handles this model: " + "; ".join(failures))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: they print graphs and warnings from C++ and through logging, not only via sys.stdout."""
    import logging
    import os
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    level = logging.root.manager.disable
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        logging.disable(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(level)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _check_batch2(model: torch.nn.Module, data: bytes, xs: Sequence[torch.Tensor]) -> None:
    """Run a dynamic-batch ONNX model at batch 2 and compare it with the eager module."""
    gen = torch.Generator().manual_seed(7)
    x2 = [torch.randn((2, *x.shape[1:]), generator=gen) for x in xs]
    with torch.no_grad():
        ref = model(*x2)
    refs = list(ref.values()) if isinstance(ref, dict) else ref if isinstance(ref, (tuple, list)) else (ref,)
    got = run_onnx(data, x2)
    for a, b in zip(refs, got):
        b = torch.from_numpy(np.asarray(b))
        if a.shape != b.shape:
            raise RuntimeError(f"at batch 2 the output shape is {tuple(b.shape)}, not {tuple(a.shape)}")
        err = float((a - b).abs().max()) / max(float(a.abs().max()), 1e-30)
        if not err <= 1e-4:
            raise RuntimeError(f"at batch 2 the outputs differ from the eager module (max rel. error {err:.1e})")


def _export_torchscript(model: torch.nn.Module, xs: Sequence[torch.Tensor], names: list[str], out_names: list[str],
                        dynamic_batch: bool, opset: int) -> bytes:
    dyn = {n: {0: "batch"} for n in names + out_names} if dynamic_batch else None
    buf = io.BytesIO()
    torch.onnx.export(model, tuple(xs), buf, dynamo=False, opset_version=opset, input_names=names,
                      output_names=out_names, dynamic_axes=dyn, do_constant_folding=True)
    return buf.getvalue()


def have_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return True


def _export_dynamo(model: torch.nn.Module, xs: Sequence[torch.Tensor], names: list[str], out_names: list[str],
                   dynamic_batch: bool, opset: int) -> bytes:
    """ONNX through ``torch.export`` (needs onnxscript); batch dynamic when asked (traced with a batch of 2)."""
    args = tuple(torch.cat([x, x])[: max(2, x.shape[0])] for x in xs) if dynamic_batch else tuple(xs)
    shapes = tuple({0: torch.export.Dim("batch", min=1, max=4096)} for _ in xs) if dynamic_batch else None
    prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset, input_names=names, output_names=out_names,
                             dynamic_shapes=shapes, verbose=False)
    return prog.model_proto.SerializeToString()


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
