"""int8 post-training quantization: CPU latency of the int8 artifact against the float deploy artifact.

Run from the repository root::

    python benchmarks/bench_int8.py                                   # 3 models x onnx, pytorch x batch 1, 16
    python benchmarks/bench_int8.py --models resnet18 --targets onnx --batches 1
    python benchmarks/bench_int8.py --json > int8.json

For each model (ResNet-18, RepVGG-A0, EfficientNet-B0; ``--models`` picks some) and target
(``onnx``: onnxruntime CPU sessions; ``pytorch``: the generated module against its
``create_int8_model()``), the spec is compiled twice through the public API with the deploy pipeline:
:func:`archc.targets.compile_target` writes the float artifact and :func:`archc.quantize.compile_quantized`
the int8 one (calibrated on ``--calib`` batches of 8 seeded random inputs — ranges do not change the
speed — with the model's seed-0 weights). Both artifacts are loaded back from their files as a user
would. Before timing, the int8 output is compared with the float one (output SQNR, dB).

Timing: ``--threads`` threads (default 1: the machine is shared), inputs of the spec's size. After
warm-up, each round runs the float and the int8 artifact back to back, alternating which goes first,
so drifts in machine load hit both alike; ``--rounds`` rounds at most, ``--budget`` seconds per model,
target and batch (at least ``--min-rounds``). Reported: median latency of each, ``int8/float`` =
median(int8) / median(float) (< 1: int8 is faster), the median of per-round ratios and its spread
(interquartile range). The CPU is named with its int8 features (``avx512_vnni``, ``amx_int8`` from
/proc/cpuinfo), and the kernels that ran: for onnxruntime the op types of the optimized graph it
executes (QLinearConv, QGemm, QLinearAdd ...), for PyTorch the ``quantized::`` ops the profiler saw.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.bench import import_file  # noqa: E402
from archc.compiler import CompileOptions  # noqa: E402
from archc.quantize import QuantOptions, compile_quantized  # noqa: E402
from archc.quantize.report import sqnr_db  # noqa: E402
from archc.targets import compile_target  # noqa: E402

#: short name → (display name, spec file, variant)
MODELS: dict[str, tuple[str, str, str]] = {
    "resnet18": ("ResNet-18", "specs/resnet.yaml", "resnet18"),
    "repvgg_a0": ("RepVGG-A0", "specs/repvgg.yaml", "a0"),
    "efficientnet_b0": ("EfficientNet-B0", "specs/efficientnet.yaml", "b0"),
}
SUFFIX = {"onnx": ".onnx", "pytorch": ".py"}


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and its int8 instruction-set flags."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
    return {"model": name, "int8_flags": [f for f in wanted if f in flags]}


def load(target: str, path: Path, int8: bool, threads: int) -> Any:
    """A callable ``x → numpy output`` of an artifact file."""
    if target == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x.numpy()})[0]
    mod = import_file(path, f"bench_int8_{path.stem}")
    if int8:
        model = mod.create_int8_model()
    else:  # the weights the int8 model was quantized from: create_model() under seed 0, as archc.targets makes them
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = mod.create_model().eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(x).numpy()
    return run


def kernels_of(target: str, int8_path: Path, report: Any) -> dict[str, int]:
    if target == "onnx":
        return {k: v for k, v in report.kernels.items() if k.startswith(("QLinear", "QGemm", "ConvInteger", "MatMulInteger"))
                or k in ("Conv", "Gemm", "FusedConv")}
    return {k: v for k, v in report.kernels.items() if k.startswith("quantized::")}


def time_pair(f_float: Any, f_int8: Any, x: torch.Tensor, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of both artifacts on ``x``; medians, ratio and spread."""
    for _ in range(args.warmup):
        f_float(x)
        f_int8(x)
    tf, ti, ratios = [], [], []
    start = time.perf_counter()
    for r in range(args.rounds):
        order = [("f", f_float), ("i", f_int8)] if r % 2 == 0 else [("i", f_int8), ("f", f_float)]
        got = {}
        for key, fn in order:
            t0 = time.perf_counter()
            fn(x)
            got[key] = time.perf_counter() - t0
        tf.append(got["f"])
        ti.append(got["i"])
        ratios.append(got["i"] / got["f"])
        if r + 1 >= args.min_rounds and time.perf_counter() - start > args.budget:
            break
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [min(ratios), 0, max(ratios)]
    return {"rounds": len(tf), "float_ms": 1e3 * statistics.median(tf), "int8_ms": 1e3 * statistics.median(ti),
            "ratio": statistics.median(ti) / statistics.median(tf), "ratio_median": statistics.median(ratios),
            "ratio_iqr": [q[0], q[-1]]}


