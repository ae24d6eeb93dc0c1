"""Parallel-branch merging: a sum of convolutions of one input becomes one convolution.

Matches an ``add`` tree whose leaves all read the same tensor ``x`` and are each

* a ``conv2d`` of ``x`` (any kernel, incl. 1×k / k×1 (ACNet), any dilation (UniRepLKNet's
  DilatedReparamBlock), with or without bias),
* ``x`` itself (RepVGG's identity branch), or
* an eval-mode ``batchnorm`` of ``x`` (RepVGG's BN-only identity branch).

Math: a conv with dilation r and kernel k equals a dense conv whose kernel has size r(k−1)+1 with
r−1 zeros between taps; a k×k kernel zero-padded (centred) to K×K with padding increased by
(K−k)/2 gives the same output; the identity is the K×K kernel with a 1 at the centre of channel
``o``'s own input (``o mod C_in/groups``); BN of ``x`` is that identity scaled by ``γ/σ`` with bias
``β − μγ/σ``. Convolution is linear, so the sum of branches is one conv with the summed kernels and
summed biases.

Refused when branches disagree on stride, groups, output channels or padding mode, when a branch's
window is not centred like the others (``padding − dilation·(k−1)/2`` must agree per axis), when a
branch output is used outside the sum, when an identity branch cannot be a conv (channel
count or stride change), or when the merged K×K kernel would cost more MACs than the conv branches
together (all branches share output size, channels and groups, so that is ``K_h·K_w > Σ k_h·k_w``,
e.g. a lone 1×3 + 3×1 pair, or a dilated 3×3 with only a 1×1 beside it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from archc.ir.graph import Graph, Node, Ref
from archc.ops.conv import resolve_padding
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, make_node, register_pass, single_user
from archc.passes.bn_fold import bn_affine, drop_bn

__all__ = ["dense_kernel", "MergeParallelConvs", "MergeBranches"]


def dense_kernel(w: torch.Tensor, dilation: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Kernel ``w`` with ``dilation`` as a dense kernel, zero-padded (centred) to ``size``."""
    kh, kw = w.shape[-2:]
    dh, dw = dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    dense = torch.zeros(*w.shape[:-2], eh, ew, dtype=w.dtype)
    dense[..., ::dh, ::dw] = w
    ph, pw = (size[0] - eh) // 2, (size[1] - ew) // 2
    return F.pad(dense, (pw, size[1] - ew - pw, ph, size[0] - eh - ph))


def _leaves(g: Graph, add: Node, users: dict[str, list[str]]) -> tuple[list[Ref], list[str]]:
    """Leaves of the add tree rooted at ``add`` and the ids of its internal adds."""
    leaves: list[Ref] = []
    internal = [add.id]
    for r in add.inputs:
        n = g.nodes.get(r.node)
        if n is not None and n.op == "add" and single_user(users, n.id) == add.id and n.types == add.types:
            sub, ids = _leaves(g, n, users)
            leaves += sub
            internal += ids
        else:
            leaves.append(r)
    return leaves, internal


def _merged_kernel(convs: list[Node]) -> tuple[int, int]:
    """Size of the dense kernel holding every branch: the largest dilated extent per axis."""
    eff = [tuple(c.attrs["dilation"][i] * (c.attrs["kernel"][i] - 1) + 1 for i in range(2)) for c in convs]
    return (max(e[0] for e in eff), max(e[1] for e in eff))


