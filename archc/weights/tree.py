"""The module tree of a state dict, rebuilt from its dotted keys.

A state dict is an ordered list of tensors whose keys spell a module path (``layer1.0.conv1.weight``).
The mapper compares two such lists by structure, so each side is turned into a tree whose nodes are
module paths and whose leaves are tensors, children in first-appearance order (PyTorch writes a
module's own tensors first, then its children's, in registration order).

Each leaf carries what the matcher may compare: its *canonical shape* (leading and trailing size-1
dimensions dropped, so a 1×1 conv weight ``[o, i, 1, 1]`` and a linear weight ``[o, i]`` meet; a pure
reshape with equal element count) and its *token*, the last key component normalized into a small
vocabulary (``weight``, ``bias``, ``running_mean``, ``running_var``, ``scale`` for layer-scale names).
Unknown tokens are neutral: they neither confirm nor contradict a pairing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Leaf", "Node", "build_tree", "canonical_shape", "token_of"]

#: layer-scale parameters under the names the common code bases give them (timm gamma / ls / scale, ...)
_SCALE = re.compile(r"^(gamma(_?\d+)?|ls\d*|layer_?scale(_?\d+)?|scale|ls_gamma)$")
_KNOWN = {"weight", "bias", "running_mean", "running_var"}


def canonical_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without leading and trailing size-1 dimensions: ``[o, i, 1, 1]`` → ``(o, i)``, ``[c, 1, 1]`` → ``(c,)``."""
    dims = list(shape)
    while dims and dims[-1] == 1:
        dims.pop()
    while dims and dims[0] == 1:
        dims.pop(0)
    return tuple(dims)


def token_of(key: str) -> str | None:
    """The normalized role of a tensor from its key's last component, or None when the name says nothing."""
    last = key.rsplit(".", 1)[-1]
    if last in _KNOWN:
        return last
    if _SCALE.match(last):
        return "scale"
    return None


@dataclass(frozen=True)
class Leaf:
    """One tensor of a state dict: its key, shape and what the matcher compares."""

    key: str
    shape: tuple[int, ...]
    index: int  # position in the state dict (order is structure)

    @property
    def canon(self) -> tuple[int, ...]:
        return canonical_shape(self.shape)

    @property
    def token(self) -> str | None:
        return token_of(self.key)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.key.split("."))

    @property
    def sig(self) -> Counter:
        return Counter([self.canon])

    @property
    def size(self) -> int:
        return 1


@dataclass(eq=False)
class Node:
    """A module path with its children (nodes and leaves) in first-appearance order."""

    path: tuple[str, ...]
    items: list[Node | Leaf] = field(default_factory=list)
    sig: Counter = field(default_factory=Counter)
    size: int = 0

    @property
    def name(self) -> str:
        return ".".join(self.path) or "<root>"

    @property
    def container(self) -> bool:
        """The root, or a list of modules (``layers.0``, ``layers.1``, ...): their order is the network's order."""
        if not self.path:
            return True
        names = [it.path[-1] for it in self.items]
        return bool(names) and all(n.isdigit() for n in names)

    def leaves(self) -> list[Leaf]:
        out: list[Leaf] = []
        for it in self.items:
            out.extend([it] if isinstance(it, Leaf) else it.leaves())
        return out


def build_tree(entries: Iterable[tuple[str, Sequence[int]]]) -> tuple[Node, dict[tuple[str, ...], Node]]:
    """The tree of ``(key, shape)`` entries in state-dict order, and every node by its path."""
    root = Node(())
    nodes: dict[tuple[str, ...], Node] = {(): root}
    for index, (key, shape) in enumerate(entries):
        leaf = Leaf(key, tuple(int(d) for d in shape), index)
        parts = leaf.path
        parent = root
        for depth in range(1, len(parts)):
            sub = parts[:depth]
            node = nodes.get(sub)
            if node is None:
                node = nodes[sub] = Node(sub)
                parent.items.append(node)
            parent = node
        parent.items.append(leaf)
        for depth in range(len(parts)):  # every ancestor's signature counts the tensor
            anc = nodes[parts[:depth]]
            anc.sig[leaf.canon] += 1
            anc.size += 1
    return root, nodes
