"""Precision and memory layout of an artifact: ``archc compile --dtype fp32|bf16|fp16 --channels-last``.

The graph, the passes and the generated code do not change with the precision: the module is the
same float32 code, and the precision is applied where the model is made —

* ``.py`` artifacts (``pytorch``, ``cudagraph``): a short block appended to the module sets
  ``DTYPE`` and ``CHANNELS_LAST`` and wraps ``create_model()``: the model is made as before, then
  converted with ``.to(DTYPE)`` (and ``.to(memory_format=torch.channels_last)``). Weights load into it
  from the float32 ``.pth`` (``load_state_dict`` converts). ``prepare_input(x)`` converts an input
  the same way (a model in bfloat16 takes bfloat16 inputs). Without ``--dtype``/``--channels-last``
  nothing is appended: the default module is byte-identical to what it was;
* ``torchscript``, ``export``, ``onnx``: the converted model is scripted / exported; the artifact takes
  and returns tensors of its dtype.

Every artifact is compared with the **float32 eager module** on the same (float32) example input,
converted for the artifact; the accepted max relative error (``max|a − b| / max|a|``) is the
target's float32 tolerance or the dtype's, whichever is larger (:data:`DTYPE_TOLERANCES`, measured on
the bundled specs, see README "Precision and layout"). A dtype a target cannot run here — a kernel
missing for it on this CPU, onnxruntime without a kernel for it — is refused in one line naming
the target and the dtype; nothing is written.

Channels-last changes the memory order only, never a value: channels-last artifacts are held to
the float32 tolerances. (An ONNX graph has no memory format: ``--channels-last`` changes nothing in
the ``.onnx`` file, and the compile says so.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from archc.diagnostics import ArchcError

__all__ = ["DTYPES", "DTYPE_TOLERANCES", "Precision", "parse_precision", "tolerance", "convert_model", "convert_inputs",
           "precise_factory", "precision_source", "cannot_run", "precision_mismatch", "PrecisionError", "cpu_features"]

#: ``--dtype`` names → torch dtypes
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: accepted max relative error of an artifact in this dtype against the float32 eager module.
#: Measured with benchmarks/bench_precision.py on every bundled spec at its small test size and on
#: RepVGG-A0 / ResNet-50 / ConvNeXt-atto at 224, with initialized and with random weights: bf16
#: 3.6e-3 to 1.2e-2 (2.3e-2 once: Swin-T small, random weights), fp16 4e-4 to 2.3e-3 where it did
#: not overflow. The bounds leave about 2x headroom over the worst seen.
DTYPE_TOLERANCES: dict[str, float] = {"fp32": 0.0, "bf16": 5e-2, "fp16": 5e-3}


class PrecisionError(ArchcError):
    """A target cannot run the requested dtype here."""


@dataclass(frozen=True)
class Precision:
    """The dtype and the memory layout of an artifact (``fp32``, NCHW by default)."""

    dtype: str = "fp32"
    channels_last: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def is_default(self) -> bool:
        return self.dtype == "fp32" and not self.channels_last

    @property
    def label(self) -> str:
        """``bf16``, ``fp32+channels-last``, ..."""
        return self.dtype + ("+channels-last" if self.channels_last else "")


def parse_precision(dtype: str | None = None, channels_last: bool = False) -> Precision:
    """``Precision`` from the command line's ``--dtype`` and ``--channels-last``; a clear error on an unknown dtype."""
    name = (dtype or "fp32").strip().lower()
    aliases = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        from archc.diagnostics import suggest

        raise ArchcError(f"unknown --dtype '{dtype}'", hint=suggest(name, DTYPES) or f"dtypes: {', '.join(DTYPES)}")
    return Precision(name, bool(channels_last))


def tolerance(target_tolerance: float, precision: Precision) -> float:
    """The accepted max relative error of an artifact: its target's float32 tolerance or its dtype's, the larger."""
    return max(target_tolerance, DTYPE_TOLERANCES[precision.dtype])


def convert_model(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """``model`` (in place) in ``precision``'s dtype and memory layout."""
    if precision.dtype != "fp32":
        model = model.to(precision.torch_dtype)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def convert_inputs(inputs: Sequence[torch.Tensor], precision: Precision) -> list[torch.Tensor]:
    """Example inputs as the artifact takes them: floating inputs in its dtype, 4-d ones channels-last when asked."""
    out = []
    for x in inputs:
        if x.is_floating_point() and precision.dtype != "fp32":
            x = x.to(precision.torch_dtype)
        if precision.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x)
    return out


