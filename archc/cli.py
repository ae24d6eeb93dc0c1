"""Command line: argument parsing only; every command calls the public API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from archc.diagnostics import ArchcError

__all__ = ["main"]


def _add_spec_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("spec", nargs="?", help="spec file (default: the bundled TransXNet spec)")
    else:
        p.add_argument("spec", help="spec file")
    p.add_argument("--variant", "-v", help="named param set of the spec (e.g. t, s, b)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a param, e.g. -p dims=[64,128,320,512] or -p depths.2=12 (repeatable)")


#: compile targets and pipelines (archc.targets.TARGETS / PIPELINE_NAMES, kept here so that --help needs no torch)
_TARGETS = ["pytorch", "torchscript", "export", "onnx", "cudagraph"]
_PIPELINES = ["train", "deploy", "fused"]


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="archc", description="Declarative graph compiler for vision networks.")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a spec (schema, references, shapes, costs)")
    _add_spec_args(p)
    p.add_argument("--convention", choices=["macs", "pycls"], default="macs",
                   help="cost convention: macs (conv/linear/matmul MACs) or pycls (MACs + bias adds, no GAP activations)")

    p = sub.add_parser("show", help="per-block table of output shapes, params, MACs and activations")
    _add_spec_args(p)
    p.add_argument("--depth", type=int, default=1, help="block nesting depth to expand (default 1)")

    p = sub.add_parser("compile", help="compile a spec to a PyTorch module, TorchScript, torch.export, ONNX or CUDA-graph artifact")
    _add_spec_args(p, optional=True)
    p.add_argument("-o", "--output", help="output file (default: <name>_<variant><suffix of the target> in the current folder)")
    p.add_argument("--target", default="pytorch", choices=_TARGETS,
                   help="artifact: pytorch (.py module), torchscript (.pt, torch.jit.load), export (.pt2, torch.export.load), "
                        "onnx (.onnx), cudagraph (.py module with a CUDA-graph runner)")
    p.add_argument("--pipeline", default="train", choices=_PIPELINES,
                   help="pass pipeline: train = as written; deploy = every exact inference-time simplification; "
                        "fused = deploy + block fusion (one fused region per residual block)")
    p.add_argument("--input-shape", metavar="N,C,H,W",
                   help="example input shape for the target (export/onnx trace, cudagraph capture); default: the spec's, batch 1")
    p.add_argument("--weights", help="train-form state_dict to convert; carried by the artifact (beside .py outputs as .pth)")
    p.add_argument("--no-check", action="store_true", help="skip the float64 equivalence check of each pass")
    p.add_argument("--debug", action="store_true", help="verify the IR after every pass")

    p = sub.add_parser("explain", help="show, for each candidate site of a pass, which rule fired or why not")
    _add_spec_args(p)
    p.add_argument("--pass", dest="pass_name", required=True, help="pass name (see 'archc passes')")

    p = sub.add_parser("scale", help="scale a spec to MAC targets (fast, efficientnet, pycls d/w/g/r rules)")
    _add_spec_args(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--flops", metavar="S[,S2,...]",
                        help="target MACs as ratios over the base, e.g. 2 or 2,4,8,16 (a family: one output per ratio)")
    target.add_argument("--phi", type=int, metavar="N",
                        help="EfficientNet compound coefficients φ = 1..N: targets (α·β²·γ²)^φ (2^φ for other rules)")
    p.add_argument("--rule", help="fast (= dWr = d1_w8_g8_r1), dW, dwr, d, w, r, efficientnet[:A,B,G] or "
                                  "d{a}_w{b}_g{c}_r{e} (default: the spec's scaling.rule, else fast)")
    p.add_argument("-o", "--output", help="output spec; with several ratios each gets a suffix _s<S> "
                                          "(default: <name>_<variant>_s<S>.yaml in the current folder)")
    p.add_argument("--calibrate", choices=["trim", "factor", "none"], default="trim",
                   help="trim = search the scale factor, then trim width/resolution ≤5%% (default); "
                        "factor = scale-factor search only; none = pycls's scale-then-round")
    p.add_argument("--convention", choices=["macs", "pycls"], default="macs",
                   help="cost convention for MACs and activations (as in validate)")

    sub.add_parser("passes", help="list passes and pipelines")

    p = sub.add_parser("bench", help="CPU latency of pipeline × target × batch, against the train-form eager module")
    _add_spec_args(p)
    p.add_argument("--pipelines", default="train,deploy,fused", metavar="P[,P...]", help="pipelines (default train,deploy,fused)")
    p.add_argument("--targets", default="pytorch,torchscript", metavar="T[,T...]",
                   help="targets (default pytorch,torchscript; also export, onnx; CUDA graphs: benchmarks/bench_cuda.py)")
    p.add_argument("--batch", default="1,16", metavar="B[,B...]", help="batch sizes (default 1,16)")
    p.add_argument("--iters", type=int, default=30, help="timed rounds per batch size at most (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls of each artifact first (default 3)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per batch size after at least 5 rounds (default 60)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--weights", help="train-form state_dict to convert (default: initialized weights)")
    p.add_argument("--no-check", action="store_true", help="skip the equivalence checks of passes and artifacts")
    p.add_argument("--json", action="store_true", help="print one JSON document (every timed call included)")

    p = sub.add_parser("search", help="search a space of architectures (resumes the study when rerun)",
                       description="Run or resume the Optuna study of a search-space file (docs/search_space.md); "
                                   "outputs go to the run folder.")
    p.add_argument("space", help="search-space file (e.g. search_spaces/cdc.yaml)")
    p.add_argument("--trials", type=int, metavar="N", help="completed trials wanted in the study in total (default: the space's)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop starting new trials after S seconds")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL (sqlite:///x.db, postgresql://...) or journal file (default: OUT/study.log)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the space's)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the space's, else runs/<space name>)")
    p.add_argument("--seed", type=int, metavar="N", help="sampler seed (default: the space's)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for evaluation (default: the space's, else 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("ops", help="list the op library")
    return ap


def _version() -> str:
    from archc import __version__

    return f"archc {__version__}"


def _options(args: argparse.Namespace):  # noqa: ANN202
    from archc.compiler import CompileOptions

    return CompileOptions(variant=args.variant, params=list(args.param),
                          target=getattr(args, "target", "pytorch"), pipeline=getattr(args, "pipeline", "train"),
                          weights=getattr(args, "weights", None), check=not getattr(args, "no_check", False),
                          debug=getattr(args, "debug", False))


def _cmd_validate(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.cost.model import graph_cost, pycls_cost
    from archc.report import fmt_count, fmt_macs

    _, g = build_graph(args.spec, _options(args))
    c = pycls_cost(g) if args.convention == "pycls" else graph_cost(g)
    outs = ", ".join(str(t) for t in g.output_types)
    print(f"{args.spec}: ok — {g.name} ({g.meta.get('variant') or 'default'}): {fmt_count(c.params)} params, "
          f"{fmt_macs(c.macs)} {'flops (pycls)' if args.convention == 'pycls' else 'MACs'}, "
          f"{fmt_count(c.acts)} activations → {outs}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.report import show_table

    _, g = build_graph(args.spec, _options(args))
    print(show_table(g, depth=args.depth))
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from archc.compiler import default_spec
    from archc.report import pipeline_table, summary
    from archc.targets import TARGETS, build_artifact, default_output, parse_shape, prepare, write_files

    spec = args.spec or str(default_spec())
    prep = prepare(spec, _options(args), parse_shape(args.input_shape))
    res = prep.compile
    out = Path(args.output) if args.output else default_output(res, args.target)
    if out.is_dir():
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint=f"give a file name, e.g. -o model{TARGETS[args.target].suffix}")
    built = build_artifact(prep, args.target, out, verify=not args.no_check)
    try:
        files = write_files(built.data)
    except IsADirectoryError:
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint="give a file name, e.g. -o model.py") from None
    except OSError as exc:
        raise ArchcError(f"cannot write the output '{out}': {exc.strerror or exc}", hint="check the folder exists and is writable") from None
    print(summary(res.graph, res.cost, out))
    for f in files[1:]:
        print(f"  weights      {f}")
    if res.pipeline is not None and res.pipeline.steps:
        print(pipeline_table(res.pipeline, res.train_graph, res.graph))
    if args.target != "pytorch" or prep.fusion is not None:
        print(f"  target       {args.target}: {TARGETS[args.target].doc}")
    if prep.fusion is not None:
        print(f"  fusion       {prep.fusion.summary()}")
    for key, err in built.errors.items():
        print(f"  checked      {key}: max rel. error {err:.2e}")
    for note in built.notes:
        print(f"  note         {note}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from archc.bench import bench, format_table

    def split(text: str) -> list[str]:
        return [p.strip() for p in text.split(",") if p.strip()]

    try:
        batches = [int(b) for b in split(args.batch)]
    except ValueError:
        raise ArchcError(f"--batch must be comma-separated integers, got '{args.batch}'", hint="e.g. --batch 1,16") from None
    progress = None if args.json else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    res = bench(args.spec, args.variant, list(args.param), split(args.pipelines), split(args.targets), batches,
                warmup=args.warmup, iters=args.iters, budget=args.budget, threads=args.threads, check=not args.no_check,
                weights=args.weights, progress=progress)
    print(json.dumps(res.to_json(), indent=1) if args.json else format_table(res))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.passes.explain import explain

    _, g = build_graph(args.spec, _options(args))
    print(explain(g, args.pass_name))
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    from archc.scaling import format_results, output_paths, parse_flops, scale, write_scaled

    flops = parse_flops(args.flops) if args.flops is not None else None
    results = scale(args.spec, flops, args.rule, phi=args.phi, variant=args.variant, params=list(args.param),
                    calibrate=args.calibrate, convention=args.convention)
    r0 = results[0]
    labels = [f"phi{i}" for i in range(1, len(results) + 1)] if args.phi is not None else None
    paths = output_paths(args.output, [r.target for r in results], labels,
                         stem=f"{r0.name}{'_' + r0.variant if r0.variant else ''}")
    for res, path in zip(results, paths):
        write_scaled(res, path)
    print(format_results(results, paths))
    return 0


def _cmd_passes(args: argparse.Namespace) -> int:
    from archc.passes.base import PASSES
    from archc.passes.pipeline import PIPELINES

    for name in sorted(PASSES):
        print(f"{name:20s} {PASSES[name].doc}")
    for name, ps in PIPELINES.items():
        print(f"pipeline {name}: {' → '.join(ps) if ps else '(as written)'}")
    return 0


def _cmd_ops(args: argparse.Namespace) -> int:
    from archc.ops import all_ops

    for op in all_ops():
        attrs = ", ".join(a.name for a in op.attrs)
        print(f"{op.name:20s} {op.doc}" + (f"  [{attrs}]" if attrs else ""))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from archc.search import run_search

    try:
        res = run_search(args.space, trials=args.trials, timeout=args.timeout, storage=args.storage, study_name=args.study,
                         out=args.out, seed=args.seed, threads=args.threads, progress=not args.no_progress,
                         log=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        print("archc: interrupted — the study is saved; run the same command again to resume", file=sys.stderr)
        return 130
    best = res.best
    print(f"{res.space.path}: {res.completed} trials complete in study '{res.study.study_name}' ({res.storage}); "
          f"this run: {res.new_trials} trials ({res.trained} evaluated, {res.reused} reused, {res.rejected} rejected, "
          f"{res.pruned} pruned, {res.failed} failed)" + (f"; stopped: {res.stopped}" if res.stopped else ""))
    if best is not None:
        vals = ", ".join(f"{m} {v:.6g}" for m, v in zip(res.space.metric_names, best.values))
        print(f"  best         trial {best.number}: {vals}")
        print(f"  pareto front {len(res.pareto)} trial(s)")
    for key in ("trials", "pareto", "plot", "best", "summary"):
        if key in res.files:
            print(f"  {key:12s} {res.files[key]}")
    return 0


_COMMANDS = {"validate": _cmd_validate, "show": _cmd_show, "compile": _cmd_compile, "bench": _cmd_bench, "ops": _cmd_ops,
             "explain": _cmd_explain, "passes": _cmd_passes, "scale": _cmd_scale,
             "search": _cmd_search}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``archc`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ArchcError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print("archc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in archc, not a user error: say so without a wall of traceback
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(f"archc: internal error: {type(exc).__name__}: {exc} (set ARCHC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
