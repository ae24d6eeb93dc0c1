"""How far a bf16 / fp16 model is from the float32 eager module: the measurements behind DTYPE_TOLERANCES.

Run from the repository root::

    python benchmarks/bench_precision.py                  # every bundled spec small, three models at 224
    python benchmarks/bench_precision.py --full-only --json
    python benchmarks/bench_precision.py --latency specs/repvgg.yaml:a0      # fp32 vs bf16 (channels-last) latency

For each spec the deploy module is built twice with the same weights — once as archc's artifacts
check it (``create_model()`` under seed 0), once with every weight perturbed and random BN statistics
(:func:`archc.passes.equivalence.randomize`) — and run on a seeded input in float32 and after
``.to(dtype)`` with the input converted (eager PyTorch, CPU). Reported: the max relative error
``max|a − b| / max|a|`` per spec and dtype, and the largest over all, against
:data:`archc.precision.DTYPE_TOLERANCES`; an output with inf/NaN in the reduced dtype is an
overflow (random BN statistics push float16 past 65504), shown as such and left out of the worst. The "small" rows shrink each spec to one block per stage at
64 pixels (what the target tests compile); the "224" rows are RepVGG-A0, ResNet-50 and ConvNeXt-atto
at full size. A dtype with a missing kernel for a spec is reported as such, not as an error.

``--latency SPEC[:VARIANT]`` times the eager deploy module instead, in fp32, bf16 channels-last,
bf16 and fp32 channels-last, interleaved (each round calls every form once, order rotated), each
checked against fp32 first; the ratios are fp32 / form (> 1: faster): the median of the per-round
ratios, the ratio of the medians, and the ratio of median process CPU times.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.compiler import CompileOptions  # noqa: E402
from archc.diagnostics import ArchcError  # noqa: E402
from archc.passes.equivalence import randomize  # noqa: E402
from archc.precision import DTYPE_TOLERANCES, DTYPES  # noqa: E402
from archc.spec.document import load_spec_doc, resolve_params  # noqa: E402
from archc.targets import max_rel_error, prepare  # noqa: E402

FULL = [("specs/repvgg.yaml", "a0"), ("specs/resnet.yaml", "resnet50"), ("specs/convnext.yaml", "atto")]


def small_params(spec: Path, img: int = 64) -> list[str]:
    """One block per stage and ``img`` pixels, where the spec has such params."""
    _, env = resolve_params(load_spec_doc(spec), None, [])
    out = []
    for name in ("depths", "depth", "layers"):
        v = env.get(name)
        if isinstance(v, list) and all(isinstance(d, int) for d in v):
            out.append(f"{name}=[{','.join(str(min(d, 1)) for d in v)}]")
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(f"{name}=1")
    if "img" in env:
        out.append(f"img={img}")
    return out


def errors(spec: Path, variant: str | None, params: list[str]) -> dict[str, Any]:
    prep = prepare(spec, CompileOptions(variant=variant, params=params, pipeline="deploy", check=False))
    row: dict[str, Any] = {"spec": spec.stem + (f"-{variant}" if variant else ""), "input": list(prep.shapes[0])}
    for weights in ("init", "random"):
        model = prep.factory(False)().eval()
        if weights == "random":
            model.load_state_dict(randomize(model, seed=3))
        xs = prep.inputs
        with torch.no_grad():
            ref = model(*xs)
        for name in ("bf16", "fp16"):
            dtype = DTYPES[name]
            low = prep.factory(False)().eval()
            low.load_state_dict(model.state_dict())
            low = low.to(dtype)
            try:
                with torch.no_grad():
                    got = low(*[x.to(dtype) for x in xs])
                outs = got if isinstance(got, (tuple, list)) else (got,)
                finite = all(bool(torch.isfinite(o.float()).all()) for o in outs)
                # an output past the dtype's range is an overflow (refused as such by archc compile), not an error size
                row[f"{name} {weights}"] = max_rel_error(ref, got) if finite else "overflow"
            except (RuntimeError, NotImplementedError) as exc:
                row[f"{name} {weights}"] = f"no kernel ({str(exc).splitlines()[0][:60]})"
    return row


def latency(spec: Path, variant: str | None, batch: int, rounds: int, labels: tuple[str, ...]) -> dict[str, Any]:
    """Eager latency of the deploy module in each precision, interleaved; ratios against fp32 (> 1: faster).

    Each round calls every form once (order rotated); reported per form: the median wall time, the
    median of the per-round ratios fp32 / form (robust to load drifting between rounds) and the
    ratio of median process CPU times (the work done, steadier on a shared machine).
    """
    import statistics
    import time

    from archc.precision import convert_inputs, convert_model, parse_precision

    prep = prepare(spec, CompileOptions(variant=variant, pipeline="deploy", check=False))
    x32 = torch.randn((batch, *prep.shapes[0][1:]), generator=torch.Generator().manual_seed(0))
    ref = prep.factory(False)().eval()
    forms = {}
    for label in labels:
        name, _, layout = label.partition("+")
        prec = parse_precision(name, layout == "cl")
        model = convert_model(prep.factory(False)().eval(), prec)
        x = convert_inputs([x32], prec)[0]
        with torch.no_grad():
            err = max_rel_error(ref(x32), model(x))
        if not err <= max(DTYPE_TOLERANCES[prec.dtype], 1e-5):
            raise SystemExit(f"{label}: max rel. error {err:.1e} above {DTYPE_TOLERANCES[prec.dtype]:.0e}")
        forms[label] = (model, x, err)
    wall: dict[str, list[float]] = {k: [] for k in forms}
    cpu: dict[str, list[float]] = {k: [] for k in forms}
    names = list(forms)
    with torch.inference_mode():
        for k in names:
            for _ in range(3):
                forms[k][0](forms[k][1])
        for r in range(rounds):
            for k in names[r % len(names):] + names[:r % len(names)]:
                model, x, _ = forms[k]
                c0, t0 = time.process_time(), time.perf_counter()
                model(x)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    base = names[0]
    rows = []
    for k in names:
        rows.append({"form": k, "median_ms": statistics.median(wall[k]) * 1e3,
                     "iqr_ms": [q * 1e3 for q in statistics.quantiles(wall[k], n=4)[::2]],
                     "ratio_paired": statistics.median(b / t for b, t in zip(wall[base], wall[k])),
                     "ratio_median": statistics.median(wall[base]) / statistics.median(wall[k]),
                     "ratio_cpu": statistics.median(cpu[base]) / statistics.median(cpu[k]), "max_rel_error": forms[k][2]})
    return {"spec": spec.stem + (f"-{variant}" if variant else ""), "batch": batch, "rounds": rounds,
            "threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-only", action="store_true", help="only the three models at 224")
    ap.add_argument("--small-only", action="store_true", help="only the bundled specs at their small test size")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--latency", metavar="SPEC[:VARIANT]",
                    help="instead: eager latency of SPEC's deploy module in fp32, bf16, bf16+cl, fp32+cl (e.g. specs/repvgg.yaml:a0)")
    ap.add_argument("--batch", type=int, default=1, help="batch size of --latency (default 1)")
    ap.add_argument("--rounds", type=int, default=60, help="interleaved rounds of --latency (default 60)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.latency:
        from archc.bench import _cpu_name
        from archc.precision import cpu_features

        path, _, variant = args.latency.partition(":")
        res = latency(Path(path), variant or None, args.batch, args.rounds, ("fp32", "bf16+cl", "bf16", "fp32+cl"))
        res["cpu"], res["features"] = _cpu_name(), cpu_features()
        if args.json:
            print(json.dumps(res, indent=1))
            return 0
        print(f"{res['spec']} deploy, batch {res['batch']}, {res['threads']} thread(s), {res['rounds']} interleaved rounds")
        print(f"  CPU: {res['cpu']}; {', '.join(res['features'])}")
        print(f"  {'form':9s} {'median ms':>10s} {'IQR ms':>15s} {'fp32/this paired':>17s} {'of medians':>10s} {'CPU time':>9s} "
              f"{'max rel err':>11s}")
        for r in res["rows"]:
            iqr = f"{r['iqr_ms'][0]:.1f}–{r['iqr_ms'][1]:.1f}"
            print(f"  {r['form']:9s} {r['median_ms']:10.2f} {iqr:>15s} {r['ratio_paired']:17.2f} {r['ratio_median']:10.2f} "
                  f"{r['ratio_cpu']:9.2f} {r['max_rel_error']:11.1e}")
        return 0
    rows = []
    if not args.full_only:
        for spec in sorted((ROOT / "specs").glob("*.yaml")):
            try:
                rows.append({"size": "small", **errors(spec, None, small_params(spec))})
            except ArchcError as exc:  # a spec that does not compile is named, not measured
                print(f"  {spec.stem}: not compiled ({str(exc).splitlines()[0][:120]})", file=sys.stderr)
    if not args.small_only:
        for spec, variant in FULL:
            rows.append({"size": "224", **errors(ROOT / spec, variant, [])})
    worst = {d: max((v for r in rows for k, v in r.items() if k.startswith(d) and isinstance(v, float)), default=0.0)
             for d in ("bf16", "fp16")}
    if args.json:
        print(json.dumps({"rows": rows, "worst": worst, "tolerances": DTYPE_TOLERANCES}, indent=1))
        return 0
    cols = ["bf16 init", "bf16 random", "fp16 init", "fp16 random"]
    print(f"  {'spec':22s} {'size':5s} " + " ".join(f"{c:>12s}" for c in cols))
    for r in rows:
        cells = [f"{r[c]:12.1e}" if isinstance(r[c], float) else f"{'overflow' if r[c] == 'overflow' else 'no kernel':>12s}"
                 for c in cols]
        print(f"  {r['spec']:22s} {r['size']:5s} " + " ".join(cells))
    for d in ("bf16", "fp16"):
        over = sum(1 for r in rows for k, v in r.items() if k.startswith(d) and v == "overflow")
        print(f"  worst {d}: {worst[d]:.1e}  (accepted: {DTYPE_TOLERANCES[d]:.0e})" + (f"; {over} overflow(s)" if over else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
