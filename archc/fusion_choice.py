"""Fused never slower: each fused chain is timed against its unfused form, and the faster is kept.

A fused artifact (pipeline ``fused``) runs each conv/linear chain — ``conv → [+ residual] → [act]`` —
as one oneDNN call with the add and the activation as post-ops (:class:`FusedConv2d`), and the whole
model in channels-last memory format. Whether that is faster depends on the machine, the input shape
and the dtype, so it is measured, not assumed:

1. **Per chain.** Every fused chain is run on the very tensors it sees at the artifact's input shape
   and dtype, once fused (oneDNN post-ops, prepacked weight) and once unfused (the plain PyTorch ops
   the deploy module runs), in interleaved rounds; the faster form is kept.
2. **Whole model.** The model with the chosen chains, in channels-last, is then timed against the
   same model with every chain unfused in NCHW — the deploy module's arithmetic and layout. When the
   fused form does not win, every chain is unfused and the layout is NCHW, so the artifact runs what
   the deploy artifact runs.

**The rule** (:func:`prefer_fused`): per round, the ratio ``t_fused / t_unfused`` of two calls made
back to back (the order alternates each round, so load drifting on a shared machine hits both). The
fused form is kept only when the median ratio is below ``1 - MIN_GAIN`` (2 % faster) *and* the upper
quartile of the ratios is below 1 (fused was faster in at least three rounds out of four). A tie
(median within ±2 %), a loss, or rounds too noisy to tell keep the unfused form: a tie never makes
the fused artifact slower than deploy.

**The record.** The decisions are a property of one machine, not of the spec, so the generated
``.py`` stays byte-identical for the same input: they go to ``<artifact>.fusion.json`` beside it
(:func:`record_json`), keyed by what they were measured for — device (CPU model and ISA level),
torch version, input shape, dtype and the sha256 of the module source (the thread count is
recorded, not compared). The module's ``create_model()`` applies the record when the key matches
this process (:func:`record_mismatch`); when it does not (another machine or torch version,
another shape passed as ``create_model(input_shape=...)``, an edited module, a missing record) it
warns in one line and runs the safe form — every chain unfused, NCHW — until the artifact is
compiled again on this machine. An artifact imported without a file (in memory) has no record
and runs every chain fused. The torchscript artifact carries the choice inside the ``.pt``. Fused
``cudagraph`` modules make the same choice for their Triton chains on the first run on a GPU
(:mod:`archc.backends.cudagraph.choice`).

The timer is injectable (:data:`Timer`): tests decide with scripted timings, without a clock.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = ["MIN_GAIN", "Timer", "interleaved_timer", "prefer_fused", "Decision", "FusionChoice", "chains",
           "choose", "choose_factory", "record_key", "record_json", "read_record", "record_mismatch", "apply_record",
           "record_source", "fusion_device", "RECORD_FORMAT"]

#: the fused form must be at least this much faster (median ratio) to be kept
MIN_GAIN = 0.02

#: version of the record file's layout
RECORD_FORMAT = 1

#: ``timer(label, run_fused, run_unfused)`` → per round ``(seconds fused, seconds unfused)``
Timer = Callable[[str, Callable[[], Any], Callable[[], Any]], list[tuple[float, float]]]


def interleaved_timer(rounds: int = 9, warmup: int = 2) -> Timer:
    """The real timer: ``warmup`` untimed calls of each form, then ``rounds`` paired calls, order alternating."""

    def timer(label: str, fused: Callable[[], Any], unfused: Callable[[], Any]) -> list[tuple[float, float]]:
        for _ in range(warmup):
            fused()
            unfused()
        pairs = []
        for r in range(rounds):
            got: dict[bool, float] = {}
            for is_fused in ((True, False) if r % 2 == 0 else (False, True)):
                fn = fused if is_fused else unfused
                t0 = time.perf_counter()
                fn()
                got[is_fused] = time.perf_counter() - t0
            pairs.append((got[True], got[False]))
        return pairs

    return timer


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def prefer_fused(pairs: Sequence[tuple[float, float]], min_gain: float = MIN_GAIN) -> tuple[bool, str]:
    """Whether the fused form wins the paired rounds ``(t_fused, t_unfused)``; and why, in words (see the module docstring)."""
    ratios = [f / u if u > 0 else float("inf") for f, u in pairs if f >= 0 and u >= 0]
    if not ratios:
        return False, "not timed: unfused kept"
    _, med, q3 = _quartiles(ratios)
    if med < 1 - min_gain and q3 < 1:
        return True, f"fused {1 / med:.2f}x faster (median of {len(ratios)} paired rounds; faster in ≥ 3 of 4)"
    if med > 1 + min_gain:
        return False, f"fused slower ({med:.2f}x the unfused time): unfused kept"
    if med >= 1 - min_gain:
        return False, f"a tie (fused/unfused {med:.3f}, within {min_gain:.0%}): unfused kept"
    return False, f"too noisy to tell (median fused/unfused {med:.2f}, upper quartile {q3:.2f} ≥ 1): unfused kept"


@dataclass
class Decision:
    """The choice for one fused chain (or for the whole model, ``name == ""``)."""

    name: str
    chain: str
    fused: bool
    fused_ms: float
    unfused_ms: float
    reason: str


@dataclass
class FusionChoice:
    """What :func:`choose` decided: per chain, and for the whole model (layout)."""

    chains: list[Decision] = field(default_factory=list)
    model: Decision | None = None

    #: the layout the model runs in (channels-last unless the whole-model comparison kept NCHW)
    channels_last: bool = True

    def unfused(self) -> list[str]:
        """Names of the chains that run unfused."""
        return sorted(d.name for d in self.chains if not d.fused)

    def summary(self) -> str:
        kept = sum(d.fused for d in self.chains)
        text = f"{kept} of {len(self.chains)} fused chains kept fused (each timed against its unfused form)"
        if self.model is not None:
            verdict = "kept" if self.model.fused else "the unfused NCHW form kept"
            text += (f"; whole model fused {self.model.fused_ms:.2f} ms vs unfused {self.model.unfused_ms:.2f} ms: "
                     f"{verdict} ({self.model.reason})")
        return text


def _fused_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in ("FusedConv2d", "FusedLinear") and hasattr(m, "onednn")]


def _describe(m: torch.nn.Module) -> str:
    kind = "conv" if type(m).__name__ == "FusedConv2d" else "linear"
    parts = [kind]
    if getattr(m, "binary", "none") != "none":
        parts.append(m.binary)
    if getattr(m, "post", "none") != "none":
        parts.append(m.post)
    return "+".join(parts)


def chains(model: torch.nn.Module) -> list[tuple[str, str]]:
    """The fused chains of a fused module: ``(module name, 'conv+add+relu')``, in module order."""
    return [(n, _describe(m)) for n, m in _fused_modules(model)]


def _set_layout(model: torch.nn.Module, channels_last: bool) -> None:
    if hasattr(model, "channels_last"):
        model.channels_last = channels_last


def _reset(model: torch.nn.Module) -> None:
    for _, m in _fused_modules(model):
        m.packed = [torch.empty(0)]


def choose(model: torch.nn.Module, inputs: Sequence[torch.Tensor], timer: Timer | None = None,
           min_gain: float = MIN_GAIN, whole_model: bool = True, keep_layout: bool = False) -> FusionChoice:
    """Time every fused chain of ``model`` against its unfused form on ``inputs``; keep the faster (in place).

    ``model`` is a fused module in eval mode (its convs are ``FusedConv2d``); ``inputs`` are at the
    artifact's shape and dtype. Chains whose oneDNN path cannot run here (another dtype or device)
    are unfused without timing. With ``whole_model`` the result is then checked against the whole
    model unfused in NCHW (see the module docstring); ``keep_layout`` (channels-last asked for)
    compares with the whole model unfused in channels-last instead. Returns the decisions; the model
    is left switched accordingly, its prepacked weights dropped.
    """
    timer = timer or interleaved_timer()
    mods = _fused_modules(model)
    seen: dict[str, tuple] = {}

    def grab(name: str) -> Callable[[torch.nn.Module, tuple], None]:
        def hook(mod: torch.nn.Module, args: tuple) -> None:
            seen.setdefault(name, args)
        return hook

    for _, m in mods:
        m.onednn = bool(torch.backends.mkldnn.is_available())
    _set_layout(model, True)
    hooks = [m.register_forward_pre_hook(grab(n)) for n, m in mods]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    choice = FusionChoice()
    with torch.no_grad():
        for name, m in mods:
            label = _describe(m)
            args = seen.get(name)
            if args is None:
                m.onednn = False
                choice.chains.append(Decision(name, label, False, 0.0, 0.0, "not reached by the example input: unfused"))
                continue
            if not m.onednn or not _fits(m, args):
                m.onednn = False
                choice.chains.append(Decision(name, label, False, 0.0, 0.0,
                                              f"no fused kernel for {_arg_kind(args)} here: unfused"))
                continue

            def run(mode: bool, m: torch.nn.Module = m, args: tuple = args) -> Any:
                m.onednn = mode
                return m(*args)

            pairs = timer(name, lambda: run(True), lambda: run(False))
            keep, why = prefer_fused(pairs, min_gain)
            m.onednn = keep
            choice.chains.append(Decision(name, label, keep, _median_ms(pairs, 0), _median_ms(pairs, 1), why))
        if whole_model and mods:
            chosen = {n: m.onednn for n, m in mods}

            def run_model(fused: bool) -> Any:
                for n, m in mods:
                    m.onednn = chosen[n] if fused else False
                _set_layout(model, fused or keep_layout)
                return model(*inputs)

            pairs = timer("", lambda: run_model(True), lambda: run_model(False))
            keep, why = prefer_fused(pairs, min_gain)
            choice.model = Decision("", "whole model", keep, _median_ms(pairs, 0), _median_ms(pairs, 1), why)
            for n, m in mods:
                m.onednn = chosen[n] if keep else False
            _set_layout(model, keep or keep_layout)
            choice.channels_last = keep or keep_layout
            if not keep:
                for d in choice.chains:
                    if d.fused:
                        d.fused = False
                        d.reason += "; unfused with the whole model"
    _reset(model)
    return choice


def choose_factory(make: Callable[[], torch.nn.Module], inputs: Sequence[torch.Tensor], timer: Timer | None = None,
                   keep_layout: bool = False) -> tuple[Callable[[], torch.nn.Module], FusionChoice]:
    """Decide on one ``make()`` model (:func:`choose`); returns a factory of models switched the same way, and the choice."""
    model = make().eval()
    choice = choose(model, inputs, timer, keep_layout=keep_layout)
    doc = {"unfused": choice.unfused(), "channels_last": choice.channels_last}

    def made() -> torch.nn.Module:
        return apply_record(make().eval(), doc)

    return made, choice


def _fits(m: torch.nn.Module, args: tuple) -> bool:
    fits = getattr(m, "_fits", None)
    if fits is None:  # FusedLinear: float32 CPU only
        x = args[0]
        return x.dtype == torch.float32 and x.device.type == "cpu" and m.weight.dtype == torch.float32
    return bool(fits(*args) if len(args) == 2 else fits(args[0], None))


def _arg_kind(args: tuple) -> str:
    x = args[0]
    return f"{str(x.dtype).replace('torch.', '')} on {x.device.type}"


def _median_ms(pairs: Sequence[tuple[float, float]], k: int) -> float:
    return statistics.median(p[k] for p in pairs) * 1e3 if pairs else 0.0


# -- the record: written beside the artifact, applied by the generated create_model() -------------------


def fusion_device() -> str:
    """This process's compute device as the record names it: the CPU model and the ISA level PyTorch dispatches to."""
    import platform

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    cap = ""
    try:
        cap = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        pass
    return f"cpu: {name}" + (f" ({cap})" if cap else "")


