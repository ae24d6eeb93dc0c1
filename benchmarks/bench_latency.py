"""Eager CPU latency: archc-generated TransXNet against the hand-written reference.

Run from the repository root::

    python benchmarks/bench_latency.py            # table
    python benchmarks/bench_latency.py --json     # machine-readable

The generated model is compiled from ``specs/transxnet.yaml`` to a temporary file, imported, and
built with ``create_model().eval()``; the reference is ``benchmarks/reference/transxnet.py``
(``transxnet_<variant>()``, eval mode). Both run under ``torch.inference_mode()`` with
``torch.set_num_threads(os.cpu_count())`` unless ``--threads`` says otherwise.

Timing is interleaved: every iteration runs both models back to back, alternating which goes first
(A B, B A, A B, ...), so drifts in machine load hit both alike. After warm-up, the median latency of
each, the ratio of medians (generated / hand-written) and the median of the per-iteration ratios are
reported; a ratio <= 1.0 means the generated model is at least as fast.

Weights: the two state dicts are first compared. If their keys and shapes agree the same weights are
loaded into both; if only the *order* of shapes agrees (different names, same layout) the weights can
be mapped by position; either way random weights (every parameter and buffer, BN statistics
included) are copied from the reference into the generated model and the outputs are compared. The
latency runs use independently initialised models unless ``--weights same``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.bench import import_file  # noqa: E402
from archc.compiler import CompileOptions, compile_spec  # noqa: E402

REFERENCE = ROOT / "benchmarks" / "reference" / "transxnet.py"


def build_generated(spec: str, variant: str, pipeline: str, tmp: Path) -> tuple[ModuleType, dict[str, Any]]:
    """Compile the spec to ``tmp``, import it; returns the module and compile facts."""
    t0 = time.perf_counter()
    res = compile_spec(spec, CompileOptions(variant=variant, pipeline=pipeline))
    compile_s = time.perf_counter() - t0
    out = tmp / f"archc_generated_{Path(spec).stem}_{variant}.py"
    out.write_text(res.source, encoding="utf-8")
    mod = import_file(out, out.stem)
    return mod, {"compile_s": compile_s, "params": res.cost.params, "macs": res.cost.macs,
                 "lines": res.source.count("\n"), "file": str(out)}


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- state dicts ---------------------------------------------------------------------------------


def layout(gen: torch.nn.Module, ref: torch.nn.Module) -> dict[str, Any]:
    """How the two state dicts relate: same keys, same layout in order, or neither."""
    sg, sr = gen.state_dict(), ref.state_dict()
    same_keys = list(sg) == list(sr) or set(sg) == set(sr)
    key_compatible = same_keys and all(sg[k].shape == sr[k].shape for k in sg)
    positional = len(sg) == len(sr) and all(a.shape == b.shape and a.dtype == b.dtype
                                            for a, b in zip(sg.values(), sr.values()))
    first_diff = next(((a, b) for a, b in zip(sg, sr) if a != b), None)
    first_shape = next(((a, tuple(sg[a].shape), b, tuple(sr[b].shape)) for a, b in zip(sg, sr)
                        if sg[a].shape != sr[b].shape), None)
    return {"entries": [len(sg), len(sr)], "key_compatible": key_compatible, "positional": positional,
            "first_key_difference": first_diff, "first_shape_difference": first_shape}


def mapped_state(gen: torch.nn.Module, ref: torch.nn.Module, lay: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The reference's state under the generated model's keys (by key, else by position), or None."""
    sg, sr = gen.state_dict(), ref.state_dict()
    if lay["key_compatible"]:
        return {k: sr[k] for k in sg}
    if lay["positional"]:
        return {a: sr[b] for a, b in zip(sg, sr)}
    return None


