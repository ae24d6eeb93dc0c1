"""Structural alignment of two state-dict trees (source checkpoint → the spec's module).

The two tensor lists are aligned as sequences, block by block:

1. **Co-segmentation in order.** Walking both sibling lists from the front, the shortest prefixes
   whose tensors have equal multisets of (canonical) shapes form a segment; the same is done from the
   back. Shapes are the hard constraint: a segment never pairs tensors whose shapes differ. What is
   left between the two walks is where the checkpoint and the model differ; it is narrowed by
   descending into it (the difference is inside one module) until only tensors remain, which are
   aligned by a longest common subsequence of fitting shapes and agreeing names (a BatchNorm without
   its running_mean loses exactly that tensor, not the one after it) and the rest reported.
2. **One module against several** (``conv1``, ``bn1`` against ``stem``): the single one is opened, so
   the two sides need not nest modules the same way.
3. **Several against several** means the order differs. Inside a block (the lowest common module is
   not the root nor a list of modules) the children are paired by signature — RepVGG's identity BN
   first in timm, last here, is told apart from the conv-BN branches by its shapes — then by shape
   classes of single tensors, where name tokens (weight / bias / running stats / layer scale) break
   ties: timm's layer-scale ``gamma`` first in a ConvNeXt block pairs with the ``gamma`` last here.
   A pairing that neither shapes nor tokens decide is reported as ambiguous, never guessed. Across
   blocks (a list of modules or the root) the order must hold: reordered stages are refused.
4. **Names against order.** Siblings of equal shapes are interchangeable to the shape walk, which pairs
   them in order. Their names are checked against that pairing (:func:`_name_pairing`): a pairing the
   names settle — equal names, or one distinctive name token in common, on both sides uniquely — is
   followed, even where it crosses the order (an mmdetection neck listing ``cconv`` before ``lconv``
   maps onto a module that registers ``lconv`` first); a group whose names contradict the order
   without settling it is reported as ambiguous. Positions (``0``, ``1``, ...) are not names, nor are
   numbers within names (``conv1``/``conv2``: code bases count from 0 or 1), a tensor with a role token
   is named by its module (``lconv.weight``), and a name that occurs twice on one side of the group
   says nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from archc.weights.tree import Leaf, Node

__all__ = ["Alignment", "align"]

Item = Node | Leaf

#: above this many cells the leftover tensors are not aligned one by one (they are all reported)
_LCS_LIMIT = 4_000_000


@dataclass
class Alignment:
    """What the matcher decided: target key → source key, and what it could not decide."""

    pairs: dict[str, str] = field(default_factory=dict)
    #: tensors nothing pairs with, each with the reason
    unmatched_source: list[tuple[Leaf, str]] = field(default_factory=list)
    unmatched_target: list[tuple[Leaf, str]] = field(default_factory=list)
    #: groups of source and target tensors that shapes and tokens do not tell apart
    ambiguous: list[tuple[list[Leaf], list[Leaf]]] = field(default_factory=list)


def align(src: Node, src_nodes: dict[tuple[str, ...], Node], tgt: Node, tgt_nodes: dict[tuple[str, ...], Node]) -> Alignment:
    """Align the source tree onto the target tree (see the module docstring)."""
    m = _Matcher(src_nodes, tgt_nodes)
    m.forest(list(src.items), list(tgt.items))
    return m.result


def _children(item: Item) -> list[Item]:
    return [item] if isinstance(item, Leaf) else list(item.items)


def _expand(items: Sequence[Item]) -> list[Item]:
    out: list[Item] = []
    for it in items:
        out.extend(_children(it))
    return out


def _flatten(items: Sequence[Item]) -> list[Leaf]:
    out: list[Leaf] = []
    for it in items:
        out.extend([it] if isinstance(it, Leaf) else it.leaves())
    return out


def _sig(items: Sequence[Item]) -> Counter:
    c: Counter = Counter()
    for it in items:
        c.update(it.sig)
    return c


def _consistent(a: Leaf, b: Leaf) -> bool:
    """Tokens agree or one of them says nothing."""
    return a.token is None or b.token is None or a.token == b.token


def _name(item: Item) -> str | None:
    """What an item is called, for pairing by name: lowercase, separators dropped (``l_conv`` = ``lconv``).

    A tensor whose last key component is a role the tokens judge (``weight``, ``running_var``, a layer
    scale) is named by its module and role (``lconv.weight``). None where there is no name: a position in
    a list of modules (``0``)."""
    def norm(part: str) -> str | None:
        out = re.sub(r"[^0-9a-z]", "", part.lower())
        return None if not out or out.isdigit() else out

    if isinstance(item, Leaf) and item.token is not None:
        owner = norm(item.path[-2]) if len(item.path) > 1 else None
        return None if owner is None else f"{owner}.{item.token}"
    return norm(item.path[-1]) if item.path else None


def _name_tokens(item: Item) -> set[str]:
    """The words of an item's name (``lateralConv_2`` → {lateral, conv}); digits are positions, not words."""
    last = item.path[-1] if item.path else ""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", last)
    return {w.lower() for w in words}


