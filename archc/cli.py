"""Command line: ``main`` and the commands; every command calls the public API.

The parser is built in :mod:`archc._cli_parser` (help examples: :mod:`archc._cli_help`), the search
and training commands live in :mod:`archc._cli_search`; both are imported here, so ``archc.cli``
still names every command and ``_parser``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from archc._cli_parser import _parser
from archc._cli_search import _cmd_check_proxy, _cmd_oneshot, _cmd_search, _cmd_train  # noqa: F401 - all named here
from archc.diagnostics import ArchcError

__all__ = ["main"]


def _options(args: argparse.Namespace):  # noqa: ANN202
    from archc.compiler import CompileOptions

    return CompileOptions(variant=args.variant, params=list(args.param), progress=args.progress,
                          target=getattr(args, "target", "pytorch"), pipeline=getattr(args, "pipeline", "train"),
                          weights=getattr(args, "weights", None), check=not getattr(args, "no_check", False),
                          debug=getattr(args, "debug", False), max_elements=getattr(args, "max_elements", 2**30))


def _cmd_validate(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.cost.model import graph_cost, pycls_cost
    from archc.report import fmt_count, fmt_macs, uncosted_text

    _, g = build_graph(args.spec, _options(args))
    c = pycls_cost(g) if args.convention == "pycls" else graph_cost(g)
    outs = ", ".join(str(t) for t in g.output_types)
    print(f"{args.spec}: ok — {g.name} ({g.meta.get('variant') or 'default'}): {fmt_count(c.params)} params, "
          f"{fmt_macs(c.macs)} {'flops (pycls)' if args.convention == 'pycls' else 'MACs'}, "
          f"{fmt_count(c.acts)} activations → {outs}" + (f"; not in MACs: {', '.join(uncosted_text(c))}" if c.uncosted else ""))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.report import show_table

    _, g = build_graph(args.spec, _options(args))
    print(show_table(g, depth=args.depth))
    return 0


def _cmd_compile_int8(args: argparse.Namespace) -> int:
    from archc.compiler import default_spec
    from archc.quantize import QuantizeError, QuantOptions, compile_quantized
    from archc.targets import parse_shape

    if getattr(args, "dtype", "fp32") != "fp32" or getattr(args, "channels_last", False):
        raise QuantizeError("--quantize int8 starts from the float32 deploy model", hint="drop --dtype / --channels-last")
    keep = [n.strip() for n in (args.keep_float or "").split(",") if n.strip()]
    quant = QuantOptions(scheme=args.quantize, calib=args.calib, calib_random=args.calib_random,
                         calib_batches=args.calib_batches, method=args.calib_method, keep_float=keep, min_sqnr=args.min_sqnr)
    r = compile_quantized(args.spec or str(default_spec()), _options(args), quant, args.output, parse_shape(args.input_shape))
    print(f"{r.out}: int8 ({r.report.backend}), calibrated on {r.report.calibration}")
    print(r.report.table(limit=40))
    for f in r.files[1:]:
        print(f"  {'report' if f.name.endswith('.quant.json') else 'int8 state':12s} {f}")
    for note in r.notes:
        print(f"  note         {note}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from archc.targets import parse_shape
    from archc.weights import map_checkpoint, save_weights

    out = Path(args.output)
    if out.suffix != ".pth" or out.is_dir():
        raise ArchcError(f"the output '{out}' must be a .pth file", hint="e.g. -o weights.pth")
    res = map_checkpoint(args.spec, args.source, variant=args.variant, params=list(args.param),
                         allow_partial=args.allow_partial, check=args.check, input_shape=parse_shape(args.input_shape),
                         max_elements=args.max_elements)
    from archc.spec.document import load_spec_doc

    save_weights(res.state, out, [*load_spec_doc(args.spec).sources, args.source])
    print(f"{args.source}: {res.map.headline()} → {out}")
    if not res.map.complete:
        print(f"  partial      {len(res.map.problems())} tensors unmapped or ambiguous (initialized values kept):")
        for line in res.map.problems():
            print(f"  {line}")
    if res.check_error is not None:
        shape = "; ".join("x".join(map(str, s)) for s in res.input_shapes)
        print(f"  checked      {args.check}: float64 max rel. error {res.check_error:.2e} (input {shape})")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    if getattr(args, "quantize", None):
        return _cmd_compile_int8(args)
    from archc.compiler import default_spec
    from archc.report import pipeline_table, summary
    from archc.targets import TARGETS, build_artifact, default_output, parse_shape, prepare, write_files

    spec = args.spec or str(default_spec())
    if args.map:
        if not args.weights:
            raise ArchcError("--map maps the checkpoint given by --weights, and none is given", hint="add --weights CKPT")
        import dataclasses

        from archc.weights import mapped_checkpoint_file

        with mapped_checkpoint_file(spec, args.weights, variant=args.variant, params=list(args.param),
                                    max_elements=args.max_elements) as mapped:
            prep = prepare(spec, dataclasses.replace(_options(args), weights=mapped), parse_shape(args.input_shape))
    else:
        prep = prepare(spec, _options(args), parse_shape(args.input_shape))
    res = prep.compile
    out = Path(args.output) if args.output else default_output(res, args.target)
    if out.is_dir():
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint=f"give a file name, e.g. -o model{TARGETS[args.target].suffix}")
    from archc.compiler import input_paths
    from archc.targets import check_output

    inputs = input_paths(res, args.weights)
    check_output(out, args.target, inputs)  # before the (slow) build: a wrong suffix or an input as output
    from archc.precision import parse_precision

    built = build_artifact(prep, args.target, out, verify=not args.no_check,
                           precision=parse_precision(args.dtype, args.channels_last))
    check_output(out, args.target, inputs, list(built.data))  # the weights written beside it, too
    args.progress.begin("write")
    try:
        files = write_files(built.data)
    except IsADirectoryError:
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint="give a file name, e.g. -o model.py") from None
    except OSError as exc:
        raise ArchcError(f"cannot write the output '{out}': {exc.strerror or exc}", hint="check the folder exists and is writable") from None
    print(summary(res.graph, res.cost, out))
    for f in files[1:]:
        kind = "weights" if f.suffix == ".pth" else "record" if f.name.endswith(".fusion.json") else "file"
        print(f"  {kind:12s} {f}")
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


def _cmd_viz(args: argparse.Namespace) -> int:
    from archc.viz import viz_spec

    opts = _options(args)
    res = viz_spec(args.spec, args.output, opts, depth=args.depth, diff=tuple(args.diff) if args.diff else None)
    what = f"--diff {' → '.join(args.diff)}" if args.diff else f"pipeline {args.pipeline}"
    print(f"{args.spec}: wrote {res.path} ({res.format}, {what}, depth {args.depth})")
    if res.rewrites:
        print("  rewrites     " + ", ".join(f"{k} {v}" for k, v in res.rewrites.items()))
        for label, marks in ((args.diff[0], res.before), (args.diff[1], res.after)):
            shown = ", ".join(f"{v} {k}" for k, v in sorted(marks.items())) or "none"
            print(f"  {label:12s} marked nodes: {shown}")
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
    progress = None if args.json or args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    res = bench(args.spec, args.variant, list(args.param), split(args.pipelines), split(args.targets), batches,
                warmup=args.warmup, iters=args.iters, budget=args.budget, threads=args.threads, check=not args.no_check,
                weights=args.weights, progress=progress, precisions=args.precisions)
    print(json.dumps(res.to_json(), indent=1) if args.json else format_table(res))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from archc.compiler import build_graph
    from archc.passes.explain import explain

    _, g = build_graph(args.spec, _options(args))
    args.progress.begin("explain")
    print(explain(g, args.pass_name))
    return 0


def _cmd_scale(args: argparse.Namespace) -> int:
    from archc.scaling import format_results, output_paths, parse_flops, scale, write_scaled

    flops = parse_flops(args.flops) if args.flops is not None else None
    args.progress.begin("scale")
    results = scale(args.spec, flops, args.rule, phi=args.phi, variant=args.variant, params=list(args.param),
                    calibrate=args.calibrate, convention=args.convention)
    r0 = results[0]
    labels = [f"phi{i}" for i in range(1, len(results) + 1)] if args.phi is not None else None
    paths = output_paths(args.output, [r.target for r in results], labels,
                         stem=f"{r0.name}{'_' + r0.variant if r0.variant else ''}")
    args.progress.begin("write")
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


_COMMANDS = {"weights": _cmd_weights, "validate": _cmd_validate, "show": _cmd_show, "compile": _cmd_compile, "bench": _cmd_bench, "ops": _cmd_ops,
             "explain": _cmd_explain, "passes": _cmd_passes, "scale": _cmd_scale,
             "search": _cmd_search, "train": _cmd_train, "viz": _cmd_viz}

#: (argument, what it names, its flag, values that name no file) checked to exist before a command starts
_INPUT_PATHS = (("spec", "spec file", None, ()), ("space", "search-space file", None, ()),
                ("data", "data source", "--data", ("digits",)), ("weights", "checkpoint", "--weights", ()),
                ("depth", "depth-map folder", "--depth", ()), ("source", "checkpoint", "--from", ()),
                ("calib", "calibration data", "--calib", ("digits",)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``archc`` command; returns the exit status."""
    from archc._cli_help import check_input_path
    from archc.progress import Progress

    args = _parser().parse_args(argv)
    args.progress = Progress(args.command, enabled=not args.quiet)
    if args.quiet and args.command == "search":
        args.no_progress = True
    try:
        for attr, what, flag, keywords in _INPUT_PATHS:
            value = getattr(args, attr, None)
            if isinstance(value, str):  # (viz/show take an int --depth: not a path)
                check_input_path(value, what, flag, keywords)
        code = _COMMANDS[args.command](args)
        args.progress.finish()
        return code
    except ArchcError as exc:
        args.progress.abort()
        print(exc.render(), file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        args.progress.abort()
        print("archc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in archc, not a user error: say so without a wall of traceback
        args.progress.abort()
        if os.environ.get("ARCHC_DEBUG"):
            raise
        print(f"archc: internal error: {type(exc).__name__}: {exc} (set ARCHC_DEBUG=1 for a traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
