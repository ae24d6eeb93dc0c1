"""archc search across processes: trials per minute with 1 and 2 workers, and storage overhead per trial.

Run from the repository root::

    python benchmarks/bench_cluster.py                                  # both parts, table
    python benchmarks/bench_cluster.py --trials 8 --postgres postgresql://postgres@127.0.0.1:55432/bench
    python benchmarks/bench_cluster.py --json

1. **Throughput** — ``archc search search_spaces/cdc.yaml --workers W`` (real proxy training, the space's
   own evaluator, journal storage) for W = 1 and 2, each on a fresh study with ``--trials N``. Reported:
   evaluated trials per minute of the whole command (process start, checks before trial 0, outputs
   included) and of the steady state (first trial start to last trial end, from the study's timestamps).
   The runs alternate (1, 2, 2, 1, ...) over ``--repeats`` rounds so that drifts in machine load hit both.
2. **Storage overhead** — the same driver on a space whose trials only cost the architecture (no model
   is built or trained), ``--overhead-trials`` trials per storage: journal file, SQLite, PostgreSQL (with
   ``--postgres URL`` or ``ARCHC_TEST_POSTGRES_URL``), against Optuna's in-memory storage running the
   same trial code. Overhead per trial = (per-trial time on the storage) - (per-trial time in memory):
   what heartbeats, the reservation lock, the duplicate lookups and the attribute writes cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

COST_SPACE = """\
archc: 1
name: {name}
base: {base}
choices:
  width: {{type: int, low: 4, high: 256, step: 4}}
  depth: {{type: int, low: 1, high: 4}}
  kernel: [1, 3, 5]
  act: {{type: op, values: [relu, gelu, silu]}}
