"""Does each bundled space's default proxy rank? ``archc search SPACE --check-proxy K`` for every space.

Run from the repository root::

    python benchmarks/bench_proxy_check.py                          # every bundled space, K = 10, 10× epochs
    python benchmarks/bench_proxy_check.py --k 6 --spaces cdc inceptionnext
    python benchmarks/bench_proxy_check.py --json                   # one JSON document

For each space it samples ``K`` distinct feasible architectures (sampler seed 0), trains each at the
space's search budget and at ``--factor`` × its epochs (or ``--long-epochs``) with two seeds, and
prints one row: Kendall τ and Spearman ρ between the budgets' rankings (95% bootstrap intervals over
architectures), the seed-to-seed τ at each budget, the seed standard deviation of the metric against
its spread across architectures, the rank correlation of the metric with the target model's MACs, and
the seconds of one search-budget training. The full report of each space is its
``proxy_check.json`` in ``--out/<space>``; trainings are cached there, so a rerun only prints.

This is not a test: a full run trains 4 × K × 2 × 2 models (tens of minutes on one core).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.search.proxy_check import LONG_FACTOR, check_proxy, format_table  # noqa: E402
from archc.search.space import load_space  # noqa: E402

SPACES = ("cdc", "inceptionnext", "unireplknet", "compound_scaling")


def _f(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def row(report: dict[str, Any]) -> str:
    b, n, sc = report["budgets"], report["noise"] or {}, report["size_correlation"] or {}
    ns, nl = n.get("search", {}), n.get("long", {})
    ti, ri = b["kendall_tau_interval"], b["spearman_rho_interval"]
    return (f"{report['name']:17s} {report['metric']:9s} {report['epochs']['search']:>3d}/{report['epochs']['long']:<4d} "
            f"{report['architectures']:>3d} {_f(b['kendall_tau'], '6.3f')} [{_f(ti[0], '5.2f')}, {_f(ti[1], '5.2f')}] "
            f"{_f(b['spearman_rho'], '6.3f')} [{_f(ri[0], '5.2f')}, {_f(ri[1], '5.2f')}] "
            f"{_f(ns.get('seed_tau'), '5.2f')}/{_f(nl.get('seed_tau'), '5.2f')} "
            f"{_f(ns.get('noise_ratio'), '5.2f')}/{_f(nl.get('noise_ratio'), '5.2f')} "
            f"{_f(sc.get('search', {}).get('macs'), '+5.2f')}/{_f(sc.get('long', {}).get('macs'), '+5.2f')} "
            f"{_f(report['seconds_per_search_trial'], '5.1f')}")


HEADER = (f"{'space':17s} {'metric':9s} {'epochs':8s} {'K':>3s} {'τ':>6s} {'τ 95% CI':15s} {'ρ':>6s} {'ρ 95% CI':15s} "
          f"{'seed τ s/l':11s} {'sd ratio s/l':11s} {'ρ(MACs) s/l':11s} {'s/trial':7s}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spaces", nargs="+", default=list(SPACES), help="bundled space names (default: all)")
    ap.add_argument("--k", type=int, default=10, help="architectures per space (default 10)")
    ap.add_argument("--factor", type=int, default=LONG_FACTOR, help="long budget = factor × the space's epochs")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", default="runs/proxy_check", help="run folders (one per space; trainings cached)")
    ap.add_argument("--workers", type=int, default=1, help="trainings at a time, one process each (default 1: "
                    "s/trial is then one training alone on a core)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--verbose", action="store_true", help="one line per training, and each space's full table")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reports = []
    for name in args.spaces:
        path = ROOT / "search_spaces" / f"{name}.yaml"
        epochs = load_space(path).evaluator.train.epochs  # type: ignore[union-attr]
        t0 = time.perf_counter()
        res = check_proxy(path, args.k, long_epochs=args.factor * epochs, seeds=args.seeds, out=Path(args.out) / name,
                          log=(lambda s: print(s, file=sys.stderr, flush=True)) if args.verbose else None,
                          workers=args.workers)
        res.report["wall_s"] = round(time.perf_counter() - t0, 1)
        reports.append(res.report)
        if args.verbose and not args.json:
            print(format_table(res.report) + "\n", flush=True)
    if args.json:
        print(json.dumps({"machine": platform.platform(), "torch": torch.__version__, "threads": 1, "reports": reports},
                         indent=2))
        return 0
    print(f"proxy check: K architectures × {args.seeds} seeds, search budget vs {args.factor}× its epochs "
          f"(torch {torch.__version__}, 1 thread)")
    print(HEADER)
    for r in reports:
        print(row(r))
    print("\nτ, ρ: rank agreement of the search budget with the long budget (mean over seeds; target τ ≥ 0.5);"
          " seed τ: τ between seed 0 and seed 1 at the search/long budget;\nsd ratio: the metric's seed standard"
          " deviation / its standard deviation across architectures; ρ(MACs): Spearman ρ of the metric with the"
          " target model's MACs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