def _distinct(names: list[str | None]) -> list[str | None]:
    """The names that tell their item apart: unique in the group, and unique without their digits."""
    bases = [None if n is None else re.sub(r"\d+", "", n) for n in names]
    return [n if n is not None and names.count(n) == 1 and bases.count(b) == 1 else None
            for n, b in zip(names, bases)]


def _name_pairing(xs: Sequence[Item], ys: Sequence[Item]) -> list[int] | None:
    """How the names pair two equally long groups of interchangeable siblings: ``perm`` with ``xs[i]`` ↔
    ``ys[perm[i]]``; the order (identity) where names agree with it or say nothing; None where they
    contradict the order but do not settle a pairing (the caller reports the group as ambiguous).

    A name pairs by equality first, then by a distinctive word in common (``lateral_conv`` ↔ ``lateral``:
    words every name of a side carries, like ``conv``, distinguish nothing), in both cases only where the
    match is unique on both sides. One item left over when all others are paired is settled by elimination.
    """
    n = len(xs)
    order = list(range(n))
    if n < 2:
        return order
    nx, ny = [_name(x) for x in xs], [_name(y) for y in ys]
    # a name twice on one side of the group does not tell its items apart, nor do numbers alone: conv1, conv2
    # are positions, and code bases count them differently (conv0, conv1 against conv1, conv2)
    nx, ny = _distinct(nx), _distinct(ny)
    match: dict[int, int] = {}
    for i, a in enumerate(nx):
        if a is not None and a in ny:
            match[i] = ny.index(a)
    # distinctive words: those every name of a side carries (``conv``) tell nothing apart
    tx = [_name_tokens(x) if isinstance(x, Node) and nx[i] is not None else set() for i, x in enumerate(xs)]
    ty = [_name_tokens(y) if isinstance(y, Node) and ny[j] is not None else set() for j, y in enumerate(ys)]
    common_x, common_y = set.intersection(*tx), set.intersection(*ty)
    tx, ty = [t - common_x for t in tx], [t - common_y for t in ty]
    free_x = [i for i in range(n) if i not in match]
    free_y = [j for j in range(n) if j not in match.values()]
    hits_x = {i: [j for j in free_y if tx[i] & ty[j]] for i in free_x}
    hits_y = {j: [i for i in free_x if tx[i] & ty[j]] for j in free_y}
    for i, js in hits_x.items():
        if len(js) == 1 and hits_y[js[0]] == [i]:
            match[i] = js[0]
    # the names speak against the order where they pair across it, or where an item shares nothing with its
    # partner in order but a word with another item of the group
    crossing = any(i != j for i, j in match.items()) or any(
        match.get(i) != i and not (tx[i] & ty[i]) and any(tx[i] & ty[j] or tx[j] & ty[i] for j in range(n) if j != i)
        for i in range(n))
    if not crossing:
        return order
    if len(match) == n - 1:  # the last one is what is left
        i = next(k for k in range(n) if k not in match)
        match[i] = next(k for k in range(n) if k not in match.values())
    if len(match) < n:
        return None
    return [match[i] for i in range(n)]


def _group_key(item: Item) -> tuple:
    return tuple(sorted(item.sig.items()))


def _cosegments(S: Sequence[Item], T: Sequence[Item]) -> tuple[list[tuple[list[Item], list[Item]]], int, int]:
    """Shortest balanced prefix segments; returns them and where the walk got stuck (len, len when not)."""
    segs: list[tuple[list[Item], list[Item]]] = []
    i = j = 0
    while i < len(S) and j < len(T):
        i0, j0 = i, j
        ca, cb = Counter(S[i].sig), Counter(T[j].sig)
        na, nb = S[i].size, T[j].size
        i, j = i + 1, j + 1
        while ca != cb:
            grow_s = na <= nb
            grow_t = nb <= na
            if (grow_s and i >= len(S)) or (grow_t and j >= len(T)):
                return segs, i0, j0
            if grow_s:
                ca.update(S[i].sig)
                na += S[i].size
                i += 1
            if grow_t:
                cb.update(T[j].sig)
                nb += T[j].size
                j += 1
        segs.append((list(S[i0:i]), list(T[j0:j])))
    return segs, i, j