objectives: {{params: minimize, macs: minimize}}
study: {{sampler: {{name: random, seed: 0}}}}
"""


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def _load(storage: str, name: str) -> Any:
    import optuna

    from archc.search.storage import normalize_url

    if "://" in storage:
        return optuna.load_study(study_name=name, storage=normalize_url(storage)[0])
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))


# -------------------------------------------------------------------------------------------------------
# 1. throughput
# -------------------------------------------------------------------------------------------------------
def throughput(space: Path, workers: int, trials: int, tmp: Path) -> dict[str, Any]:
    import resource

    out = tmp / f"w{workers}_{uuid.uuid4().hex[:6]}"
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "archc", "search", str(space), "--workers", str(workers), "--trials",
                        str(trials), "--out", str(out), "--no-progress"], capture_output=True, text=True, env=_env(),
                       cwd=str(ROOT))
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"bench_cluster: the search failed ({p.returncode}):\n{p.stderr[-3000:]}")
    study = _load(str(out / "study.log"), "cdc")
    done = [t for t in study.trials if t.user_attrs.get("status") == "complete"]
    first = min(t.datetime_start for t in study.trials if t.datetime_start)
    last = max(t.datetime_complete for t in study.trials if t.datetime_complete)
    steady = (last - first).total_seconds()
    return {"workers": workers, "evaluated": len(done), "trials": len(study.trials), "wall_s": wall, "cpu_s": cpu,
            "steady_s": steady, "per_min_wall": 60 * len(done) / wall, "per_min_steady": 60 * len(done) / steady}


# -------------------------------------------------------------------------------------------------------
# 2. storage overhead
# -------------------------------------------------------------------------------------------------------
def in_memory(space_path: Path, trials: int, out: Path) -> float:
    """Seconds per trial of the same trial code on Optuna's in-memory storage (no storage cost)."""
    import warnings

    import optuna

    from archc.search.runner import ModelBuilder, make_sampler
    from archc.search.space import load_space
    from archc.search.trial import TrialRunner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, 0))
    runner = TrialRunner(space, study, out, None, 1, False)
    runner.builder = ModelBuilder(space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for _ in range(trials):
            runner.run_trial(study.ask())
        return (time.perf_counter() - t0) / trials


def on_storage(space_path: Path, storage: str, trials: int, out: Path) -> float:
    """Seconds per trial of ``run_search`` on ``storage`` (opening and outputs excluded)."""
    import warnings

    from archc.search import run_search

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        res = run_search(space_path, trials=trials, storage=storage, out=out, progress=False, outputs=False,
                         preflight=False)
        total = time.perf_counter() - t0
    starts = [t.datetime_start for t in res.study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in res.study.trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds()
    assert res.completed == trials, (res.completed, trials)
    return min(span, total) / len(res.study.trials)


def overhead(trials: int, postgres: str | None, tmp: Path) -> list[dict[str, Any]]:
    from tests.search.conftest import TINY

    rows = []
    name = f"bench_{uuid.uuid4().hex[:8]}"
    space = tmp / f"{name}.yaml"
    space.write_text(COST_SPACE.format(name=name, base=TINY.as_posix()))
    base = in_memory(space, trials, tmp / "mem")
    rows.append({"storage": "in-memory (reference)", "per_trial_ms": 1000 * base, "overhead_ms": 0.0})
    kinds = [("journal", str(tmp / "journal" / "study.log")), ("sqlite", f"sqlite:///{tmp / 'study.db'}")]
    if postgres:
        kinds.append(("postgresql", postgres))
    for kind, url in kinds:
        per = on_storage(space, url, trials, tmp / kind)
        rows.append({"storage": kind, "per_trial_ms": 1000 * per, "overhead_ms": 1000 * (per - base)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "cdc.yaml"))
    ap.add_argument("--trials", type=int, default=6, help="evaluated trials per throughput run (default 6)")
    ap.add_argument("--repeats", type=int, default=1, help="rounds of (1 worker, 2 workers) (default 1)")
    ap.add_argument("--overhead-trials", type=int, default=60, help="trials per storage in part 2 (default 60)")
    ap.add_argument("--postgres", default=os.environ.get("ARCHC_TEST_POSTGRES_URL"), help="PostgreSQL URL for part 2")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="archc-bench-cluster-") as d:
        tmp = Path(d)
        runs: list[dict[str, Any]] = []
        if not args.skip_throughput:
            for r in range(args.repeats):
                for w in ((1, 2) if r % 2 == 0 else (2, 1)):
                    runs.append(throughput(Path(args.space), w, args.trials, tmp))
        rows = overhead(args.overhead_trials, args.postgres, tmp)
    info = {"machine": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0)),
            "load_avg_1min": os.getloadavg()[0], "python": platform.python_version()}
    if args.json:
        print(json.dumps({"info": info, "throughput": runs, "storage": rows}, indent=1))
        return
    print(f"machine: {info['cpus']} CPUs, load average {info['load_avg_1min']:.1f} at the end")
    if runs:
        print(f"\n1. throughput on {Path(args.space).name} ({args.trials} evaluated trials per run)")
        print(f"{'workers':>7} {'runs':>4} {'trials/min (command)':>21} {'trials/min (steady)':>20} {'ratio (steady)':>15}"
              f" {'CPU s/trial':>12}")
        med1 = statistics.median(r["per_min_steady"] for r in runs if r["workers"] == 1)
        for w in (1, 2):
            rs = [r for r in runs if r["workers"] == w]
            cmd = statistics.median(r["per_min_wall"] for r in rs)
            st = statistics.median(r["per_min_steady"] for r in rs)
            cpu = statistics.median(r["cpu_s"] / r["evaluated"] for r in rs)
            print(f"{w:>7} {len(rs):>4} {cmd:>21.2f} {st:>20.2f} {st / med1:>14.2f}x {cpu:>12.2f}")
    print(f"\n2. storage overhead per trial ({args.overhead_trials} cost-only trials)")
    print(f"{'storage':>22} {'ms/trial':>9} {'overhead ms':>12}")
    for r in rows:
        print(f"{r['storage']:>22} {r['per_trial_ms']:>9.1f} {r['overhead_ms']:>12.1f}")


if __name__ == "__main__":
    main()