def bench_model(key: str, target: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    title, spec, variant = MODELS[key]
    opts = CompileOptions(variant=variant, pipeline="deploy", target=target, check=False)
    float_path = tmp / f"{key}_float{SUFFIX[target]}"
    int8_path = tmp / f"{key}_int8{SUFFIX[target]}"
    t0 = time.perf_counter()
    compile_target(ROOT / spec, opts, float_path, verify=False)
    q = compile_quantized(ROOT / spec, opts, QuantOptions(calib_random=True, calib_batches=args.calib, calib_batch_size=8,
                                                          method=args.method), int8_path)
    build_s = time.perf_counter() - t0
    f_float, f_int8 = load(target, float_path, False, args.threads), load(target, int8_path, True, args.threads)
    rows = []
    for batch in args.batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn((batch, *args.shapes[key]), generator=gen)
        ref, got = f_float(x).astype(np.float64), f_int8(x).astype(np.float64)
        out_sqnr = sqnr_db(float(np.sum(ref ** 2)), float(np.sum((ref - got) ** 2)))
        rows.append({"batch": batch, "output_sqnr_db": out_sqnr, **time_pair(f_float, f_int8, x, args)})
        print(f"  {title:16s} {target:8s} b{batch:<3d} float {rows[-1]['float_ms']:9.2f} ms  int8 {rows[-1]['int8_ms']:9.2f} ms"
              f"  int8/float {rows[-1]['ratio']:.2f}", file=sys.stderr, flush=True)
    rep = q.report.extra.get("reparameterization")
    return {"model": title, "target": target, "build_s": build_s, "calib_model_sqnr_db": q.report.model_sqnr,
            "kernels": kernels_of(target, int8_path, q.report), "rows": rows, "input": list(args.shapes[key]),
            "reparameterization": rep["verdict"] if rep else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated: {', '.join(MODELS)}")
    ap.add_argument("--targets", default="onnx,pytorch", help="onnx, pytorch (default both)")
    ap.add_argument("--batches", default="1,16", help="batch sizes (default 1,16)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of both runtimes (default 1)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--min-rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per model, target and batch (default 20)")
    ap.add_argument("--calib", type=int, default=2, help="calibration batches of 8 random inputs (default 2)")
    ap.add_argument("--method", default="minmax", choices=["minmax", "percentile", "mse"])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.shapes = {}
    from archc.compiler import build_graph

    for k in keys:
        _, g = build_graph(ROOT / MODELS[k][1], CompileOptions(variant=MODELS[k][2]))
        args.shapes[k] = tuple(next(iter(g.inputs.values())).concrete(1)[1:])
    cpu = cpu_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for k in keys:
            for t in targets:
                results.append(bench_model(k, t, args, Path(tmp)))
    meta = {"cpu": cpu, "threads": args.threads, "torch": torch.__version__, "python": platform.python_version()}
    try:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return 0
    print(f"CPU: {cpu['model']} ({', '.join(cpu['int8_flags']) or 'no int8 extensions'}); {args.threads} thread(s); "
          f"torch {meta['torch']}, onnxruntime {meta.get('onnxruntime', '-')}")
    print(f"{'model':16s} {'target':8s} {'batch':>5s} {'float ms':>10s} {'int8 ms':>10s} {'int8/float':>10s} "
          f"{'per-round (IQR)':>18s} {'rounds':>6s} {'out SQNR':>8s}")
    for r in results:
        for row in r["rows"]:
            iqr = f"{row['ratio_median']:.2f} ({row['ratio_iqr'][0]:.2f}-{row['ratio_iqr'][1]:.2f})"
            print(f"{r['model']:16s} {r['target']:8s} {row['batch']:>5d} {row['float_ms']:>10.2f} {row['int8_ms']:>10.2f} "
                  f"{row['ratio']:>10.2f} {iqr:>18s} {row['rounds']:>6d} {row['output_sqnr_db']:>7.1f}")
    print("kernels that ran in the int8 artifacts:")
    for r in results:
        print(f"  {r['model']:16s} {r['target']:8s} " + ", ".join(f"{v} {k}" for k, v in sorted(r["kernels"].items())))
        if r["reparameterization"]:
            print(f"  {'':16s} {'':8s} reparameterization: {r['reparameterization']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
