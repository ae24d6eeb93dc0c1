"""Central-difference convolution folding.

``y = conv(x, w) + b − θ·(conv1×1(x, Σ_hw w) + b)`` with 'same' padding equals one conv with
``w'[:, :, c, c] = w[:, :, c, c] − θ·Σ_hw w`` (c = k//2, other taps unchanged) and ``b' = (1−θ)·b``,
for any stride and groups: the 1×1 term samples exactly the centre tap's input position.
"""

from __future__ import annotations

from archc.ir.graph import Graph, Node
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass

__all__ = ["FoldCDC", "CDCFold"]


class FoldCDC(Rule):
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
