"""Help texts of the command line (examples under each command's options) and suggestions for mistyped paths.

Kept apart from :mod:`archc._cli_parser` so that the parser stays argument parsing only. The examples use
the bundled specs and spaces and are checked by tests/unit/test_cli_help.py: every ``archc`` line
names an existing command, and every spec or space it names exists.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from archc.diagnostics import ArchcError, SourceLoc

__all__ = ["EXAMPLES", "MAIN_EPILOG", "epilog", "suggest_path", "check_input_path"]

MAIN_EPILOG = """\
examples:
  archc validate specs/transxnet.yaml                 check a spec: params, MACs, activations
  archc compile specs/repvgg.yaml --pipeline deploy   compile to a standalone PyTorch module
  archc viz specs/resnet.yaml -o resnet.svg           draw the graph (Graphviz)
  archc search search_spaces/cdc.yaml --trials 20     search a space of architectures
  archc COMMAND --help                                options and examples of one command

-q/--quiet (before or after the command) silences the stage timings printed on stderr."""

#: command → its examples (shown under "examples:" at the end of ``archc COMMAND --help``)
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "validate": [
        ("archc validate specs/transxnet.yaml", "schema, references, shapes and costs of variant t"),
        ("archc validate specs/transxnet.yaml -v s --convention pycls", "variant s, costs as pycls counts them"),
        ("archc validate specs/resnet.yaml -p 'depths=[2,2,2,2]'", "with a param overridden"),
    ],
    "show": [
        ("archc show specs/transxnet.yaml", "one row per top-level node: output shape, params, MACs, activations"),
        ("archc show specs/resnet.yaml --depth 3", "open blocks three levels deep"),
    ],
    "compile": [
        ("archc compile specs/transxnet.yaml -v b -o transxnet_b.py", "standalone module: create_model(), INPUT_SHAPE"),
        ("archc compile specs/repvgg.yaml --pipeline deploy --weights train.pth -o repvgg.py", "fold a trained checkpoint"),
        ("archc compile specs/repvgg.yaml --pipeline deploy --target torchscript -o repvgg.pt", "torch.jit.load(PATH)"),
        ("archc compile specs/convfirst.yaml --pipeline fused -o convfirst.py", "deploy + one fused region per block"),
    ],
    "viz": [
        ("archc viz specs/resnet.yaml -o resnet.svg", "blocks as clusters, one level deep"),
        ("archc viz specs/transxnet.yaml --depth 0 -o transxnet.png", "top-level nodes only, blocks collapsed"),
        ("archc viz specs/repvgg.yaml --diff train deploy -o repvgg_diff.svg", "colour what the deploy passes changed"),
        ("archc viz specs/vit.yaml --pipeline deploy -o vit.dot", "the graph source (needs no Graphviz program)"),
    ],
    "explain": [
        ("archc explain specs/repvgg.yaml --pass merge_branches", "which rule fired where, or why not"),
        ("archc explain specs/cdcn.yaml --pass fold_cdc", ""),
    ],
    "scale": [
        ("archc scale specs/efficientnet.yaml --flops 2,4,8 --rule fast -o scaled/effnet.yaml", "a family of three"),
        ("archc scale specs/regnet.yaml --phi 3 --rule efficientnet", "compound coefficients 1..3"),
    ],
    "passes": [("archc passes", "every pass and the named pipelines")],
    "bench": [
        ("archc bench specs/repvgg.yaml", "latency of train/deploy/fused × pytorch/torchscript at batch 1 and 16"),
        ("archc bench specs/convnext.yaml -v atto --pipelines deploy,fused --batch 1 --json", "raw numbers"),
    ],
    "search": [
        ("archc search search_spaces/cdc.yaml --trials 20", "black-box Optuna study; rerun to resume"),
        ("archc search search_spaces/cdc.yaml --strategy pcdarts --epochs 10", "differentiable supernet search"),
        ("archc search search_spaces/cdc.yaml --check-proxy 10", "does the proxy rank architectures as training does?"),
        ("archc search search_spaces/cdc.yaml --workers 4 --storage postgresql://user@db/archc", "many workers"),
    ],
    "train": [
        ("archc train specs/resnet.yaml -v resnet18 -p num_classes=10 -p img=16 --data digits --epochs 3 --out runs/digits",
         "the bundled digits"),
        ("archc train specs/resnet.yaml -v resnet18 --data images/ --epochs 90 --out runs/r18", "an image folder"),
        ("torchrun --standalone --nproc_per_node 4 -m archc train specs/resnet.yaml --data images/ --epochs 90 --out runs/r18",
         "DDP"),
    ],
    "ops": [("archc ops", "the op library: names, docs and attributes")],
    "weights": [
        ("archc weights specs/resnet.yaml -v resnet50 --from resnet50_torchvision.pth -o resnet50.pth",
         "map a checkpoint of another code base onto the spec's module by structure"),
        ("archc weights specs/convnext.yaml -v tiny --from convnext_tiny.pth -o convnext.pth --allow-partial",
         "keep initialized values where nothing maps"),
    ],
}


def epilog(command: str) -> str:
    """The ``examples:`` block of one command's help (argparse prints it verbatim)."""
    rows = EXAMPLES.get(command, [])
    if not rows:
        return ""
    lines = ["examples:"]
    for cmd, what in rows:
        lines.append(f"  {cmd}")
        if what:
            lines.append(f"      {what}")
    return "\n".join(lines)


