"""archc search: per-trial overhead and proxy-training throughput against a hand-written loop.

Run from the repository root::

    python benchmarks/bench_search.py                      # table
    python benchmarks/bench_search.py --json               # machine-readable
    python benchmarks/bench_search.py --space search_spaces/cdc.yaml --trials 20 --repeats 7

1. **Per-trial overhead** — everything archc does for a trial except evaluating it: ask the study's
   sampler (the space's own, in an in-memory study), sample, materialize params, expand and cost the
   target graph, check the budget, expand the proxy graph, hash its canonical print, generate its PyTorch
   source, import it and build the module. Reported per stage (median over ``--trials`` samples; samples
   the budget rejects stop after costing, as in a real run, and are reported separately).
2. **Training throughput** — :func:`archc.search.evaluate.train_proxy` (the evaluator's loop: seeded
   permutation, per-step LR schedule, per-epoch validation) against a plain hand-written PyTorch loop
   doing the same work (same model and initial weights, same data tensors, optimizer, schedule, batch
   size, loss, validation), and, for reference, the same loop fed by a ``DataLoader``. Runs are
   interleaved (A B C, C B A, ...) so drifts in machine load hit all alike; each reports samples/s and
   the ratio of medians archc / hand-written (target ≥ 0.95) is printed side by side.

Threads: ``--threads`` (default 1, the evaluator's default) via ``torch.set_num_threads``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
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
from archc.search.canon import canonical_hash  # noqa: E402
from archc.search.data import load_data  # noqa: E402
from archc.search.evaluate import make_optimizer, make_schedule, steps_per_epoch, task_loss, train_proxy, validate  # noqa: E402
from archc.search.runner import ModelBuilder, make_sampler  # noqa: E402
from archc.search.space import TrainConfig, load_space  # noqa: E402


# -------------------------------------------------------------------------------------------------------
# 1. overhead
# -------------------------------------------------------------------------------------------------------
def overhead(space_path: Path, trials: int, seed: int) -> dict[str, Any]:
    import warnings

    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space = load_space(space_path)
    builder = ModelBuilder(space)
    study = optuna.create_study(directions=space.directions, sampler=make_sampler(space, seed))
    stages = ("ask+sample", "materialize", "target expand+cost", "proxy expand", "canonical hash", "codegen", "import+build")
    times: dict[str, list[float]] = {s: [] for s in stages}
    totals: list[float] = []
    rejected: list[float] = []
    for k in range(trials):
        t = [time.perf_counter()]
        trial = study.ask()
        vals = space.sample(trial)
        t.append(time.perf_counter())
        m = space.materialize(vals)
        t.append(time.perf_counter())
        if m.reason:
            study.tell(trial, state=TrialState.PRUNED)
            rejected.append(t[-1] - t[0])
            continue
        g = builder.graph(m.overrides)
        cost = graph_cost(g)
        t.append(time.perf_counter())
        over = any(getattr(cost, key) > limit for key, limit in space.constraints.items() if key in ("params", "macs", "acts"))
        if over:
            study.tell(trial, state=TrialState.PRUNED)
            rejected.append(t[-1] - t[0])
            continue
        pg = builder.graph(m.proxy_overrides()) if m.proxy else g
        t.append(time.perf_counter())
        canonical_hash(pg)
        t.append(time.perf_counter())
        src = builder.source(pg)
        t.append(time.perf_counter())
        builder.module(pg, src)
        t.append(time.perf_counter())
        for name, a, b in zip(stages, t, t[1:]):
            times[name].append(b - a)
        totals.append(t[-1] - t[0])
        study.tell(trial, [float(k)] * len(space.directions))
    ms = lambda xs: 1000 * statistics.median(xs) if xs else math.nan  # noqa: E731
    return {"space": str(space_path), "sampler": space.study.sampler, "built": len(totals), "rejected": len(rejected),
            "stages_ms": {s: ms(v) for s, v in times.items()}, "total_ms": ms(totals),
            "total_mean_ms": 1000 * statistics.mean(totals) if totals else math.nan, "rejected_ms": ms(rejected)}


# -------------------------------------------------------------------------------------------------------
# 2. throughput
# -------------------------------------------------------------------------------------------------------
def hand_written(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, cfg: TrainConfig,
                 loss_fn: Any) -> None:
    """A plain PyTorch training loop: shuffle, slice, forward, loss, backward, step; validate each epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps * cfg.epochs)
    g = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(xv), yv).item()


def data_loader(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, cfg: TrainConfig,
                loss_fn: Any) -> None:
    """The same loop fed by torch.utils.data.DataLoader (the most common hand-written form)."""
    from torch.utils.data import DataLoader, TensorDataset

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(loader) * cfg.epochs)
    for _ in range(cfg.epochs):
        model.train()
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            loss_fn(model(xv), yv).item()


