"""Batch-norm folding into an adjacent convolution or linear layer.

In eval mode BN is the affine map ``y = s·x + t`` per channel, with ``s = γ/σ``, ``σ = √(var + ε)``,
``t = β − μ·s``.

* conv → BN: ``W' = W·s`` (per output channel), ``b' = s·b + t``. Exact for any kernel, stride,
  padding, dilation and groups.
* linear → BN (BN over the features of a rank-2 linear output): the same, per output feature.
* BN → conv: ``W'[o, i] = W[o, i]·s_i``, ``b' = b + Σ_{i,h,w} W[o, i, h, w]·t_i``. Exact only when the
  conv does not zero-pad (a padded border would see ``0`` where the unfolded graph sees ``t``), so
  the rule refuses convs with non-zero padding in mode ``zeros``. Reflect, replicate and circular
  padding copy values of the same channel, so they commute with the per-channel affine map and
  fold exactly.
* BN → linear (rank-2): ``W' = W·diag(s)``, ``b' = b + W·t``.

Refused when the producer's output is also used elsewhere (the unfolded value would be lost).
"""

from __future__ import annotations

from typing import Any

import torch

from archc.ir.graph import Graph, Node, Ref
from archc.ops.conv import resolve_padding
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass, single_user

__all__ = ["bn_affine", "FoldBNIntoPrev", "FoldBNIntoNext", "FoldBatchNorm"]

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn_affine(sd: StateDict, prefix: str, node: Node) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval-mode BN stored under ``prefix`` in ``sd``."""
    mean, var = sd[prefix + "running_mean"], sd[prefix + "running_var"]
    std = torch.sqrt(var + node.attrs["eps"])
    if node.attrs["affine"]:
        gamma, beta = sd[prefix + "weight"], sd[prefix + "bias"]
    else:
        gamma, beta = torch.ones_like(mean), torch.zeros_like(mean)
    scale = gamma / std
    return scale, beta - mean * scale


def drop_bn(sd: StateDict, prefix: str) -> None:
    for k in _BN_KEYS:
        sd.pop(prefix + k, None)


def _conv_like(n: Node) -> bool:
    return n.op == "conv2d" or (n.op == "linear" and n.types[0].rank == 2)


class FoldBNIntoPrev(Rule):
    """conv → BN (or rank-2 linear → BN) becomes one conv/linear with bias."""

    name = "fold_bn_into_prev"
    anchor_ops = ("batchnorm",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        src = node.inputs[0]
        if src.node not in g.nodes:
            return f"its input '{src}' is a graph input, not a conv"
        prev = g.nodes[src.node]
        if not _conv_like(prev):
            return f"its input '{prev.id}' is a {prev.op}, not a conv or rank-2 linear"
        return Match(node, {"prev": prev})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        prev = m.nodes["prev"]
        if single_user(users, prev.id) != m.anchor.id:
            return f"'{prev.id}' is also used outside the match ({', '.join(users[prev.id])})"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        bn, prev = m.anchor, m.nodes["prev"]
        new = make_node(g, prev.id, prev.op, prev.inputs, {**dict(prev.attrs), "bias": True}, like=prev)
        had_bias = prev.attrs["bias"]

        def fold(sd: StateDict) -> None:
            s, t = bn_affine(sd, f"{bn.id}.", bn)
            w = sd[f"{prev.id}.weight"]
            b = sd[f"{prev.id}.bias"] if had_bias else torch.zeros(w.shape[0], dtype=w.dtype)
            sd[f"{prev.id}.weight"] = w * s.reshape(-1, *([1] * (w.dim() - 1)))
            sd[f"{prev.id}.bias"] = b * s + t
            drop_bn(sd, f"{bn.id}.")

        return Rewrite({bn.id}, [new], {Ref(bn.id, 0): Ref(prev.id, 0)}, fold)


class FoldBNIntoNext(Rule):
    """BN → unpadded conv (or rank-2 BN → linear) becomes one conv/linear with bias."""

    name = "fold_bn_into_next"
    anchor_ops = ("batchnorm",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        user = single_user(users, node.id)
        if user is None or user not in g.nodes:
            return f"its output has {len(users.get(node.id, []))} users, not exactly one layer"
        nxt = g.nodes[user]
        if not _conv_like(nxt) or nxt.inputs[0] != Ref(node.id, 0):
            return f"its user '{nxt.id}' is a {nxt.op}, not a conv or rank-2 linear"
        if node.types[0].rank != nxt.meta["in_types"][0].rank:
            return f"'{nxt.id}' does not map BN's channel axis"
        return Match(node, {"next": nxt})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        nxt = m.nodes["next"]
        if nxt.op == "conv2d":
            pad = resolve_padding(nxt.attrs)
            if pad != (0, 0) and nxt.attrs["padding_mode"] == "zeros":
                return f"'{nxt.id}' zero-pads its input (padding {pad}), so the BN shift would be lost at the border"
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        bn, nxt = m.anchor, m.nodes["next"]
        attrs: dict[str, Any] = {**dict(nxt.attrs), "bias": True}
        new = make_node(g, nxt.id, nxt.op, (bn.inputs[0],), attrs, like=nxt)
        had_bias = nxt.attrs["bias"]
        groups = nxt.attrs.get("groups", 1)

        def fold(sd: StateDict) -> None:
            s, t = bn_affine(sd, f"{bn.id}.", bn)
            w = sd[f"{nxt.id}.weight"]
            b = sd[f"{nxt.id}.bias"] if had_bias else torch.zeros(w.shape[0], dtype=w.dtype)
            cout, cin_g = w.shape[0], w.shape[1]
            # input channel of weight column j for output o: (o // (cout/groups)) * cin_g + j
            grp = torch.arange(cout) // (cout // groups)
            idx = grp[:, None] * cin_g + torch.arange(cin_g)[None, :]
            s_in, t_in = s[idx], t[idx]
            shape = (cout, cin_g) + (1,) * (w.dim() - 2)
            sd[f"{nxt.id}.bias"] = b + (w * t_in.reshape(shape)).flatten(1).sum(1)
            sd[f"{nxt.id}.weight"] = w * s_in.reshape(shape)
            drop_bn(sd, f"{bn.id}.")

        return Rewrite({bn.id}, [new], {}, fold)


@register_pass
class FoldBatchNorm(RulePass):
    name = "fold_bn"
    doc = "Fold eval-mode batch norm into the adjacent conv/linear (before it, or after it when unpadded)."
    rules = (FoldBNIntoPrev(), FoldBNIntoNext())
