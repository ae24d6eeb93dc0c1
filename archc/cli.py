"""Command line: argument parsing only; every command calls the public API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from archc._cli_help import MAIN_EPILOG, epilog
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


def _add_command(sub: argparse._SubParsersAction, name: str, **kwargs: object) -> argparse.ArgumentParser:
    """A subcommand with its examples under the options and the -q flag (also accepted after the command)."""
    if isinstance(kwargs.get("description"), str):  # printed raw like the examples: wrap it here
        import textwrap

        kwargs["description"] = textwrap.fill(str(kwargs["description"]), width=88)
    p = sub.add_parser(name, epilog=epilog(name), formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)
    # SUPPRESS: without -q here, the value given before the command (archc -q CMD) is kept
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no stage timings or progress on stderr")
    return p


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="archc", description="Declarative graph compiler for vision networks.",
                                 epilog=MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=_version())
    ap.add_argument("-q", "--quiet", action="store_true", help="no stage timings or progress on stderr")
    sub = ap.add_subparsers(dest="command", required=True)

    p = _add_command(sub, "validate", help="check a spec (schema, references, shapes, costs)")
    _add_spec_args(p)
    p.add_argument("--convention", choices=["macs", "pycls"], default="macs",
                   help="cost convention: macs (conv/linear/matmul MACs) or pycls (MACs + bias adds, no GAP activations)")

    p = _add_command(sub, "show", help="per-block table of output shapes, params, MACs and activations")
    _add_spec_args(p)
    p.add_argument("--depth", type=int, default=1, help="block nesting depth to expand (default 1)")

    p = _add_command(sub, "compile", help="compile a spec to a PyTorch module, TorchScript, torch.export, ONNX or CUDA-graph artifact")
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
    p.add_argument("--map", action="store_true",
                   help="--weights is a checkpoint in another layout (torchvision, timm, ...): map it onto the spec's "
                        "module first, as 'archc weights' does")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="the artifact's dtype (default fp32); compared with the float32 eager module at the dtype's tolerance")
    p.add_argument("--channels-last", action="store_true", help="the artifact's weights and inputs in channels-last memory format")
    p.add_argument("--no-check", action="store_true", help="skip the float64 equivalence check of each pass")
    p.add_argument("--debug", action="store_true", help="verify the IR after every pass")
    p.add_argument("--max-elements", type=int, default=2**30, metavar="N",
                   help="refuse to build a model (params + buffers) or an example input of more than N numbers "
                        "(default 2^30, 4 GiB of float32)")
    q = p.add_argument_group("int8 quantization (docs/quantization.md)")
    q.add_argument("--quantize", choices=["int8"], help="post-training int8 after the deploy pipeline (targets onnx, pytorch); "
                                                      "writes OUT and its error report OUT.quant.json")
    q.add_argument("--calib", metavar="DATA", help="calibration data: digits (bundled), a .npz file or an image folder")
    q.add_argument("--calib-random", action="store_true", help="calibrate on seeded random normal inputs instead (only when asked)")
    q.add_argument("--calib-batches", type=int, default=8, metavar="N", help="calibration batches of 16 inputs (default 8)")
    q.add_argument("--calib-method", choices=["minmax", "percentile", "mse"], default="minmax",
                   help="activation ranges: minmax, percentile (99.99%%) or mse (least quantization error) (default minmax)")
    q.add_argument("--keep-float", metavar="LAYER[,LAYER...]", help="leave these layers in float (names as in the report)")
    q.add_argument("--min-sqnr", type=float, metavar="DB", help="leave every layer whose own SQNR is under DB in float")

    p = _add_command(sub, "explain", help="show, for each candidate site of a pass, which rule fired or why not")
    _add_spec_args(p)
    p.add_argument("--pass", dest="pass_name", required=True, help="pass name (see 'archc passes')")

    p = _add_command(sub, "scale", help="scale a spec to MAC targets (fast, efficientnet, pycls d/w/g/r rules)")
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

    _add_command(sub, "passes", help="list passes and pipelines")

    p = _add_command(sub, "viz", help="draw the graph with Graphviz: blocks as clusters, op, shape, params and MACs per node",
                     description="Draw the graph of a spec (after a pipeline) or, with --diff, two pipelines side by side "
                                 "with what the passes merged, folded or removed coloured (docs/viz.md).")
    _add_spec_args(p)
    p.add_argument("-o", "--output", metavar="FILE",
                   help="picture: .svg or .png (drawn by Graphviz's dot program) or .dot (the graph source) "
                        "(default: <name>_<variant>.svg in the current folder)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--pipeline", default="train", choices=_PIPELINES, help="draw the graph after this pipeline (default train)")
    what.add_argument("--diff", nargs=2, metavar=("A", "B"), choices=_PIPELINES,
                      help="draw pipelines A and B side by side, colouring what B's further passes changed (e.g. train deploy)")
    p.add_argument("--depth", type=int, default=1, metavar="N",
                   help="block levels drawn as clusters: 0 = top-level nodes only, each block one node (default 1)")

    p = _add_command(sub, "bench", help="CPU latency of pipeline × target × batch, against the train-form eager module")
    _add_spec_args(p)
    p.add_argument("--pipelines", default="train,deploy,fused", metavar="P[,P...]", help="pipelines (default train,deploy,fused)")
    p.add_argument("--targets", default="pytorch,torchscript", metavar="T[,T...]",
                   help="targets (default pytorch,torchscript; also export, onnx; CUDA graphs: benchmarks/bench_cuda.py)")
    p.add_argument("--batch", default="1,16", metavar="B[,B...]", help="batch sizes (default 1,16)")
    p.add_argument("--precisions", metavar="P[,P...]",
                   help="dtypes of the deploy/fused rows: fp32, bf16, fp16, each with +cl for channels-last "
                        "(default fp32,bf16,bf16+cl on a CPU with native bfloat16, else fp32)")
    p.add_argument("--iters", type=int, default=30, help="timed rounds per batch size at most (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls of each artifact first (default 3)")
    p.add_argument("--budget", type=float, default=60.0, help="seconds per batch size after at least 5 rounds (default 60)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--weights", help="train-form state_dict to convert (default: initialized weights)")
    p.add_argument("--no-check", action="store_true", help="skip the equivalence checks of passes and artifacts")
    p.add_argument("--json", action="store_true", help="print one JSON document (every timed call included)")

    p = _add_command(sub, "search", help="search a space of architectures (resumes the study when rerun)",
                       description="Run or resume the Optuna study of a search-space file (docs/search_space.md); "
                                   "outputs go to the run folder.")
    p.add_argument("space", help="search-space file (e.g. search_spaces/cdc.yaml)")
    p.add_argument("--trials", type=int, metavar="N",
                   help="evaluated trials wanted in the study in total; duplicates do not count (default: the space's; "
                        "--strategy spos: distinct children scored with inherited weights)")
    p.add_argument("--timeout", type=float, metavar="S", help="stop starting new trials after S seconds")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage URL (sqlite:///x.db, postgresql://...) or journal file (default: OUT/study.log)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the space's)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: the space's, else runs/<space name>)")
    p.add_argument("--seed", type=int, metavar="N", help="sampler seed (default: the space's)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads for evaluation (default: the space's, else 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes on this machine (CPU threads split between them, one GPU each when several "
                        "are visible); on several machines run the same command with the same --storage and --study")
    p.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help="seconds between heartbeats of a running trial (default 10)")
    p.add_argument("--grace", type=int, default=60, metavar="S",
                   help="a running trial without a heartbeat for S seconds is failed and queued again (default 60)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a trial whose worker died is queued again with the same parameters (default 2)")
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-outputs", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-preflight", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--strategy", metavar="NAME",
                   help="search strategy: sample (default: the black-box study), darts, pcdarts (differentiable search "
                        "of the cells' supernet) or spos (single-path one-shot); see docs/oneshot.md")
    p.add_argument("--epochs", type=int, metavar="N", help="one-shot strategies: supernet epochs (default: the space's "
                                                            "'strategy:' section, else the strategy's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="strategy_options",
                   help="a one-shot strategy option, e.g. --set order=2 --set partial_channels=8 (repeatable; "
                        "docs/oneshot.md lists them)")
    p.add_argument("--check-proxy", type=int, metavar="K",
                   help="instead of searching: train K sampled architectures at the search budget and at a long budget, "
                        "2 seeds each, and report Kendall τ / Spearman ρ between the budgets' rankings and the seed noise "
                        "(OUT/proxy_check.json; rerunning resumes); with --strategy spos: after the search, K scored "
                        "children trained stand-alone, τ between inherited-weight and stand-alone scores")
    p.add_argument("--long-epochs", type=int, metavar="N", help="--check-proxy: the long budget (default 10× the space's epochs)")
    p.add_argument("--seeds", type=int, default=2, metavar="N", help="--check-proxy: training seeds per architecture (default 2)")
    p.add_argument("--metric", metavar="NAME", help="--check-proxy: trained metric to rank by (default the first trained objective)")
    p.add_argument("--min-tau", type=float, metavar="T", help="--check-proxy: exit 1 when Kendall τ is below T")

    p = _add_command(sub, "train", help="train a spec from scratch (digits, a .npz file or an image folder; CPU, CUDA, torchrun)",
                       description="Train the model of a spec and write the run folder: model.py, last.pth (checkpoint), "
                                   "metrics.csv, model.pth (docs/train.md). Under torchrun it trains with DDP.")
    _add_spec_args(p)
    p.add_argument("--data", default="digits", metavar="SOURCE",
                   help="digits (bundled), a .npz file (x, y [, depth]) or an image folder (one sub-folder per class, "
                        "optionally under train/ and val/; live/ and spoof/ for --task depth) (default digits)")
    p.add_argument("--task", choices=["classification", "depth"], help="default: from the spec's output (logits or maps)")
    p.add_argument("--depth", metavar="DIR", help="depth maps of the live images (a folder mirroring --data; depth task)")
    p.add_argument("--epochs", type=int, required=True, metavar="N", help="epochs to train in total")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="samples per step and process (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="adam", help="default adam")
    p.add_argument("--weight-decay", type=float, default=0.0, help="default 0")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--schedule", choices=["cosine", "step", "constant"], default="cosine", help="per-step LR schedule (default cosine)")
    p.add_argument("--clip-grad", type=float, metavar="NORM", help="clip the global gradient norm")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share of a data set without a given split (default 0.2)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW memory order on CUDA")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="DataLoader worker processes for image folders (default 2)")
    p.add_argument("--threads", type=int, metavar="N", help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="initialization, shuffling and augmentation seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pth")

    p = _add_command(sub, "weights", help="map a checkpoint from another code base onto a spec's module (torchvision, timm, ...)",
                     description="Map a state dict in another layout onto the spec's generated module by structure: order, "
                                 "shapes, name tokens, reordering inside a block, [o,i,1,1] <-> [o,i] reshapes. Anything "
                                 "unmapped or ambiguous is listed and the map refused (docs/weights.md).")
    _add_spec_args(p)
    p.add_argument("--from", dest="source", required=True, metavar="CKPT",
                   help="the checkpoint (state_dict, or {'state_dict': ...} / {'model': ...}; loaded with weights_only=True)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.pth", help="the mapped state_dict for the spec's module")
    p.add_argument("--allow-partial", action="store_true",
                   help="write a partial map: the module's initialized values (seed 0) where nothing maps")
    p.add_argument("--check", metavar="MODULE:FACTORY",
                   help="build the source model (e.g. benchmarks.reference.transxnet:transxnet_t or model.py:build), load "
                        "the checkpoint into it and compare its outputs with the spec's module in float64 (fail above 1e-12)")
    p.add_argument("--input-shape", metavar="N,C,H,W", help="--check input shape (default: the spec's, batch 1)")
    p.add_argument("--max-elements", type=int, default=2**30, metavar="N",
                   help="refuse to build a model of more than N numbers (default 2^30)")

    _add_command(sub, "ops", help="list the op library")
    return ap


def _version() -> str:
    from archc import __version__

    return f"archc {__version__}"


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


def _cmd_check_proxy(args: argparse.Namespace) -> int:
    from archc.search.proxy_check import check_proxy, format_table

    res = check_proxy(args.space, args.check_proxy, long_epochs=args.long_epochs, seeds=args.seeds,
                      seed=args.seed if args.seed is not None else 0, out=args.out, metric=args.metric,
                      threads=args.threads, log=None if args.no_progress else lambda line: print(line, file=sys.stderr))
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
                        clip_grad=args.clip_grad, device=args.device, amp=not args.no_amp,
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
