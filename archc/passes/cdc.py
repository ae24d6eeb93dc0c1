"""Central-difference convolution folding.

A ``cdc_conv2d`` (CDCN's central difference convolution) computes
``y = conv(x, w) + b − θ·(conv1×1(x, Σ_hw w) + b)``: a conv minus θ times the response of the summed
kernel to the centre pixel of each window. The op requires an odd kernel and 'same' padding
``dilation·(k−1)/2``, so at every output position the 1×1 term samples exactly the input the centre
tap ``c = k//2`` sees — for any stride, dilation and groups. Both terms are linear in ``x``, so the
difference is one plain conv with

``w'[:, :, c_h, c_w] = w[:, :, c_h, c_w] − θ·Σ_hw w`` (every other tap unchanged) and ``b' = (1−θ)·b``.

The rule has no conditions: every ``cdc_conv2d`` folds, with the same MACs as its dense term alone.
"""

from __future__ import annotations

from archc.ir.graph import Graph, Node
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass

__all__ = ["FoldCDC", "CDCFold"]


class FoldCDC(Rule):
    """Each ``cdc_conv2d`` becomes a ``conv2d`` with the same attributes (θ folded into the centre tap)."""

    name = "fold_cdc"
    anchor_ops = ("cdc_conv2d",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | None:
        return Match(node)

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        n = m.anchor
        attrs = {k: v for k, v in n.attrs.items() if k != "theta"}
        new = make_node(g, n.id, "conv2d", n.inputs, attrs, like=n)
        theta = n.attrs["theta"]
        kh, kw = n.attrs["kernel"]

        def fold(sd: StateDict) -> None:
            w = sd[f"{n.id}.weight"].clone()
            w[:, :, kh // 2, kw // 2] -= theta * w.sum(dim=(2, 3))
            sd[f"{n.id}.weight"] = w
            if n.attrs["bias"]:
                sd[f"{n.id}.bias"] = (1.0 - theta) * sd[f"{n.id}.bias"]

        return Rewrite(set(), [new], {}, fold)


@register_pass
class CDCFold(RulePass):
    name = "fold_cdc"
    doc = "Fold each central-difference conv into a plain conv (w'[centre] −= θ·Σw, b' = (1−θ)·b)."
    rules = (FoldCDC(),)
