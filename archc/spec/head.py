"""The ``head:`` declaration: where a classifier's features end and which nodes are its classifier.

A spec that classifies names the node whose output is the feature map (``features``), the
classifier node(s) (``classifier``) and, optionally, how its inputs are preprocessed. Generated
modules use it for the timm interface: ``forward_features`` runs the graph up to and including the
features node, ``forward_head`` the rest, ``forward_head(x, pre_logits=True)`` stops at the
classifier's input, and ``reset_classifier`` rebuilds only the classifier. The class count and
the input channels are the spec params ``num_classes`` and ``in_chans`` (timm's names), so a
model built with other values is the spec compiled with those values (``-p num_classes=10``).

A classifier is a top-level node (``fc``) or a node of a top-level block instance (``head.fc``,
the Linear inside a pool-norm-linear head block). Several top-level classifiers (a distillation
head) must all read the same pre-logits value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import SourceLoc, SpecError, suggest
from archc.ir.graph import Graph, Ref
from archc.spec.document import check_identifier
from archc.spec.loader import YList, YMap

__all__ = ["HeadDecl", "parse_head", "resolve_head", "check_head", "HEAD_KEYS", "INTERPOLATIONS",
           "NUM_CLASSES", "IN_CHANS", "DROP_PATH_RATE", "MODEL_ARGS"]

HEAD_KEYS = ("features", "classifier", "mean", "std", "interpolation", "crop_pct")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
#: the spec params generated models take as constructor arguments (timm's names)
NUM_CLASSES = "num_classes"
IN_CHANS = "in_chans"
DROP_PATH_RATE = "drop_path_rate"
MODEL_ARGS = (NUM_CLASSES, IN_CHANS, DROP_PATH_RATE)
# ImageNet statistics and timm's most common evaluation transform: the defaults of default_cfg
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class HeadDecl:
    """A parsed ``head:`` mapping (node names are checked against the expanded graph later)."""

    features: str
    classifier: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    crop_pct: float
    loc: SourceLoc
    features_loc: SourceLoc
    classifier_locs: tuple[SourceLoc, ...]


def _floats(v: Any, loc: SourceLoc, key: str) -> tuple[float, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise SpecError(f"head: '{key}' must be a list of numbers (one per input channel), got {v!r}", loc,
                        hint=f"e.g. {key}: {list(_MEAN if key == 'mean' else _STD)}")
    return tuple(float(x) for x in v)


def parse_head(raw: YMap) -> HeadDecl | None:
    """The spec's ``head:`` declaration, schema-checked, or None when the spec has none."""
    if "head" not in raw:
        return None
    loc = raw.loc_of("head")
    head = raw["head"]
    if not isinstance(head, YMap):
        raise SpecError(f"'head' must be a mapping, got {head!r}", loc, hint="e.g. head: {features: stages, classifier: fc}")
    for k in head:
        if k not in HEAD_KEYS:
            raise SpecError(f"unknown key '{k}' in head", head.key_loc(k), hint=suggest(str(k), HEAD_KEYS) or
                            f"allowed keys: {', '.join(HEAD_KEYS)}")
    for k in ("features", "classifier"):
        if k not in head:
            raise SpecError(f"head needs '{k}'", loc, hint="e.g. head: {features: stages, classifier: fc}")
    features = check_identifier(head["features"], head.loc_of("features"), "head: features node")
    cls = head["classifier"]
    names: list[str] = []
    locs: list[SourceLoc] = []
    items = list(enumerate(cls)) if isinstance(cls, YList) else [(None, cls)]
    if not items:
        raise SpecError("head: 'classifier' names no node", head.loc_of("classifier"), hint="e.g. classifier: fc")
    for j, name in items:
        where = cls.loc_of(j) if j is not None else head.loc_of("classifier")
        if not isinstance(name, str):
            raise SpecError(f"head: classifier {name!r} is not a node name", where, hint="write a node id, e.g. fc or head.fc")
        parts = name.split(".")
        if len(parts) > 2:
            raise SpecError(f"head: classifier '{name}' is nested too deeply", where,
                            hint="name a top-level node (fc) or a node of a top-level block instance (head.fc)")
        for p in parts:
            check_identifier(p, where, "head: classifier node")
        if name in names:
            raise SpecError(f"head: classifier '{name}' is named twice", where)
        names.append(name)
        locs.append(where)
    if len(names) > 1 and any("." in n for n in names):
        raise SpecError("head: a classifier inside a block must be the only classifier", head.loc_of("classifier"),
                        hint="name one node, e.g. classifier: head.fc")
    mean = _floats(head["mean"], head.loc_of("mean"), "mean") if "mean" in head else _MEAN
    std = _floats(head["std"], head.loc_of("std"), "std") if "std" in head else _STD
    if any(s <= 0 for s in std):
        raise SpecError(f"head: every std must be positive, got {list(std)}", head.loc_of("std"))
    if len(mean) != len(std):
        raise SpecError(f"head: mean has {len(mean)} values and std {len(std)}", head.loc_of("std"),
                        hint="give one mean and one std per input channel")
    interp = head.get("interpolation", "bicubic")
    if interp not in INTERPOLATIONS:
        raise SpecError(f"head: unknown interpolation {interp!r}", head.loc_of("interpolation"),
                        hint=suggest(str(interp), INTERPOLATIONS) or f"one of {', '.join(INTERPOLATIONS)}")
    crop = head.get("crop_pct", 0.875)
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
        raise SpecError(f"head: crop_pct must be a number in (0, 1], got {crop!r}", head.loc_of("crop_pct"),
                        hint="the fraction of the resized image kept by the center crop, e.g. 0.875")
    return HeadDecl(features, tuple(names), mean, std, interp, float(crop), loc, head.loc_of("features"), tuple(locs))


