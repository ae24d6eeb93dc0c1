"""int8 PyTorch modules through FX graph-mode quantization on the x86 engine, and their per-layer analysis.

Measured with torch 2.13 on this project's CPUs: ``torch.ao.quantization.quantize_pt2e`` and the
X86Inductor quantizer are no longer part of torch (they moved to torchao), while FX graph-mode
quantization (``prepare_fx`` / ``convert_fx``) still runs and its modules call int8 kernels
(``quantized::conv2d``, ``quantized::conv2d_relu``, ``quantized::linear``, ``quantized::add_relu``
on the x86 engine: fbgemm / oneDNN with VNNI and AMX). That is the path used here.

Scheme: weights int8, symmetric, one scale per output channel (``PerChannelMinMaxObserver``);
activations uint8, asymmetric, one scale and zero point per tensor, the range from archc's own
calibration (:class:`CalibratedObserver`: minmax, percentile or mse). Layers kept float get no
qconfig. Conv → ReLU pairs are fused into one int8 kernel.

The artifact is the generated module (imports only torch) with ``create_int8_model()`` appended: it
builds the float model, rebuilds the same int8 structure (prepare → convert, fixed qconfig) and
loads the int8 state (scales, zero points, int8 weights) from the ``.pth`` beside it with
``weights_only=True``. Loading it back is checked against the converted model before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from archc.quantize.calibrate import CalibrationData, QuantizeError, RangeCollector
from archc.quantize.report import LayerStat, QuantReport, SqnrMeter, channel_ratio, weight_sqnr

__all__ = ["build_torch_int8", "quantize_fx", "int8_source", "CalibratedObserver", "quantized_layers"]

_ENGINE = "x86"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao.quantization warns that it is deprecated on every call; the warnings say nothing to the user here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _observer_base() -> type:
    from torch.ao.quantization.observer import MinMaxObserver

    return MinMaxObserver


class CalibratedObserver(_observer_base()):  # type: ignore[misc]
    """A uint8 per-tensor observer whose range comes from :func:`archc.quantize.calibrate.compute_range`."""

    def __init__(self, method: str = "minmax", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(dtype=torch.quint8, qscheme=torch.per_tensor_affine, **kwargs)
        self.method = method
        self.collector = RangeCollector(seed)

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        if x_orig.numel():
            self.collector.add(x_orig)
        return super().forward(x_orig)

    @torch.jit.export
    def calculate_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.collector.hi < self.collector.lo:  # never ran: the base class's defaults (and its warning)
            return super().calculate_qparams()
        lo, hi = self.collector.range(self.method)
        return self._calculate_qparams(torch.tensor([lo]), torch.tensor([hi]))


def _qconfig(activation: Any) -> Any:
    from torch.ao.quantization import QConfig
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    return QConfig(activation=activation,
                   weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))


def quantize_fx(model: nn.Module, calib: CalibrationData, method: str, keep_float: Sequence[str] = ()) -> nn.Module:
    """The int8 FX module of eval-mode ``model`` calibrated on ``calib``; modules ``keep_float`` stay float."""
    from torch.ao.quantization import QConfigMapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = _ENGINE
    mapping = QConfigMapping().set_global(_qconfig(CalibratedObserver.with_args(method=method)))
    for name in keep_float:
        mapping.set_module_name(name, None)
    example = (calib.batches[0][:1],)
    with _quiet(), torch.no_grad():
        prepared = prepare_fx(model.eval(), mapping, example)
        for batch in calib:
            prepared(batch)
        return convert_fx(prepared)


_INT8_TEMPLATE = '''

# ---------------------------------------------------------------------------------------------------
# int8 (archc compile --quantize int8): FX graph-mode quantization, x86 engine; do not edit.
# Weights int8 per output channel (symmetric), activations uint8 per tensor; the calibrated scales,
# zero points and int8 weights are in the .pth file beside this one.
INT8_FLOAT_LAYERS = {float_layers!r}


def create_int8_model(state_path=None):
    """The int8 model: the float model's structure quantized as archc did, with the int8 state loaded."""
    import os
    import warnings

    from torch.ao.quantization import QConfig, QConfigMapping
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "{engine}"
    qconfig = QConfig(activation=MinMaxObserver.with_args(dtype=torch.quint8, qscheme=torch.per_tensor_affine),
                      weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
    mapping = QConfigMapping().set_global(qconfig)
    for name in INT8_FLOAT_LAYERS:
        mapping.set_module_name(name, None)
    example = (torch.zeros((1, *INPUT_SHAPE[1:])),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of torch.ao and the uncalibrated observers' defaults
        model = convert_fx(prepare_fx(create_model().eval(), mapping, example))
    path = state_path or os.path.splitext(os.path.abspath(__file__))[0] + ".pth"
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
'''


def int8_source(source: str, float_layers: Sequence[str]) -> str:
    """The generated module ``source`` with ``create_int8_model()`` appended (checked with ``ast.parse``)."""
    import ast

    text = source.rstrip("\n") + "\n" + _INT8_TEMPLATE.format(float_layers=tuple(float_layers), engine=_ENGINE)
    ast.parse(text)
    return text


def quantized_layers(qmodel: nn.Module) -> dict[str, nn.Module]:
    """The int8 modules with weights of a converted model, by qualified name."""
    out = {}
    for name, m in qmodel.named_modules():
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and callable(getattr(m, "weight", None)):
            out[name] = m
    return out


def _fused_relu(m: nn.Module) -> bool:
    return "ReLU" in type(m).__name__


def _own_output(f: nn.Module, q: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer alone: float input, its int8 weights (dequantized), its output on its uint8 grid."""
    w = q.weight().dequantize()
    b = q.bias()
    if isinstance(f, nn.Conv2d):
        y = f._conv_forward(x, w, b)
    elif isinstance(f, nn.Linear):
        y = F.linear(x, w, b)
    else:
        raise TypeError(type(f).__name__)
    if _fused_relu(q):
        y = torch.relu(y)
    return torch.fake_quantize_per_tensor_affine(y, float(q.scale), int(q.zero_point), 0, 255)


def _capture(model: nn.Module, names: Sequence[str], inputs: bool) -> tuple[dict[str, Any], list[Any]]:
    store: dict[str, Any] = {}
    handles = []
    for name in names:
        def hook(mod: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            store[name] = (args[0].detach(), out.detach()) if inputs else out.detach()
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    return store, handles


def _flat(out: Any) -> np.ndarray:
    """All of a model's outputs as one float array (a tuple of outputs counts as one signal)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return np.concatenate([o.detach().float().reshape(-1).numpy() for o in outs])


def analyze_torch(fmodel: nn.Module, qmodel: nn.Module, calib: CalibrationData) -> tuple[list[LayerStat], float]:
    """Per-layer statistics of ``qmodel`` against ``fmodel`` on ``calib`` and the model output's SQNR."""
    layers = quantized_layers(qmodel)
    names = [n for n in layers if isinstance(fmodel.get_submodule(n), (nn.Conv2d, nn.Linear))]
    f_store, f_handles = _capture(fmodel, names, True)
    q_store, q_handles = _capture(qmodel, names, False)
    cum = {n: SqnrMeter() for n in names}
    own = {n: SqnrMeter() for n in names}
    vals = {n: RangeCollector(i) for i, n in enumerate(names)}
    ch: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    model_meter = SqnrMeter()
    try:
        with torch.no_grad():
            for batch in calib:
                model_meter.add(_flat(fmodel(batch)), _flat(qmodel(batch)))
                for n in names:
                    x, y = f_store[n]
                    q = layers[n]
                    ref = torch.relu(y) if _fused_relu(q) else y
                    got = q_store[n]
                    got = got.dequantize() if got.is_quantized else got
                    cum[n].add(ref.numpy(), got.numpy())
                    own[n].add(ref.numpy(), _own_output(fmodel.get_submodule(n), q, x).numpy())
                    vals[n].add(ref)
                    shapes[n] = tuple(ref.shape)
                    r = ref.transpose(0, 1).reshape(ref.shape[1], -1).numpy() if ref.dim() >= 2 else ref.reshape(1, -1).numpy()
                    lo, hi = r.min(axis=1), r.max(axis=1)
                    if n in ch:
                        lo, hi = np.minimum(ch[n][0], lo), np.maximum(ch[n][1], hi)
                    ch[n] = (lo, hi)
    finally:
        for h in f_handles + q_handles:
            h.remove()
    stats = []
    for n in names:
        f, q = fmodel.get_submodule(n), layers[n]
        w = f.weight.detach().double().numpy()
        wr = w.reshape(w.shape[0], -1)
        out_shape = shapes[n]
        per_sample = int(np.prod(out_shape[1:]))
        macs = per_sample // max(out_shape[1], 1) * w.size if isinstance(f, nn.Conv2d) else per_sample // w.shape[0] * w.size
        scale, zp = float(q.scale), int(q.zero_point)
        col = vals[n]
        p = float(np.quantile(np.abs(col.sample.astype(np.float64)), 0.9999))
        stats.append(LayerStat(
            name=n, op=type(q).__name__, macs=int(macs), sqnr=cum[n].db, own_sqnr=own[n].db, node=n,
            out_range=((0 - zp) * scale, (255 - zp) * scale), out_channel_ratio=channel_ratio(*ch[n]),
            out_value_ratio=max(abs(col.lo), abs(col.hi)) / p if p > 0 else None,
            weight_channel_ratio=channel_ratio(wr.min(axis=1), wr.max(axis=1)), weight_sqnr=weight_sqnr(w, 0)))
    return stats, model_meter.db


def _macs_all(fmodel: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """MACs per sample of every Conv2d / Linear of the float model."""
    names = [n for n, m in fmodel.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    store, handles = _capture(fmodel, names, False)
    try:
        with torch.no_grad():
            fmodel(example)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for n in names:
        m, y = fmodel.get_submodule(n), store.get(n)
        if y is None:
            continue
        per_sample = int(np.prod(y.shape[1:]))
        w = m.weight.numel()
        out[n] = per_sample // max(y.shape[1], 1) * w if isinstance(m, nn.Conv2d) else per_sample // m.weight.shape[0] * w
    return out


def kernel_ops(qmodel: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """The ops the int8 model runs (profiler), by name: ``quantized::*`` are the int8 kernels."""
    from torch.profiler import ProfilerActivity, profile

    from archc.backends.onnx import _quiet as _quiet_fds  # the profiler prints from C++ straight to the descriptors

    with _quiet(), _quiet_fds(), torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        qmodel(x)
    return dict(Counter(e.name for e in prof.events() if e.name.startswith(("quantized::", "aten::quantize", "aten::dequantize"))))


def _load_back(source: str, state: bytes) -> nn.Module:
    """The artifact as a user loads it: import the source, create_int8_model() with the saved state."""
    import os
    import tempfile

    from archc.passes.equivalence import module_from_source

    mod = module_from_source(source, "archc_int8")
    with tempfile.TemporaryDirectory(prefix="archc-q-") as tmp:
        path = os.path.join(tmp, "state.pth")
        with open(path, "wb") as f:
            f.write(state)
        with _quiet():
            return mod.create_int8_model(path)


def build_torch_int8(prep, calib: CalibrationData, quant, threshold: float, resolve, out: Path) -> tuple[list, QuantReport, list[str]]:  # noqa: ANN001
    """The int8 PyTorch artifact of a deploy-compiled spec (source and state), its report and notes."""
    if _ENGINE not in torch.backends.quantized.supported_engines:
        raise QuantizeError(f"this PyTorch build has no '{_ENGINE}' quantized engine "
                            f"(it has {', '.join(torch.backends.quantized.supported_engines)})", hint="use --target onnx")
    make = prep.factory(True)
    fmodel = make()
    macs = _macs_all(fmodel, calib.batches[0][:1])
    known = {n: n for n in macs}
    kept = resolve(quant.keep_float, known)
    qmodel = quantize_fx(make(), calib, quant.method)
    first, all_int8 = analyze_torch(fmodel, qmodel, calib)
    if quant.min_sqnr is not None:
        kept += [s.name for s in first if s.own_sqnr is not None and s.own_sqnr < quant.min_sqnr and s.name not in kept]
    final, model_sqnr = first, all_int8
    if kept:
        qmodel = quantize_fx(make(), calib, quant.method, kept)
        final, model_sqnr = analyze_torch(fmodel, qmodel, calib)
    buf = io.BytesIO()
    torch.save(qmodel.state_dict(), buf)
    state = buf.getvalue()
    source = int8_source(prep.cpu_source, kept)
    x = calib.batches[0]
    with torch.no_grad():
        expected = _flat(qmodel(x))
        got = _flat(_load_back(source, state)(x))
    if expected.shape != got.shape or not np.array_equal(expected, got):
        diff = float(np.abs(expected - got).max()) if expected.shape == got.shape else float("inf")
        raise QuantizeError("the int8 module loaded back from its source and state differs from the quantized model "
                            f"(max abs. difference {diff:.3g})", hint="this is a bug in archc's quantization; report the spec")
    kernels = kernel_ops(qmodel, x)
    int8_ops = {k: v for k, v in kernels.items() if k.startswith("quantized::")}
    notes = [f"int8 module: FX graph-mode quantization, {_ENGINE} engine; runs "
             f"{', '.join(f'{v} {k}' for k, v in sorted(int8_ops.items())) or 'no int8 kernels'}",
             f"load with: create_int8_model() (reads {out.with_suffix('.pth').name} beside the module)"]
    report = QuantReport(target="pytorch", backend=f"torch {torch.__version__} FX {_ENGINE}", method=quant.method,
                         calibration=calib.description, threshold=threshold, layers=final, model_sqnr=model_sqnr,
                         all_int8_sqnr=all_int8, total_macs=sum(macs.values()), float_layers=list(kept), notes=notes,
                         kernels=kernels, extra={"_first_layers": first})
    return [source.encode(), (".pth", state)], report, notes