def _closest(name: str, folder: Path) -> str | None:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return None
    suffix = Path(name).suffix
    if suffix:  # compare the stems of files with the same suffix: a shared '.yaml' would make any two names close
        stems = {Path(n).stem: n for n in names if Path(n).suffix == suffix}
        close = difflib.get_close_matches(Path(name).stem, sorted(stems), n=1, cutoff=0.6)
        if close:
            return stems[close[0]]
        names = [n for n in names if Path(n).suffix != suffix]  # only a mistyped suffix is left to guess
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return close[0] if close else None


def suggest_path(path: str | Path) -> str | None:
    """An existing path close to ``path`` (each missing component replaced by its closest sibling), or None.

    >>> suggest_path("specs/transxnext.yaml")  # doctest: +SKIP
    'specs/transxnet.yaml'
    """
    p = Path(path)
    parts = p.parts
    if not parts:
        return None
    cur = Path(parts[0]) if p.is_absolute() else Path(".")
    fixed: list[str] = [parts[0]] if p.is_absolute() else []
    for part in parts[1:] if p.is_absolute() else parts:
        if part in (".", ".."):
            cur, fixed = cur / part, [*fixed, part]
            continue
        if not (cur / part).exists():
            part = _closest(part, cur) or part
        cur = cur / part
        fixed.append(part)
    guess = str(Path(*fixed)) if fixed else None
    return guess if guess and guess != str(p) and Path(guess).exists() else None


def check_input_path(path: str | None, what: str = "file", flag: str | None = None, keywords: tuple[str, ...] = ()) -> None:
    """Refuse a path that does not exist before any work starts, suggesting the closest existing one.

    ``keywords`` are values that name no file (``--data digits``); ``flag`` names the option in the message.
    """
    if path is None or path in keywords or Path(path).exists():
        return
    guess = suggest_path(path)
    if guess is None and keywords:
        close = difflib.get_close_matches(str(path), keywords, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f"did you mean '{guess}'?" if guess else "check the path"
    if keywords and guess not in keywords:
        hint += " (or give " + ", ".join(f"'{k}'" for k in keywords) + ")"
    # the loader's own words for a missing spec or space; an option names itself
    message = f"{flag}: {what} does not exist" if flag else "file not found"
    raise ArchcError(message, SourceLoc(str(path), 0, 0), hint=hint)
