"""The commands that train: ``archc search`` (black-box study, one-shot strategies, proxy check) and ``archc train``.

Split from :mod:`archc.cli`, which dispatches to them; like every command they only parse what the
parser left and call the public API (imported when the command runs, so ``--help`` stays light).
"""

from __future__ import annotations

import argparse
import os
import sys

from archc.diagnostics import ArchcError

__all__ = ["_cmd_check_proxy", "_cmd_oneshot", "_cmd_search", "_cmd_train"]


def _cmd_check_proxy(args: argparse.Namespace) -> int:
    from archc.search.proxy_check import check_proxy, format_table

    res = check_proxy(args.space, args.check_proxy, long_epochs=args.long_epochs, seeds=args.seeds,
                      seed=args.seed if args.seed is not None else 0, out=args.out, metric=args.metric,
                      threads=args.threads, log=None if args.no_progress else lambda line: print(line, file=sys.stderr),
                      workers=args.workers)
    print(format_table(res.report))
    print(f"  report       {res.files['report']}")
    tau = res.report["budgets"]["kendall_tau"]
    if args.min_tau is not None and (tau is None or tau < args.min_tau):
        shown = "undefined" if tau is None else f"{tau:.3f}"
        print(f"archc: error: Kendall τ {shown} is below --min-tau {args.min_tau:g}: the proxy of "
              f"{res.space.path} does not rank as its long budget does", file=sys.stderr)
        return 1
    return 0


