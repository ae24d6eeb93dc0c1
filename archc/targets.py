"""Compile targets: one spec → an artifact for PyTorch, TorchScript, torch.export, ONNX or CUDA graphs.

``compile_target(spec, options, out)`` compiles the spec with :func:`archc.compiler.compile_spec`
(any pipeline: ``train``, ``deploy``, ``fused``), builds the artifact of ``options.target`` and writes
it — with side files such as weights beside it — atomically: every file goes to a temporary name
first and is renamed only when all of them were built, so a failure leaves nothing half-written.

=============  ========  ==================================================================================
target         suffix    artifact, and how to load it
=============  ========  ==================================================================================
pytorch        .py       the generated standalone module (``create_model()``, ``INPUT_SHAPE``); with
                         ``--weights`` the converted weights beside it as ``.pth``
torchscript    .pt       scripted, frozen, ``optimize_for_inference``; ``torch.jit.load(PATH)``
export         .pt2      a ``torch.export`` program, dynamic batch where the graph allows;
                         ``torch.export.load(PATH).module()``
onnx           .onnx     opset 18, dynamic batch, passes ``onnx.checker``; onnxruntime (optional)
cudagraph      .py       the module plus ``CUDAGraphRunner`` / ``create_runner()``: warm-up on a side stream,
                         capture for a fixed shape, replay; with ``--weights`` the ``.pth`` beside it
=============  ========  ==================================================================================

Weights: with ``options.weights`` (a train-form checkpoint) the artifact carries the converted
weights; otherwise the module's initialized weights (``create_model()`` under ``torch.manual_seed(0)``).

With ``pipeline="fused"`` the pytorch and torchscript targets get the CPU lowering of the fused
regions (:func:`archc.passes.fusion.fuse_source`, checked against the unfused module in float64 and
float32 unless ``options.check`` is off); export, onnx and cudagraph use the portable form of the
fused graph (cudagraph adds the Triton conv→pointwise kernel for CUDA). Each fused chain is timed
against its unfused form on this machine and the faster kept (:mod:`archc.fusion_choice`): the
pytorch module reads the choice from ``<out>.fusion.json`` beside it, the torchscript ``.pt``
carries it, the cudagraph runner makes it on the GPU it first runs on.

``precision`` (``--dtype fp32|bf16|fp16``, ``--channels-last``; :mod:`archc.precision`) converts the
model of every target; the artifact is compared with the float32 eager module at the dtype's tolerance.

Every artifact but the pytorch module is loaded back in-process and its outputs compared with the
eager module (``verify=True``); :data:`TOLERANCES` gives the accepted max relative error per target.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from archc._fs import check_distinct, publish, safe_stem, temp_beside
from archc.compiler import CompileOptions, CompileResult, compile_spec, input_paths
from archc.diagnostics import ArchcError, first_line
from archc.passes.equivalence import rel_error
from archc.precision import Precision, cannot_run, convert_inputs, precise_factory, precision_source, tolerance
from archc.progress import QUIET, Progress

__all__ = ["TARGETS", "PIPELINE_NAMES", "TOLERANCES", "Target", "TargetResult", "Prepared", "compile_target", "prepare",
           "build_artifact", "write_files", "parse_shape", "max_rel_error", "default_output", "check_output"]


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str
    doc: str


TARGETS: dict[str, Target] = {
    "pytorch": Target("pytorch", ".py", "the generated standalone PyTorch module"),
    "torchscript": Target("torchscript", ".pt", "scripted, frozen and optimized for inference (torch.jit.load)"),
    "export": Target("export", ".pt2", "a torch.export program (torch.export.load), dynamic batch where possible"),
    "onnx": Target("onnx", ".onnx", "an ONNX model (opset 18), checked by onnx.checker"),
    "cudagraph": Target("cudagraph", ".py", "the module with a CUDA-graph capture/replay runner"),
}

PIPELINE_NAMES = ("train", "deploy", "fused")

#: accepted max relative error (max|a - b| / max|a|) of each artifact against the eager module, float32
TOLERANCES: dict[str, float] = {
    "pytorch": 1e-5,       # the same code in a fresh process
    "torchscript": 1e-4,   # oneDNN kernels instead of the eager ones
    "export": 1e-5,        # the same ATen ops
    "onnx": 1e-4,          # onnxruntime's kernels
    "cudagraph": 5e-3,     # CUDA (cuDNN may use TF32) against CPU
}


class TargetError(ArchcError):
    """A target could not be built or failed its check."""


@dataclass
class Prepared:
    """A compiled spec ready for any target: sources, weights and example inputs."""

    compile: CompileResult
    pipeline: str
    #: the module source of the pipeline as the PyTorch backend generated it (portable)
    source: str
    #: the CPU lowering of fused regions (pipeline ``fused``), else ``source``
    cpu_source: str
    #: True when the weights are converted from a checkpoint (written beside .py artifacts)
    converted: bool
    #: shapes of the example inputs (built on first use: a target that never runs the model never allocates them)
    shapes: list[tuple[int, ...]]
    input_names: list[str]
    fusion: Any = None
    checks: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    _inputs: list[torch.Tensor] | None = field(default=None, repr=False)
    #: the largest example input (elements) built without complaint; see CompileOptions.max_elements
    max_elements: int = 0
    #: stage timings of the build (CompileOptions.progress)
    progress: Progress = field(default=QUIET, repr=False)

    @property
    def inputs(self) -> list[torch.Tensor]:
        """Seeded example inputs of :attr:`shapes`, refused above the size limit before anything is allocated."""
        if self._inputs is None:
            from archc.compiler import check_size

            for name, shape in zip(self.input_names, self.shapes):
                check_size(math.prod(shape), f"the example input '{name}' {tuple(shape)}", self.max_elements)
            gen = torch.Generator().manual_seed(1234)
            self._inputs = [torch.randn(s, generator=gen) for s in self.shapes]
        return self._inputs

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The artifact's weights: converted from the checkpoint (in its dtype), or initialized under seed 0."""
        if self._state is None:
            if self.converted:
                self._state = dict(self.compile.state_dict or {})  # the checkpoint's own floating dtype
            else:
                with torch.random.fork_rng():
                    torch.manual_seed(0)
                    model = self.module(False).create_model()
                self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return self._state

    def module(self, cpu: bool = True) -> Any:
        """The generated module (source imported), after checking the model it makes is not above the size limit."""
        from archc.compiler import check_size
        from archc.passes.equivalence import module_from_source

        cost = self.compile.cost
        check_size(cost.params + cost.buffers, f"the model '{self.compile.doc.name}'", self.max_elements)

        return module_from_source(self.cpu_source if cpu else self.source, f"archc_{self.pipeline}")

    def factory(self, cpu: bool = True) -> Callable[[], torch.nn.Module]:
        """A function returning a fresh eval-mode model with the artifact's weights."""
        mod = self.module(cpu)
        sd = self.state_dict

        def make() -> torch.nn.Module:
            m = mod.create_model()
            m.load_state_dict(sd, strict=True)
            return m.eval()

        return make


