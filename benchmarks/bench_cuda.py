"""Side by side on one CUDA GPU: eager vs CUDA-graph replay, and the fused Triton kernels vs cuDNN.

Run from the repository root on a machine with CUDA (and Triton for the fused rows)::

    python benchmarks/bench_cuda.py                    # UniRepLKNet-A, TransXNet-T, ConvFirst-T at batch 1
    python benchmarks/bench_cuda.py --batch 1,32 --json
    python benchmarks/bench_cuda.py --rows fused --batch 32 --dtype bf16 --channels-last   # the Triton kernels' case

Rows, each a ratio of medians measured in the same interleaved rounds (CUDA events, after warm-up):

* ``graph/eager`` — the deploy-pipeline module called eagerly on CUDA against the ``cudagraph``
  artifact's ``CUDAGraphRunner`` replaying the captured forward (UniRepLKNet-A, TransXNet-T): the
  launch overhead CUDA graphs remove, which dominates small batches;
* ``kernel/cuDNN`` — ConvFirst-T's ``fused`` pipeline with *every* conv→pointwise chain through the
  generated Triton kernel (``dwpw``: the channels-last one where it applies, see
  ``backends/cudagraph/triton_dwpw.py``) against the same graph with the PyTorch (cuDNN) convs, both
  replayed from CUDA graphs so that only the kernels differ; ``fused/cuDNN`` — the same with the
  per-chain choice the runner makes (each chain timed fused against cuDNN, the faster kept), what
  the artifact runs; its row lists the chains kept fused and the kernel timed for each;
* ``tc:<mode>/graph`` — ``torch.compile(mode=...)`` of the same deploy module (modes
  ``max-autotune-no-cudagraphs`` and ``reduce-overhead``; ``--compile-modes`` picks, ``none`` skips)
  against archc's CUDA-graph replay. Beside it, the build times: archc's (spec → deploy module:
  passes, codegen, import; then the CUDA-graph capture) and torch.compile's (its first call, which
  compiles, plus the further calls until a call is as fast as the ones after it: reduce-overhead
  records its CUDA graphs on the first calls), each after ``torch._dynamo.reset()``.

``--dtype fp32|bf16|fp16`` and ``--channels-last`` set every model's precision and layout as
``archc compile --dtype/--channels-last`` does (the inputs follow). ``--rows graph,fused`` picks the
row families (the graph rows include torch.compile's).

Every pair is checked for equal outputs first (max relative error ≤ 5e-3 — cuDNN may use TF32 — or
the dtype's tolerance, ``archc.precision.DTYPE_TOLERANCES``, when larger). Without CUDA the script
says so in one line and exits with status 1 (nothing is timed).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from archc.compiler import CompileOptions  # noqa: E402
from archc.passes.equivalence import module_from_source  # noqa: E402
from archc.precision import Precision, parse_precision, precision_source, tolerance  # noqa: E402
from archc.targets import max_rel_error, prepare  # noqa: E402

GRAPH_SPECS = [("specs/unireplknet.yaml", "a"), ("specs/transxnet.yaml", "t")]
FUSED_SPEC = ("specs/convfirst.yaml", "t")
#: torch.compile modes timed against archc's CUDA-graph replay
COMPILE_MODES = ("max-autotune-no-cudagraphs", "reduce-overhead")
ROWS = ("graph", "fused")


def _time_interleaved(fns: dict[str, Any], x: torch.Tensor, rounds: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds per call of each callable, one call of each per round (order rotated), CUDA events."""
    names = list(fns)
    with torch.no_grad():
        for f in fns.values():
            for _ in range(warmup):
                f(x)
        torch.cuda.synchronize()
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fns[n](x)
                end.record()
                end.synchronize()
                times[n].append(start.elapsed_time(end))
    return times


def _cudagraph_module(spec: str, variant: str, pipeline: str, shape: tuple[int, ...], fused: bool,
                      precision: Precision | None = None) -> tuple[Any, Any]:
    """The cudagraph artifact's module (with the precision block, as ``archc compile`` writes it) and its model on CUDA."""
    from archc.backends.cudagraph import cudagraph_source

    precision = precision or Precision()

    prep = prepare(spec, CompileOptions(variant=variant, pipeline=pipeline, check=False), shape)
    src, notes = cudagraph_source(prep.source, shape, fused=fused)
    cls = re.search(r"^def create_model\(.*\) -> (\w+):", src, re.M)
    if cls is not None:
        src = src.rstrip("\n") + "\n" + precision_source(cls.group(1), precision)
    mod = module_from_source(src, f"bench_cg_{Path(spec).stem}_{pipeline}_{int(fused)}")
    model = mod.create_model()
    model.load_state_dict(prep.state_dict)  # float32 weights: converted to the model's dtype on load
    return mod, model.eval().cuda()


