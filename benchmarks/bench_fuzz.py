"""Mutation fuzzing at scale: N mutants of the bundled specs, counted by outcome.

    nice -n 19 python benchmarks/bench_fuzz.py --mutants 10000 [--start 0] [--json out.json]

Runs :func:`tests.fuzz.mutator.run_case` on mutants ``(spec, seed)`` in the suite's order (so the
first ones are the suite's), and prints how many were rejected cleanly, compiled exactly (analytic
params/buffers/shapes equal the module's on the meta device), compiled without a meta kernel to
compare shapes, and how many were internal errors, hangs (> 5 CPU seconds) or mismatches, with the
first of each failing kind to reproduce. Exits 1 when any mutant failed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tests.fuzz.mutator import MUTATIONS, TIME_LIMIT, cases, run_case  # noqa: E402

FAIL = ("internal", "hang", "mismatch")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mutants", type=int, default=10_000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--json", help="write the counts and failures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    counts: collections.Counter[str] = collections.Counter()
    per_spec: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures = []
    slowest = (0.0, "")
    t0 = time.time()
    for n, (spec, seed) in enumerate(cases(args.start), 1):
        out = run_case(spec, seed)
        counts[out.kind] += 1
        per_spec[out.spec][out.kind] += 1
        if out.seconds > slowest[0]:
            slowest = (out.seconds, f"{out.spec} seed {out.seed}")
        if out.kind in FAIL:
            failures.append(vars(out))
            print(f"  {out.kind}: {out.spec} seed {out.seed}: {out.detail}", file=sys.stderr, flush=True)
        if n % 500 == 0:
            print(f"  {n} mutants, {time.time() - t0:.0f} s: {dict(counts)}", file=sys.stderr, flush=True)
        if n >= args.mutants:
            break
    wall = time.time() - t0
    print(f"mutation fuzzing: {n} mutants of {len(per_spec)} specs in {wall:.0f} s ({n / wall:.1f}/s); "
          f"mutations: {', '.join(sorted(MUTATIONS))}; limit {TIME_LIMIT:g} CPU s per mutant")
    print(f"{'spec':20s} " + " ".join(f"{k:>9s}" for k in ("rejected", "accepted", "unchecked", *FAIL)))
    for spec in sorted(per_spec):
        c = per_spec[spec]
        print(f"{spec:20s} " + " ".join(f"{c.get(k, 0):9d}" for k in ("rejected", "accepted", "unchecked", *FAIL)))
    print(f"{'total':20s} " + " ".join(f"{counts.get(k, 0):9d}" for k in ("rejected", "accepted", "unchecked", *FAIL)))
    print(f"slowest mutant: {slowest[0]:.2f} CPU s ({slowest[1]})")
    if args.json:
        Path(args.json).write_text(json.dumps({"mutants": n, "seconds": wall, "counts": dict(counts),
                                               "per_spec": {k: dict(v) for k, v in per_spec.items()},
                                               "failures": failures}, indent=1))
    return 1 if any(counts.get(k) for k in FAIL) else 0


if __name__ == "__main__":
    sys.exit(main())