class MergeParallelConvs(Rule):
    """The root of an ``add`` tree whose leaves are convs of one tensor ``x``, ``x`` itself or ``batchnorm(x)``.

    The whole sum becomes one K×K ``conv2d`` of ``x`` with bias, K being the largest dilated extent
    of the conv branches.
    """

    name = "merge_parallel_convs"
    anchor_ops = ("add",)

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        # anchor at the root of an add tree only
        user = single_user(users, node.id)
        if user is not None and user in g.nodes and g.nodes[user].op == "add" and g.nodes[user].types == node.types:
            return None
        leaves, internal = _leaves(g, node, users)
        convs = [g.nodes[r.node] for r in leaves if r.node in g.nodes and g.nodes[r.node].op == "conv2d"]
        if not convs:
            return "no branch of the sum is a conv"
        x = convs[0].inputs[0]
        return Match(node, {c.id: c for c in convs}, {"leaves": leaves, "internal": internal, "x": x})

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        x: Ref = m.data["x"]
        out_t = m.anchor.types[0]
        ref_conv = next(iter(m.nodes.values()))
        offsets = None
        for r in m.data["leaves"]:
            n = g.nodes.get(r.node)
            if r == x:
                kind = "identity"
            elif n is not None and n.op == "batchnorm" and n.inputs[0] == x and n.types[0].rank == 4:
                kind = "bn"
            elif n is not None and n.op == "conv2d":
                kind = "conv"
            else:
                return f"branch '{r}' is neither a conv of the shared input, the input itself, nor a BN of it"
            if kind != "identity" and single_user(users, n.id) not in m.data["internal"]:  # type: ignore[union-attr]
                return f"branch '{n.id}' is also used outside the sum"  # type: ignore[union-attr]
            if kind == "conv":
                a = n.attrs  # type: ignore[union-attr]
                if n.inputs[0] != x:  # type: ignore[union-attr]
                    return f"conv '{n.id}' reads '{n.inputs[0]}', not the shared input '{x}'"  # type: ignore[union-attr]
                for key in ("stride", "groups", "out", "padding_mode"):
                    if a[key] != ref_conv.attrs[key]:
                        return f"conv '{n.id}' has {key}={a[key]!r} but '{ref_conv.id}' has {ref_conv.attrs[key]!r}"
                pad = resolve_padding(a)
                k, d = a["kernel"], a["dilation"]
                off = tuple(2 * pad[i] - d[i] * (k[i] - 1) for i in range(2))
            else:
                if tuple(ref_conv.attrs["stride"]) != (1, 1) or g.type_of(x) != out_t:
                    return f"identity branch '{r}' needs stride 1 and equal input/output shapes"
                off = (0, 0)
            if offsets is None:
                offsets = off
            elif off != offsets:
                return f"branch '{r}' is not centred like the others (padding − dilation·(k−1)/2 differs)"
        K = _merged_kernel(list(m.nodes.values()))
        taps = sum(c.attrs["kernel"][0] * c.attrs["kernel"][1] for c in m.nodes.values())
        if K[0] * K[1] > taps:
            return (f"the merged {K[0]}×{K[1]} kernel would cost more MACs than the branches "
                    f"({K[0] * K[1]} taps per output vs {taps})")
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        x: Ref = m.data["x"]
        add = m.anchor
        leaves: list[Ref] = m.data["leaves"]
        convs = list(m.nodes.values())
        ref = convs[0]
        K = _merged_kernel(convs)
        pad0 = resolve_padding(ref.attrs)
        off = tuple(2 * pad0[i] - ref.attrs["dilation"][i] * (ref.attrs["kernel"][i] - 1) for i in range(2))
        padding = tuple((off[i] + K[i] - 1) // 2 for i in range(2))
        attrs = {"out": ref.attrs["out"], "kernel": list(K), "stride": list(ref.attrs["stride"]), "padding": list(padding),
                 "dilation": 1, "groups": ref.attrs["groups"], "bias": True, "padding_mode": ref.attrs["padding_mode"]}
        new = make_node(g, add.id, "conv2d", (x,), attrs, like=ref)
        cin = g.type_of(x).shape[1]
        groups = ref.attrs["groups"]
        cout = ref.attrs["out"]
        leaf_nodes = [(r, g.nodes.get(r.node)) for r in leaves]
        remove = set(m.data["internal"]) | {n.id for r, n in leaf_nodes if n is not None and r != x}

        def merge(sd: StateDict) -> None:
            dtype = next(sd[f"{c.id}.weight"] for c in convs).dtype
            w = torch.zeros(cout, cin // groups, K[0], K[1], dtype=dtype)
            b = torch.zeros(cout, dtype=dtype)
            eye = torch.zeros(cout, cin // groups, K[0], K[1], dtype=dtype)
            eye[torch.arange(cout), torch.arange(cout) % (cin // groups), K[0] // 2, K[1] // 2] = 1.0
            for r, n in leaf_nodes:
                if r == x:
                    w = w + eye
                elif n is not None and n.op == "batchnorm":
                    s, t = bn_affine(sd, f"{n.id}.", n)
                    w = w + eye * s.reshape(-1, 1, 1, 1)
                    b = b + t
                    drop_bn(sd, f"{n.id}.")
                else:
                    assert n is not None
                    w = w + dense_kernel(sd.pop(f"{n.id}.weight"), tuple(n.attrs["dilation"]), K)
                    if n.attrs["bias"]:
                        b = b + sd.pop(f"{n.id}.bias")
            sd[f"{add.id}.weight"] = w
            sd[f"{add.id}.bias"] = b

        return Rewrite(remove, [new], {}, merge)


@register_pass
class MergeBranches(RulePass):
    name = "merge_branches"
    doc = "Merge parallel conv / identity / BN branches summed together into one conv (RepVGG, ACNet, dilated)."
    rules = (MergeParallelConvs(),)