def _merge_leaf_runs(segs: list[tuple[list[Item], list[Item]]]) -> list[tuple[list[Item], list[Item]]]:
    """Join a run of one-tensor segments when names contradict the in-order pairing (weight ↔ bias):
    shapes alone split a block's same-shape tensors one by one, the tokens then decide inside the run."""
    out: list[tuple[list[Item], list[Item]]] = []
    run: list[tuple[list[Item], list[Item]]] = []

    def flush() -> None:
        if len(run) > 1 and any(not _consistent(a[0], b[0]) for a, b in run):  # type: ignore[arg-type]
            out.append(([a[0] for a, _ in run], [b[0] for _, b in run]))
        else:
            out.extend(run)
        run.clear()

    for a, b in segs:
        if len(a) == 1 and len(b) == 1 and isinstance(a[0], Leaf) and isinstance(b[0], Leaf):
            run.append((a, b))
        else:
            flush()
            out.append((a, b))
    flush()
    return out


class _Matcher:
    def __init__(self, src_nodes: dict[tuple[str, ...], Node], tgt_nodes: dict[tuple[str, ...], Node]) -> None:
        self.src_nodes, self.tgt_nodes = src_nodes, tgt_nodes
        self.result = Alignment()

    # -- outcomes -------------------------------------------------------------------------------------
    def pair(self, a: Leaf, b: Leaf) -> None:
        self.result.pairs[b.key] = a.key

    def lost(self, S: Sequence[Item], T: Sequence[Item], why_s: str, why_t: str) -> None:
        self.result.unmatched_source.extend((x, why_s) for x in _flatten(S))
        self.result.unmatched_target.extend((x, why_t) for x in _flatten(T))

    # -- the walk -------------------------------------------------------------------------------------
    def forest(self, S: list[Item], T: list[Item]) -> None:
        """Align two sibling lists whose multisets of shapes may differ."""
        if S and T and all(isinstance(x, Leaf) for x in S) and all(isinstance(y, Leaf) for y in T):
            # one module's own tensors: names can place a tensor where shapes alone cannot (a dropped running_mean)
            if _sig(S) != _sig(T):
                self.lcs(S, T)  # type: ignore[arg-type]
            elif len(S) == 1 or all(x.canon == y.canon and _consistent(x, y) for x, y in zip(S, T)):  # type: ignore[union-attr]
                if self._names_reorder(S, T):
                    self.by_shape(S, T)  # type: ignore[arg-type]  # per shape class, where the names decide
                    return
                for x, y in zip(S, T):
                    self.segment([x], [y])
            else:
                self.segment(S, T)
            return
        front, i, j = _cosegments(S, T)
        for a, b in _merge_leaf_runs(self.by_name(front)):
            self.segment(a, b)
        S, T = S[i:], T[j:]
        if not S and not T:
            return
        back, bi, bj = _cosegments(S[::-1], T[::-1])
        mid_s, mid_t = S[: len(S) - bi], T[: len(T) - bj]
        self.middle(mid_s, mid_t)
        for a, b in _merge_leaf_runs(self.by_name([(a[::-1], b[::-1]) for a, b in reversed(back)])):
            self.segment(a, b)

    def middle(self, S: list[Item], T: list[Item]) -> None:
        """Where the two sides differ: narrow it down by descending, then align single tensors."""
        if not S or not T:
            self.lost(S, T, "left over: the spec's model has nothing of this shape at this place",
                      "not in the checkpoint: nothing of this shape at this place")
            return
        nodes_s = [x for x in S if isinstance(x, Node)]
        nodes_t = [x for x in T if isinstance(x, Node)]
        if len(S) == 1 and len(T) == 1 and (nodes_s or nodes_t):
            self.forest(_children(S[0]), _children(T[0]))
        elif len(S) == 1 and nodes_s:
            self.forest(_children(S[0]), T)
        elif len(T) == 1 and nodes_t:
            self.forest(S, _children(T[0]))
        elif nodes_s or nodes_t:
            self.forest(_expand(S), _expand(T))
        else:
            self.lcs([x for x in S if isinstance(x, Leaf)], [x for x in T if isinstance(x, Leaf)])

    def segment(self, A: list[Item], B: list[Item]) -> None:
        """Align a segment whose two sides hold the same multiset of shapes."""
        if len(A) == 1 and len(B) == 1:
            a, b = A[0], B[0]
            if isinstance(a, Leaf) and isinstance(b, Leaf):
                if _consistent(a, b):
                    self.pair(a, b)
                else:
                    self.result.ambiguous.append(([a], [b]))
            else:
                self.forest(_children(a), _children(b))
        elif len(A) == 1:
            self.forest(_children(A[0]), B)
        elif len(B) == 1:
            self.forest(A, _children(B[0]))
        elif self.in_block(A, B):
            self.permuted(A, B)
        elif all(isinstance(x, Leaf) for x in A) and all(isinstance(x, Leaf) for x in B):
            self.in_order(A, B)  # type: ignore[arg-type]
        else:
            self.forest(_expand(A), _expand(B))

    def by_name(self, segs: list[tuple[list[Item], list[Item]]]) -> list[tuple[list[Item], list[Item]]]:
        """Re-pair one-to-one segments of interchangeable siblings where their names settle another pairing;
        a group whose names contradict the order without settling it is reported and dropped."""
        out = list(segs)
        drop: set[int] = set()
        k = 0
        while k < len(out):
            end = k
            while end < len(out) and len(out[end][0]) == 1 and len(out[end][1]) == 1:
                end += 1
            groups: dict[tuple, list[int]] = {}
            for at in range(k, end):
                groups.setdefault(_group_key(out[at][0][0]), []).append(at)
            for idx in groups.values():
                xs = [out[at][0][0] for at in idx]
                ys = [out[at][1][0] for at in idx]
                perm = _name_pairing(xs, ys)
                if perm is None:
                    self.result.ambiguous.append((_flatten(xs), _flatten(ys)))
                    drop.update(idx)
                else:
                    for at, x, p in zip(idx, xs, perm):
                        out[at] = ([x], [ys[p]])
            k = end + 1
        return [seg for at, seg in enumerate(out) if at not in drop]

    def _names_reorder(self, S: Sequence[Item], T: Sequence[Item]) -> bool:
        """Whether the names pair some same-shape tensors of these aligned lists otherwise than their order."""
        groups: dict[tuple, list[int]] = {}
        for at, x in enumerate(S):
            groups.setdefault(_group_key(x), []).append(at)
        return any(_name_pairing([S[i] for i in idx], [T[i] for i in idx]) != list(range(len(idx)))
                   for idx in groups.values())

    def in_block(self, A: Sequence[Item], B: Sequence[Item]) -> bool:
        """Reordering is allowed only inside one block, on both sides (never across blocks or stages)."""
        return not self._lca(A, self.src_nodes).container and not self._lca(B, self.tgt_nodes).container

    @staticmethod
    def _lca(items: Sequence[Item], nodes: dict[tuple[str, ...], Node]) -> Node:
        paths = [it.path for it in items]
        common: list[str] = []
        for parts in zip(*paths):
            if len(set(parts)) != 1:
                break
            common.append(parts[0])
        # a path shared in full is an item itself; its parent holds the siblings
        while tuple(common) not in nodes or any(len(p) == len(common) for p in paths):
            common.pop()
        return nodes[tuple(common)]

    # -- pairing strategies ---------------------------------------------------------------------------
    def in_order(self, A: Sequence[Leaf], B: Sequence[Leaf]) -> None:
        """Across blocks the order is the structure: pair in order, refuse what does not fit."""
        for a, b in zip(A, B):
            if a.canon != b.canon:
                self.lost([a], [b], f"out of order: the model expects {list(b.shape)} here",
                          f"out of order: the checkpoint has {list(a.shape)} ({a.key}) here")
            elif not _consistent(a, b):
                self.result.ambiguous.append(([a], [b]))
            else:
                self.pair(a, b)

    def permuted(self, A: list[Item], B: list[Item]) -> None:
        """Inside a block: pair modules by signature, open what is left, finally pair tensors by shape and token."""
        while True:
            by_a: dict[tuple, list[Item]] = {}
            by_b: dict[tuple, list[Item]] = {}
            for it in A:
                if isinstance(it, Node) and it.size > 1:
                    by_a.setdefault(tuple(sorted(it.sig.items())), []).append(it)
            for it in B:
                if isinstance(it, Node) and it.size > 1:
                    by_b.setdefault(tuple(sorted(it.sig.items())), []).append(it)
            done: set[int] = set()
            for key, xs in by_a.items():
                ys = by_b.get(key, [])
                if len(xs) == len(ys):
                    perm = _name_pairing(xs, ys)
                    if perm is None:
                        self.result.ambiguous.append((_flatten(xs), _flatten(ys)))
                    else:
                        for x, k in zip(xs, perm):
                            self.forest(list(x.items), list(ys[k].items))  # type: ignore[union-attr]
                    done.update(id(z) for z in xs + ys)
            A = [x for x in A if id(x) not in done]
            B = [y for y in B if id(y) not in done]
            if not A and not B:
                return
            if all(isinstance(x, Leaf) for x in A) and all(isinstance(y, Leaf) for y in B):
                self.by_shape(A, B)  # type: ignore[arg-type]
                return
            A, B = _expand(A), _expand(B)

    def by_shape(self, A: list[Leaf], B: list[Leaf]) -> None:
        """Single tensors of one block: same canonical shape required; in order, else by token."""
        classes: dict[tuple[int, ...], tuple[list[Leaf], list[Leaf]]] = {}
        for a in A:
            classes.setdefault(a.canon, ([], []))[0].append(a)
        for b in B:
            classes.setdefault(b.canon, ([], []))[1].append(b)
        for xs, ys in classes.values():
            if len(xs) != len(ys):  # cannot happen in a balanced segment; report rather than trust it
                self.lost(xs, ys, "no counterpart of this shape in the block", "no counterpart of this shape in the block")
                continue
            perm = _name_pairing(xs, ys)
            if perm is None or (perm != sorted(perm) and not all(_consistent(x, ys[k]) for x, k in zip(xs, perm))):
                self.result.ambiguous.append((xs, ys))
                continue
            if perm != sorted(perm):
                for x, k in zip(xs, perm):
                    self.pair(x, ys[k])
                continue
            if all(_consistent(x, y) for x, y in zip(xs, ys)):
                for x, y in zip(xs, ys):
                    self.pair(x, y)
                continue
            rest_x, rest_y = list(xs), list(ys)
            for tok in dict.fromkeys(t for t in (x.token for x in xs) if t is not None):
                tx = [x for x in rest_x if x.token == tok]
                ty = [y for y in rest_y if y.token == tok]
                if len(tx) == len(ty):
                    for x, y in zip(tx, ty):
                        self.pair(x, y)
                    rest_x = [x for x in rest_x if x not in tx]
                    rest_y = [y for y in rest_y if y not in ty]
            if len(rest_x) == 1 and len(rest_y) == 1 and _consistent(rest_x[0], rest_y[0]):
                self.pair(rest_x[0], rest_y[0])
            elif rest_x or rest_y:
                self.result.ambiguous.append((rest_x, rest_y))

    def lcs(self, A: list[Leaf], B: list[Leaf]) -> None:
        """Leftover tensors where the two sides differ: the longest in-order pairing of fitting tensors."""
        n, m = len(A), len(B)
        if n * m > _LCS_LIMIT:
            self.lost(A, B, "left over: the checkpoint and the model differ here", "not in the checkpoint")
            return
        ok = [[a.canon == b.canon and _consistent(a, b) for b in B] for a in A]
        dp = [[0] * (m + 1) for _ in range(n + 1)]
        for i in range(n - 1, -1, -1):
            row, nxt = dp[i], dp[i + 1]
            oki = ok[i]
            for j in range(m - 1, -1, -1):
                row[j] = nxt[j + 1] + 1 if oki[j] else max(nxt[j], row[j + 1])
        i = j = 0
        lost_a: list[Leaf] = []
        lost_b: list[Leaf] = []
        while i < n and j < m:
            if ok[i][j] and dp[i][j] == dp[i + 1][j + 1] + 1:
                self.pair(A[i], B[j])
                i, j = i + 1, j + 1
            elif dp[i + 1][j] >= dp[i][j + 1]:
                lost_a.append(A[i])
                i += 1
            else:
                lost_b.append(B[j])
                j += 1
        lost_a.extend(A[i:])
        lost_b.extend(B[j:])
        self.lost(lost_a, lost_b, "left over: the spec's model has nothing of this shape at this place",
                  "not in the checkpoint: nothing of this shape at this place")