def record_key(source: str | bytes, shapes: Sequence[Sequence[int]], dtype: torch.dtype | str = torch.float32,
               device: str | None = None) -> dict[str, Any]:
    """What a record was measured for: device, torch version, input shapes, dtype and the module source's sha256."""
    import hashlib

    data = source.encode() if isinstance(source, str) else source
    return {"device": device or fusion_device(), "torch": torch.__version__,
            "shapes": [[int(d) for d in s] for s in shapes], "dtype": str(dtype).replace("torch.", ""),
            "source_sha256": hashlib.sha256(data).hexdigest()}


def record_json(key: Mapping[str, Any], choice: FusionChoice) -> bytes:
    """The record file: the key, the layout and every chain's decision with its timings (deterministic order)."""
    doc = {"format": RECORD_FORMAT, "key": dict(key), "rule": f"fused kept when its median paired time ratio is below "
           f"{1 - MIN_GAIN:.2f} and it was faster in at least 3 of 4 rounds; else unfused",
           "threads": torch.get_num_threads(), "channels_last": choice.channels_last, "unfused": choice.unfused(),
           "model": asdict(choice.model) if choice.model is not None else None,
           "chains": [asdict(d) for d in sorted(choice.chains, key=lambda d: d.name)]}
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


def read_record(path: str) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none (or it cannot be read as a record)."""
    import json
    import os

    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT else None


def record_mismatch(record: Mapping[str, Any], key: Mapping[str, Any]) -> list[str]:
    """How ``key`` (this process) differs from the key the record was measured for; empty when it applies.

    A field of ``key`` that is None is not compared (the caller does not know it, e.g. the input shape).
    """
    have = record.get("key") or {}
    diffs = []
    for field_name in ("device", "torch", "shapes", "dtype", "source_sha256"):
        want = key.get(field_name)
        if want is None:
            continue
        if have.get(field_name) != want:
            label = "the module source" if field_name == "source_sha256" else field_name
            diffs.append(f"{label} {have.get(field_name)!r} → {want!r}" if field_name != "source_sha256" else label)
    return diffs


def apply_record(model: torch.nn.Module, record: Mapping[str, Any] | None) -> torch.nn.Module:
    """Switch ``model``'s chains and layout as ``record`` says; ``None``: the safe form (all unfused, NCHW)."""
    unfused = None if record is None else set(record.get("unfused") or ())
    for name, m in model.named_modules():
        if type(m).__name__ in ("FusedConv2d", "FusedLinear") and hasattr(m, "onednn"):
            if unfused is None or name in unfused:
                m.onednn = False
            m.packed = [torch.empty(0)]
    if hasattr(model, "channels_last"):
        model.channels_last = bool(record is not None and record.get("channels_last", True))
    return model