def _input(shape: tuple[int, ...], precision: Precision) -> torch.Tensor:
    x = torch.randn(*shape, device="cuda").to(precision.torch_dtype)
    return x.contiguous(memory_format=torch.channels_last) if precision.channels_last else x


def _torch_compile(model: Any, x: torch.Tensor, mode: str, max_calls: int = 10) -> tuple[Any, float, int]:
    """``torch.compile(model, mode=mode)`` after a dynamo reset; returns it, its build seconds and the calls they took.

    Build time: from the reset until a call is no slower than 1.5x the call before it (the first
    calls compile; reduce-overhead records CUDA graphs on its first calls), at most ``max_calls``.
    """
    torch._dynamo.reset()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    compiled = torch.compile(model, mode=mode)
    last = None
    calls = 0
    with torch.no_grad():
        while calls < max_calls:
            c0 = time.perf_counter()
            compiled(x)
            torch.cuda.synchronize()
            dt = time.perf_counter() - c0
            calls += 1
            if last is not None and dt <= 1.5 * last and calls >= 2:
                break
            last = dt
    return compiled, time.perf_counter() - t0, calls


def run(batches: list[int], rounds: int, warmup: int, modes: tuple[str, ...] = COMPILE_MODES,
        precision: Precision | None = None, which: tuple[str, ...] = ROWS) -> list[dict[str, Any]]:
    precision = precision or Precision()
    rows = []
    tol = tolerance(5e-3, precision)
    for batch in batches:
        for spec, variant in GRAPH_SPECS if "graph" in which else ():
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            mod, model = _cudagraph_module(spec, variant, "deploy", (batch, 3, 224, 224), fused=False, precision=precision)
            build_s = time.perf_counter() - t0
            x = _input((batch, 3, 224, 224), precision)
            t0 = time.perf_counter()
            runner = mod.CUDAGraphRunner(model, tuple(x.shape))
            capture_s = time.perf_counter() - t0
            with torch.no_grad():
                err = max_rel_error(model(x), runner(x).clone())
            name = f"{Path(spec).stem}-{variant}"
            fns: dict[str, Any] = {"eager": model, "graph": runner}
            built: dict[str, tuple[float, int]] = {}
            errs: dict[str, float] = {}
            for mode in modes:
                compiled, secs, calls = _torch_compile(model, x, mode)
                with torch.no_grad():
                    errs[mode] = max_rel_error(model(x), compiled(x).clone())
                if not errs[mode] <= tol:
                    raise SystemExit(f"torch.compile({mode}) of {name} differs from eager: max rel. error {errs[mode]:.1e}")
                fns[f"tc:{mode}"] = compiled
                built[mode] = (secs, calls)
            t = _time_interleaved(fns, x, rounds, warmup)
            e, g = statistics.median(t["eager"]), statistics.median(t["graph"])
            rows.append({"model": name, "batch": batch, "compare": "graph/eager",
                         "base_ms": e, "new_ms": g, "speedup": e / g, "max_rel_error": err,
                         "archc_build_s": build_s, "archc_capture_s": capture_s})
            for mode in modes:
                c = statistics.median(t[f"tc:{mode}"])
                rows.append({"model": name, "batch": batch, "compare": f"tc:{mode}/graph", "base_ms": g, "new_ms": c,
                             "speedup": g / c, "max_rel_error": errs[mode], "compile_s": built[mode][0],
                             "compile_calls": built[mode][1], "archc_build_s": build_s + capture_s})
        if "fused" in which:
            rows += _fused_rows(batch, rounds, warmup, precision, tol)
    return rows


