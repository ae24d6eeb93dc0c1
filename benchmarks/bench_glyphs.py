"""How long a worker waits for the glyph pool: drawing with cache-sized chunks against fixed 256-sample chunks.

Run from the repository root::

    python benchmarks/bench_glyphs.py                    # 32×32 and 64×64, 4,096 samples each, 3 rounds
    python benchmarks/bench_glyphs.py --sizes 32 --samples 8192 --json

Every search or proxy-check process draws its pool once before its first training (49,152 glyphs for the
bundled spaces: 40,960 train + 8,192 val). The two chunkings are timed alternately in one process on one
thread (the evaluator's count), the ratio is old / new, and the drawn tensors must be bit-identical: the
chunk size is a speed setting only. The seconds for the full pool are the measured rate scaled to 49,152.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import archc.search.glyphs as glyphs  # noqa: E402

POOL = 40960 + 8192
OLD_SAMPLES_PER_CHUNK = 256


def _time(n: int, hw: tuple[int, int], terms: int) -> tuple[float, torch.Tensor]:
    glyphs._CHUNK_TERMS = terms
    t0 = time.perf_counter()
    x, _ = glyphs.render_glyphs(n, hw, 1)
    return time.perf_counter() - t0, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="square input sizes")
    ap.add_argument("--samples", type=int, default=4096, help="glyphs drawn per timing")
    ap.add_argument("--rounds", type=int, default=3, help="timed pairs per size")
    ap.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    new_terms = glyphs._CHUNK_TERMS
    per_sample = (glyphs.STROKES + glyphs.DISTRACTORS) * (glyphs._POINTS - 1)
    rows = []
    for s in args.sizes:
        hw = (s, s)
        old_terms = OLD_SAMPLES_PER_CHUNK * per_sample * s * s
        old, new = [], []
        same = True
        for _ in range(args.rounds):
            t_old, x_old = _time(args.samples, hw, old_terms)
            t_new, x_new = _time(args.samples, hw, new_terms)
            old.append(t_old)
            new.append(t_new)
            same = same and torch.equal(x_old, x_new)
        o, n = statistics.median(old), statistics.median(new)
        rows.append({"size": s, "samples": args.samples, "old_s": old, "new_s": new, "ratio": o / n,
                     "pool_old_s": o * POOL / args.samples, "pool_new_s": n * POOL / args.samples, "identical": same})
    glyphs._CHUNK_TERMS = new_terms
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if args.json:
        print(json.dumps({"cpu": cpu, "torch": torch.__version__, "threads": 1, "rows": rows}, indent=2))
        return
    print(f"glyph pool drawing, one thread, {cpu}, torch {torch.__version__}")
    print(f"{'size':>5} {'256/chunk s':>12} {'cache-sized s':>14} {'ratio':>6} {'pool of 49,152 (old → new)':>28} identical")
    for r in rows:
        print(f"{r['size']:>5} {statistics.median(r['old_s']):>12.2f} {statistics.median(r['new_s']):>14.2f} "
              f"{r['ratio']:>5.1f}× {r['pool_old_s']:>12.0f} s → {r['pool_new_s']:.0f} s {'yes' if r['identical'] else 'NO':>10}")


if __name__ == "__main__":
    main()
