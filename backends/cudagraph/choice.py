"""Fused never slower on CUDA: each ``dwpw`` chain is timed against its two PyTorch convs on its first run.

A fused ``cudagraph`` module runs each k×k conv → 1×1 conv chain through the generated Triton kernel
(:mod:`.triton_dwpw`). Whether the kernel beats cuDNN depends on the GPU, the shape and the dtype,
known only where the module first runs, so the choice is made there: when ``CUDAGraphRunner`` is
built (before warm-up and capture), :func:`apply_choice` looks for ``<module>.fusion.json`` beside
the module; when it was measured for this GPU, torch version, input shape, dtype and module source
it is applied, otherwise every chain is timed — fused (the kernel ``dwpw_path`` picks for it:
channels-last or NCHW, autotuned in the warm-up calls) against unfused, paired rounds with CUDA
events, the rule of :func:`archc.fusion_choice.prefer_fused` (fused kept only when ≥ 2 % faster
and faster in ≥ 3 of 4 rounds; ties and noise keep cuDNN) — and the record is written
(atomically; a read-only folder only costs the measurement on the next run). A chain kept unfused runs the two
PyTorch convs, so the module is never slower than the unfused one beyond the noise of the timing.

The functions are emitted into the generated module (it imports only torch and the standard
library); the rule is copied from :mod:`archc.fusion_choice`, so both use the same code. ``timer``
is injectable, so the decision is tested on CPU with scripted timings.
"""

from __future__ import annotations

import inspect

__all__ = ["CHOICE_SOURCE", "emit_choice"]

#: emitted after the dwpw runtime; ``{rule}`` is the decision rule's source
CHOICE_SOURCE = '''

# -- archc fusion choice on CUDA: each dwpw chain timed against its PyTorch convs on the first run --------

import json as _json


{rule}


def _archc_cuda_timer(label, fused, unfused, rounds=9, warmup=2):
    """Paired CUDA-event times (seconds) of the two forms, the order alternating each round."""
    for _ in range(warmup):
        fused()
        unfused()
    torch.cuda.synchronize()
    pairs = []
    for r in range(rounds):
        got = {{}}
        for is_fused in ((True, False) if r % 2 == 0 else (False, True)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            (fused if is_fused else unfused)()
            end.record()
            end.synchronize()
            got[is_fused] = start.elapsed_time(end) / 1e3
        pairs.append((got[True], got[False]))
    return pairs


def choose_dwpw(model, x, timer=None):
    """Time each dwpw chain that ``model(x)`` runs, fused against unfused; keep the faster (sets ``archc_unfused``).

    Returns {{conv name: [fused kept, reason]}}; the reason names the kernel timed ("nhwc" or "nchw",
    the one ``dwpw_path`` picks for the chain's tensors; the first fused calls, the timer's warm-up,
    autotune it). A chain neither kernel supports here runs unfused.
    """
    timer = timer or _archc_cuda_timer
    names = {{id(m): n for n, m in model.named_modules()}}
    sites = []
    g = globals()
    plain = g["dwpw"]

    def recording(c1, c2, x, act1="none", act2="none", residual=None):
        sites.append((c1, c2, x, act1, act2, residual))
        return plain(c1, c2, x, act1, act2, residual=residual)

    g["dwpw"] = recording
    try:
        with torch.no_grad():
            model(x)
    finally:
        g["dwpw"] = plain
    decisions = {{}}
    with torch.no_grad():
        for c1, c2, xx, act1, act2, residual in sites:
            name = names.get(id(c1), "?")
            if not dwpw_supported(c1, c2, xx):
                c1.archc_unfused = True
                decisions[name] = [False, "not supported by the kernels here: unfused"]
                continue
            # run(False) below is dwpw itself on these very tensors: what is timed is the kernel dwpw_path
            # names (the PyTorch ops only for a residual the kernels cannot take: a tie, kept unfused)
            path = dwpw_path(c1, c2, xx, residual)

            def run(unfused, c1=c1, c2=c2, xx=xx, act1=act1, act2=act2, residual=residual):
                c1.archc_unfused = unfused
                return plain(c1, c2, xx, act1, act2, residual=residual)

            try:
                keep, why = _archc_prefer_fused(timer(name, lambda: run(False), lambda: run(True)))
            except Exception as exc:  # a kernel that cannot compile or launch on this GPU is never kept
                keep, why = False, "failed here, unfused (" + type(exc).__name__ + ": " + (str(exc).splitlines() or [""])[0][:200] + ")"
            c1.archc_unfused = not keep
            decisions[name] = [keep, (path + " kernel" if path != "torch" else "PyTorch ops") + ": " + why]
    return decisions


def _archc_choice_key(x):
    import hashlib
    import os

    here = globals().get("__file__") or ""
    digest = None
    if os.path.isfile(here):
        with open(here, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    device = torch.cuda.get_device_name(x.device) if x.is_cuda else "cpu"
    return {{"device": device, "torch": torch.__version__, "shape": list(x.shape),
             "dtype": str(x.dtype).replace("torch.", ""), "source_sha256": digest}}


def apply_choice(model, x, timer=None):
    """The recorded choice for this GPU, shape, dtype and source, or a new measurement (recorded beside the module)."""
    import os

    here = globals().get("__file__") or ""
    path = os.path.splitext(here)[0] + ".fusion.json" if os.path.isfile(here) else None
    key = _archc_choice_key(x)
    if path is not None and os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                record = _json.load(f)
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get("key") == key:
            unfused = set(record.get("unfused") or ())
            for n, m in model.named_modules():
                if isinstance(m, nn.Conv2d):
                    m.archc_unfused = n in unfused
            return record
    decisions = choose_dwpw(model, x, timer)
    record = {{"key": key, "unfused": sorted(n for n, d in decisions.items() if not d[0]),
              "chains": {{n: {{"fused": d[0], "reason": d[1]}} for n, d in sorted(decisions.items())}}}}
    if path is not None:
        tmp = path + "." + str(os.getpid()) + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                _json.dump(record, f, indent=1)
            os.replace(tmp, path)
        except OSError:  # a read-only folder: measured again on the next run
            if os.path.exists(tmp):
                os.unlink(tmp)
    return record
'''


def emit_choice() -> str:
    """The choice source with the decision rule of :mod:`archc.fusion_choice` copied in."""
    from archc.fusion_choice import MIN_GAIN, _plain_source, _quartiles, prefer_fused

    rule = "\n\n\n".join(_plain_source(inspect.getsource(f)) for f in (_quartiles, prefer_fused))
    rule = (rule.replace("def _quartiles(", "def _archc_quartiles(").replace("= _quartiles(", "= _archc_quartiles(")
            .replace("def prefer_fused(", "def _archc_prefer_fused(").replace("min_gain=MIN_GAIN", f"min_gain={MIN_GAIN!r}"))
    rule = "import statistics\n\n\n" + rule
    return CHOICE_SOURCE.format(rule=rule)
