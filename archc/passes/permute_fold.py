"""Folding channel-wise affine maps through a layout permute into a channels-last linear.

A ``linear`` over the last axis of an NHWC tensor followed by ``permute(0, 3, 1, 2)`` produces NCHW
whose channel ``c`` is the linear's output feature ``c``. A following eval-mode BN (``s·y + t``) or a
channels-first layer scale (``γ·y (+ β)``) therefore folds into the linear exactly:
``W' = diag(s)·W``, ``b' = s·b + t`` — UniRepLKNet's fold of its last BN and layer scale into the
second pointwise linear.

Refused when the linear or the permute output is used elsewhere, or the permute is not NHWC → NCHW.
"""

from __future__ import annotations

import torch

from archc.ir.graph import Graph, Node, Ref
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass, single_user
from archc.passes.bn_fold import bn_affine, drop_bn

__all__ = ["FoldAffineThroughPermute", "PermuteFold"]


class FoldAffineThroughPermute(Rule):
    """A ``batchnorm`` or channels-first ``layer_scale`` of ``permute(linear(x), [0, 3, 1, 2])``: it folds into the linear."""

    name = "fold_affine_through_permute"
    anchor_ops = ("batchnorm", "layer_scale")

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        if node.op == "layer_scale" and node.attrs["channels_last"]:
            return None
        perm = g.nodes.get(node.inputs[0].node)
        if perm is None or perm.op != "permute":
            return None
        lin = g.nodes.get(perm.inputs[0].node)
        if lin is None or lin.op != "linear":
            return f"'{perm.id}' does not permute the output of a linear"
        return Match(node, {"perm": perm, "lin": lin})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        perm, lin = m.nodes["perm"], m.nodes["lin"]
        if tuple(perm.attrs["dims"]) != (0, 3, 1, 2):
            return f"'{perm.id}' is not the NHWC → NCHW permute (0, 3, 1, 2)"
        if single_user(users, lin.id) != perm.id or single_user(users, perm.id) != m.anchor.id:
            return f"'{lin.id}' or '{perm.id}' is also used outside the match"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        node, perm, lin = m.anchor, m.nodes["perm"], m.nodes["lin"]
        new_lin = make_node(g, lin.id, "linear", lin.inputs, {**dict(lin.attrs), "bias": True}, like=lin)
        had_bias = lin.attrs["bias"]
        is_bn = node.op == "batchnorm"
        conv_form = not is_bn and node.attrs["bias"]

        def fold(sd: StateDict) -> None:
            if is_bn:
                s, t = bn_affine(sd, f"{node.id}.", node)
                drop_bn(sd, f"{node.id}.")
            elif conv_form:
                s, t = sd.pop(f"{node.id}.weight").reshape(-1), sd.pop(f"{node.id}.bias")
            else:
                s = sd.pop(f"{node.id}.gamma")
                t = sd.pop(f"{node.id}.beta") if f"{node.id}.beta" in sd else torch.zeros_like(s)
            w = sd[f"{lin.id}.weight"]
            b = sd[f"{lin.id}.bias"] if had_bias else torch.zeros(w.shape[0], dtype=w.dtype)
            sd[f"{lin.id}.weight"] = w * s[:, None]
            sd[f"{lin.id}.bias"] = b * s + t

        return Rewrite({node.id}, [new_lin], {Ref(node.id, 0): Ref(perm.id, 0)}, fold)


@register_pass
class PermuteFold(RulePass):
    name = "fold_through_permute"
    doc = "Fold BN / layer scale after an NHWC→NCHW permute into the channels-last linear before it."
    rules = (FoldAffineThroughPermute(),)
