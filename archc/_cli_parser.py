"""The ``archc`` argument parser: every command, its options and its help (:mod:`archc._cli_help` holds the examples).

Kept apart from :mod:`archc.cli` (``main`` and the commands) so that building the parser, and so
``archc --help``, imports neither torch nor the compiler.
"""

from __future__ import annotations

import argparse

from archc._cli_help import MAIN_EPILOG, epilog

__all__ = ["_parser"]


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
    q.add_argument("--calib", metavar="DATA", help="calibration data: digits (bundled), glyphs (generated), a .npz file or an image folder")
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
                        "are visible); on several machines run the same command with the same --storage and --study; "
                        "with --check-proxy: trainings at a time")
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
                   help="digits (bundled), glyphs (generated), a .npz file (x, y [, depth]) or an image folder (one sub-folder per class, "
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
    p.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate and save a moving average of the weights (e.g. 0.999) instead of the last ones")
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
