"""Block fusion: the ``fused`` pipeline (deploy + ``form_regions``) and the fused lowering of its regions.

Two halves, each checked numerically:

* ``form_regions`` — a pure graph pass (Graph → Graph + WeightMap), certified by the float64
  differential check like every pass. A *region* is a residual block: a block body with an ``add``
  that reads one of the body's inputs (the skip connection) and no repeats. Every nested block
  instance inside a region is inlined into it, recursively, so the block's whole chain — conv,
  norm, activation, elementwise ops, the residual add — is one flat body and one generated class
  (state-dict keys ``expand.conv.weight`` become ``expand_conv.weight``). Deploy's folds run again
  in the same fixpoint loop, so whatever folds across the former block boundaries folds.

* :func:`fuse_source` — the lowering of regions (a codegen-level transform of the generated module,
  certified in :func:`check_fused`): in each class, a conv whose only consumer is a residual add
  and/or an activation becomes one :class:`FusedConv2d` call with the add and the activation as
  oneDNN post-ops (``conv → add → act`` or ``conv → act``), every conv keeps its weight reordered
  once into oneDNN's blocked layout, and the model runs in channels-last memory format (every
  NCHW↔NHWC permute of a ConvNeXt-style block becomes a view). ``FusedConv2d`` is emitted into the
  generated file (:data:`RUNTIME_SOURCE`), has exactly the state dict of ``nn.Conv2d`` and falls
  back to plain PyTorch ops off CPU, in other dtypes, in training mode or when an input does not
  fit — so the float64 check of the fused source runs the same arithmetic as the unfused module.

What runs faster on a small CPU was measured (see README "Benchmarks"): oneDNN post-op fusion with
prepacked weights and channels-last beat both ``torch.jit.freeze`` + ``optimize_for_inference``
(whose MKLDNN weight constants cannot be serialized) and plain channels-last eager.
"""

from __future__ import annotations

import keyword

from archc.ir.graph import Graph, Node, Ref
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, register_pass

# the two lowering halves live in their own modules; their public names are this family's API too
from archc.passes.fusion_lowering import FUSED_TOLERANCE, Flow, FusionReport, check_fused, fuse_source
from archc.passes.fusion_runtime import RUNTIME_SOURCE, autotune, pack_convs, reset_packed, runtime_module, set_onednn

__all__ = ["FormRegions", "Flow", "RUNTIME_SOURCE", "autotune", "reset_packed", "FusionReport", "fuse_source", "runtime_module", "pack_convs",
           "set_onednn", "check_fused", "is_region", "MAX_REGION_OPS", "FUSED_TOLERANCE"]

#: a region is not grown beyond this many op nodes by inlining
MAX_REGION_OPS = 96


# -- the graph pass ------------------------------------------------------------------------------


def _has_repeat(g: Graph) -> bool:
    return any(n.is_repeat or (n.body is not None and _has_repeat(n.body)) for n in g)


def _op_count(g: Graph) -> int:
    return sum(_op_count(n.body) if n.body is not None else 1 for n in g)


def is_region(g: Graph) -> bool:
    """A residual block body: an ``add`` reads a body input directly, and there is no repeat inside."""
    if _has_repeat(g):
        return False
    return any(n.op == "add" and any(r.node in g.inputs for r in n.inputs) for n in g)


def _reserved() -> frozenset[str]:
    from archc.spec.expand import _MODULE_ATTRS

    return _MODULE_ATTRS


class _FlattenRegion(Rule):
    """A block instance inside a residual block's body is inlined into it (recursively, up to MAX_REGION_OPS ops)."""

    name = "form_regions"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        # is_region(g) rules out repeats at any depth, so node's body holds none either
        if not node.is_block or node.body is None or not is_region(g):
            return None
        if _op_count(g) - 1 + _op_count(node.body) > MAX_REGION_OPS:
            return f"inlining '{node.id}' would grow the region beyond {MAX_REGION_OPS} ops"
        return Match(node)

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        c = m.anchor
        body = c.body
        assert body is not None
        names = list(body.inputs)
        taken = set(g.nodes) | set(g.inputs) | set(_reserved())
        idmap: dict[str, str] = {}
        for n in body:
            new_id = f"{c.id}_{n.id}"
            while new_id in taken or keyword.iskeyword(new_id):
                new_id += "_"
            taken.add(new_id)
            idmap[n.id] = new_id

        def ref(r: Ref) -> Ref:
            return c.inputs[names.index(r.node)] if r.node in body.inputs else Ref(idmap[r.node], r.index)

        added = [n.replace(id=idmap[n.id], inputs=tuple(ref(r) for r in n.inputs), meta=dict(n.meta)) for n in body]
        replace = {Ref(c.id, k): ref(r) for k, r in enumerate(body.outputs)}
        pairs = [(f"{c.id}.{old}", new) for old, new in idmap.items()]

        def rename(sd: StateDict) -> None:
            for old, new in pairs:
                for k in [k for k in sd if k == old or k.startswith(old + ".")]:
                    sd[new + k[len(old):]] = sd.pop(k)
            for k in [k for k in sd if k == c.id or k.startswith(c.id + ".")]:
                raise KeyError(f"form_regions: weight '{k}' of inlined block '{c.id}' has no node")  # pragma: no cover

        return Rewrite({c.id}, added, replace, rename)


@register_pass
class FormRegions(RulePass):
    name = "form_regions"
    doc = "Flatten each residual block (conv/norm/act/elementwise chain + skip add) into one fused region."
    rules = (_FlattenRegion(),)
