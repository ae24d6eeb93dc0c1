"""Pass infrastructure: pure passes, a pattern rewriter, hierarchical weight maps.

A pass takes a typed :class:`Graph` and returns a new graph plus a :class:`WeightMap`: a plain
function ``old_state_dict → new_state_dict`` that converts the weights of the module generated from
the old graph into the weights of the module generated from the new one. Passes never mutate their
input.

Rewrite rules are small classes with a ``match`` (anchored at one node), a ``check`` that returns
the reason a candidate is refused (or None), and a ``rewrite``. Rules run inside every block body;
a block body shared by many instances is rewritten once and its weight transform is applied under
every path where the body occurs, so state-dict keys stay those of the generated modules
(``stages.1.blocks.0.mixer.q.weight``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from archc.diagnostics import PassError
from archc.ir.graph import Graph, Node, Ref, freeze
from archc.ir.types import TensorType
from archc.ops import REGISTRY

__all__ = [
    "StateDict",
    "LocalFn",
    "WeightMap",
    "Match",
    "Rewrite",
    "Rule",
    "Pass",
    "RulePass",
    "PassResult",
    "Explanation",
    "make_node",
    "users_of",
    "single_user",
    "PASSES",
    "register_pass",
]

StateDict = MutableMapping[str, torch.Tensor]
LocalFn = Callable[[StateDict], None]


class _Prefixed(MutableMapping):
    """A view of a state dict restricted to keys under ``prefix`` (keys seen without it)."""

    def __init__(self, base: MutableMapping[str, torch.Tensor], prefix: str) -> None:
        self.base = base
        self.prefix = prefix

    def __getitem__(self, k: str) -> torch.Tensor:
        return self.base[self.prefix + k]

    def __setitem__(self, k: str, v: torch.Tensor) -> None:
        self.base[self.prefix + k] = v

    def __delitem__(self, k: str) -> None:
        del self.base[self.prefix + k]

    def __iter__(self) -> Iterator[str]:
        n = len(self.prefix)
        return iter([k[n:] for k in list(self.base) if k.startswith(self.prefix)])

    def __len__(self) -> int:
        return sum(1 for k in self.base if k.startswith(self.prefix))


@dataclass
class WeightMap:
    """Weight conversion of one graph: child maps per body-carrying node, then local steps."""

    children: dict[str, WeightMap] = field(default_factory=dict)
    local: list[LocalFn] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.local and all(c.empty for c in self.children.values())

    def apply_inplace(self, sd: MutableMapping[str, torch.Tensor], prefix: str = "") -> None:
        for nid, child in self.children.items():
            child.apply_inplace(sd, f"{prefix}{nid}.")
        view = _Prefixed(sd, prefix) if prefix else sd
        for fn in self.local:
            fn(view)

    def __call__(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Convert a state dict (the input is not modified)."""
        sd = dict(state_dict)
        self.apply_inplace(sd)
        return sd

    @staticmethod
    def chain(maps: list[WeightMap]) -> Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]:
        def run(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            sd = dict(state_dict)
            for m in maps:
                m.apply_inplace(sd)
            return sd

        return run


@dataclass
class Match:
    """A candidate site: the anchor node and whatever the rule collected."""

    anchor: Node
    nodes: dict[str, Node] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rewrite:
    """Remove ``remove``, add ``add``, redirect uses per ``replace``, convert weights with ``weights``."""

    remove: set[str]
    add: list[Node]
    replace: dict[Ref, Ref] = field(default_factory=dict)
    weights: LocalFn | None = None


@dataclass
class Explanation:
    """Why a rule did or did not fire at one site (for ``archc explain``)."""

    graph: str
    node: str
    rule: str
    fired: bool
    reason: str


class Rule:
    """A rewrite rule: ``match`` finds a candidate at an anchor, ``check`` refuses with a reason."""

    name: ClassVar[str]
    anchor_ops: ClassVar[tuple[str, ...]] = ()

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        """A candidate at ``node``; a string says why an anchor-op node is not a candidate."""
        raise NotImplementedError

    def check(self, g: Graph, m: Match, users: dict[str, list[str]]) -> str | None:
        return None

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        raise NotImplementedError


@dataclass
class PassResult:
    graph: Graph
    weights: WeightMap
    rewrites: int
    explanations: list[Explanation] = field(default_factory=list)


class Pass:
    """A named graph transformation. ``exact`` passes preserve outputs (checked numerically)."""

    name: ClassVar[str]
    doc: ClassVar[str] = ""
    exact: ClassVar[bool] = True

    def run(self, graph: Graph, explain: bool = False) -> PassResult:
        raise NotImplementedError


PASSES: dict[str, Pass] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Add a pass to :data:`PASSES`; a duplicate name is a loud error."""
    if cls.name in PASSES:
        raise RuntimeError(f"pass '{cls.name}' registered twice")
    PASSES[cls.name] = cls()
    return cls


# -- helpers for rules -------------------------------------------------------------------------------


def users_of(g: Graph) -> dict[str, list[str]]:
    return g.users()


def single_user(users: dict[str, list[str]], nid: str) -> str | None:
    """The only user of ``nid`` or None (graph outputs count as a user)."""
    us = users.get(nid, [])
    return us[0] if len(us) == 1 and us[0] != "<output>" else None


def make_node(g: Graph, nid: str, op: str, inputs: tuple[Ref, ...], attrs: Mapping[str, Any], like: Node | None = None,
              types: dict[Ref, TensorType] | None = None) -> Node:
    """A new op node with bound attrs and inferred types (input types from ``g`` or ``types``)."""
    opdef = REGISTRY[op]
    bound = opdef.bind(dict(attrs))
    in_types = [types[r] if types and r in types else g.type_of(r) for r in inputs]
    outs = opdef.infer(bound, in_types)
    return Node(nid, op, tuple(inputs), freeze(bound), like.loc if like else None,
                meta={"types": tuple(outs), "in_types": tuple(in_types)})


class RulePass(Pass):
    """A pass made of rewrite rules applied to a fixpoint in every graph body."""

    rules: ClassVar[tuple[Rule, ...]] = ()
    max_rounds: ClassVar[int] = 10_000

    def run(self, graph: Graph, explain: bool = False) -> PassResult:
        memo: dict[int, tuple[Graph, WeightMap, int]] = {}
        notes: list[Explanation] = []
        new, wm, count = self._graph(graph, memo, notes if explain else None)
        return PassResult(new, wm, count, notes)

    def _graph(self, g: Graph, memo: dict[int, tuple[Graph, WeightMap, int]], notes: list[Explanation] | None,
               repeat_body: bool = False) -> tuple[Graph, WeightMap, int]:
        if id(g) in memo:
            return memo[id(g)]
        wm = WeightMap()
        count = 0
        nodes: dict[str, Node] = {}
        for n in g:
            if n.body is not None:
                body, child_wm, c = self._graph(n.body, memo, notes, repeat_body=n.is_repeat)
                count += c
                if body is not n.body:
                    n = n.replace(body=body, meta=dict(n.meta, types=body.output_types))
                if not child_wm.empty:
                    wm.children[n.id] = child_wm
            nodes[n.id] = n
        cur = Graph(g.name, dict(g.inputs), nodes, g.outputs, dict(g.input_locs), dict(g.meta))
        local = 0
        for _ in range(self.max_rounds):
            step = self._step(cur, notes, repeat_body)
            if step is None:
                break
            cur, fn = step
            local += 1
            if fn is not None:
                wm.local.append(fn)
        else:  # pragma: no cover - a rule that keeps firing is a bug in the rule
            raise PassError(f"pass '{self.name}' did not reach a fixpoint in '{g.name}'")
        count += local
        result = (cur if (local or any(a is not b for a, b in zip(cur, g))) else g, wm, count)
        memo[id(g)] = result
        return result

    def _step(self, g: Graph, notes: list[Explanation] | None, repeat_body: bool = False) -> tuple[Graph, LocalFn | None] | None:
        users = g.users()
        for node in list(g):
            for rule in self.rules:
                if rule.anchor_ops and node.op not in rule.anchor_ops:
                    continue
                m = rule.match(g, node, users)
                if m is None:
                    continue
                if isinstance(m, str):
                    if notes is not None:
                        notes.append(Explanation(g.name, node.id, rule.name, False, m))
                    continue
                reason = rule.check(g, m, users)
                if notes is not None:
                    notes.append(Explanation(g.name, node.id, rule.name, reason is None, reason or "all conditions hold"))
                if reason is not None:
                    continue
                rw = rule.rewrite(g, m, users)
                if repeat_body and rw.remove - {n.id for n in rw.add}:
                    # the items of a repeat are its iterations 0..count-1: they may change, never disappear
                    if notes is not None:
                        notes[-1] = Explanation(g.name, node.id, rule.name, False, "an item of a repeat cannot be removed")
                    continue
                return apply_rewrite(g, rw), rw.weights
        return None


def apply_rewrite(g: Graph, rw: Rewrite) -> Graph:
    """A new graph with the rewrite applied (uses redirected, nodes removed/added, re-sorted)."""

    def redirect(r: Ref) -> Ref:
        seen = 0
        while r in rw.replace:
            r = rw.replace[r]
            seen += 1
            if seen > 1000:  # pragma: no cover
                raise PassError("cyclic redirect in a rewrite")
        return r

    added = {n.id: n for n in rw.add}
    nodes: list[Node] = []
    for n in g:
        if n.id in rw.remove and n.id not in added:
            continue
        if n.id in added:
            n = added.pop(n.id)
        ins = tuple(redirect(r) for r in n.inputs)
        nodes.append(n if ins == n.inputs else n.replace(inputs=ins, meta=n.meta))
    nodes += [n.replace(inputs=tuple(redirect(r) for r in n.inputs), meta=n.meta) for n in added.values()]
    outputs = tuple(redirect(r) for r in g.outputs)
    new = Graph(g.name, dict(g.inputs), {n.id: n for n in nodes}, outputs, dict(g.input_locs), dict(g.meta))
    return new.sorted()
