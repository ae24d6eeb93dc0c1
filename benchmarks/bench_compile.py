"""Compile-time benchmark: TransXNet per stage, and scaling on synthetic specs of 1k-100k nodes.

Run from the repository root::

    python benchmarks/bench_compile.py            # table
    python benchmarks/bench_compile.py --json     # machine-readable

Stages (the same calls ``archc.compiler.compile_spec`` makes for the default ``train`` pipeline):

* **load**     ``load_spec_doc`` (YAML with positions, schema, imports) + ``resolve_params`` (variant);
* **expand**   ``expand``: blocks, repeats, expressions, op binding and shape inference;
* **cost**     ``graph_cost``: params / MACs / activations;
* **generate** ``generate``: PyTorch source (class signatures, symbolization, jinja, ``ast.parse``).

Every figure is a median over runs. Both CPU time of this process (``time.process_time``, robust to
other load on the machine) and wall time (``time.perf_counter``) are reported; the growth exponent is
fitted on CPU time. Cyclic-GC pauses are measured with ``gc.callbacks`` and reported as a share.

The synthetic specs are generated here as YAML text: a block ``unit`` of 9 ops (conv, bn, gelu,
depthwise conv, conv, bn, drop_path, residual add, relu) is instantiated ``reps = nodes / 10`` times

* ``repeat``:   one node ``{op: unit, repeat: reps, p: "${0.1 * i / n}"}``;
* ``explicit``: ``reps`` explicit nodes ``- b17: {op: unit, dim: 8, p: 0.00017000}``.

``p`` differs per instance (as drop-path rates do in real models), so no two instances share a
memoized block body: every node is really expanded. Node counts are ``len(list(graph.walk()))``
(op nodes + block instances + repeat nodes).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.compiler import CompileOptions, block_info, compile_spec  # noqa: E402
from archc.cost.model import graph_cost  # noqa: E402
from archc.spec.document import load_spec_doc, resolve_params  # noqa: E402
from archc.spec.expand import expand  # noqa: E402

try:
    from archc.spec.expand import MAX_REPEAT  # noqa: E402
except ImportError:  # pragma: no cover
    MAX_REPEAT = 10_000

STAGES = ("load", "expand", "cost", "generate")
NODES_PER_REP = 10  # 9 ops + the block-instance node


# -- GC accounting -------------------------------------------------------------------------------


class _GcClock:
    """Total wall time spent in cyclic garbage collection while enabled."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t0


GC_CLOCK = _GcClock()
gc.callbacks.append(GC_CLOCK)


# -- the compile, split into stages --------------------------------------------------------------


def compile_stages(path: Path, text: str | None, variant: str | None, collect: bool = True,
                   profiler: cProfile.Profile | None = None, profile: tuple[str, ...] = ()) -> dict[str, Any]:
    """One compile; returns per-stage wall/CPU seconds, GC seconds, node count and source size.

    ``collect`` runs a full GC first (untimed) so garbage of earlier runs is not charged to this one.
    ``profiler`` is enabled around the stages named in ``profile`` only.
    """
    from archc.backends.pytorch.codegen import generate

    if collect:
        gc.collect()
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    gc0 = GC_CLOCK.total
    out: dict[str, Any] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        on = profiler is not None and stage in profile
        w, c = time.perf_counter(), time.process_time()
        if on:
            profiler.enable()  # type: ignore[union-attr]
        res = fn()
        if on:
            profiler.disable()  # type: ignore[union-attr]
        cpu[stage] = time.process_time() - c
        wall[stage] = time.perf_counter() - w
        return res

    def load() -> tuple[Any, str | None, dict[str, Any]]:
        doc = load_spec_doc(path, text)
        chosen, env = resolve_params(doc, variant, ())
        return doc, chosen, env

    doc, chosen, env = timed("load", load)

    def do_expand() -> Any:
        g = expand(doc, env, chosen)
        try:
            g.meta["spec_label"] = Path(doc.path).resolve().relative_to(doc.root.resolve()).as_posix()
        except ValueError:
            g.meta["spec_label"] = Path(doc.path).name
        return g

    graph = timed("expand", do_expand)
    cost = timed("cost", lambda: graph_cost(graph))

    def do_generate() -> str:
        graph.meta["title"] = doc.name + (f"-{graph.meta['variant']}" if graph.meta.get("variant") else "")
        return generate(graph, graph.meta["spec_label"], doc.name, block_info(doc))

    source = timed("generate", do_generate)
    out.update(wall=wall, cpu=cpu, gc=GC_CLOCK.total - gc0, nodes=sum(1 for _ in graph.walk()),
               op_nodes=sum(1 for _, n in graph.walk() if n.body is None), source_lines=source.count("\n"),
               params=cost.params, macs=cost.macs)
    return out