@dataclass
class TargetResult:
    target: str
    pipeline: str
    out: Path
    files: list[Path]
    prepared: Prepared
    notes: list[str] = field(default_factory=list)
    #: max relative error of the artifact against the eager module (and of the fused lowering)
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    data: dict[Path, bytes] = field(default_factory=dict, repr=False)

    @property
    def compile(self) -> CompileResult:
        return self.prepared.compile


def parse_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)``; raises ArchcError on anything else."""
    if text is None:
        return None
    if not isinstance(text, str):
        return tuple(int(d) for d in text)
    try:
        dims = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ArchcError(f"--input-shape must be comma-separated integers, got '{text}'", hint="e.g. --input-shape 1,3,224,224") from None
    if not dims or any(d < 1 for d in dims):
        raise ArchcError(f"--input-shape must be positive integers, got '{text}'", hint="e.g. --input-shape 1,3,224,224")
    return dims


def default_output(res: CompileResult, target: str) -> Path:
    """``<name>[_<variant>]<suffix>`` in the working folder, the spec's name made a plain file stem."""
    variant = res.graph.meta.get("variant")
    return Path(safe_stem(f"{res.doc.name}{'_' + variant if variant else ''}") + TARGETS[target].suffix)


def check_output(out: Path, target: str, inputs: Sequence[Path | str | None], files: Sequence[Path] = ()) -> None:
    """Refuse an output with another target's suffix, or any file to write that is an input.

    ``inputs`` are the spec, its imports and the checkpoint; ``files`` every file the artifact
    writes (converted weights go beside a .py as ``<stem>.pth``, which must not be the checkpoint).
    """
    suffix = TARGETS[target].suffix
    if out.suffix != suffix:
        raise ArchcError(f"the output '{out}' does not end in {suffix}, the suffix of target '{target}'",
                         hint=f"write e.g. -o {safe_stem(out.stem or 'model')}{suffix}")
    check_distinct([out, *files], inputs)


