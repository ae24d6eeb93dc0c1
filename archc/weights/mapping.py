"""A weight map: which checkpoint tensor fills which tensor of the spec's module, and what did not map.

Floating tensors (parameters, running statistics) are aligned by structure (:mod:`archc.weights.align`).
Integer buffers carry no learned value that changes outputs in eval mode (BatchNorm's
``num_batches_tracked``, index tables derived from the architecture), so they stay out of the
alignment: a target counter is taken from the source module its BatchNorm was mapped from when that
module has one, else it keeps the module's own value; source integer buffers left over are ignored.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from archc.weights.align import align
from archc.weights.tree import Leaf, build_tree

__all__ = ["WeightMap", "map_state_dict"]


@dataclass
class WeightMap:
    """The result of mapping a source state dict onto a target layout."""

    #: target key → source key (floating tensors)
    mapping: dict[str, str]
    #: target key → source key of integer buffers taken from the mapped source module
    carried: dict[str, str]
    #: target integer buffers the source did not have: the module's own values are kept
    filled: list[str]
    #: source integer buffers nothing used
    ignored: list[str]
    #: target keys whose source tensor is reshaped (same numbers, e.g. [o, i, 1, 1] → [o, i])
    reshaped: list[str]
    #: target keys whose source tensor came out of the checkpoint's order (in-block reordering)
    reordered: list[str]
    unmatched_source: list[tuple[Leaf, str]] = field(default_factory=list)
    unmatched_target: list[tuple[Leaf, str]] = field(default_factory=list)
    ambiguous: list[tuple[list[Leaf], list[Leaf]]] = field(default_factory=list)
    #: every target key with its shape, in module order
    target_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every target tensor is mapped and every source tensor used (integer buffers aside)."""
        return not (self.unmatched_source or self.unmatched_target or self.ambiguous)

    @property
    def float_targets(self) -> int:
        return len(self.target_shapes) - len(self.carried) - len(self.filled)

    def apply(self, source: Mapping[str, torch.Tensor], defaults: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The target state dict: mapped tensors (reshaped where the map says so), ``defaults`` elsewhere.

        Floating tensors keep the checkpoint's dtype; unmapped ones (a partial map) are the defaults.
        """
        out: dict[str, torch.Tensor] = {}
        for key, shape in self.target_shapes.items():
            src = self.mapping.get(key) or self.carried.get(key)
            if src is None:
                out[key] = defaults[key].detach().clone()
            else:
                out[key] = source[src].detach().reshape(shape).clone()
        return out

    def problems(self) -> list[str]:
        """One line per tensor that did not map (target side first), ambiguous groups last."""
        lines = [f"  model      {leaf.key} {list(leaf.shape)}: {why}" for leaf, why in self.unmatched_target]
        lines += [f"  checkpoint {leaf.key} {list(leaf.shape)}: {why}" for leaf, why in self.unmatched_source]
        for xs, ys in self.ambiguous:
            src = ", ".join(f"{x.key} {list(x.shape)}" for x in xs) or "-"
            tgt = ", ".join(f"{y.key} {list(y.shape)}" for y in ys) or "-"
            lines.append(f"  ambiguous  checkpoint {src} ↔ model {tgt}: shapes and names do not decide the pairing")
        return lines

    def headline(self) -> str:
        """``mapped N of M tensors (...)``: the one-line summary."""
        n = len(self.mapping)
        parts = []
        if self.reordered:
            parts.append(f"{len(self.reordered)} reordered within blocks")
        if self.reshaped:
            parts.append(f"{len(self.reshaped)} reshaped")
        if self.carried:
            parts.append(f"{len(self.carried)} integer buffers carried")
        if self.filled:
            parts.append(f"{len(self.filled)} integer buffers kept from the module")
        if self.ignored:
            parts.append(f"{len(self.ignored)} checkpoint integer buffers ignored")
        return f"mapped {n} of {self.float_targets} tensors" + (f" ({', '.join(parts)})" if parts else "")


def _integer(t: torch.Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex())


def _owner(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _reordered(mapping: Mapping[str, str], src_index: Mapping[str, int], tgt_order: list[str]) -> list[str]:
    """Target keys outside the longest run that keeps the checkpoint's order (what had to be moved)."""
    keys = [k for k in tgt_order if k in mapping]
    seq = [src_index[mapping[k]] for k in keys]
    # longest increasing subsequence with predecessor links (patience sorting)
    tails: list[int] = []
    tail_pos: list[int] = []
    prev = [-1] * len(seq)
    for pos, v in enumerate(seq):
        at = bisect.bisect_left(tails, v)
        if at == len(tails):
            tails.append(v)
            tail_pos.append(pos)
        else:
            tails[at] = v
            tail_pos[at] = pos
        prev[pos] = tail_pos[at - 1] if at else -1
    keep: set[int] = set()
    pos = tail_pos[-1] if tail_pos else -1
    while pos >= 0:
        keep.add(pos)
        pos = prev[pos]
    return [k for i, k in enumerate(keys) if i not in keep]


def map_state_dict(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> WeightMap:
    """Map ``source`` (a state dict in another code base's layout) onto the layout of ``target``.

    ``target`` is the state dict of the module the weights are for (its values are not read, only its
    keys, order and shapes). Nothing is guessed: what shapes and names do not decide is reported.

    >>> import torch
    >>> src = {"0.weight": torch.ones(4, 3, 1, 1), "0.bias": torch.zeros(4)}
    >>> wm = map_state_dict(src, {"fc.weight": torch.empty(4, 3), "fc.bias": torch.empty(4)})
    >>> wm.mapping, wm.reshaped
    ({'fc.weight': '0.weight', 'fc.bias': '0.bias'}, ['fc.weight'])
    """
    src_float = [(k, tuple(v.shape)) for k, v in source.items() if not _integer(v)]
    tgt_float = [(k, tuple(v.shape)) for k, v in target.items() if not _integer(v)]
    s_root, s_nodes = build_tree(src_float)
    t_root, t_nodes = build_tree(tgt_float)
    res = align(s_root, s_nodes, t_root, t_nodes)

    src_index = {k: i for i, (k, _) in enumerate(src_float)}
    tgt_order = [k for k, _ in tgt_float]
    mapping = {k: res.pairs[k] for k in tgt_order if k in res.pairs}
    reshaped = [k for k, s in mapping.items() if tuple(source[s].shape) != tuple(target[k].shape)]

    # integer buffers follow the module they belong to
    owner_map: dict[str, str] = {}
    for t_key, s_key in mapping.items():
        owner_map.setdefault(_owner(t_key), _owner(s_key))
    carried: dict[str, str] = {}
    filled: list[str] = []
    for key, val in target.items():
        if not _integer(val):
            continue
        src_owner = owner_map.get(_owner(key))
        name = key.rsplit(".", 1)[-1]
        cand = None if src_owner is None else f"{src_owner}.{name}" if src_owner else name
        if cand is not None and cand in source and _integer(source[cand]) and source[cand].shape == val.shape:
            carried[key] = cand
        else:
            filled.append(key)
    used = set(carried.values())
    ignored = [k for k, v in source.items() if _integer(v) and k not in used]
    return WeightMap(mapping=mapping, carried=carried, filled=filled, ignored=ignored, reshaped=reshaped,
                     reordered=_reordered(mapping, src_index, tgt_order),
                     unmatched_source=res.unmatched_source, unmatched_target=res.unmatched_target,
                     ambiguous=res.ambiguous, target_shapes={k: tuple(v.shape) for k, v in target.items()})