def median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    med = lambda xs: statistics.median(xs)  # noqa: E731
    res = {
        "runs": len(runs),
        "wall": {s: med([r["wall"][s] for r in runs]) for s in STAGES},
        "cpu": {s: med([r["cpu"][s] for r in runs]) for s in STAGES},
        "wall_total": med([sum(r["wall"].values()) for r in runs]),
        "cpu_total": med([sum(r["cpu"].values()) for r in runs]),
        "gc": med([r["gc"] for r in runs]),
    }
    for k in ("nodes", "op_nodes", "source_lines", "params", "macs"):
        res[k] = runs[0][k]
    return res


def repeat_runs(fn: Callable[[], dict[str, Any]], max_runs: int, budget_s: float) -> dict[str, Any]:
    """Run ``fn`` up to ``max_runs`` times, stopping early once ``budget_s`` wall seconds are spent."""
    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    while len(runs) < max_runs:
        runs.append(fn())
        if time.perf_counter() - t0 > budget_s:
            break
    return median_runs(runs)


# -- synthetic specs -----------------------------------------------------------------------------

_HEAD = """archc: 1
name: synth_{kind}
doc: Synthetic scaling spec ({reps} instances of a 9-op block).
params: {{reps: {reps}, c: 8}}
inputs:
  x: [B, "${{c}}", 8, 8]
blocks:
  unit:
    params: {{dim: int, p: float}}
    graph:
      - fc1: {{op: conv2d, out: "${{dim * 2}}", kernel: 1, bias: false}}
      - bn1: batchnorm
      - act1: gelu
      - dw: {{op: conv2d, out: "${{dim * 2}}", kernel: 3, groups: "${{dim * 2}}"}}
      - fc2: {{op: conv2d, out: "${{dim}}", kernel: 1}}
      - bn2: batchnorm
      - dp: {{op: drop_path, p: "${{p}}"}}
      - res: {{op: add, in: [x, dp]}}
      - act2: relu
graph:
"""


def synthetic_spec(kind: str, nodes: int) -> tuple[str, int]:
    """YAML text of a synthetic spec with about ``nodes`` nodes, and its repetition count."""
    reps = max(1, round(nodes / NODES_PER_REP))
    head = _HEAD.format(kind=kind, reps=reps)
    if kind == "repeat":
        if reps > MAX_REPEAT:
            raise SystemExit(f"--sizes: {nodes} nodes needs repeat {reps} > MAX_REPEAT {MAX_REPEAT}")
        return head + '  - blocks: {op: unit, repeat: "${reps}", dim: "${c}", p: "${0.1 * i / n}"}\n', reps
    if kind == "explicit":
        lines = [f"  - b{j}: {{op: unit, dim: 8, p: {0.1 * j / reps:.8f}}}\n" for j in range(reps)]
        return head + "".join(lines), reps
    raise ValueError(kind)


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


# -- profiling -----------------------------------------------------------------------------------

def _short(filename: str) -> str:
    p = Path(filename)
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return p.name if p.is_absolute() else filename


def _label(code: Any) -> str:
    """``path:line qualified.name`` of a profiled code object (taken from memory, not from the file,
    which may have changed since it was imported), or the name of a built-in."""
    if isinstance(code, str):
        return code
    name = getattr(code, "co_qualname", code.co_name)
    return f"{_short(code.co_filename)}:{code.co_firstlineno} {name}"