def max_rel_error(ref: Any, got: Any) -> float:
    """max |ref − got| / max |ref| over all outputs (tensors or arrays; named outputs by name, or in order
    against a runtime that returns a list, as ONNX does)."""
    if isinstance(ref, dict) and isinstance(got, dict) and list(ref) != list(got):
        return float("inf")
    refs = list(ref.values()) if isinstance(ref, dict) else ref if isinstance(ref, (tuple, list)) else (ref,)
    gots = list(got.values()) if isinstance(got, dict) else got if isinstance(got, (tuple, list)) else (got,)
    if len(refs) != len(gots):
        return float("inf")
    err = 0.0
    for a, b in zip(refs, gots):
        a = torch.as_tensor(a).detach().float().cpu()
        b = torch.as_tensor(b).detach().float().cpu()
        err = max(err, rel_error(a, b))  # inf for a NaN/inf on either side: max(0.0, nan) would pass
    return err


def prepare(spec: str | Path, options: CompileOptions | None = None, input_shape: Sequence[int] | None = None,
            text: str | None = None) -> Prepared:
    """Compile ``spec`` and make everything a target needs (sources, weights, example inputs)."""
    options = options or CompileOptions()
    if options.pipeline not in PIPELINE_NAMES:
        from archc.diagnostics import suggest

        raise ArchcError(f"unknown pipeline '{options.pipeline}'", hint=suggest(options.pipeline, PIPELINE_NAMES) or f"pipelines: {', '.join(PIPELINE_NAMES)}")
    res = compile_spec(spec, options, text)
    cpu_source = res.source
    fusion = None
    checks: dict[str, float] = {}
    notes: list[str] = []
    if options.pipeline == "fused":
        from archc.passes.fusion import check_fused, fuse_source

        options.progress.begin("fuse")
        cpu_source, fusion = fuse_source(res.source)
        if options.check:
            errs = check_fused(res.source, cpu_source)
            checks.update({f"fused lowering ({k})": v for k, v in errs.items()})
    converted = res.state_dict is not None
    g = res.graph
    names = list(g.inputs)
    shapes = [t.concrete(1) for t in g.inputs.values()]
    if input_shape is not None:
        if len(shapes) != 1:
            raise ArchcError(f"--input-shape sets one input, and '{res.doc.name}' has {len(shapes)}")
        if len(input_shape) != len(shapes[0]):
            raise ArchcError(f"--input-shape {','.join(map(str, input_shape))} has rank {len(input_shape)}, "
                             f"the spec's input '{names[0]}' has rank {len(shapes[0])} {tuple(shapes[0])}")
        shapes = [tuple(input_shape)]
        _check_input_shape(res.source, names[0], tuple(t.concrete(1) for t in g.inputs.values())[0], shapes[0])
    options.progress.end()
    return Prepared(res, options.pipeline, res.source, cpu_source, converted, shapes, names, fusion, checks, notes,
                    max_elements=options.max_elements, progress=options.progress)


