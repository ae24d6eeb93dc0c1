"""Folding per-channel scales and shifts into the adjacent linear layer.

* **layer scale after a conv/linear**: ``γ⊙(Wx + b) + β = (γ⊙W)x + (γ⊙b + β)``, i.e. row ``o`` of the
  weight (output channel ``o`` of a conv) is scaled by ``γ_o`` and the bias becomes ``γ⊙b + β``
  (β only for layer scales with a bias; in the channels-first conv form γ is the ``weight [C, 1, 1,
  1]`` of a depthwise 1×1 conv). The layer scale must scale the producer's output-channel axis:
  axis 1 of a conv or a rank-2 linear, the last axis of a linear over channels-last tokens.
* **GRN bias through the next linear map**: ``GRN(x) = GRN₀(x) + β`` where GRN₀ is GRN without its
  bias, so ``W(GRN₀(x) + β) + b = W·GRN₀(x) + (Wβ + b)``: β becomes part of the next layer's bias.
  The next map must be a ``linear`` over channels-last GRN output, or an ungrouped 1×1 ``conv2d``
  without padding over channels-first output (a padded border would see 0 where the unfolded graph
  sees β) — UniRepLKNet's / ConvNeXt V2's block fold.

Refused when the producer's output (or the GRN's) is also used elsewhere, and when the axes do not
line up.
"""

from __future__ import annotations

import torch

from archc.ir.graph import Graph, Node, Ref
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass, single_user

__all__ = ["FoldLayerScale", "FoldGRNBias", "ScaleFold"]


def _is_linear_map(n: Node) -> bool:
    return n.op == "linear" or (n.op == "conv2d" and tuple(n.attrs["kernel"]) == (1, 1) and n.attrs["groups"] == 1)


class FoldLayerScale(Rule):
    """A ``layer_scale`` reading a ``conv2d`` or ``linear``: γ and β fold into the layer's weight and bias."""

    name = "fold_layer_scale"
    anchor_ops = ("layer_scale",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        prev = g.nodes.get(node.inputs[0].node)
        if prev is None:
            return f"its input '{node.inputs[0]}' is a graph input, not a conv or linear"
        if prev.op not in ("conv2d", "linear"):
            return f"its input '{prev.id}' is a {prev.op}, not a conv or linear"
        return Match(node, {"prev": prev})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        prev, ls = m.nodes["prev"], m.anchor
        if single_user(users, prev.id) != ls.id:
            return f"'{prev.id}' is also used outside the match"
        rank = prev.types[0].rank
        # the axis the layer scale scales must be the producer's output-channel axis
        scaled = rank - 1 if ls.attrs["channels_last"] else 1
        channels = rank - 1 if prev.op == "linear" else 1
        if scaled != channels:
            where = "the last axis" if ls.attrs["channels_last"] else "axis 1"
            return f"layer scale over {where} does not scale the output channels of '{prev.id}'"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        ls, prev = m.anchor, m.nodes["prev"]
        new = make_node(g, prev.id, prev.op, prev.inputs, {**dict(prev.attrs), "bias": True}, like=prev)
        had_bias = prev.attrs["bias"]
        with_conv_form = ls.attrs["bias"] and not ls.attrs["channels_last"]

        def fold(sd: StateDict) -> None:
            if with_conv_form:
                gamma, beta = sd.pop(f"{ls.id}.weight").reshape(-1), sd.pop(f"{ls.id}.bias")
            else:
                gamma = sd.pop(f"{ls.id}.gamma")
                beta = sd.pop(f"{ls.id}.beta") if f"{ls.id}.beta" in sd else torch.zeros_like(gamma)
            w = sd[f"{prev.id}.weight"]
            b = sd[f"{prev.id}.bias"] if had_bias else torch.zeros(w.shape[0], dtype=w.dtype)
            sd[f"{prev.id}.weight"] = w * gamma.reshape(-1, *([1] * (w.dim() - 1)))
            sd[f"{prev.id}.bias"] = b * gamma + beta

        return Rewrite({ls.id}, [new], {Ref(ls.id, 0): Ref(prev.id, 0)}, fold)


class FoldGRNBias(Rule):
    """A ``grn`` with a bias whose only user is a linear map: β moves into that map's bias."""

    name = "fold_grn_bias"
    anchor_ops = ("grn",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        if not node.attrs["bias"]:
            return None
        user = single_user(users, node.id)
        nxt = g.nodes.get(user) if user else None
        if nxt is None:
            return f"its output has {len(users.get(node.id, []))} users, not exactly one layer"
        if not _is_linear_map(nxt):
            return f"its user '{nxt.id}' is a {nxt.op}, not a linear or an ungrouped 1×1 conv"
        return Match(node, {"next": nxt})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        nxt, grn = m.nodes["next"], m.anchor
        if nxt.op == "conv2d" and (grn.attrs["channels_last"] or tuple(nxt.attrs["padding"] or (0, 0)) != (0, 0)):
            return f"'{nxt.id}' is not a channels-first unpadded 1×1 conv over the GRN's channels"
        if nxt.op == "linear" and not grn.attrs["channels_last"]:
            return f"'{nxt.id}' maps the last axis but the GRN normalizes axis 1"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        grn, nxt = m.anchor, m.nodes["next"]
        new_grn = make_node(g, grn.id, "grn", grn.inputs, {**dict(grn.attrs), "bias": False}, like=grn)
        new_next = make_node(g, nxt.id, nxt.op, nxt.inputs, {**dict(nxt.attrs), "bias": True}, like=nxt,
                             types={Ref(grn.id, 0): new_grn.types[0]})
        had_bias = nxt.attrs["bias"]

        def fold(sd: StateDict) -> None:
            beta = sd.pop(f"{grn.id}.beta")
            w = sd[f"{nxt.id}.weight"]
            b = sd[f"{nxt.id}.bias"] if had_bias else torch.zeros(w.shape[0], dtype=w.dtype)
            sd[f"{nxt.id}.bias"] = b + w.reshape(w.shape[0], -1) @ beta

        return Rewrite(set(), [new_grn, new_next], {}, fold)


@register_pass
class ScaleFold(RulePass):
    name = "fold_scales"
    doc = "Fold layer scales into the preceding conv/linear and GRN biases into the next linear map."
    rules = (FoldLayerScale(), FoldGRNBias())