def profile_compile(path: Path, text: str, stages: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """cProfile ``stages`` of one compile; returns total profiled CPU seconds and self CPU time per function."""
    gc.collect()
    pr = cProfile.Profile(time.process_time)  # CPU time, so other load on the machine does not count
    compile_stages(path, text, None, collect=False, profiler=pr, profile=stages)
    per: dict[str, float] = {}
    for entry in pr.getstats():
        label = _label(entry.code)
        per[label] = per.get(label, 0.0) + entry.inlinetime
    return sum(per.values()), per


def hot_spots(kind: str, stages: tuple[str, ...], small: int, big: int, top: int) -> dict[str, Any]:
    """Functions by self time in ``stages`` at ``big`` nodes, with share and local growth exponent from ``small``."""
    out: dict[str, Any] = {"kind": kind, "stages": list(stages), "small": small, "big": big}
    prof = {}
    for n in (small, big):
        text, _ = synthetic_spec(kind, n)
        prof[n] = profile_compile(ROOT / "benchmarks" / f"synthetic_{kind}.yaml", text, stages)
    (ts, ps), (tb, pb) = prof[small], prof[big]
    ratio = math.log(big / small)
    rows = []
    for label, t in sorted(pb.items(), key=lambda kv: -kv[1])[:top]:
        t0 = ps.get(label, 0.0)
        rows.append({"function": label, "self_s": t, "share": t / tb, "share_small": t0 / ts if ts else 0.0,
                     "exponent": (math.log(t / t0) / ratio) if t0 > 0 and t > 0 else None})
    out.update(total_small=ts, total_big=tb, exponent_total=math.log(tb / ts) / ratio, rows=rows)
    return out


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    ap.add_argument("--spec", default=str(ROOT / "specs" / "transxnet.yaml"))
    ap.add_argument("--variant", default="t")
    ap.add_argument("--runs", type=int, default=7, help="runs of the real spec (median)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="synthetic node counts")
    ap.add_argument("--kinds", nargs="+", default=["repeat", "explicit"], choices=["repeat", "explicit"])
    ap.add_argument("--synthetic-runs", type=int, default=5, help="most runs per synthetic size (median)")
    ap.add_argument("--size-budget", type=float, default=4.0,
                    help="stop repeating a synthetic size once this many seconds are spent on it (>= 1 run)")
    ap.add_argument("--superlinear", type=float, default=1.15,
                    help="a stage whose growth exponent (fitted or last step) exceeds this is profiled")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--profile-sizes", type=int, nargs=2, default=[2_000, 20_000], metavar=("SMALL", "BIG"),
                    help="synthetic sizes profiled (only the superlinear stages are profiled)")
    ap.add_argument("--top", type=int, default=12, help="functions listed per profile")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    import torch  # noqa: F401  (imported by archc anyway; keep it out of the first timed run)

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}

    # warm caches (imports, op registry, jinja) once, untimed
    compile_stages(Path(args.spec), None, args.variant)

    real = repeat_runs(lambda: compile_stages(Path(args.spec), None, args.variant), args.runs, float("inf"))
    e2e = []
    for _ in range(args.runs):
        gc.collect()
        w, c = time.perf_counter(), time.process_time()
        compile_spec(args.spec, CompileOptions(variant=args.variant))
        e2e.append((time.process_time() - c, time.perf_counter() - w))
    real["compile_spec_cpu"] = statistics.median(x[0] for x in e2e)
    real["compile_spec_wall"] = statistics.median(x[1] for x in e2e)

    synth: dict[str, list[dict[str, Any]]] = {}
    for kind in args.kinds:
        synth[kind] = []
        for n in sorted(args.sizes):
            text, reps = synthetic_spec(kind, n)
            spath = ROOT / "benchmarks" / f"synthetic_{kind}.yaml"  # never written: the text is passed
            r = repeat_runs(lambda p=spath, t=text: compile_stages(p, t, None), args.synthetic_runs, args.size_budget)
            r.update(target=n, reps=reps, yaml_bytes=len(text))
            synth[kind].append(r)
            if not args.json:
                print(f"  [{kind:8s} {r['nodes']:>7d} nodes: {r['cpu_total']:.2f} s cpu, {r['runs']} run(s)]",
                      file=sys.stderr, flush=True)

    # exponents: least-squares fit over all sizes, and the local one of the last (largest) step
    fits: dict[str, dict[str, Any]] = {}
    for kind, rows in synth.items():
        xs = [r["nodes"] for r in rows]
        f: dict[str, Any] = {"fit": {}, "last": {}}
        series = {"total": [r["cpu_total"] for r in rows], "wall": [r["wall_total"] for r in rows],
                  **{s: [r["cpu"][s] for r in rows] for s in STAGES}}
        for name, ys in series.items():
            f["fit"][name] = loglog_slope(xs, ys)
            f["last"][name] = loglog_slope(xs[-2:], ys[-2:])
        # a stage is superlinear when it grows faster than the threshold and is not negligible
        big = rows[-1]
        f["superlinear"] = [s for s in STAGES if big["cpu"][s] >= 0.05 * big["cpu_total"]
                            and max(f["fit"][s] or 0, f["last"][s] or 0) > args.superlinear]
        if max(f["fit"]["total"] or 0, f["last"]["total"] or 0) > args.superlinear:
            f["superlinear"] = f["superlinear"] or ["total"]
        fits[kind] = f

    profiles = []
    if args.profile != "never":
        small, big = args.profile_sizes
        for kind in synth:
            stages = [s for s in fits[kind]["superlinear"] if s in STAGES]
            if "total" in fits[kind]["superlinear"] or (args.profile == "always" and not stages):
                stages = list(STAGES)
            if stages:
                profiles.append(hot_spots(kind, tuple(stages), small, big, args.top))

    result = {"info": info, "spec": args.spec, "variant": args.variant, "transxnet": real, "synthetic": synth,
              "exponents": fits, "superlinear_threshold": args.superlinear, "profiles": profiles,
              "bench_seconds": time.perf_counter() - t_start}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_tables(result)
    return 0