def throughput(space_path: Path, point: str | None, samples: int, epochs: int, repeats: int) -> dict[str, Any]:
    space = load_space(space_path)
    ev = space.evaluator
    if ev.train is None or ev.task is None:
        raise SystemExit(f"{space_path}: the space's evaluator does not train")
    builder = ModelBuilder(space)
    point = point or (space.study.enqueue[0] if space.study.enqueue else None)
    if point is None:
        raise SystemExit(f"{space_path}: name a point with --point")
    m = space.materialize(space.point(point))
    pg = builder.graph(m.proxy_overrides())
    src = builder.source(pg)
    in_shape = next(iter(pg.inputs.values())).concrete(1)
    out_shape = pg.output_types[0].concrete(1)
    data = load_data(ev.data, ev.task, tuple(in_shape[1:]), tuple(out_shape[-2:]) if ev.task == "depth" else None)
    n = min(samples, len(data.x_train))
    cfg = TrainConfig(epochs=epochs, batch_size=ev.train.batch_size, optimizer="adam", lr=ev.train.lr,
                      weight_decay=ev.train.weight_decay, schedule="cosine", seed=ev.train.seed)
    sub = type(data)(data.task, data.x_train[:n].contiguous(), data.y_train[:n].contiguous(), data.x_val, data.y_val,
                     data.classes, None if data.live_train is None else data.live_train[:n], data.live_val, data.description)
    torch.manual_seed(0)
    init = builder.module(pg, src).state_dict()
    loss_fn = task_loss(data.task)
    assert make_optimizer is not None and make_schedule is not None and steps_per_epoch is not None

    def fresh() -> torch.nn.Module:
        model = builder.module(pg, src)
        model.load_state_dict(init)
        return model

    runners = {
        "archc train_proxy": lambda mdl: train_proxy(mdl, sub, cfg),
        "hand-written loop": lambda mdl: hand_written(mdl, sub.x_train, sub.y_train, sub.x_val, sub.y_val, cfg, loss_fn),
        "hand-written + DataLoader": lambda mdl: data_loader(mdl, sub.x_train, sub.y_train, sub.x_val, sub.y_val, cfg, loss_fn),
    }
    # warm-up: one short run each
    for fn in runners.values():
        fn(fresh())
    rates: dict[str, list[float]] = {k: [] for k in runners}
    order = list(runners)
    for r in range(repeats):
        for name in (order if r % 2 == 0 else order[::-1]):
            model = fresh()
            t0 = time.perf_counter()
            runners[name](model)
            rates[name].append(n * epochs / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio_runs = [a / b for a, b in zip(rates["archc train_proxy"], rates["hand-written loop"])]
    check = validate(fresh(), sub)
    return {"space": str(space_path), "point": point, "proxy_params": sum(p.numel() for p in fresh().parameters()),
            "input": list(in_shape), "samples": n, "epochs": epochs, "batch_size": cfg.batch_size, "task": data.task,
            "samples_per_s": med, "runs": rates, "ratio": med["archc train_proxy"] / med["hand-written loop"],
            "ratio_median_of_runs": statistics.median(ratio_runs), "untrained_val_loss": check["val_loss"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "cdc.yaml"))
    ap.add_argument("--point", help="the architecture trained for the throughput test (default: the first enqueued point)")
    ap.add_argument("--trials", type=int, default=20, help="samples for the overhead measurement")
    ap.add_argument("--samples", type=int, default=256, help="training samples per epoch in the throughput test")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved runs per loop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = Path(args.space)
    res = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                       "threads": args.threads, "load": os.getloadavg() if hasattr(os, "getloadavg") else None},
           "overhead": overhead(space, args.trials, args.seed),
           "throughput": throughput(space, args.point, args.samples, args.epochs, args.repeats)}
    res["machine"]["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps(res, indent=2, default=float))
        return 0
    o, t = res["overhead"], res["throughput"]
    print(f"archc search benchmark — {space} (torch {torch.__version__}, {args.threads} thread(s), "
          f"{os.cpu_count()} CPUs, load {res['machine']['load']})")
    print(f"\nper-trial overhead (sample → compiled module, no training; {o['sampler']} sampler, "
          f"{o['built']} built, {o['rejected']} rejected before building)")
    for s, v in o["stages_ms"].items():
        print(f"  {s:22s} {v:9.2f} ms")
    print(f"  {'total (median)':22s} {o['total_ms']:9.2f} ms   (mean {o['total_mean_ms']:.2f} ms; a rejected sample: {o['rejected_ms']:.2f} ms)")
    print(f"\nproxy training throughput — point '{t['point']}', {t['proxy_params']:,} params, input {t['input']}, "
          f"{t['samples']} samples × {t['epochs']} epoch(s), batch {t['batch_size']}, task {t['task']}, {args.repeats} interleaved runs")
    for k, v in t["samples_per_s"].items():
        runs = ", ".join(f"{r:.1f}" for r in t["runs"][k])
        print(f"  {k:26s} {v:8.1f} samples/s   [{runs}]")
    ok = "meets" if t["ratio"] >= 0.95 else "below"
    print(f"  ratio archc / hand-written: {t['ratio']:.3f} (median of per-run ratios {t['ratio_median_of_runs']:.3f}; "
          f"{ok} the 0.95 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
