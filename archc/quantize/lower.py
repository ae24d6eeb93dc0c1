"""int8 post-training quantization as a lowering: deploy pipeline → calibrate → quantize → check → artifact.

``compile_quantized(spec, options, quant, out)`` compiles the spec with the ``deploy`` pipeline (BN
folded, parallel branches merged), builds the float artifact of the target, calibrates activation
ranges on the calibration inputs, quantizes, measures every layer and the model output against the
float model (:mod:`archc.quantize.report`), leaves the layers asked for (``keep_float``) or below
``min_sqnr`` in float, and writes the artifact and ``<out>.quant.json`` atomically.

=========  =========================================================================================
target     int8 artifact
=========  =========================================================================================
onnx       QDQ ONNX model (onnxruntime's static quantizer, per-channel int8 weights, uint8 activations);
           onnxruntime runs QLinearConv / QGemm / QLinearAdd kernels (:mod:`archc.quantize.quantize_onnx`)
pytorch    the generated module plus ``create_int8_model()`` (FX graph-mode quantization, x86 engine:
           ``quantized::conv2d`` kernels) and the int8 state beside it as ``.pth``
           (:mod:`archc.quantize.quantize_fx`)
=========  =========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from archc.compiler import CompileOptions
from archc.diagnostics import suggest
from archc.quantize.calibrate import METHODS, CalibrationData, QuantizeError, calibration_data
from archc.quantize.report import REPORT_THRESHOLD, LayerStat, QuantReport

__all__ = ["QuantOptions", "QuantResult", "QUANT_TARGETS", "SCHEMES", "check_request", "compile_quantized",
           "quantize_prepared", "report_path"]

SCHEMES = ("int8",)
#: targets with an int8 lowering, and why the others have none
QUANT_TARGETS = ("onnx", "pytorch")
_WHY_NOT = {
    "export": "torch.export cannot export PyTorch's int8 modules (their packed weights are not exportable) and the "
              "PT2E quantizer is not part of torch 2.13",
    "torchscript": "the int8 PyTorch artifact is the generated module with create_int8_model()",
    "cudagraph": "int8 kernels here are CPU kernels (onnxruntime, fbgemm/oneDNN)",
}


@dataclass(frozen=True)
class QuantOptions:
    """How to quantize (``archc compile --quantize int8 ...``)."""

    scheme: str = "int8"
    #: calibration data source: digits, a .npz file or an image folder
    calib: str | None = None
    #: calibrate on seeded random inputs (only when asked)
    calib_random: bool = False
    calib_batches: int = 8
    calib_batch_size: int = 16
    #: minmax, percentile or mse (see archc.quantize.calibrate)
    method: str = "minmax"
    #: layers (module paths or node names) left in float
    keep_float: Sequence[str] = ()
    #: leave every layer whose own SQNR is under this many dB in float
    min_sqnr: float | None = None
    seed: int = 0


@dataclass
class QuantResult:
    """The written int8 artifact and its report."""

    target: str
    out: Path
    files: list[Path]
    report: QuantReport
    notes: list[str] = field(default_factory=list)
    data: dict[Path, bytes] = field(default_factory=dict, repr=False)


def report_path(out: Path) -> Path:
    """``model.onnx`` → ``model.onnx.quant.json`` beside the artifact (the .onnx and .py reports of one stem differ)."""
    return out.with_name(out.name + ".quant.json")


def check_request(options: CompileOptions, quant: QuantOptions) -> None:
    """Refuse a request that cannot work before anything is compiled (pipeline, target, scheme, calibration)."""
    if quant.scheme not in SCHEMES:
        raise QuantizeError(f"unknown quantization scheme '{quant.scheme}'", hint=f"use one of: {', '.join(SCHEMES)}")
    if options.pipeline != "deploy":
        raise QuantizeError(f"--quantize runs after the deploy pipeline, not after '{options.pipeline}'",
                            hint="use --pipeline deploy (BN folded and branches merged before quantization)")
    if options.target not in QUANT_TARGETS:
        why = _WHY_NOT.get(options.target, "it has no int8 lowering")
        raise QuantizeError(f"--quantize {quant.scheme} does not support --target {options.target}: {why}",
                            hint=f"use --target {' or '.join(QUANT_TARGETS)}")
    if quant.method not in METHODS:
        raise QuantizeError(f"unknown calibration method '{quant.method}'",
                            hint=suggest(quant.method, METHODS) or f"use one of: {', '.join(METHODS)}")
    if quant.calib_batches < 1:
        raise QuantizeError(f"--calib-batches must be at least 1, got {quant.calib_batches}", hint="e.g. --calib-batches 8")
    if quant.min_sqnr is not None and not math.isfinite(quant.min_sqnr):
        raise QuantizeError(f"--min-sqnr must be a finite number of dB, got {quant.min_sqnr}", hint="e.g. --min-sqnr 20")
    if quant.calib is not None and quant.calib_random:
        raise QuantizeError("--calib and --calib-random exclude each other", hint="drop one of them")
    if quant.calib is None and not quant.calib_random:
        raise QuantizeError("--quantize needs calibration inputs: pass --calib DATA (digits, a .npz file or an image "
                            "folder) or --calib-random", hint="e.g. --calib digits (random inputs only when asked: "
                            "their ranges need not fit real data)")
    if quant.calib is not None:
        from archc.train.sources import describe_source

        try:
            describe_source(quant.calib)
        except QuantizeError:
            raise
        except Exception as exc:  # noqa: BLE001 - the source's own message, said as a --calib error
            raise QuantizeError(f"--calib: {getattr(exc, 'message', exc)}", hint=getattr(exc, "hint", None)) from None


def _calibration(prep, quant: QuantOptions) -> CalibrationData:  # noqa: ANN001 - archc.targets.Prepared
    # only the images are used: read as classification data whatever the model's task (a depth model's
    # live/spoof folders are two classes; no depth maps or liveness labels are needed)
    shape = tuple(prep.shapes[0][1:])
    return calibration_data(quant.calib, quant.calib_random, shape, quant.calib_batches, quant.calib_batch_size,
                            task="classification", seed=quant.seed)


def _resolve(names: Sequence[str], known: dict[str, str]) -> list[str]:
    """Layer names given by the user → the artifact's names; an unknown name is an error naming the closest."""
    out = []
    for name in names:
        if name not in known:
            raise QuantizeError(f"--keep-float: no layer '{name}' in the model",
                                hint=suggest(name, list(known)) or "the report (.quant.json) lists the layer names")
        out.append(known[name])
    return list(dict.fromkeys(out))


