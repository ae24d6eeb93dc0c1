"""The classes of a generated module: which block instances share one class.

Instances of a block whose expanded structure is the same (their *signature*: node ids, ops, wiring
and the form of each lowering, leaves erased) share a class; the model's classifier and uses whose
input sizes follow a model argument get classes of their own. Children are registered before their
parents, so a parent is emitted after every class it calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archc.backends.pytorch.names import _GLOBAL_NAMES, _type_name, _unique, class_name

from archc.ir.graph import Graph, Node
from archc.ops import REGISTRY
from archc.ops.base import Call, Lowering


def _form(v: Any) -> Any:
    """The shape of a lowering value with leaves erased (what must agree within a class)."""
    if isinstance(v, Call):
        return ("call", v.fn, tuple(_form(a) for a in v.args), tuple((k, _form(x)) for k, x in v.kwargs.items()))
    if isinstance(v, (list, tuple)):
        return ("seq", len(v))
    return "leaf"


def _lowering(node: Node) -> Lowering:
    return REGISTRY[node.op].lower(node.attrs, node.meta["in_types"], node.types)


@dataclass
class _Class:
    key: Any
    name: str
    block: str | None
    doc: str
    instances: list[Node] = field(default_factory=list)  # block-instance nodes (or a pseudo node for the model)
    index: dict[int, int] = field(default_factory=dict)  # id(instance node) → position in instances
    args: list[tuple[str, str]] = field(default_factory=list)  # (Python name, annotation)
    param_decls: Mapping[str, Any] = field(default_factory=dict)
    #: block param -> its constructor argument name (the param's own name unless that would shadow something)
    arg_names: dict[str, str] = field(default_factory=dict)
    #: explicit constructor arguments → per-instance values, and the input size each stands for (if one)
    extra: dict[str, list[Any]] = field(default_factory=dict)
    extra_origin: dict[str, Any] = field(default_factory=dict)
    #: per instance: the body's output types over the constructor's argument names
    out_types: list[list[Any]] = field(default_factory=list)
    #: (input name, axis) → the block param its size is assumed equal to (the class's input interface)
    bindings: dict[tuple[str, int], str] = field(default_factory=dict)
    #: an instance reads sizes that are model arguments (in_chans): its input sizes are never bound by value
    free_inputs: bool = False
    #: the node of this class that is the model's classifier (its forward then takes ``pre_logits``)
    classifier: str | None = None
    #: the classifier's constructor and the condition under which it is built (else nn.Identity)
    classifier_ctor: tuple[str, str] | None = None

    def assign_arg_names(self, reserved: set[str] | frozenset[str]) -> None:
        taken = set(reserved) | set(self.param_decls)
        for p in self.param_decls:
            name = p if p not in reserved else _unique(p, taken)
            taken.add(name)
            self.arg_names[p] = name

    def param_of(self, arg: str) -> str | None:
        """The block param whose constructor argument is ``arg`` (None for an extra argument)."""
        return next((p for p, a in self.arg_names.items() if a == arg), None)


class _Gen:
    def __init__(self, graph: Graph, model_name: str, param_types: Mapping[str, Mapping[str, Any]]) -> None:
        self.graph = graph
        self.model_name = model_name
        self.param_types = param_types  # block name -> {param: type}
        self.sig_memo: dict[int, Any] = {}
        self.classes: dict[Any, _Class] = {}
        self.order: list[_Class] = []
        self.names: set[str] = set(_GLOBAL_NAMES)
        self.model_name = _unique(model_name, self.names, sep="")
        self.names.add(self.model_name)
        self.helpers: set[str] = set()
        self.uses_divisible = False
        self.visited: set[int] = set()
        #: id(block-instance node) → its node that is the model's classifier (a class of its own)
        self.classifier_in: dict[int, str] = {}
        #: ids of block-instance nodes whose input sizes follow a model argument (see model_args.reached)
        self.reached: set[int] = set()
        #: the model takes no arguments but keeps the head's methods (a graph rewritten by passes)
        self.fixed = False

    def key_of(self, node: Node) -> Any:
        """The class key of a block-instance node."""
        sub = self.classifier_in.get(id(node))
        # a use that reads argument-dependent input sizes gets a class of its own: its other uses keep
        # binding their input sizes to params (a loop inside them relies on it)
        free = (("free_inputs",),) if id(node) in self.reached else ()
        return (node.block, self.sig(node.body)) + ((("classifier", sub),) if sub else ()) + free

    # signatures ---------------------------------------------------------------------------------
    def sig(self, body: Graph) -> Any:
        k = id(body)
        if k not in self.sig_memo:
            self.sig_memo[k] = tuple(self.node_sig(n) for n in body) + (tuple(body.inputs), tuple(body.outputs))
        return self.sig_memo[k]

    def node_sig(self, n: Node) -> Any:
        base = (n.id, n.op, n.inputs, len(n.types))
        if n.is_block:
            return base + (n.block, self.sig(n.body))
        if n.is_repeat:
            items = list(n.body)
            if all(it.is_block for it in items) and len({(it.block, self.sig(it.body)) for it in items}) == 1:
                # a loop over one class: the count and per-item args become constructor values
                return (n.id, n.op, n.inputs, "uniform", items[0].block, self.sig(items[0].body))
            return base + (self.sig(n.body),)
        low = _lowering(n)
        return base + (_form(low.module), low.forward, tuple(low.values), low.helpers)

    def collect(self, node: Node) -> _Class:
        """Register the class of a block-instance node (children first)."""
        key = self.key_of(node)
        self.visit_children(node.body)
        cls = self.classes.get(key)
        if cls is None:
            base = class_name(node.block or "block")
            name = _unique(base, self.names, sep="")
            self.names.add(name)
            info = self.param_types.get(node.block or "", {})
            decls = info.get("params") or {k: _type_name(v) for k, v in (node.params or {}).items()}
            cls = _Class(key, name, node.block, info.get("doc", ""), param_decls=decls,
                         classifier=self.classifier_in.get(id(node)))
            self.classes[key] = cls
            self.order.append(cls)
        cls.free_inputs = cls.free_inputs or id(node) in self.reached
        if id(node) not in cls.index:
            cls.index[id(node)] = len(cls.instances)
            cls.instances.append(node)
        return cls

    def visit_children(self, body: Graph) -> None:
        if id(body) in self.visited:
            return
        self.visited.add(id(body))
        for n in body:
            if n.is_block:
                self.collect(n)
            elif n.is_repeat:
                self.visit_children(n.body)
            else:
                self.helpers.update(_lowering(n).helpers)


def _env(node: Node) -> dict[str, Any]:
    return {k: _thaw(v) for k, v in (node.params or {}).items()}


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v