def _ms(x: float) -> str:
    return f"{x * 1e3:9.1f}"


def print_tables(res: dict[str, Any]) -> None:
    info = res["info"]
    load = info["loadavg"]
    print(f"archc compile benchmark  (python {info['python']}, {info['cpus']} CPUs, "
          f"load average {load[0]:.1f} at start)" if load else "")
    print("Times are medians; 'cpu' = process CPU time, 'wall' = elapsed. All times in ms.\n")

    r = res["transxnet"]
    print(f"1. {Path(res['spec']).name} variant {res['variant']}: {r['nodes']} nodes ({r['op_nodes']} ops), "
          f"{r['params']:,} params, {r['macs'] / 1e9:.3f} GMACs, {r['source_lines']} generated lines, "
          f"median of {r['runs']}")
    print(f"   {'':6s} {'load':>9s} {'expand':>9s} {'cost':>9s} {'generate':>9s} {'total':>9s} {'gc':>9s}"
          f" {'compile_spec()':>15s}")
    for k in ("cpu", "wall"):
        vals = "".join(_ms(r[k][s]) + " " for s in STAGES)
        print(f"   {k:6s} {vals}{_ms(r[k + '_total'])} {_ms(r['gc']) if k == 'wall' else ' ' * 9} "
              f"{_ms(r['compile_spec_' + k]):>15s}")
    print()

    print("2. Synthetic specs (9-op block x reps; load + expand + cost + generate)")
    print(f"   {'path':8s} {'nodes':>7s} {'runs':>4s} {'yaml KB':>8s} {'load':>9s} {'expand':>9s} {'cost':>9s}"
          f" {'generate':>9s} {'cpu total':>10s} {'wall total':>10s} {'gc %':>5s} {'us/node':>8s}")
    for kind, rows in res["synthetic"].items():
        for row in rows:
            vals = "".join(_ms(row["cpu"][s]) + " " for s in STAGES)
            gcp = 100 * row["gc"] / row["wall_total"] if row["wall_total"] else 0.0
            print(f"   {kind:8s} {row['nodes']:7d} {row['runs']:4d} {row['yaml_bytes'] / 1024:8.1f} {vals}"
                  f"{_ms(row['cpu_total']):>10s} {_ms(row['wall_total']):>10s} {gcp:5.1f}"
                  f" {1e6 * row['cpu_total'] / row['nodes']:8.1f}")
    print()
    print("   Growth exponent of CPU time vs nodes (1.0 = linear): least-squares fit over all sizes,")
    print("   and [local exponent of the last step]")
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    print(f"   {'path':8s} " + " ".join(f"{s:>14s}" for s in ("total", *STAGES, "total wall")))
    for kind, f in res["exponents"].items():
        cells = [f"{fmt(f['fit'][s])} [{fmt(f['last'][s])}]" for s in ("total", *STAGES, "wall")]
        print(f"   {kind:8s} " + " ".join(f"{c:>14s}" for c in cells))
    flagged = {k: f["superlinear"] for k, f in res["exponents"].items() if f["superlinear"]}
    if flagged:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in flagged.items())
        print(f"   verdict: SUPERLINEAR (exponent > {res['superlinear_threshold']}) in {what}")
    else:
        print(f"   verdict: linear (every exponent <= {res['superlinear_threshold']})")
    print()

    for p in res["profiles"]:
        print(f"3. Hot spots, {p['kind']} path, stage(s) {'+'.join(p['stages'])}: cProfile self CPU time at "
              f"{p['big']} nodes ({p['total_big']:.2f} s profiled) vs {p['small']} nodes ({p['total_small']:.2f} s)")
        print(f"   share = of the profiled time at {p['big']}, was = share at {p['small']}, "
              f"exp = growth exponent of the function's self time (whole stage: {p['exponent_total']:.2f})")
        print(f"   {'share':>6s} {'was':>6s} {'exp':>5s} {'self s':>7s}  function")
        for row in p["rows"]:
            e = f"{row['exponent']:.2f}" if row["exponent"] is not None else "  new"
            print(f"   {100 * row['share']:5.1f}% {100 * row['share_small']:5.1f}% {e:>5s} {row['self_s']:7.3f}  "
                  f"{row['function']}")
        print()
    print(f"(benchmark took {res['bench_seconds']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