def randomize_(m: torch.nn.Module, seed: int) -> None:
    """Random values in every floating parameter and buffer (positive BN variances)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, t in m.state_dict().items():
            if not t.is_floating_point():
                continue
            if k.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)


def equivalence(gen_factory: Any, ref_factory: Any, lay: dict[str, Any], batch: int, img: int,
                rtol: float, atol: float) -> dict[str, Any]:
    ref, gen = ref_factory(), gen_factory()
    state = None
    if lay["key_compatible"] or lay["positional"]:
        randomize_(ref, seed=0)
        state = mapped_state(gen, ref, lay)
    if state is None:
        return {"checked": False, "why": "state dicts are not compatible (neither by key nor by position)"}
    gen.load_state_dict(state, strict=True)
    ref.eval()
    gen.eval()
    x = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        yr, yg = ref(x), gen(x)
    diff = (yg.float() - yr.float()).abs()
    return {"checked": True, "mapping": "by key" if lay["key_compatible"] else "by position",
            "batch": batch, "max_abs_diff": diff.max().item(), "max_abs_ref": yr.abs().max().item(),
            "allclose": bool(torch.allclose(yg, yr, rtol=rtol, atol=atol)), "rtol": rtol, "atol": atol,
            "same_argmax": bool((yg.argmax(-1) == yr.argmax(-1)).all())}


# -- timing --------------------------------------------------------------------------------------


def interleaved(models: dict[str, torch.nn.Module], x: torch.Tensor, warmup: int, iters: int, min_iters: int,
                budget_s: float) -> dict[str, Any]:
    """Alternate A/B each iteration (ABBA order); stop after ``iters`` or once ``budget_s`` is spent."""
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    minflt = (lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt) if resource else (lambda: 0)  # noqa: E731
    with torch.inference_mode():
        for i in range(warmup):
            for n in names if i % 2 == 0 else names[::-1]:
                models[n](x)
        t0 = time.perf_counter()
        for i in range(iters):
            for n in names if i % 2 == 0 else names[::-1]:
                f, c, s = minflt(), time.process_time(), time.perf_counter()
                models[n](x)
                times[n].append(time.perf_counter() - s)
                cpu[n].append(time.process_time() - c)
                faults[n].append(minflt() - f)
            if i + 1 >= min_iters and time.perf_counter() - t0 > budget_s:
                break
    a, b = names
    med = {n: statistics.median(times[n]) for n in names}
    pair = [ta / tb for ta, tb in zip(times[a], times[b])]
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]  # noqa: E731
    return {"iters": len(times[a]), "warmup": warmup, "median_s": med,
            "min_s": {n: min(times[n]) for n in names}, "p25_s": {n: q(times[n], 0.25) for n in names},
            "p75_s": {n: q(times[n], 0.75) for n in names},
            "ratio_of_medians": med[a] / med[b], "median_paired_ratio": statistics.median(pair),
            "ratio_of_mins": min(times[a]) / min(times[b]),
            "cpu_median_s": {n: statistics.median(cpu[n]) for n in names},
            "cpu_ratio_of_medians": statistics.median(cpu[a]) / statistics.median(cpu[b]),
            "minor_faults_median": {n: statistics.median(faults[n]) for n in names},
            "times_s": times, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    ap.add_argument("--spec", default=str(ROOT / "specs" / "transxnet.yaml"))
    ap.add_argument("--variant", default="t")
    ap.add_argument("--pipeline", default="train", help="archc compile pipeline of the generated model")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--img", type=int, default=224)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--warmup", type=int, nargs="+", default=[3, 1], help="warm-up pairs per batch size")
    ap.add_argument("--iters", type=int, nargs="+", default=[30, 8], help="most timed pairs per batch size")
    ap.add_argument("--min-iters", type=int, default=3, help="fewest timed pairs, whatever the budget")
    ap.add_argument("--budget", type=float, nargs="+", default=[15.0, 40.0],
                    help="seconds of timed pairs per batch size before stopping early")
    ap.add_argument("--weights", choices=["independent", "same"], default="independent",
                    help="latency with independently initialised models, or the reference's weights in both")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args(argv)
    per = lambda xs, i: xs[min(i, len(xs) - 1)]  # noqa: E731

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "num_threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "mkldnn": torch.backends.mkldnn.is_available()}

    ref_mod = import_file(REFERENCE, "archc_bench_reference_transxnet")
    ref_factory = getattr(ref_mod, f"transxnet_{args.variant}")
    with tempfile.TemporaryDirectory(prefix="archc_bench_") as tmp:
        gen_mod, facts = build_generated(args.spec, args.variant, args.pipeline, Path(tmp))
        gen = gen_mod.create_model().eval()
        ref = ref_factory().eval()
        lay = layout(gen, ref)
        check = equivalence(lambda: gen_mod.create_model(), ref_factory, lay, 2, args.img, args.rtol, args.atol)
        weights = "independent"
        if args.weights == "same":
            state = mapped_state(gen, ref, lay)
            if state is None:
                print("--weights same: state dicts are incompatible; using independent weights", file=sys.stderr)
            else:
                gen.load_state_dict(state)
                weights = "same (" + ("by key" if lay["key_compatible"] else "by position") + ")"
        models = {"generated": gen, "hand-written": ref}
        runs = []
        for j, bs in enumerate(args.batches):
            x = torch.randn(bs, 3, args.img, args.img, generator=torch.Generator().manual_seed(bs))
            r = interleaved(models, x, per(args.warmup, j), per(args.iters, j), args.min_iters, per(args.budget, j))
            r["batch"] = bs
            runs.append(r)
            if not args.json:
                print(f"  [batch {bs}: {r['iters']} pairs, ratio {r['ratio_of_medians']:.3f}]", file=sys.stderr,
                      flush=True)

    result = {"info": info, "spec": args.spec, "variant": args.variant, "pipeline": args.pipeline,
              "generated": {**facts, "params_module": n_params(gen)},
              "reference": {"file": str(REFERENCE.relative_to(ROOT)), "params_module": n_params(ref)},
              "state_dict": lay, "equivalence": check, "weights": weights, "latency": runs,
              "bench_seconds": time.perf_counter() - t_start}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_tables(result)
    return 0


def print_tables(res: dict[str, Any]) -> None:
    info = res["info"]
    load = info["loadavg"]
    print(f"archc latency benchmark: TransXNet-{res['variant'].upper()} generated (pipeline {res['pipeline']}) "
          f"vs hand-written, eager CPU, torch {info['torch']}")
    print(f"torch.set_num_threads({info['num_threads']})  [os.cpu_count() = {info['cpu_count']}, "
          f"interop threads {info['interop_threads']}]" + (f", load average {load[0]:.1f} at start" if load else ""))
    g, r = res["generated"], res["reference"]
    if load and info["cpu_count"] and load[0] > info["cpu_count"]:
        why = (f"; with {info['num_threads']} intra-op threads each parallel op also waits for descheduled threads "
               "(see --threads 1)") if info["num_threads"] > 1 else ""
        print(f"WARNING: load average {load[0]:.1f} > {info['cpu_count']} CPUs: the machine is shared, absolute "
              f"times are inflated and noisy{why}; the interleaved ratios and the CPU columns are the robust figures")
    print(f"generated: {g['params_module']:,} params (archc cost model: {g['params']:,} params, "
          f"{g['macs'] / 1e9:.3f} GMACs), {g['lines']} lines, compiled in {g['compile_s'] * 1e3:.0f} ms")
    print(f"reference: {r['params_module']:,} params ({r['file']})")
    lay = res["state_dict"]
    print(f"state_dict: {lay['entries'][0]} vs {lay['entries'][1]} entries; same keys: "
          f"{'yes' if lay['key_compatible'] else 'no'}; same layout by position: {'yes' if lay['positional'] else 'no'}"
          + (f" (e.g. {lay['first_key_difference'][0]} <-> {lay['first_key_difference'][1]})"
             if lay["first_key_difference"] else ""))
    eq = res["equivalence"]
    if eq["checked"]:
        print(f"outputs with the same random weights (mapped {eq['mapping']}, batch {eq['batch']}): "
              f"max |diff| = {eq['max_abs_diff']:.3g} (max |y| = {eq['max_abs_ref']:.3g}), "
              f"allclose(rtol={eq['rtol']}, atol={eq['atol']}): {eq['allclose']}, same argmax: {eq['same_argmax']}")
    else:
        print(f"outputs not compared: {eq['why']}")
    print(f"latency weights: {res['weights']}; inference_mode; interleaved A/B (alternating order)")
    print()
    print(f"{'batch':>5s} {'pairs':>5s} {'generated ms':>13s} {'hand-written ms':>16s} {'ratio (med)':>12s}"
          f" {'ratio (paired)':>15s} {'ratio (min)':>12s} {'gen p25-p75':>15s} {'ref p25-p75':>15s}"
          f" {'cpu gen':>8s} {'cpu ref':>8s} {'cpu ratio':>9s} {'faults gen':>10s} {'faults ref':>10s}")
    for run in res["latency"]:
        m, lo, hi = run["median_s"], run["p25_s"], run["p75_s"]
        print(f"{run['batch']:5d} {run['iters']:5d} {m['generated'] * 1e3:13.1f} {m['hand-written'] * 1e3:16.1f}"
              f" {run['ratio_of_medians']:12.3f} {run['median_paired_ratio']:15.3f} {run['ratio_of_mins']:12.3f}"
              f" {lo['generated'] * 1e3:7.0f}-{hi['generated'] * 1e3:<7.0f}"
              f" {lo['hand-written'] * 1e3:7.0f}-{hi['hand-written'] * 1e3:<7.0f}"
              f" {run['cpu_median_s']['generated'] * 1e3:8.1f} {run['cpu_median_s']['hand-written'] * 1e3:8.1f}"
              f" {run['cpu_ratio_of_medians']:9.3f} {run['minor_faults_median']['generated'] / 1e3:9.1f}k"
              f" {run['minor_faults_median']['hand-written'] / 1e3:9.1f}k")
    print("ratio = generated / hand-written latency (target <= 1.0); ms are wall-clock medians; cpu = median process\n"
          "CPU ms per forward (all threads; with --threads 1 it approximates the latency of an idle core); faults =\n"
          "median minor page faults per forward (fresh memory from the OS: grows with the forward's peak live memory)")
    print(f"(benchmark took {res['bench_seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