def precise_factory(make: Callable[[], torch.nn.Module], precision: Precision) -> Callable[[], torch.nn.Module]:
    """A factory of ``make()``'s models converted to ``precision`` (``make`` itself when it is the default)."""
    if precision.is_default:
        return make

    def made() -> torch.nn.Module:
        return convert_model(make(), precision)

    return made


def precision_source(model_class: str, precision: Precision) -> str:
    """The block appended to a generated module for a non-default precision ('' for the default)."""
    if precision.is_default:
        return ""
    dtype = str(precision.torch_dtype)
    return f'''

# -- archc precision: {precision.label} (archc compile --dtype {precision.dtype}{" --channels-last" if precision.channels_last else ""}) --

DTYPE = {dtype}
CHANNELS_LAST = {precision.channels_last}

_create_float32 = create_model


def create_model(*args, **kwargs) -> {model_class}:
    """The float32 create_model's {model_class} (same arguments) in DTYPE{" and channels-last memory format" if precision.channels_last else ""}.

    Its inputs must be DTYPE too: ``model(prepare_input(x))``. Float32 weights load into it as they
    are (``load_state_dict`` converts them).
    """
    model = _create_float32(*args, **kwargs).to(DTYPE)
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    return model


def prepare_input(x: torch.Tensor) -> torch.Tensor:
    """An input as this model takes it: floating point in DTYPE, a 4-d tensor channels-last when CHANNELS_LAST."""
    if x.is_floating_point():
        x = x.to(DTYPE)
    if CHANNELS_LAST and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
'''


#: fragments of the messages PyTorch and onnxruntime give for an op without a kernel for a dtype
_MISSING = ("not implemented for", "could not find an implementation", "not_implemented", "no kernel", "unsupported dtype",
            "is not supported", "does not support", "unsupported type", "type error", "invalid_graph")


def cannot_run(exc: BaseException, target: str, precision: Precision) -> PrecisionError | None:
    """A one-line refusal when ``exc`` says a kernel for ``precision``'s dtype is missing, else None."""
    if precision.dtype == "fp32":
        return None
    from archc.diagnostics import first_line

    text = first_line(exc)
    if not any(m in text.lower() for m in _MISSING):
        return None
    runtime = "ONNX/onnxruntime" if target == "onnx" else f"PyTorch {torch.__version__}"
    where = "CUDA" if target == "cudagraph" and torch.cuda.is_available() else "this CPU"
    if target == "onnx":
        others = " or ".join(d for d in DTYPES if d != precision.dtype)
        hint = f"use --dtype {others} with target onnx, or a PyTorch target (pytorch, torchscript, export) for {precision.dtype}"
    else:
        hint = f"use --dtype fp32 (PyTorch has no {precision.dtype} kernel on this device for an op this model uses)"
    return PrecisionError(f"target '{target}' cannot run {precision.dtype} on {where}: {runtime} has no {precision.dtype} kernel "
                          f"for an op of this model ({text[:200]})", hint=hint)


def precision_mismatch(target: str, ref: Any, got: Any, err: float, tol: float) -> PrecisionError:
    """The error for a reduced-precision artifact too far from the float32 module: overflow, or error past the tolerance."""
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    gots = got if isinstance(got, (tuple, list)) else (got,)
    peak = max(float(torch.as_tensor(r).detach().float().abs().max()) for r in refs)
    bad = any(not bool(torch.isfinite(torch.as_tensor(g).detach().float()).all()) for g in gots)
    if bad:
        return PrecisionError(f"the {target} artifact overflows in its reduced dtype: its outputs hold inf/NaN where the float32 "
                              f"module's peak is {peak:.3g} (float16 holds at most 65504)",
                              hint="use --dtype bf16 (float32's range) or fp32")
    return PrecisionError(f"the {target} artifact is too far from the float32 module in its reduced dtype: max relative error "
                          f"{err:.3e} > {tol:.0e}", hint="this model accumulates more rounding error than the dtype's tolerance "
                          "allows; use a wider dtype (--dtype fp32)")


def cpu_features() -> list[str]:
    """The CPU features that matter for reduced precision here (from /proc/cpuinfo and PyTorch's dispatch level)."""
    wanted = ("avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16", "avx512_fp16", "avx512_vnni", "avx_vnni")
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    found = [w for w in wanted if w in flags]
    try:
        found.append(f"dispatch {torch.backends.cpu.get_cpu_capability()}")
    except (AttributeError, RuntimeError):
        pass
    return found
