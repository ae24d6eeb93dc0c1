"""Side by side: pipelines (train, deploy, fused) × targets on several specs, CPU latency.

Run from the repository root::

    python benchmarks/bench_targets.py                          # repvgg, convfirst, convnext, inceptionnext; batch 1
    python benchmarks/bench_targets.py --batch 1,16 --threads 1
    python benchmarks/bench_targets.py --specs specs/repvgg.yaml --targets pytorch,torchscript,export,onnx
    python benchmarks/bench_targets.py --json > targets.json

Each spec is measured by :func:`archc.bench.bench` (the engine of ``archc bench``): every artifact
is built, written to a temporary folder and loaded back as a user would load it; calls are
interleaved (one call of each artifact per round, order rotated), medians over the rounds. The
summary gives, per spec and batch, the train-form eager latency and every other row as a speed-up
over it (> 1 is faster), plus the fused pipeline against the deploy pipeline on the same target.
``noise`` is the largest interquartile range / median among the spec's rows. The full per-row
tables follow the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from archc.bench import bench, format_table  # noqa: E402

DEFAULT_SPECS = ["specs/repvgg.yaml", "specs/convfirst.yaml", "specs/convnext.yaml", "specs/inceptionnext.yaml"]


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def summary(results: list, targets: list[str]) -> str:
    cols = [("deploy", t) for t in targets] + [("fused", t) for t in targets]
    head = "| spec | batch | train eager ms | " + " | ".join(f"{p} {t}" for p, t in cols) \
           + " | " + " | ".join(f"fused/deploy {t}" for t in targets) + " | noise |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for res in results:
        for b in res.batches:
            base = res.row("train", "pytorch", b)
            if base is None:
                continue
            cells = []
            for p, t in cols:
                r = res.row(p, t, b)
                cells.append(f"{r.vs_train:.2f}×" if r else "—")
            fd = []
            for t in targets:
                r = res.row("fused", t, b)
                fd.append(f"{r.vs_deploy:.2f}×" if r and r.vs_deploy else "—")
            rows = [r for r in res.rows if r.batch == b]
            noise = max((r.q3_ms - r.q1_ms) / r.median_ms for r in rows)
            name = Path(res.spec).stem + (f"-{res.variant}" if res.variant else "")
            lines.append(f"| {name} | {b} | {base.median_ms:.1f} | " + " | ".join(cells) + " | " + " | ".join(fd) + f" | {noise:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", default=",".join(DEFAULT_SPECS), help="comma-separated spec files")
    ap.add_argument("--targets", default="pytorch,torchscript")
    ap.add_argument("--pipelines", default="train,deploy,fused")
    ap.add_argument("--batch", default="1")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-check", action="store_true", help="skip the pass and artifact checks (faster)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    targets = _split(args.targets)
    results = []
    for spec in _split(args.specs):
        print(f"{spec} ...", file=sys.stderr, flush=True)
        results.append(bench(spec, pipelines=_split(args.pipelines), targets=targets, batches=[int(b) for b in _split(args.batch)],
                             iters=args.iters, budget=args.budget, threads=args.threads, check=not args.no_check,
                             progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True)))
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"speed-up over the train-form eager module (median latency ratio), {results[0].threads} thread(s), "
          f"load average now {load:.1f} on {os.cpu_count()} cores\n")
    print(summary(results, targets))
    for res in results:
        print()
        print(format_table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