def _plain_source(source: str) -> str:
    """``source`` of one function without annotations: the generated module has no typing imports."""
    import ast

    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.returns = None
            for a in node.args.args + node.args.kwonlyargs:
                a.annotation = None
    return ast.unparse(tree)


def record_source(model_class: str) -> str:
    """Source appended to a fused module: ``create_model()`` applies the record beside the module.

    The record functions above are copied into the module (it imports only torch and the standard
    library), so archc and the artifact compare keys with the same code.
    """
    import inspect

    funcs = "\n\n\n".join(_plain_source(inspect.getsource(f)).replace("def ", "def _archc_", 1) for f in
                          (fusion_device, read_record, record_mismatch, apply_record))
    funcs = (funcs.replace("= fusion_device()", "= _archc_fusion_device()")
             .replace("RECORD_FORMAT", str(RECORD_FORMAT)))
    return f'''

# -- archc fusion record: which fused chains measured faster, on which machine, is in <module>.fusion.json --


{funcs}


_create_unrecorded = create_model


def create_model(*args, input_shape=None, **kwargs) -> {model_class}:
    """The unrecorded create_model's {model_class} (same arguments), its fused chains and layout as recorded beside this module.

    The record (``<module>.fusion.json``, written by ``archc compile``) applies when it was measured
    on this device and torch version for this source (and ``input_shape``, when given);
    otherwise every chain runs unfused in NCHW — what the deploy module runs — and a warning says why.
    Without a module file (imported from memory) every chain runs fused.
    """
    import hashlib
    import os
    import warnings

    model = _create_unrecorded(*args, **kwargs)
    here = globals().get("__file__") or ""
    if not os.path.isfile(here):
        return model
    path = os.path.splitext(here)[0] + ".fusion.json"
    record = _archc_read_record(path)
    if record is None:
        warnings.warn(f"no fusion record {{path}}: every chain runs unfused (compile again on this machine to measure)",
                      stacklevel=2)
        return _archc_apply_record(model, None)
    with open(here, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    key = {{"device": _archc_fusion_device(), "torch": torch.__version__, "source_sha256": digest,
            "shapes": [list(input_shape)] if input_shape is not None else None,
            "dtype": str(next(iter(model.parameters()), torch.empty(0)).dtype).replace("torch.", "")}}
    diffs = _archc_record_mismatch(record, key)
    if diffs:
        warnings.warn(f"the fusion record {{path}} was measured for another setting ({{'; '.join(diffs)}}): every chain "
                      "runs unfused (compile again here to measure)", stacklevel=2)
        return _archc_apply_record(model, None)
    return _archc_apply_record(model, record)
'''
