"""Writing a scaled model as a compile-ready spec (imports rewritten or inlined, ``scaling.applied`` recorded),
checked to cost what was computed before it is written; and the output file names of a family."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from archc.cost.model import graph_cost, pycls_cost
from archc.diagnostics import ArchcError
from archc.scaling.report import format_ratio
from archc.scaling.rounding import DIMS
from archc.scaling.scaler import ScaleResult
from archc.spec.document import SpecDoc, find_root, load_spec_doc, resolve_params
from archc.spec.expand import expand
from archc.spec.loader import YMap, load_yaml

__all__ = ["output_paths", "write_scaled"]


def output_paths(out: str | Path | None, flops: Sequence[float], labels: Sequence[str] | None = None, *,
                 stem: str = "scaled") -> list[Path]:
    """``OUT`` for a single target; ``OUT`` with a suffix per target for a family: ``_s{S}`` (or ``_{label}``).

    Without ``out``, every output is ``{stem}_{suffix}.yaml`` in the current folder, even a single one.
    """
    from archc._fs import safe_stem

    # the stem comes from the spec's name and labels may be user text: plain file names in the working folder
    labels = [safe_stem(str(lb), "scaled") for lb in labels] if labels else [f"s{format_ratio(s)}" for s in flops]
    if out is None:
        return [Path(safe_stem(f"{stem}_{lb}", "scaled") + ".yaml") for lb in labels]
    p = Path(out)
    if len(flops) == 1:
        return [p]
    suffix = p.suffix or ".yaml"
    return [p.with_name(f"{p.stem}_{lb}{suffix}") for lb in labels]


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _import_targets(path: Path, raw: Mapping[str, Any]) -> list[Path]:
    return [(path.parent / rel).resolve() for rel in raw.get("imports") or []]


def _inlined_blocks(path: Path, raw: Mapping[str, Any], seen: set[Path]) -> dict[str, Any]:
    """Blocks of every file ``raw`` imports (recursively, imports first), as plain data."""
    blocks: dict[str, Any] = {}
    for target in _import_targets(path, raw):
        if target in seen:
            continue
        seen.add(target)
        lib = load_yaml(target)
        blocks.update(_inlined_blocks(target, lib, seen))
        blocks.update(_plain(lib.get("blocks") or {}))
    return blocks


def _variant_name(res: ScaleResult) -> str:
    label = format_ratio(res.target).replace(".", "p")
    return f"{res.variant}_x{label}" if res.variant else f"x{label}"


def write_scaled(res: ScaleResult, out: str | Path) -> Path:
    """Write ``res`` as a compile-ready spec at ``out`` and check that it compiles to the same cost.

    The output is the base spec with the chosen variant and every override folded into ``params``, the
    scaled values written out, a single variant named after the target, and the base's ``imports``
    rewritten relative to ``out`` (or, when ``out`` lies outside the base's project tree, the imported
    blocks copied in). ``scaling.applied`` records what was done; the declaration stays, so the output
    can be scaled again.
    """
    from archc.compiler import write_atomic

    out = Path(out)
    base_path = Path(res.spec)
    doc = load_spec_doc(base_path, res.text)
    data = _plain(doc.raw)
    params = data.setdefault("params", {})
    if res.variant is not None:
        params.update(_plain(doc.variants[res.variant] or {}))
    params.update(_plain(res.overrides))
    params.update(_plain(res.values))
    vname = _variant_name(res)
    data["variants"] = {vname: {}}
    data["default_variant"] = vname
    out_dir = out.resolve().parent
    targets = _import_targets(base_path, data)
    how = "no imports"
    if targets:
        out_root = find_root(out)
        if all(_inside(t, out_root.resolve()) for t in targets):
            data["imports"] = [Path(os.path.relpath(t, out_dir)).as_posix() for t in targets]
            how = "imports rewritten relative to the output"
        else:
            own = data.get("blocks") or {}
            data["blocks"] = {**_inlined_blocks(base_path, data, set()), **own}
            data.pop("imports", None)
            how = "imported blocks copied in (the output lies outside the base's project tree)"
    base_abs = base_path.resolve()
    base_rel = os.path.relpath(base_abs, out_dir) if _inside(base_abs, find_root(out).resolve()) else str(base_abs)
    note = (f"Scaled by 'archc scale' from {Path(base_rel).as_posix()}"
            f"{f' ({res.variant})' if res.variant else ''}: rule {res.rule.canonical}, target {format_ratio(res.target)}× "
            f"MACs, achieved {res.mac_ratio:.4f}×.")
    data["doc"] = (str(data.get("doc") or "").rstrip() + " " + note).strip()
    scaling = data.get("scaling") or {}
    scaling["applied"] = {
        "base": Path(base_rel).as_posix(), "variant": res.variant, "rule": res.rule.canonical,
        "flops": res.target, "factor": round(res.factor, 6),
        "factors": {k: round(v, 6) for k, v in res.factors.items() if k in _declared_dims(doc)},
        "macs": res.cost.macs, "mac_ratio": round(res.mac_ratio, 6), "acts_ratio": round(res.act_ratio, 6),
        "convention": res.convention,
    }
    if res.trim:
        scaling["applied"]["trim"] = {d: round(c, 6) for d, c in res.trim}
    data["scaling"] = scaling
    header = (f"# Generated by 'archc scale' from {Path(base_rel).as_posix()}: edit the base spec and re-run.\n"
              f"# rule {res.rule.describe()}\n# {how}\n")
    text = header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=118, allow_unicode=True)
    # check before writing: the output must load, expand and cost exactly as computed
    check_doc = load_spec_doc(out, text=text)
    chosen, env = resolve_params(check_doc, None, ())
    cost_fn = pycls_cost if res.convention == "pycls" else graph_cost
    got = cost_fn(expand(check_doc, env, chosen))
    if (got.macs, got.params, got.acts) != (res.cost.macs, res.cost.params, res.cost.acts):
        raise ArchcError(f"internal error: the written spec costs {got.macs:,} MACs, not {res.cost.macs:,}")
    from archc._fs import check_distinct

    check_distinct([out], [Path(p) for p in doc.sources] or [base_path])  # never over the base spec or its imports
    try:
        write_atomic(out, text)
    except IsADirectoryError:
        raise ArchcError(f"cannot write the output: '{out}' is a directory", hint="give a file name, e.g. -o m.yaml") from None
    except OSError as exc:
        raise ArchcError(f"cannot write the output '{out}': {exc.strerror or exc}",
                         hint="check that the folder is writable") from None
    return out


def _declared_dims(doc: SpecDoc) -> set[str]:
    sec = doc.raw.get("scaling")
    return {d for d in DIMS if isinstance(sec, YMap) and d in sec}
