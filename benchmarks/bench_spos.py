"""SPOS: time per child evaluation with inherited weights, against the alternatives.

Run from the repository root::

    python benchmarks/bench_spos.py                          # search_spaces/cdc.yaml, 12 children
    python benchmarks/bench_spos.py --children 20 --threads 1 --json > spos.json

What one SPOS child costs, step by step, for children drawn uniformly from the space's supernet
(feasible and within the space's budgets, at the proxy size the search uses):

* ``cost``: expand the child's full-size graph and cost it (the budget check every child passes
  before it may run);
* ``inherited``: fix the supernet to the child's path, recalibrate BatchNorm on the strategy's default
  batches and compute the validation metrics — what ``--strategy spos`` does per child;
* ``compiled``: the same score through the compiled child instead: generate and import the child
  module, copy the inherited weights into it (``Supernet.child``), recalibrate, validate;
* ``standalone``: train the child from scratch with the space's training budget and validate — what a
  ``sample`` trial costs (run for ``--train-children`` children only; it dominates the run time).

Before timing, every child's inherited score is checked against the compiled child's (relative
difference ≤ ``--tol`` on every metric): the fast path must score exactly the network it stands for.
Rounds are interleaved (each round runs ``inherited`` and ``compiled`` back to back for one child,
alternating which goes first). Reported: the median seconds per child (wall and process CPU), the
spread (min–max), and the ratios ``compiled / inherited`` and ``standalone / inherited`` (how many
inherited-weight scores one stand-alone training buys).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.cost.model import graph_cost  # noqa: E402
from archc.search.bn_recal import recalibrate_bn  # noqa: E402
from archc.search.evaluate import ProxyEvaluator, validate  # noqa: E402
from archc.search.runner import ModelBuilder  # noqa: E402
from archc.search.space import load_space  # noqa: E402
from archc.search.strategies.spos import SposOptions  # noqa: E402
from archc.search.strategies.spos_check import retrain  # noqa: E402
from archc.search.strategies.spos_children import ChildScorer, bn_batches  # noqa: E402
from archc.search.strategies.spos_train import SupernetTraining, train_supernet  # noqa: E402
from archc.search.supernet import build_supernet  # noqa: E402


def _timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def _children(space: Any, sn: Any, builder: ModelBuilder, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` distinct children within the space's budgets, uniformly sampled paths."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(200 * n):
        if len(out) == n:
            break
        choice = sn.sample_path(rng)
        key = json.dumps(choice, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        c = graph_cost(builder.graph(space.materialize(choice).overrides))
        if all(getattr(c, k) <= v for k, v in space.constraints.items() if k in ("params", "macs", "acts")):
            out.append(choice)
    return out


def _stats(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="search_spaces/cdc.yaml")
    ap.add_argument("--children", type=int, default=12, help="children timed (default 12)")
    ap.add_argument("--train-children", type=int, default=3, help="children also trained stand-alone (default 3)")
    ap.add_argument("--epochs", type=int, default=2, help="supernet epochs before timing (default 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4, help="max relative difference inherited vs compiled")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    opts = SposOptions()
    space = load_space(ROOT / args.space if not Path(args.space).exists() else args.space).for_oneshot()
    builder = ModelBuilder(space)
    torch.manual_seed(args.seed)
    sn = build_supernet(space, proxy=True, seed=args.seed)
    probe = builder.graph(space.materialize(sn.sample_path(random.Random(args.seed))).proxy_overrides())
    in_shape = next(iter(probe.inputs.values())).concrete(1)
    out_shape = probe.output_types[0].concrete(1)
    data = ProxyEvaluator(space.evaluator).data(tuple(in_shape), tuple(out_shape))
    assert data is not None
    train_cfg = space.evaluator.train
    train_supernet(sn, data, SupernetTraining(epochs=args.epochs, batch_size=train_cfg.batch_size if train_cfg else 32,
                                              seed=args.seed))
    recal = bn_batches(data, opts.bn_batches, opts.bn_batch_size, args.seed)
    scorer = ChildScorer(sn, data, recal)
    children = _children(space, sn, builder, args.children, args.seed + 1)

    def compiled(choice: dict[str, Any]) -> dict[str, float]:
        _, child = sn.child(choice)
        recalibrate_bn(child, recal)
        return validate(child, data)

    # equivalence first: the fast path scores exactly the compiled child
    worst = 0.0
    for choice in children:
        a, b = scorer(choice), compiled(choice)
        for k in b:
            worst = max(worst, abs(a[k] - b[k]) / max(abs(b[k]), 1e-12))
    if worst > args.tol:
        print(f"inherited and compiled scores differ: max relative difference {worst:.3g} > {args.tol:g}", file=sys.stderr)
        return 1
    rows: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in ("cost", "inherited", "compiled",
                                                                                     "standalone")}

    def record(name: str, w: float, c: float) -> None:
        rows[name]["wall"].append(w)
        rows[name]["cpu"].append(c)

    for r, choice in enumerate(children):
        _, w, c = _timed(lambda ch: graph_cost(builder.graph(space.materialize(ch).overrides)), choice)
        record("cost", w, c)
        order = ("inherited", "compiled") if r % 2 == 0 else ("compiled", "inherited")
        for name in order:
            fn = scorer if name == "inherited" else compiled
            _, w, c = _timed(fn, choice)
            record(name, w, c)
    for choice in children[:args.train_children]:
        _, w, c = _timed(retrain, space, builder, choice, data, 0)
        record("standalone", w, c)
    inh = statistics.median(rows["inherited"]["wall"])
    inh_cpu = statistics.median(rows["inherited"]["cpu"])
    report = {"space": str(args.space), "children": len(children), "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "max_rel_diff_inherited_vs_compiled": worst,
              "bn_recalibration": {"batches": len(recal), "batch_size": opts.bn_batch_size},
              "standalone_budget": None if train_cfg is None else
              {"epochs": train_cfg.epochs, "batch_size": train_cfg.batch_size, "train": data.sizes[0]},
              "timings": {k: {"wall": _stats(v["wall"]), "cpu": _stats(v["cpu"])} for k, v in rows.items() if v["wall"]},
              "raw": rows}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{args.space}: {len(children)} children, {args.threads} thread(s); inherited vs compiled scores agree "
          f"(max rel. diff {worst:.1e}); BN recalibrated on {len(recal)} batches of ≤{opts.bn_batch_size}")
    print(f"{'step':<12} {'median s':>9} {'min–max s':>17} {'cpu s':>8} {'× inherited':>12} {'× inh. (cpu)':>13}")
    for k, v in report["timings"].items():
        w, c = v["wall"], v["cpu"]
        print(f"{k:<12} {w['median']:>9.4f} {w['min']:>8.4f}–{w['max']:<8.4f} {c['median']:>8.4f} "
              f"{w['median'] / inh:>12.2f} {c['median'] / inh_cpu:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