def _cmd_oneshot(args: argparse.Namespace) -> int:
    """``archc search SPACE --strategy NAME`` for the one-shot strategies (registry: archc.search.strategies)."""
    import yaml

    from archc.search.space import load_space
    from archc.search.strategies import get_strategy, resolve_options

    entry = get_strategy(args.strategy)
    values: dict[str, object] = {}
    for item in args.strategy_options or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            print(f"archc: error: --set takes KEY=VALUE, got '{item}'", file=sys.stderr)
            return 1
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key.strip()] = text
    if args.epochs is not None:
        values["epochs"] = args.epochs
    if args.seed is not None:
        values["seed"] = args.seed
    extras = {"storage": args.storage, "study_name": args.study, "timeout": args.timeout}
    flags = {"storage": "--storage", "study_name": "--study", "timeout": "--timeout"}
    for name, value in extras.items():
        if value is not None and name not in entry.extras:
            print(f"archc: error: {flags[name]} does not apply to --strategy {entry.name}", file=sys.stderr)
            return 1
    min_tau = None
    if entry.name == "spos":  # its child study counts children as a black-box study counts trials
        if args.long_epochs is not None or (args.check_proxy is None and (args.min_tau, args.metric) != (None, None)):
            print("archc: error: with --strategy spos, --check-proxy K compares inherited and stand-alone scores and "
                  "takes --seeds, --metric and --min-tau only", file=sys.stderr)
            return 1
        values.update({k: v for k, v in (("children", args.trials), ("check_proxy", args.check_proxy),
                                         ("check_metric", args.metric)) if v is not None})
        if args.check_proxy is not None:
            values["check_seeds"] = args.seeds
        min_tau, args.trials, args.check_proxy = args.min_tau, None, None
    if args.trials is not None or args.check_proxy is not None or args.workers != 1:
        flag = "--trials" if args.trials is not None else "--check-proxy" if args.check_proxy is not None else "--workers"
        print(f"archc: error: {flag} applies to --strategy sample (one-shot strategies take --epochs and --set)",
              file=sys.stderr)
        return 1
    space = load_space(args.space)
    opts = resolve_options(entry.name, space, values)
    log = (lambda line: None) if args.no_progress else (lambda line: print(line, file=sys.stderr))
    kwargs = {k: v for k, v in extras.items() if k in entry.extras and v is not None}
    try:
        res = entry.run_function()(space, opts, out=args.out, threads=args.threads, log=log, **kwargs)
    except KeyboardInterrupt:
        print(f"archc: interrupted — --strategy {entry.name} did not finish", file=sys.stderr)
        return 130
    print(f"{space.path}: --strategy {entry.name} finished in {res.seconds:.1f} s; outputs in {res.out}")
    for key, path in res.files.items():
        print(f"  {key:12s} {path}")
    if min_tau is not None:
        tau = res.check.get("kendall_tau") if res.check else None
        if tau is None or tau < min_tau:
            print(f"archc: error: Kendall τ {'undefined' if tau is None else f'{tau:.3f}'} between inherited and "
                  f"stand-alone scores is below --min-tau {min_tau:g}", file=sys.stderr)
            return 1
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from archc.search import run_search

    if args.strategy not in (None, "sample"):
        return _cmd_oneshot(args)
    if args.epochs is not None or args.strategy_options:
        print("archc: error: --epochs and --set apply to the one-shot strategies (--strategy darts, pcdarts, spos)",
              file=sys.stderr)
        return 1
    if args.check_proxy is not None:
        return _cmd_check_proxy(args)
    stray = [o for o, v in (("--long-epochs", args.long_epochs), ("--metric", args.metric), ("--min-tau", args.min_tau))
             if v is not None]
    if stray:
        print(f"archc: error: {stray[0]} applies only with --check-proxy K", file=sys.stderr)
        return 1
    from archc.search.storage import Resilience

    if args.workers < 1:
        raise ArchcError(f"--workers must be at least 1, got {args.workers}")
    tag = f"[worker {args.worker_index} pid {os.getpid()}] " if args.worker_index is not None else ""
    try:
        res = run_search(args.space, trials=args.trials, timeout=args.timeout, storage=args.storage, study_name=args.study,
                         out=args.out, seed=args.seed, threads=args.threads, progress=not args.no_progress,
                         log=lambda line: print(tag + line, file=sys.stderr), workers=args.workers,
                         resilience=Resilience(args.heartbeat, args.grace, args.retries),
                         outputs=not args.no_outputs, preflight=not args.no_preflight)
    except KeyboardInterrupt:
        print(f"{tag}archc: interrupted — the study is saved and the interrupted trials are queued again; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    if args.worker_index is not None:  # one line per worker; the parent prints the run's summary
        print(f"{tag}{res.new_trials} trials ({res.trained} evaluated, {res.reused} duplicates, {res.rejected} rejected, "
              f"{res.skipped} in flight elsewhere, {res.pruned} pruned, {res.failed} failed)", file=sys.stderr)
        if not res.ok:
            print(f"{tag}archc: error: the study holds {res.completed} of the {res.want} evaluated trials asked for: "
                  f"{res.stopped}", file=sys.stderr)
            return 1
        return 0
    best = res.best
    print(f"{res.space.path}: {res.completed} trials complete (evaluated, of {res.want} asked) in study "
          f"'{res.study.study_name}' ({res.storage}); "
          f"this run: {res.new_trials} trials ({res.trained} evaluated, {res.reused} duplicates reused, {res.rejected} "
          f"rejected, {res.pruned} pruned, {res.failed} failed"
          + (f", {res.skipped} skipped while another worker evaluated the same architecture" if res.skipped else "")
          + (f"; {res.workers} workers" if res.workers > 1 else "") + ")"
          + (f"; stopped: {res.stopped}" if res.stopped else ""))
    if best is not None:
        vals = ", ".join(f"{m} {v:.6g}" for m, v in zip(res.space.metric_names, best.values))
        print(f"  best         trial {best.number}: {vals}")
        print(f"  pareto front {len(res.pareto)} trial(s)")
    for key in ("trials", "pareto", "plot", "best", "summary"):
        if key in res.files:
            print(f"  {key:12s} {res.files[key]}")
    if not res.ok:
        print(f"archc: error: the study holds {res.completed} of the {res.want} evaluated trials asked for: {res.stopped} "
              "(help: widen the space or raise study.max_attempts, or ask for fewer --trials)", file=sys.stderr)
        return 1
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from archc.train.config import TrainOptions
    from archc.train.run import train_spec

    if args.threads:
        torch.set_num_threads(args.threads)
    opts = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                        weight_decay=args.weight_decay, momentum=args.momentum, schedule=args.schedule, seed=args.seed,
                        clip_grad=args.clip_grad, ema=args.ema, device=args.device, amp=not args.no_amp,
                        channels_last=not args.no_channels_last, workers=args.workers)
    run = train_spec(args.spec, data=args.data, out=args.out, options=opts, variant=args.variant, params=list(args.param),
                     task=args.task, resume=args.resume, depth=args.depth, val_fraction=args.val_fraction,
                     log=lambda line: print(line, flush=True))
    if run.rank != 0:  # under torchrun rank 0 reports for all
        return 0
    shown = ", ".join(f"{k} {v:.5g}" for k, v in run.metrics.items())
    print(f"{args.spec}: trained {run.epochs} epoch(s) on {run.device}" + (f": {shown}" if shown else ""))
    for key, path in run.files.items():
        print(f"  {key:12s} {path}")
    return 0