def resolve_head(decl: HeadDecl, g: Graph, params: Mapping[str, Any], input_exprs: Mapping[str, Any],
                 declared: Sequence[str] = ()) -> dict[str, Any]:
    """Check ``decl`` against the expanded graph; the ``head`` entry of the graph's meta.

    A classifier among the ``declared`` top-level nodes that this configuration skips (its
    ``when`` is false, e.g. a distillation head) is left out.

    Refuses (at the declaration) what the timm interface could not honour: a features node that
    later nodes bypass, classifiers that read different values, a missing ``num_classes`` param,
    an ``in_chans`` param that is not the input's channel count.
    """
    if NUM_CLASSES not in params:
        raise SpecError(f"a spec with a head needs a param '{NUM_CLASSES}' (the classifier's width)", decl.loc,
                        hint=f"add '{NUM_CLASSES}: 1000' under params and write the classifier's width as ${{{NUM_CLASSES}}}")
    if len(g.inputs) != 1:
        raise SpecError(f"a spec with a head takes one input, this one takes {len(g.inputs)}", decl.loc,
                        hint="forward_features(x) reads one image batch")
    if len(g.outputs) != 1:
        raise SpecError(f"a spec with a head has one output (the logits), this one has {len(g.outputs)}", decl.loc)
    if IN_CHANS in params:
        name = next(iter(g.inputs))
        dims = input_exprs.get(name) or ()
        if len(dims) < 2 or not _reads_only(dims[1], IN_CHANS):
            raise SpecError(f"input '{name}' must take its channels from the param '{IN_CHANS}'", decl.loc,
                            hint=f"write the input as [B, \"${{{IN_CHANS}}}\", ...]")
    kept = tuple(c for c in decl.classifier if c.partition(".")[0] in g.nodes or c.partition(".")[0] not in declared)
    meta = {"features": decl.features, "classifier": kept or decl.classifier, "mean": decl.mean, "std": decl.std,
            "interpolation": decl.interpolation, "crop_pct": decl.crop_pct, "loc": decl.loc}
    problem = head_problem(g, meta)
    if problem is not None:
        msg, which, hint = problem
        where = decl.features_loc if which == "features" else decl.classifier_locs[0] if which == "classifier" else decl.loc
        raise SpecError(f"head: {msg}", where, hint=hint)
    return meta


def _reads_only(src: Any, name: str) -> bool:
    """True for a spec value that is exactly ``${name}``."""
    return isinstance(src, str) and src.replace(" ", "") == f"${{{name}}}"


def check_head(g: Graph, meta: Mapping[str, Any]) -> None:
    """Raise when the (possibly rewritten) graph no longer has the structure ``meta`` describes."""
    problem = head_problem(g, meta)
    if problem is not None:
        from archc.diagnostics import PassError

        raise PassError(f"head: {problem[0]}", hint=problem[2] or "compile with --pipeline train")


def head_problem(g: Graph, meta: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """Why ``g`` cannot take the head ``meta`` (message, which key, hint), or None when it can."""
    order = [n.id for n in g]
    pos = {nid: k for k, nid in enumerate(order)}
    feat = meta["features"]
    if feat not in pos:
        return (f"features node '{feat}' is not in the graph", "features",
                suggest(feat, order) or "name a top-level node (one whose 'when' holds)")
    if len(g.nodes[feat].types) != 1:
        return f"features node '{feat}' has several outputs", "features", "name a node with one output"
    after = order[pos[feat] + 1:]
    for nid in after:
        for r in g.nodes[nid].inputs:
            if r.node != feat and r.node not in after:
                return (f"node '{nid}' after the features node '{feat}' reads '{r}', computed before it", "features",
                        "the features node must be the only value the head reads")
    out = g.outputs[0]
    if out.node != feat and out.node not in after:
        return f"the output '{out}' is computed before the features node '{feat}'", "features", None
    reads: set[Ref] = set()
    for name in meta["classifier"]:
        top, _, sub = name.partition(".")
        if top not in after:
            where = "is not in the graph" if top not in pos else f"is not after the features node '{feat}'"
            return f"classifier '{top}' {where}", "classifier", suggest(top, after) if top not in pos else None
        node = g.nodes[top]
        if sub:
            if not node.is_block or node.body is None:
                return f"classifier '{name}': '{top}' is not a block instance", "classifier", f"name the node itself: {top}"
            if sub not in node.body.nodes:
                return (f"classifier '{name}': block '{node.block}' has no node '{sub}'", "classifier",
                        suggest(sub, list(node.body.nodes)) or None)
            inner = node.body.nodes[sub]
            if len(inner.inputs) != 1 or len(inner.types) != 1:
                return f"classifier '{name}' must read one value and give one", "classifier", None
            if len(node.inputs) != 1 or len(node.types) != 1:
                return f"classifier block '{top}' must read one value and give one", "classifier", None
            reads.add(node.inputs[0])
        else:
            if len(node.inputs) != 1 or len(node.types) != 1:
                return f"classifier '{name}' must read one value and give one", "classifier", None
            reads.add(node.inputs[0])
    if len(reads) > 1:
        shown = ", ".join(sorted(str(r) for r in reads))
        return f"the classifiers read different values ({shown})", "classifier", "every classifier reads the pre-logits value"
    return None