def _check_input_shape(source: str, name: str, spec_shape: tuple[int, ...], shape: tuple[int, ...]) -> None:
    """Refuse an --input-shape the generated module cannot take, before any target sees it.

    The module is built and run on the meta device (no memory, no compute): a size the module fixes
    (channels, token count, a positional table) fails there with PyTorch's reason, reported as the
    user's mistake rather than as a target that failed.
    """
    if shape == spec_shape:
        return
    if len(shape) == 4 and shape[1] != spec_shape[1]:
        raise ArchcError(f"--input-shape {','.join(map(str, shape))} has {shape[1]} channels; the spec's input '{name}' "
                         f"has {spec_shape[1]} {spec_shape}", hint=f"keep {spec_shape[1]} channels (only the batch and, "
                         "where the model allows, the spatial sizes may change)")
    from archc.passes.equivalence import module_from_source

    try:
        with torch.device("meta"):
            model = module_from_source(source).create_model().eval()
            with torch.no_grad():
                model(torch.empty(shape))
    except NotImplementedError:
        return  # an op without a meta kernel: the targets' own run will tell
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise ArchcError(f"the model does not accept --input-shape {','.join(map(str, shape))}: {first_line(exc)}",
                         hint=f"the spec's input '{name}' is {spec_shape}; change only the sizes the model allows, or "
                              "set the spec's params instead (-p name=value)") from None