def _fused_rows(batch: int, rounds: int, warmup: int, precision: Precision, tol: float) -> list[dict[str, Any]]:
    """ConvFirst-T: every chain through the Triton kernel, and the runner's per-chain choice, each against cuDNN."""
    spec, variant = FUSED_SPEC
    shape = (batch, 3, 224, 224)
    _, plain = _cudagraph_module(spec, variant, "fused", shape, fused=False, precision=precision)
    mod_f, fused = _cudagraph_module(spec, variant, "fused", shape, fused=True, precision=precision)
    # both fused models from one module: the runner's choice patches (and the kernels live in) its globals
    chosen = mod_f.create_model().eval().cuda()
    for m in (fused, chosen):
        m.load_state_dict(plain.state_dict())
    x = _input(shape, precision)
    r_plain, r_chosen = mod_f.CUDAGraphRunner(plain, shape), mod_f.CUDAGraphRunner(chosen, shape)
    paths: dict[int, str] = {}  # conv id → the implementation its chain ran ("nhwc", "nchw", "torch")
    plain_path = mod_f.dwpw_path

    def recorded_path(c1: Any, c2: Any, x: torch.Tensor, residual: Any = None) -> str:
        paths[id(c1)] = plain_path(c1, c2, x, residual)
        return paths[id(c1)]
    choose = mod_f.apply_choice

    def every_chain_fused(model: Any, x: torch.Tensor, timer: Any = None) -> dict[str, Any]:
        for m in model.modules():
            m.archc_unfused = False
        return {"chains": "all fused"}

    mod_f.apply_choice = every_chain_fused  # the runner built next captures every chain through the kernel
    mod_f.dwpw_path = recorded_path
    try:
        r_fused = mod_f.CUDAGraphRunner(fused, shape)
    finally:
        mod_f.apply_choice, mod_f.dwpw_path = choose, plain_path
    name = f"{Path(spec).stem}-{variant}"
    with torch.no_grad():
        ref = r_plain(x).clone()
        errs = {"kernel": max_rel_error(ref, r_fused(x).clone()), "fused": max_rel_error(ref, r_chosen(x).clone())}
    for form, err in errs.items():
        if not err <= tol:
            raise SystemExit(f"{name} batch {batch}: the {form} form differs from cuDNN: max rel. error {err:.1e} > {tol:.0e}")
    t = _time_interleaved({"cudnn": r_plain, "kernel": r_fused, "fused": r_chosen}, x, rounds, warmup)
    c = statistics.median(t["cudnn"])
    chains = r_chosen.fusion.get("chains", {})
    kept = sorted(n for n, d in chains.items() if d.get("fused"))
    out = []
    for form in ("kernel", "fused"):
        f = statistics.median(t[form])
        row = {"model": name, "batch": batch, "compare": f"{form}/cuDNN", "precision": precision.label,
               "base_ms": c, "new_ms": f, "speedup": c / f, "max_rel_error": errs[form]}
        if form == "kernel":
            row["kernels"] = {p: list(paths.values()).count(p) for p in sorted(set(paths.values()))}
        else:
            row["fused_chains"] = f"{len(kept)}/{len(chains)}"
            row["chains"] = chains
        out.append(row)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``batches`` and ``modes`` come back parsed and checked (argparse exits 2 on a bad value)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--compile-modes", default=",".join(COMPILE_MODES),
                    help=f"torch.compile modes to time, comma-separated, or 'none' (default {','.join(COMPILE_MODES)})")
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16: every model's dtype (default fp32)")
    ap.add_argument("--channels-last", action="store_true", help="every model and input in channels-last memory format")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"row families, comma-separated (default {','.join(ROWS)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from archc.diagnostics import ArchcError

    try:
        args.precision = parse_precision(args.dtype, args.channels_last)
    except ArchcError as exc:
        ap.error(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    args.which = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    if not args.which or any(r not in ROWS for r in args.which):
        ap.error(f"--rows takes {', '.join(ROWS)} (comma-separated), got '{args.rows}'")
    try:
        args.batches = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batch must be comma-separated integers, got '{args.batch}'")
    if not args.batches or min(args.batches) < 1:
        ap.error(f"--batch must be positive integers, got '{args.batch}'")
    modes = [m.strip() for m in args.compile_modes.split(",") if m.strip()]
    args.modes = () if modes == ["none"] else tuple(modes)
    known = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    for m in args.modes:
        if m not in known:
            ap.error(f"unknown torch.compile mode '{m}' (modes: {', '.join(known)}, or none)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_cuda.py needs CUDA: torch.cuda.is_available() is False on this machine; nothing was timed", file=sys.stderr)
        return 1
    rows = run(args.batches, args.rounds, args.warmup, args.modes, args.precision, args.which)
    if args.json:
        print(json.dumps({"device": torch.cuda.get_device_name(), "precision": args.precision.label, "rows": rows}, indent=1))
        return 0
    print(f"{torch.cuda.get_device_name()} — {args.precision.label} — medians of {args.rounds} interleaved rounds")
    print(f"  {'model':16s} {'batch':>5s} {'compare':36s} {'base ms':>9s} {'new ms':>9s} {'speed-up':>8s} {'max rel err':>11s}")
    for r in rows:
        print(f"  {r['model']:16s} {r['batch']:5d} {r['compare']:36s} {r['base_ms']:9.3f} {r['new_ms']:9.3f} "
              f"{r['speedup']:8.2f} {r['max_rel_error']:11.1e}")
    for r in rows:
        if "kernels" in r:
            print(f"  {r['model']:16s} {r['batch']:5d} kernel/cuDNN: chains per kernel {r['kernels']}")
        if "fused_chains" in r:
            print(f"  {r['model']:16s} {r['batch']:5d} fused/cuDNN: {r['fused_chains']} chains kept fused by the runner's timing")
    built = [r for r in rows if "compile_s" in r]
    if built:
        print("  build time, s (archc: spec → deploy module + CUDA-graph capture; torch.compile: until its calls are steady)")
        for r in built:
            print(f"  {r['model']:16s} {r['batch']:5d} archc {r['archc_build_s']:7.2f}   {r['compare'].split('/')[0]:32s} "
                  f"{r['compile_s']:7.2f} ({r['compile_calls']} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