def _merge(final: list[LayerStat], first: list[LayerStat], kept: set[str]) -> list[LayerStat]:
    """The final model's layers, with each layer kept float taken from the all-int8 run and marked so (model order)."""
    by_name = {s.name: s for s in final}
    merged = []
    for s in first:
        if s.name in kept or s.node in kept:
            s.float_kept = True
            merged.append(s)
        elif s.name in by_name:
            merged.append(by_name.pop(s.name))
    return merged + list(by_name.values())


def quantize_prepared(prep, target: str, out: Path, quant: QuantOptions, spec: str | Path | None = None,  # noqa: ANN001
                      options: CompileOptions | None = None) -> QuantResult:
    """Quantize a deploy-compiled spec for ``target`` in memory (nothing is written).

    With ``spec`` and ``options`` (the ONNX target) a spec whose branches the deploy pipeline merged
    also gets the merged-vs-unmerged comparison (:mod:`archc.quantize.reparam`).
    """
    if len(prep.input_names) != 1:
        raise QuantizeError(f"--quantize takes models with one input; '{prep.compile.doc.name}' has {len(prep.input_names)} "
                            f"({', '.join(prep.input_names)})", hint="quantize a single-input model")
    calib = _calibration(prep, quant)
    threshold = quant.min_sqnr if quant.min_sqnr is not None else REPORT_THRESHOLD
    if target == "onnx":
        from archc.quantize.quantize_onnx import build_onnx_int8

        data, report, notes = build_onnx_int8(prep, calib, quant, threshold, _resolve, spec, options)
    else:
        from archc.quantize.quantize_fx import build_torch_int8

        data, report, notes = build_torch_int8(prep, calib, quant, threshold, _resolve, out)
    report.layers = _merge(report.layers, report.extra.pop("_first_layers", report.layers), set(report.float_layers))
    for s in report.layers:
        if s.own_sqnr is not None and s.own_sqnr < threshold:
            s.reason = s.explain()
    files = {out: data[0], **{out.with_suffix(suffix): blob for suffix, blob in data[1:]}}
    files[report_path(out)] = report.to_json().encode()
    return QuantResult(target, out, list(files), report, notes, files)


def compile_quantized(spec: str | Path, options: CompileOptions, quant: QuantOptions, out: str | Path | None = None,
                      input_shape: Sequence[int] | None = None) -> QuantResult:
    """Compile ``spec`` with the deploy pipeline, quantize it to int8 for ``options.target`` and write the artifact.

    >>> r = compile_quantized("specs/resnet.yaml", CompileOptions(variant="resnet18", pipeline="deploy",
    ...                       target="onnx"), QuantOptions(calib_random=True), "r18_int8.onnx")  # doctest: +SKIP
    >>> r.report.model_sqnr > 20  # doctest: +SKIP
    True
    """
    from archc.compiler import input_paths
    from archc.targets import check_output, default_output, prepare, write_files

    check_request(options, quant)
    prep = prepare(spec, options, input_shape)
    path = Path(out) if out is not None else default_output(prep.compile, options.target)
    if path.is_dir():
        raise QuantizeError(f"cannot write the output: '{path}' is a directory", hint="give a file name")
    inputs = input_paths(prep.compile, options.weights)
    check_output(path, options.target, inputs, [report_path(path)])
    result = quantize_prepared(prep, options.target, path, quant, spec, options)
    check_output(path, options.target, inputs, list(result.data))
    result.files = write_files(result.data)
    return result