def _weights_bytes(state: Mapping[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def _eager_outputs(prep: Prepared, cpu: bool = True) -> Any:
    prep.progress.begin("verify")  # the eager reference run starts every target's check
    model = prep.factory(cpu)()
    with torch.no_grad():
        return model(*prep.inputs)


def _check(errors: dict[str, float], key: str, target: str, ref: Any, got: Any, tol: float | None = None) -> None:
    err = max_rel_error(ref, got)
    errors[key] = err
    tol = TOLERANCES[target] if tol is None else tol  # a reduced-precision artifact: archc.precision.tolerance
    if not err <= tol and tol > TOLERANCES[target]:
        from archc.precision import precision_mismatch

        raise precision_mismatch(target, ref, got, err, tol)
    if not err <= tol:
        raise TargetError(f"the {target} artifact does not match the eager module: max relative error {err:.3e} > "
                          f"{tol:.0e}", hint="this is a bug in archc's target; report the spec")


def _model_class(source: str) -> str | None:
    import re

    cls = re.search(r"^def create_model\(.*\) -> (\w+):", source, re.M)
    return cls.group(1) if cls else None


def _module_source(source: str, precision: Precision) -> str:
    """A generated module with the precision block appended (unchanged for float32 NCHW)."""
    cls = _model_class(source)
    if precision.is_default or cls is None:
        return source
    return source.rstrip("\n") + "\n" + precision_source(cls, precision)


def _fusion_factory(prep: Prepared, precision: Precision, notes: list[str]) -> Callable[[], torch.nn.Module]:
    """A factory of fused CPU models whose chains and layout are the ones measured faster here (archc.fusion_choice)."""
    from archc.fusion_choice import choose_factory

    make, choice = choose_factory(precise_factory(prep.factory(True), precision), convert_inputs(prep.inputs, precision),
                                  keep_layout=precision.channels_last)
    notes.append(f"measured on this machine: {choice.summary()}")
    return make


def _fused_torchscript(prep: Prepared, precision: Precision, notes: list[str]) -> tuple[bytes, list[str], Any]:
    """The fused .pt with its chains chosen here, or the deploy-form .pt of the same graph when that one is faster.

    The chains are chosen in eager mode; freezing and optimize_for_inference then treat the fused and
    the unfused module differently, so the two finished artifacts are timed against each other
    (archc.fusion_choice.prefer_fused) and the fused one kept only when it wins.
    """
    from archc.backends.torchscript import build_torchscript, load_torchscript
    from archc.fusion_choice import interleaved_timer, prefer_fused

    xs = convert_inputs(prep.inputs, precision)
    fused = build_torchscript(_fusion_factory(prep, precision, notes), xs)
    plain = build_torchscript(precise_factory(prep.factory(False), precision), xs)
    a, b = load_torchscript(fused[0]), load_torchscript(plain[0])
    with torch.no_grad():
        keep, why = prefer_fused(interleaved_timer(warmup=3)("torchscript", lambda: a(*xs), lambda: b(*xs)))
    notes.append(f"fused .pt against the deploy-form .pt of the same graph: {'fused' if keep else 'the deploy form'} kept ({why})")
    return fused if keep else plain


def _fusion_record(prep: Prepared, source: str, precision: Precision, notes: list[str]) -> bytes:
    """The fusion record of a fused .py artifact: its chains measured here, keyed by the final source."""
    from archc.fusion_choice import choose_factory, record_json, record_key

    _, choice = choose_factory(precise_factory(prep.factory(True), precision), convert_inputs(prep.inputs, precision),
                               keep_layout=precision.channels_last)
    notes.append(f"measured on this machine: {choice.summary()}")
    return record_json(record_key(source, prep.shapes, precision.torch_dtype), choice)


def _tuned(prep: Prepared, notes: list[str]) -> tuple[Callable[[], torch.nn.Module], list[str]]:
    """A factory of CPU models whose convs run oneDNN or plain ops, whichever measured faster here (autotune)."""
    from archc.passes.fusion import autotune, pack_convs, set_onednn

    prep.progress.begin("tune")
    base = prep.factory(True)
    model = base()
    pack_convs(model)
    plain = autotune(model, prep.inputs)
    total = sum(1 for m in model.modules() if type(m).__name__ in ("FusedConv2d", "FusedLinear"))
    if total:
        notes.append(f"autotuned {total} convs/linears on this machine: {total - len(plain)} on oneDNN (prepacked weights), "
                     f"{len(plain)} as plain PyTorch ops")
    prep.progress.begin("lower")

    def make() -> torch.nn.Module:
        m = base()
        pack_convs(m)
        return set_onednn(m, False, only=set(plain))

    return make, plain


def build_artifact(prep: Prepared, target: str, out: Path, verify: bool = True, tune: bool = True,
                   precision: Precision | None = None) -> TargetResult:
    """Build the artifact of ``target`` in memory (nothing is written; see :func:`write_files`).

    ``tune``: for the torchscript target time each conv's oneDNN path against plain PyTorch ops on
    the example input and keep the faster (:func:`archc.passes.fusion.autotune`); with pipeline
    ``fused`` (pytorch and torchscript) time each fused chain against its unfused form and keep the
    faster, the choice recorded in ``<out>.fusion.json`` (:mod:`archc.fusion_choice`).
    ``precision``: dtype and memory layout (:mod:`archc.precision`); compared with the float32
    eager module at the dtype's tolerance.
    """
    if target not in TARGETS:
        from archc.diagnostics import suggest

        raise ArchcError(f"unknown target '{target}'", hint=suggest(target, TARGETS) or f"targets: {', '.join(TARGETS)}")
    t0 = time.perf_counter()
    prep.progress.begin("lower")
    data: dict[Path, bytes] = {}
    notes: list[str] = []
    errors: dict[str, float] = dict(prep.checks)
    portable = prep.pipeline == "fused"  # export/onnx/cudagraph: the fused graph without the CPU lowering
    precision = precision or Precision()
    tol = tolerance(TOLERANCES[target], precision)
    vs = "eager" if precision.is_default else f"float32 eager ({precision.label})"
    if not precision.is_default:
        notes.append(f"{precision.label}: inputs and outputs are {precision.torch_dtype}; compared with the float32 eager "
                     f"module at max rel. error {tol:.0e}")
    try:
        if target == "pytorch":
            source = _module_source(prep.cpu_source, precision)
            record = None
            if prep.pipeline == "fused":
                from archc.fusion_choice import record_source

                cls = _model_class(source)
                if cls:  # the same source on every machine; this machine's measurements go to a file beside it
                    source = source.rstrip("\n") + "\n" + record_source(cls)
                    if tune:
                        record = _fusion_record(prep, source, precision, notes)
            data[out] = source.encode()  # the artifact first: callers list the files after it as its side files
            if record is not None:
                data[out.with_suffix(".fusion.json")] = record
            if prep.converted:
                data[out.with_suffix(".pth")] = _weights_bytes(prep.state_dict)
            if not precision.is_default:  # also proves the kernels for the dtype exist here
                from archc.passes.equivalence import module_from_source

                model = module_from_source(source, "archc_precise").create_model()
                model.load_state_dict(prep.state_dict)
                with torch.no_grad():
                    got = model.eval()(*convert_inputs(prep.inputs, precision))
                if verify:
                    _check(errors, f"module vs {vs}", target, _eager_outputs(prep), got, tol)
        elif target == "torchscript":
            from archc.backends.torchscript import build_torchscript

            if prep.pipeline == "fused" and tune:
                blob, n, loaded_out = _fused_torchscript(prep, precision, notes)
            else:
                if tune and precision.dtype == "fp32":
                    make = precise_factory(_tuned(prep, notes)[0], precision)
                else:
                    make = precise_factory(prep.factory(True), precision)
                blob, n, loaded_out = build_torchscript(make, convert_inputs(prep.inputs, precision))
            notes += n
            data[out] = blob
            if verify:
                _check(errors, f"torchscript vs {vs}", target, _eager_outputs(prep), loaded_out, tol)
        elif target == "export":
            from archc.backends.export import build_export, load_export

            xs = convert_inputs(prep.inputs, precision)
            blob, n, dynamic = build_export(precise_factory(prep.factory(not portable), precision), xs)
            notes += n
            if dynamic:
                notes.append("dynamic batch (1 to 4096)")
            data[out] = blob
            if verify or precision.dtype != "fp32":  # also proves the kernels for the dtype exist here
                with torch.no_grad():
                    got = load_export(blob)(*xs)
                if verify:
                    _check(errors, f"export vs {vs}", target, _eager_outputs(prep, not portable), got, tol)
        elif target == "onnx":
            from archc.backends.onnx import OPSET, build_onnx, have_onnx, have_onnxruntime, run_onnx

            if not have_onnx():
                raise TargetError("the onnx target needs the 'onnx' package", hint="pip install 'archc[onnx]'")
            xs = convert_inputs(prep.inputs, precision)
            blob, n = build_onnx(precise_factory(prep.factory(not portable), precision), xs, prep.input_names)
            notes += n
            notes.append(f"opset {OPSET}, passes onnx.checker")
            if precision.channels_last:
                notes.append("--channels-last: an ONNX graph has no memory format; the runtime picks its own layout")
            data[out] = blob
            if have_onnxruntime() and (verify or precision.dtype != "fp32"):
                got = run_onnx(blob, xs)
                if verify:
                    _check(errors, f"onnxruntime vs {vs}", target, _eager_outputs(prep, not portable), got, tol)
            elif verify:
                notes.append("onnxruntime is not installed: outputs not compared (pip install onnxruntime)")
        elif target == "cudagraph":
            from archc.backends.cudagraph import cudagraph_source
            from archc.passes.equivalence import module_from_source

            src, n = cudagraph_source(prep.source, tuple(prep.inputs[0].shape), fused=prep.pipeline == "fused")
            src = _module_source(src, precision)
            notes += n
            data[out] = src.encode()
            if prep.converted:
                data[out.with_suffix(".pth")] = _weights_bytes(prep.state_dict)
            if verify or not precision.is_default:
                mod = module_from_source(src, "archc_cudagraph")
                model = mod.create_model()
                model.load_state_dict(prep.state_dict)
                model.eval()
                ref = _eager_outputs(prep, False)
                xs = convert_inputs(prep.inputs, precision)
                if torch.cuda.is_available():
                    runner = mod.CUDAGraphRunner(model, tuple(prep.inputs[0].shape))
                    _check(errors, f"cudagraph replay vs {vs} (CPU)", target, ref, runner(xs[0].cuda()), tol)
                else:
                    with torch.no_grad():
                        _check(errors, f"module vs {vs} (CPU; CUDA absent, graph not captured)", target, ref, model(*xs), tol)
                    notes.append("CUDA is not available here: the runner was generated but not captured")
    except ArchcError:
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter refusing an op is a user-facing limit, not a crash
        missing = cannot_run(exc, target, precision)
        if missing is not None:
            raise missing from exc
        raise TargetError(f"target '{target}' cannot compile '{prep.compile.doc.name}': {type(exc).__name__}: {first_line(exc)[:300]}",
                          hint="try another target (e.g. --target pytorch or torchscript)") from exc
    prep.progress.end()
    return TargetResult(target, prep.pipeline, out, list(data), prep, notes, errors, time.perf_counter() - t0, data)


def write_files(data: Mapping[Path, bytes]) -> list[Path]:
    """Write all files or none: each to a temporary file beside it, then rename them all (missing folders are made, and removed again on failure)."""
    temps: list[tuple[str, Path]] = []
    made: list[Path] = []  # folders created here, removed again when writing fails
    try:
        for path, blob in data.items():
            missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                made.append(folder)
            fd, tmp = temp_beside(path)
            temps.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
        for tmp, path in temps:
            publish(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return list(data)


def compile_target(spec: str | Path, options: CompileOptions | None = None, out: str | Path | None = None,
                   input_shape: Sequence[int] | str | None = None, verify: bool = True, text: str | None = None,
                   precision: Precision | None = None) -> TargetResult:
    """Compile ``spec`` for ``options.target`` and write the artifact to ``out`` (atomically).

    ``precision``: the artifact's dtype and memory layout (``Precision("bf16", channels_last=True)``;
    default float32, NCHW).

    >>> r = compile_target("specs/repvgg.yaml", CompileOptions(target="torchscript", pipeline="deploy"), "repvgg.pt")  # doctest: +SKIP
    >>> torch.jit.load("repvgg.pt")(torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([1, 1000])
    """
    options = options or CompileOptions()
    if options.target not in TARGETS:
        from archc.diagnostics import suggest

        raise ArchcError(f"unknown target '{options.target}'", hint=suggest(options.target, TARGETS) or f"targets: {', '.join(TARGETS)}")
    prep = prepare(spec, options, parse_shape(input_shape) if isinstance(input_shape, str) else input_shape, text)
    path = Path(out) if out is not None else default_output(prep.compile, options.target)
    inputs = input_paths(prep.compile, options.weights)
    check_output(path, options.target, inputs)
    result = build_artifact(prep, options.target, path, verify, precision=precision)
    check_output(path, options.target, inputs, list(result.data))
    result.files = write_files(result.data)
    prep.compile.files = result.files
    return result


def with_target(options: CompileOptions, target: str, pipeline: str | None = None) -> CompileOptions:
    """``options`` for another target (and pipeline)."""
    return replace(options, target=target, pipeline=pipeline or options.pipeline)
