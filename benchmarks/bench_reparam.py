"""Structural reparameterization: eager CPU latency of the train form against the deploy form.

Run from the repository root::

    python benchmarks/bench_reparam.py                       # all four models, batch 1 and 16
    python benchmarks/bench_reparam.py --threads 1 --specs repvgg --batches 1
    python benchmarks/bench_reparam.py --json > reparam.json

For each model (RepVGG-A0, UniRepLKNet-A, LSNet-T, CDCN; ``--specs`` picks some) the spec is
compiled twice through the public API: ``compile_spec(spec, CompileOptions(variant, pipeline="train"))``
and ``pipeline="deploy"``. The train module gets random weights (every parameter perturbed, BN
statistics random, :func:`archc.passes.equivalence.randomize`); they are saved as a checkpoint and
the deploy compile converts them (``CompileOptions(weights=...)``, certified in float64 by the pass
pipeline), so both modules compute the same function. Before any timing the two outputs are compared
on a random batch of 2 (float32; the max relative error must stay below ``--tol``).

Timing: both modules in eval mode under ``torch.inference_mode()``, input shape from the spec's
``inputs`` (224x224, CDCN 256x256). After warm-up rounds, each timed round runs both forwards back to
back, alternating which goes first (train deploy, deploy train, ...), so drifts in machine load hit
both alike. A batch size stops after ``--rounds`` rounds, or once ``--budget`` seconds are spent (never
before ``--min-rounds``); warm-up stops after one round once it has taken a quarter of the budget, so
a model whose forward takes longer than the budget (CDCN at batch 16: about a minute per round on one
core) costs 1 + ``--min-rounds`` rounds. Reported: median wall latency of each form, ``ratio`` = median(train) /
median(deploy) (> 1 means the deploy form is faster), the median of the per-round ratios, and the
same ratio over process CPU time (steadier on a shared machine, and close to latency with
``--threads 1``).
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
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.bench import import_file  # noqa: E402
from archc.compiler import CompileOptions, compile_spec  # noqa: E402
from archc.passes.equivalence import randomize  # noqa: E402

#: short name → (display name, spec file, variant)
MODELS: dict[str, tuple[str, str, str]] = {
    "repvgg": ("RepVGG-A0", "specs/repvgg.yaml", "a0"),
    "unireplknet": ("UniRepLKNet-A", "specs/unireplknet.yaml", "a"),
    "lsnet": ("LSNet-T", "specs/lsnet.yaml", "t"),
    "cdcn": ("CDCN", "specs/cdcn.yaml", "cdcn"),
}


def import_source(source: str, folder: Path, name: str) -> ModuleType:
    """Write generated source to ``folder`` and import it (a real file, as a user would)."""
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    return import_file(path, name)


def count_nodes(graph: Any, ops: tuple[str, ...]) -> dict[str, int]:
    out = {op: 0 for op in ops}
    for _, n in graph.walk():
        if n.op in out:
            out[n.op] += 1
    return out


def build_pair(key: str, tmp: Path) -> dict[str, Any]:
    """Train and deploy modules of one model with the same (converted) random weights."""
    title, spec, variant = MODELS[key]
    path = ROOT / spec
    t0 = time.perf_counter()
    train_res = compile_spec(path, CompileOptions(variant=variant, pipeline="train"))
    train = import_source(train_res.source, tmp, f"archc_reparam_{key}_train").create_model().eval()
    sd = randomize(train, seed=0)
    train.load_state_dict(sd, strict=True)
    ckpt = tmp / f"{key}_train.pth"
    torch.save(sd, ckpt)
    t1 = time.perf_counter()
    deploy_res = compile_spec(path, CompileOptions(variant=variant, pipeline="deploy", weights=str(ckpt)))
    deploy_compile_s = time.perf_counter() - t1
    deploy = import_source(deploy_res.source, tmp, f"archc_reparam_{key}_deploy").create_model().eval()
    assert deploy_res.state_dict is not None
    deploy.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in deploy_res.state_dict.items()},
                           strict=True)
    counted = ("conv2d", "cdc_conv2d", "batchnorm", "add", "layer_scale", "dropout", "drop_path")
    return {
        "key": key, "title": title, "spec": spec, "variant": variant,
        "input_types": [t.concrete(1) for t in train_res.graph.inputs.values()],
        "train": train, "deploy": deploy,
        "facts": {
            "params": {"train": train_res.cost.params, "deploy": deploy_res.cost.params},
            "macs": {"train": train_res.cost.macs, "deploy": deploy_res.cost.macs},
            "nodes": {"train": count_nodes(train_res.graph, counted), "deploy": count_nodes(deploy_res.graph, counted)},
            "certified_max_rel_error_f64": deploy_res.pipeline.max_rel_error if deploy_res.pipeline else None,
            "passes": [(s.name, s.rewrites) for s in deploy_res.pipeline.steps] if deploy_res.pipeline else [],
            "build_s": time.perf_counter() - t0, "deploy_compile_s": deploy_compile_s,
        },
    }


def inputs_for(shapes: list[tuple[int, ...]], batch: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn((batch, *s[1:]), generator=gen) for s in shapes]


def max_rel_error(a: Any, b: Any) -> float:
    xs = a if isinstance(a, (tuple, list)) else (a,)
    ys = b if isinstance(b, (tuple, list)) else (b,)
    return max(float((x - y).abs().max()) / max(float(x.abs().max()), 1e-30) for x, y in zip(xs, ys))


def timed_rounds(models: dict[str, torch.nn.Module], xs: list[torch.Tensor], warmup: int, rounds: int,
                 min_rounds: int, budget_s: float) -> dict[str, Any]:
    """Interleaved rounds (alternating order); wall and process-CPU seconds per forward."""
    names = list(models)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        start = time.perf_counter()
        done = 0
        for i in range(warmup):
            for n in names if i % 2 == 0 else names[::-1]:
                models[n](*xs)
            done += 1
            if time.perf_counter() - start > budget_s / 4:  # slow forwards (CDCN at batch 16): one warm-up round
                break
        start = time.perf_counter()
        for i in range(rounds):
            for n in names if i % 2 == 0 else names[::-1]:
                c, s = time.process_time(), time.perf_counter()
                models[n](*xs)
                wall[n].append(time.perf_counter() - s)
                cpu[n].append(time.process_time() - c)
            if i + 1 >= min_rounds and time.perf_counter() - start > budget_s:
                break
    med = {n: statistics.median(wall[n]) for n in names}
    cmed = {n: statistics.median(cpu[n]) for n in names}
    q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
    return {
        "rounds": len(wall["train"]), "warmup": done,
        "median_s": med, "min_s": {n: min(wall[n]) for n in names},
        "p25_s": {n: q(wall[n], 0.25) for n in names}, "p75_s": {n: q(wall[n], 0.75) for n in names},
        "ratio": med["train"] / med["deploy"],
        "paired_ratio": statistics.median(t / d for t, d in zip(wall["train"], wall["deploy"])),
        "min_ratio": min(wall["train"]) / min(wall["deploy"]),
        "cpu_median_s": cmed, "cpu_ratio": cmed["train"] / cmed["deploy"],
        "wall_s": wall, "cpu_s": cpu,
    }


def parse_specs(items: list[str]) -> list[str]:
    keys = []
    for item in items:
        k = item.lower().split("-")[0].split(":")[0].removesuffix(".yaml").split("/")[-1]
        if k not in MODELS:
            raise SystemExit(f"unknown model '{item}'; choose from {', '.join(MODELS)}")
        keys.append(k)
    return keys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--specs", nargs="+", default=list(MODELS), help=f"models to run (default: {' '.join(MODELS)})")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads (default: all CPUs)")
    ap.add_argument("--rounds", type=int, default=15, help="most timed rounds (train + deploy) per model and batch")
    ap.add_argument("--min-rounds", type=int, default=2, help="fewest timed rounds, whatever the budget")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed rounds before timing (only one once a quarter of the budget is spent)")
    ap.add_argument("--budget", type=float, default=12.0, help="seconds of timed rounds per model and batch before stopping")
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative error (float32) train vs deploy")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "num_threads": torch.get_num_threads(), "machine": platform.machine(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "mkldnn": torch.backends.mkldnn.is_available()}
    results = []
    with tempfile.TemporaryDirectory(prefix="archc_reparam_") as tmp:
        for key in parse_specs(args.specs):
            pair = build_pair(key, Path(tmp))
            models = {"train": pair["train"], "deploy": pair["deploy"]}
            with torch.inference_mode():
                xs = inputs_for(pair["input_types"], 2, seed=1)
                err = max_rel_error(pair["train"](*xs), pair["deploy"](*xs))
            if not err <= args.tol:
                raise SystemExit(f"{pair['title']}: deploy output differs from train output (max rel. error {err:.3g})")
            entry = {k: pair[k] for k in ("key", "title", "spec", "variant")}
            entry.update(pair["facts"], max_rel_error_f32=err, input=list(pair["input_types"][0][1:]), runs=[])
            for bs in args.batches:
                xs = inputs_for(pair["input_types"], bs, seed=bs)
                run = timed_rounds(models, xs, args.warmup, args.rounds, args.min_rounds, args.budget)
                run["batch"] = bs
                entry["runs"].append(run)
                if not args.json:
                    print(f"  [{pair['title']} batch {bs}: {run['rounds']} rounds, train/deploy {run['ratio']:.2f}x]",
                          file=sys.stderr, flush=True)
            results.append(entry)
            del pair, models
    out = {"info": info, "args": vars(args), "models": results, "bench_seconds": time.perf_counter() - t_start}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print_table(out)
    return 0


def print_table(res: dict[str, Any]) -> None:
    info = res["info"]
    load = info["loadavg"]
    print(f"archc reparameterization benchmark: train form vs deploy form, eager CPU, torch {info['torch']}, "
          f"torch.set_num_threads({info['num_threads']}) [os.cpu_count() = {info['cpu_count']}]"
          + (f", load average {load[0]:.1f} at start" if load else ""))
    print()
    for m in res["models"]:
        p, mac = m["params"], m["macs"]
        print(f"{m['title']} ({m['spec']} -v {m['variant']}, input {'x'.join(map(str, m['input']))}): "
              f"params {p['train'] / 1e6:.2f}M -> {p['deploy'] / 1e6:.2f}M, GMACs {mac['train'] / 1e9:.3f} -> "
              f"{mac['deploy'] / 1e9:.3f}; convs {m['nodes']['train']['conv2d'] + m['nodes']['train']['cdc_conv2d']} -> "
              f"{m['nodes']['deploy']['conv2d']}, BNs {m['nodes']['train']['batchnorm']} -> "
              f"{m['nodes']['deploy']['batchnorm']}; max rel. error f64 {m['certified_max_rel_error_f64']:.1e} "
              f"(certified), f32 {m['max_rel_error_f32']:.1e}")
    print()
    head = (f"{'model':<14s} {'batch':>5s} {'rounds':>6s} {'train ms':>10s} {'deploy ms':>10s} {'ratio':>6s}"
            f" {'paired':>6s} {'min':>6s} {'cpu ratio':>9s} {'train p25-p75':>15s} {'deploy p25-p75':>15s}")
    print(head)
    print("-" * len(head))
    for m in res["models"]:
        for r in m["runs"]:
            med, lo, hi = r["median_s"], r["p25_s"], r["p75_s"]
            print(f"{m['title']:<14s} {r['batch']:5d} {r['rounds']:6d} {med['train'] * 1e3:10.1f} {med['deploy'] * 1e3:10.1f}"
                  f" {r['ratio']:6.2f} {r['paired_ratio']:6.2f} {r['min_ratio']:6.2f} {r['cpu_ratio']:9.2f}"
                  f" {lo['train'] * 1e3:7.0f}-{hi['train'] * 1e3:<7.0f} {lo['deploy'] * 1e3:7.0f}-{hi['deploy'] * 1e3:<7.0f}")
    print("ratio = median train latency / median deploy latency (> 1: the deploy form is faster); paired = median of the\n"
          "per-round ratios; min = ratio of the fastest rounds; cpu ratio = the same over median process CPU time")
    print(f"(benchmark took {res['bench_seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
