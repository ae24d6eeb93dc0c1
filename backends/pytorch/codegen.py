"""Typed graph → standalone PyTorch source.

One class is emitted per distinct block: instances of a block whose expanded structure is the same
share a class whose constructor takes the block's params. Every value a lowering needs (channels,
kernel sizes, ...) is either the same in all instances — then it is written as a literal — or it is
*explained* symbolically by a constructor argument: a block param, a param expression the spec
author wrote, or a simple multiple of a param; only values nothing explains become extra
constructor arguments. Each candidate is checked against every instance, so the generated classes
are exact by construction.

Every identifier the generator writes — class names, constructor arguments, forward arguments and
locals, the loop variable, attributes holding per-instance values — is allocated so that it never
shadows a name the generated code uses (the imports, the helpers, the other classes, Python's
builtins, ``self``) nor another identifier of the same scope; a spec name that would gets a suffix
(a number for class names, trailing ``_`` otherwise). Module attributes keep their node ids, so
state_dict keys are the node paths. Docs are escaped so docstrings read back exactly.

jinja2 renders only the file and class skeleton; each op emits its own statements. The result is
parsed with :mod:`ast` before it is returned, and is byte-identical for identical input.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from archc.backends.pytorch.model_args import decides_alike, input_independent, perturbed, reached
from archc.backends.pytorch.render import helper_closure, literal
from archc.backends.pytorch.symbolic import SymInt, Untraceable, checking, has_sym, is_sym, names_in, plain, sym, tidy
from archc.backends.pytorch.timm import TIMM_NAMES, ModelArgError, wrap_classifier

from archc import __version__
from archc.diagnostics import ArchcError
from archc.ir.graph import Graph, Node, Ref
from archc.ir.types import TensorType
from archc.ops import HELPERS, REGISTRY
from archc.ops.base import Call, Lowering
from archc.spec.expand import _MODULE_ATTRS
from archc.spec.expr import compile_expr, divisible

__all__ = ["generate", "generate_classes", "class_name"]

_TEMPLATE_DIR = Path(__file__).parent
_FN_MAP = {"ceil": "math.ceil", "floor": "math.floor", "sqrt": "math.sqrt", "divisible": "_divisible"}
# the analyser's own function, emitted by source: validate and the generated module compute the same widths
_DIVISIBLE = inspect.getsource(divisible).replace("def divisible(", "def _divisible(", 1)


#: module-level names of generated files (imports, constants, the factory, the divisible helper) and
#: Python's builtins: no identifier the generator allocates may take one of them
_GLOBAL_NAMES = frozenset({"math", "torch", "nn", "F", "Tuple", "INPUT_SHAPE", "INPUT_SHAPES", "create_model",
                           "_divisible", "self"}) | frozenset(TIMM_NAMES) | frozenset(dir(builtins)) | frozenset(HELPERS)


def _unique(base: str, taken: set[str] | frozenset[str], sep: str = "_") -> str:
    """``base``, or ``base`` with a suffix (``_``, ``__``, ... or ``2``, ``3``, ...) when it is taken."""
    name, k = base, 2
    while name in taken or keyword.iskeyword(name):
        name = name + "_" if sep == "_" else f"{base}{k}"
        k += 1
    return name


def _doc_text(text: str) -> str:
    """``text`` (stripped) escaped to sit between triple double quotes and read back unchanged."""
    out = []
    for ch in text.strip():
        if ch == "\\":
            out.append("\\\\")
        elif ch < " " and ch not in "\n\t" or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    # a quote that starts a run of quotes, or ends the text, could close the string: escape it
    return re.sub(r'"(?="|$)', r'\\"', "".join(out))


def class_name(name: str) -> str:
    """CamelCase class name for a block or spec name (names with capitals are kept)."""
    clean = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if any(c.isupper() for c in clean):
        out = clean.replace("_", "")
    else:
        out = "".join(p[:1].upper() + p[1:] for p in clean.split("_") if p)
    if not out or out[0].isdigit():
        out = "M" + out
    return out


def to_python(src: str) -> str:
    """A spec expression as the Python that generated code evaluates (functions mapped to their helpers)."""

    class T(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            self.generic_visit(node)
            if isinstance(node.func, ast.Name) and node.func.id in _FN_MAP:
                node.func = ast.Name(_FN_MAP[node.func.id])
            return node

    return ast.unparse(T().visit(compile_expr(src).tree))


#: the module-level definitions an expression from :func:`to_python` may call
HELPER_SOURCE = "import math\n\n" + _DIVISIBLE


# -- structure ---------------------------------------------------------------------------------


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


# -- symbolization -----------------------------------------------------------------------------


class _Symbols:
    """Renders the values of one class: derived expressions, literals, or explicit constructor arguments.

    A value is written as an expression only when it was *derived* (see :mod:`.symbolic`): the spec
    author's expression pushed through the op rules, identical in every instance. A value computed
    from nothing that depends on the constructor arguments is a literal. Anything else becomes an
    explicit constructor argument carrying the per-instance values; the only binding made by value
    is a raw input size equal to a block param in every instance (the class's input interface, which
    PyTorch checks loudly at the first call).
    """

    def __init__(self, gen: _Gen, cls: _Class, envs: list[Mapping[str, Any]], loop_n: str | None = None) -> None:
        self.loop_n = loop_n  # inside a loop: 'i' stays the loop variable and 'n' is the count expression
        self.gen = gen
        self.cls = cls
        self.envs = envs
        self.used: list[str] = []
        self.extra: dict[str, list[Any]] = {}  # explicit args → per-instance values
        self.extra_origin: dict[str, Any] = {}  # explicit arg → the input size it stands for, when it is one
        self.lengths: dict[str, None] = {}  # conditions on computed list lengths that derived elements rely on
        # the model class: its arguments are a few spec params; every other param is a constant of the spec
        self.top_args: frozenset[str] = frozenset()
        self.consts: Mapping[str, Any] = {}

    def reads_args(self, src: str) -> bool:
        """True when the spec text ``src`` (``${...}``) reads one of the model class's arguments."""
        m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S)
        try:
            names = compile_expr(m.group(1)).names if m is not None and "${" not in m.group(1) else set(re.findall(r"\w+", src))
        except Exception:  # noqa: BLE001 - text the evaluator refuses: judge by the words in it
            names = set(re.findall(r"\w+", src))
        return bool(set(names) & self.top_args)

    def use(self, name: str) -> str:
        """Record that the constructor needs ``name`` (a block param or an extra); its Python name."""
        if name not in self.used:
            self.used.append(name)
        return self.cls.arg_names.get(name, name)

    def use_expr(self, src: str) -> str:
        """Record the constructor arguments a derived expression reads; the expression."""
        for name in sorted(names_in(src)):
            param = self.cls.param_of(name)
            if param is not None:
                self.use(param)
            elif name in self.extra:
                self.use(name)
        if "_divisible(" in src:
            self.gen.uses_divisible = True
        return src

    def _taken(self, name: str) -> bool:
        return (name in self.cls.param_decls or name in self.cls.arg_names.values() or name in self.gen.names
                or name in ("i", "n"))

    def _params(self) -> list[str]:
        """Block params an input size may be bound to; inside a loop 'i' and 'n' are the loop's own."""
        return [p for p in self.cls.param_decls if self.loop_n is None or p not in ("i", "n")]

    def render(self, values: list[Any], slot: str, owner: str = "", dependent: bool = False) -> str:
        """Source for one constructor value given its per-instance values (symbolic or plain)."""
        first = values[0]
        if all(isinstance(v, (list, tuple)) and not is_sym(v) and len(v) == len(first) for v in values) and first:
            parts = [self.derive([v[j] for v in values], dependent) for j in range(len(first))]
            if all(p is not None for p in parts):
                inner = ", ".join(parts)  # type: ignore[arg-type]
                return f"({inner},)" if isinstance(first, tuple) and len(first) == 1 else (f"({inner})" if isinstance(first, tuple) else f"[{inner}]")
        sym_ = self.derive(values, dependent)
        if sym_ is not None:
            return sym_
        pv = [plain(v) for v in values]
        name = re.sub(r"[^0-9a-zA-Z_]", "_", slot)
        if owner and (self._taken(name) or (name in self.extra and self.extra[name] != pv)):
            name = re.sub(r"[^0-9a-zA-Z_]", "_", f"{owner}_{slot}")
        while self._taken(name) or keyword.iskeyword(name) or (name in self.extra and self.extra[name] != pv):
            name += "_"
        self.extra[name] = pv
        origins = {getattr(v, "origin", None) for v in values}
        if len(origins) == 1 and None not in origins and all(isinstance(v, SymInt) and v.expr is None for v in values):
            self.extra_origin[name] = origins.pop()
        return self.use(name)

    def derive(self, values: list[Any], dependent: bool = False) -> str | None:
        """A derived expression or a literal for ``values``; None when it must be an explicit argument."""
        exprs = {v.expr if is_sym(v) else None for v in values}
        if len(exprs) == 1 and None not in exprs:
            return self.use_expr(exprs.pop())  # type: ignore[arg-type]
        pv = [plain(v) for v in values]
        if not dependent and not any(has_sym(v) for v in values) and all(_same(x, pv[0]) for x in pv):
            return literal(pv[0])
        origins = {v.origin for v in values if isinstance(v, SymInt)}
        if len(origins) == 1 and all(isinstance(v, SymInt) and v.expr is None for v in values):
            origin = origins.pop()
            if origin is not None and origin[0] == "in" and not self.cls.free_inputs:
                for p in self._params():
                    if all(_same(env.get(p), x) for env, x in zip(self.envs, pv)):
                        self.cls.bindings[origin[1:]] = p
                        return self.use(p)
        return None

    def translate(self, src: str, extra: Mapping[str, Any]) -> str:
        """The spec expression ``src`` as Python over the constructor's argument names."""
        sym_ = self

        class T(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.AST:
                if node.id in extra:
                    return ast.Constant(extra[node.id])
                if node.id in sym_.consts:
                    return ast.parse(literal(sym_.consts[node.id]), mode="eval").body
                if sym_.loop_n is not None and node.id == "i":
                    return node
                if sym_.loop_n is not None and node.id == "n":
                    return ast.parse(sym_.loop_n, mode="eval").body
                return ast.Name(sym_.cls.arg_names.get(node.id, node.id), node.ctx)

            def visit_Call(self, node: ast.Call) -> ast.AST:
                # the function name is not a param: only the arguments are translated
                node.args = [self.visit(a) for a in node.args]
                node.keywords = [self.visit(k) for k in node.keywords]
                if isinstance(node.func, ast.Name) and node.func.id in _FN_MAP:
                    node.func = ast.Name(_FN_MAP[node.func.id])
                return node

        return ast.unparse(T().visit(compile_expr(src).tree))

    def switch(self, src: str, value: Any, env: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        """Record that the class holds only while the author's expression ``src`` gives ``value``."""
        m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S)
        assert m is not None  # only whole expressions are switches (see _whole)
        try:
            if compile_expr(m.group(1)).eval({**env, **extra}) != value:
                return  # a pass rewrote the attribute: the value is the graph's, not the expression's
            py = _fold(self.translate(m.group(1), extra))
        except Exception:  # noqa: BLE001 - an expression that does not evaluate here explains nothing
            return
        cond = py if value is True else _negate(py) if value is False else f"{py} is None" if value is None else f"{py} == {literal(value)}"
        self.lengths.setdefault(cond, None)

    def symbolic(self, value: Any, src: str | None, env: Mapping[str, Any], extra: Mapping[str, Any]) -> Any:
        """``value`` (an attribute or param as bound) carrying the author's expression ``src``.

        The expression is re-evaluated in the instance's scope first: a value that no longer follows
        from it (a pass rewrote the attribute) becomes opaque rather than wrongly explained.
        """
        if self.top_args and (src is None or not self.reads_args(src)):
            return value  # the model class: a value no argument changes is the spec's constant
        m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S) if src is not None else None
        if m is None or "${" in m.group(1):
            return _opaque(value)
        try:
            raw = compile_expr(m.group(1)).eval({**env, **extra})
            py = _fold(self.translate(m.group(1), extra))
        except Exception:  # noqa: BLE001 - an expression that does not evaluate here explains nothing
            return _opaque(value)
        if isinstance(value, tuple):
            if isinstance(raw, int) and not isinstance(raw, bool) and all(_same(x, raw) for x in value):
                return tuple(sym(x, py) for x in value)
            if isinstance(raw, (list, tuple)) and len(raw) == len(value) and all(_num_eq(x, r) for x, r in zip(value, raw)):
                elems = tuple(sym(x, tidy(f"({py})[{j}]")) for j, x in enumerate(value))
                if any(e.expr.startswith("(") for e in elems):  # the list's length is computed: the class needs it fixed
                    self.lengths.setdefault(f"len({py}) == {len(value)}", None)
                return elems
            return _opaque(value)
        if value is None or not _num_eq(value, raw) and value != raw:
            return _opaque(value)
        return sym(value, py)


def _whole(src: Any) -> bool:
    """True for a spec value that is one ``${...}`` expression (not text with expressions inside)."""
    m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S) if isinstance(src, str) else None
    return m is not None and "${" not in m.group(1)


def _num_eq(a: Any, b: Any) -> bool:
    """Equal, and an int is not a bool (a float attribute may come from an int expression)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return isinstance(a, (int, float)) and isinstance(b, (int, float)) and a == b


def _opaque(value: Any) -> Any:
    """A value that depends on the constructor arguments in a way no expression states."""
    if isinstance(value, tuple):
        return tuple(_opaque(x) for x in value)
    return sym(value, None)


# -- emission ----------------------------------------------------------------------------------


@dataclass
class _Emitted:
    name: str
    doc: str
    args: list[str]
    init: list[str]
    forward_args: list[str]
    forward: list[str]
    returns: str
    return_type: str
    methods: list[str] = field(default_factory=list)


class _Locals:
    """Python names of the values of one forward: inputs, node outputs and the loop variable.

    A graph input or single-output node is named after itself; output k of a multi-output node
    after ``<node>_<output name or k>``; a name that is taken (by an earlier name or one the code
    uses) gets trailing ``_``. On the main path — the chain from the first input — a node whose
    first input dies at it carries that name on (``x = self.norm(x)``), freeing dead values early as
    hand-written forwards do; every other value is named after the node that computed it (never after
    another input: ``relpos = self.osra(h, relpos)`` named an attention output after a bias).
    """

    def __init__(self, body: Graph) -> None:
        taken = set(_GLOBAL_NAMES)
        self.names: dict[tuple[str, int], str] = {}

        def add(key: tuple[str, int], base: str) -> None:
            self.names[key] = _unique(base, taken)
            taken.add(self.names[key])

        for name in body.inputs:
            add((name, 0), name)
        multi = []
        for n in body:
            if len(n.types) == 1:
                add((n.id, 0), n.id)
            else:
                multi.append(n)
        for n in multi:
            for k in range(len(n.types)):
                out = n.out_names[k] if k < len(n.out_names) else str(k)
                add((n.id, k), f"{n.id}_{out}")
        self.loop = _unique("blk", taken)
        self._reuse_dead(body)

    def _reuse_dead(self, body: Graph) -> None:
        """A single-output node takes the name of an input that dies there (``x = self.conv(x)``).

        Rebinding the name frees the dead tensor at once, as hand-written forwards do; without it
        every intermediate stays alive until ``forward`` returns.
        """
        last: dict[tuple[str, int], int] = {}
        order = list(body)
        main = self.names[(next(iter(body.inputs)), 0)] if body.inputs else None
        for i, n in enumerate(order):
            for r in n.inputs:
                last[(r.node, r.index)] = i
        for r in body.outputs:
            last[(r.node, r.index)] = len(order)
        for i, n in enumerate(order):
            if len(n.types) != 1:
                continue
            # only the value a node transforms (its first input) passes its name on — never another input's
            # name to an unrelated value; a loop feeds its extra inputs to every item, so they must stay bound
            cands = n.inputs[:1] if n.inputs and n.inputs[0] not in n.inputs[1:] else ()
            for r in cands:
                key = (r.node, r.index)
                if self.names[key] != main:
                    continue  # off the main path a value keeps the name of the node that computed it
                if last.get(key) == i and (r.node in body.inputs or len(body.nodes[r.node].types) == 1):
                    self.names[(n.id, 0)] = self.names[key]
                    break

    def __getitem__(self, ref: Ref) -> str:
        return self.names[(ref.node, ref.index)]


def _env(node: Node) -> dict[str, Any]:
    return {k: _thaw(v) for k, v in (node.params or {}).items()}


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _render_call(calls: list[Call], path: str, sym_: _Symbols, dependent: bool) -> str:
    c0 = calls[0]
    parts = []
    for j in range(len(c0.args)):
        vals = [c.args[j] for c in calls]
        slot = c0.names[j] if j < len(c0.names) else f"{path}_{j}"
        parts.append(_render_call(vals, f"{path}_{j}", sym_, dependent) if isinstance(vals[0], Call)
                     else sym_.render(vals, slot, path, dependent))
    for k in c0.kwargs:
        vals = [c.kwargs[k] for c in calls]
        if isinstance(vals[0], Call):
            parts.append(f"{k}={_render_call(vals, f'{path}_{k}', sym_, dependent)}")
            continue
        # a default is left out only when it is one for every argument value, not just the instances seen
        if (k in c0.defaults and not dependent and not any(has_sym(v) for v in vals)
                and all(_same(v, c0.defaults[k]) for v in vals)):
            continue
        parts.append(f"{k}={sym_.render(vals, k, path, dependent)}")
    return f"{c0.fn}({', '.join(parts)})"


Types = dict[tuple[str, int], TensorType]


class _ClassEmitter:
    def __init__(self, gen: _Gen, cls: _Class, bodies: list[Graph], envs: list[Mapping[str, Any]],
                 top_args: Mapping[str, Any] | None = None) -> None:
        self.gen = gen
        self.cls = cls
        self.bodies = bodies
        self.envs = envs
        self.sym = _Symbols(gen, cls, envs)
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.locals = _Locals(bodies[0])
        # attributes are self.<node id> (modules) and self.<node>_<value> (per-instance values)
        self.attrs: set[str] = set(_MODULE_ATTRS) | set(bodies[0].nodes)
        # a block class sees its params and input sizes symbolically; the model class sees only its
        # arguments (num_classes, in_chans, ...) symbolically, every other spec param is a constant
        self.top = bool(top_args)
        self.symbolic = cls.block is not None or self.top
        if self.top:
            self.sym.top_args = frozenset(top_args or ())
            self.sym.consts = {k: v for k, v in envs[0].items() if k not in self.sym.top_args}
        self.types: list[Types] = []
        for b in bodies:
            tmap: Types = {}
            for name, t in b.inputs.items():
                tmap[(name, 0)] = (self.top_input(t, name) if self.top else _input_sym(t, name)) if self.symbolic else t
            self.types.append(tmap)
        self.out_types: list[list[TensorType]] = []
        self.loops: set[str] = set()  # repeats written as a loop over range(count)
        #: node id → (first, end) of its forward lines; block-instance node id → its rendered arguments
        self.spans: dict[str, tuple[int, int]] = {}
        self.calls: dict[str, dict[str, str]] = {}

    def top_input(self, t: TensorType, name: str) -> TensorType:
        """A model input: a dimension the author wrote as an argument (``${in_chans}``) is that argument."""
        written = (self.bodies[0].meta.get("input_exprs") or {}).get(name) or ()
        dims = []
        for j, d in enumerate(t.shape):
            src = written[j] if j < len(written) else None
            m = re.fullmatch(r"\s*\$\{\s*(\w+)\s*\}\s*", src) if isinstance(src, str) else None
            dims.append(sym(d, m.group(1)) if m is not None and m.group(1) in self.sym.top_args and not isinstance(d, str) else d)
        return t.with_shape(tuple(dims))

    def settle(self, t: TensorType) -> TensorType:
        """The model class: a size whose expression reads no argument is the spec's constant."""
        if not self.top:
            return t
        args = self.sym.top_args
        return t.with_shape(tuple(plain(d) if is_sym(d) and d.expr is not None and not names_in(d.expr) & args else d
                                  for d in t.shape))

    def emit(self) -> None:
        b0 = self.bodies[0]
        for n in b0:
            nodes = [b.nodes[n.id] for b in self.bodies]
            ins = [self.locals[r] for r in n.inputs]
            outs = [self.locals[Ref(n.id, k)] for k in range(len(n.types))]
            lhs = ", ".join(outs)
            first = len(self.fwd)
            if n.id == self.cls.classifier:
                # timm's heads: forward(x, pre_logits=True) stops at the classifier's input
                self.fwd.append(f"if pre_logits:\n            return {ins[0]}")
            self.emit_node(n, nodes, ins, lhs)
            self.spans[n.id] = (first, len(self.fwd))
            if n.id == self.cls.classifier:
                try:
                    self.cls.classifier_ctor = wrap_classifier(self.init, self.fwd[-1], n.id, ins[0], lhs,
                                                               self.types[0][(n.id, 0)], set(self.cls.arg_names.values()))
                except ModelArgError:
                    if not self.gen.fixed:
                        raise
        outs = [self.locals[r] for r in b0.outputs]
        self.returns = ", ".join(outs)
        if self.symbolic:
            self.init[:0] = self.guards()
        self.out_types = [[tm[(r.node, r.index)] for r in b.outputs] for tm, b in zip(self.types, self.bodies)]

    def emit_node(self, n: Node, nodes: list[Node], ins: list[str], lhs: str) -> None:
        if n.is_block:
            self.init.append(f"self.{n.id} = {self.child_call(nodes, n.id, self.types)}")
            self.fwd.append(f"{lhs} = self.{n.id}({', '.join(ins)})")
        elif n.is_repeat:
            self.emit_repeat(nodes, ins, lhs)
        else:
            self.emit_op(nodes, ins, lhs)

    def guards(self) -> list[str]:
        """A refusal for constructor arguments that would change the structure this class was built for.

        ``when``, ``op`` and item counts of the block are decided by expressions; when one reads a
        constructor argument, the class holds only while it decides the same way, so ``__init__``
        checks that (a loud error instead of a module that silently differs from the spec).
        """
        args = {self.cls.arg_names[p] for p in self.sym.used if p in self.cls.arg_names}
        conds: list[str] = []
        for key, nid, src, value in self.bodies[0].meta.get("decisions", ()):
            if key == "repeat" and nid in self.loops:
                continue  # the loop's count is the expression itself
            m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S)
            if m is None or "${" in m.group(1):
                continue
            try:
                names = compile_expr(m.group(1)).names
                if not {self.cls.arg_names.get(p, p) for p in names} & args:
                    continue  # decided by params that are not arguments: fixed for this class
                # params that are not arguments have one value in every instance (else the class would take them)
                fixed = {p: self.envs[0][p] for p in names if self.cls.arg_names.get(p, p) not in args and p in self.envs[0]}
                if any(not _same(env.get(p), v) for env in self.envs for p, v in fixed.items()):
                    continue
                py = _fold(self.sym.translate(m.group(1), fixed))
            except Exception:  # noqa: BLE001 - the expander evaluated it; a text it cannot translate is skipped
                continue
            cond = py if value is True else _negate(py) if value is False else f"{py} == {literal(value)}"
            if cond not in conds:
                conds.append(cond)
        for cond in self.sym.lengths:
            if names_in(cond) & args and cond not in conds:
                conds.append(cond)
        if not conds:
            return []
        test = " and ".join(f"({c})" if len(conds) > 1 else c for c in conds)
        msg = f"{self.cls.name} is generated for arguments with {test}; other values change its structure"
        return [f"if not ({test}):\n            raise ValueError({msg!r})"]

    # -- symbolic values of one node ------------------------------------------------------------
    def param_value(self, k: int, node: Node, param: str, extra: Mapping[str, Any]) -> Any:
        """Block param ``param`` of the child instance ``node`` as the parent's instance k sees it."""
        value = _env(node)[param]
        if not self.symbolic:
            return value
        given = node.meta.get("args")
        if param in (node.meta.get("exprs") or {}):
            return self.sym.symbolic(value, node.meta["exprs"][param], self.envs[k], extra)
        defaults = node.meta.get("default_exprs") or {}
        if given is not None and param not in given and param in defaults:
            return self.default_value(k, node, param, defaults[param], extra)
        return value  # written as a literal in the spec, or a literal default

    def default_value(self, k: int, node: Node, param: str, src: str, extra: Mapping[str, Any]) -> Any:
        """A param the author left to its default expression, over the parent's arguments.

        The default reads the child's other params; each is replaced by what the parent passes for it.
        """
        value = _env(node)[param]
        m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S)
        if m is None or "${" in m.group(1) or value is None or isinstance(value, bool):
            return _opaque(value)
        try:
            tree = compile_expr(m.group(1)).tree
            env = _env(node)
            if compile_expr(m.group(1)).eval(env) != value:
                return _opaque(value)
        except Exception:  # noqa: BLE001 - a default that does not evaluate here explains nothing
            return _opaque(value)
        subs: dict[str, str] = {}
        for name in names_in(ast.unparse(tree)):
            if name == param or name not in env:
                return _opaque(value)
            v = self.param_value(k, node, name, extra)
            if is_sym(v):
                if v.expr is None:
                    return _opaque(value)
                subs[name] = v.expr
            else:
                try:
                    subs[name] = literal(v)
                except TypeError:
                    return _opaque(value)

        class S(ast.NodeTransformer):
            def visit_Name(self, n: ast.Name) -> ast.AST:
                return ast.parse(f"({subs[n.id]})", mode="eval").body if n.id in subs else n

            def visit_Call(self, n: ast.Call) -> ast.AST:
                n.args = [self.visit(a) for a in n.args]
                n.keywords = [self.visit(kw) for kw in n.keywords]
                if isinstance(n.func, ast.Name) and n.func.id in _FN_MAP:
                    n.func = ast.Name(_FN_MAP[n.func.id])
                return n

        expr = tidy(ast.unparse(S().visit(tree)))
        if self.top and not names_in(expr) & self.sym.top_args:
            return value  # the model class: a default over constants is a constant
        return sym(value, expr)

    def agree(self, node: Node, key: str) -> bool:
        """Every instance of the class gives attribute ``key`` of ``node`` the same value.

        A switch that differs between instances cannot fix the class's structure (it would be built for
        both values at once); it stays a per-instance constructor value instead.
        """
        same = [b.nodes[node.id].attrs.get(key) for b in self.bodies if node.id in b.nodes]
        return all(x is same[0] or (type(x) is type(same[0]) and x == same[0]) for x in same)

    def op_values(self, node: Node, k: int, tmap: Types, extra: Mapping[str, Any]) -> tuple[Lowering, bool, list[TensorType]]:
        """(lowering, dependent, output types) of op node ``node`` in instance k.

        The lowering carries derived expressions when the op's rules traced; otherwise it is the
        plain one and ``dependent`` says whether its values may depend on the constructor arguments.
        """
        op = REGISTRY[node.op]
        sins = [tmap[(r.node, r.index)] for r in node.inputs]
        if not self.symbolic:
            return _lowering(node), False, list(node.types)
        exprs = node.meta.get("exprs") or {}
        if self.top:  # the model class: only what its arguments change is symbolic
            exprs = {k: v for k, v in exprs.items() if self.sym.reads_args(v)}
        sattrs = {}
        for key, v in node.attrs.items():
            if key in exprs and (v is None or isinstance(v, (bool, str))) and _whole(exprs[key]) and self.agree(node, key):
                # a switch (bias: ${not deploy}, act: ${act}): ops branch on it, so the class is built for its
                # value and __init__ checks the arguments still give it (like a 'when')
                self.sym.switch(exprs[key], v, self.envs[k], extra)
                sattrs[key] = v
            else:
                sattrs[key] = self.sym.symbolic(v, exprs[key], self.envs[k], extra) if key in exprs else v
        forced = False
        dep = forced or any(has_sym(v) for v in sattrs.values()) or any(has_sym(t.shape) for t in sins)
        if not dep:
            return _lowering(node), False, list(node.types)
        souts: list[TensorType] | None = None
        low: Lowering | None = None
        if not forced:
            try:
                with checking():
                    souts = list(op.infer(sattrs, sins))
                if [plain(t.shape) for t in souts] != [t.shape for t in node.types]:
                    souts = None
            except (Untraceable, Exception):  # noqa: BLE001 - rules that do not trace leave the sizes opaque
                souts = None
            try:
                low = op.lower(sattrs, sins, souts or node.types)
                if _plain_lowering(low) != _lowering(node):
                    low = None
            except (Untraceable, Exception):  # noqa: BLE001
                low = None
        outs = souts if souts is not None else [t.with_shape(_opaque_shape(t.shape)) for t in node.types]
        if low is None:
            return _lowering(node), True, outs
        return low, False, outs

    def emit_op(self, nodes: list[Node], ins: list[str], lhs: str) -> None:
        got = [self.op_values(n, k, self.types[k], {}) for k, n in enumerate(nodes)]
        for k, (n, (_, _, outs)) in enumerate(zip(nodes, got)):
            for j, t in enumerate(outs):
                self.types[k][(n.id, j)] = self.settle(t)
        lows = [g[0] for g in got]
        dep = any(g[1] for g in got)
        if dep:  # one instance did not trace: every instance is written from its plain values
            lows = [_lowering(n) for n in nodes]
        nid = nodes[0].id
        if lows[0].module is not None:
            self.init.append(f"self.{nid} = {_render_call([lw.module for lw in lows], nid, self.sym, dep)}")  # type: ignore[misc]
        vals: dict[str, str] = {}
        for key in lows[0].values:
            vs = [lw.values[key] for lw in lows]
            if not dep and not any(has_sym(v) for v in vs) and all(_same(v, vs[0]) for v in vs):
                vals[key] = literal(vs[0])
            else:
                attr = _unique(f"{nid}_{key}", self.attrs)
                self.attrs.add(attr)
                self.init.append(f"self.{attr} = {self.sym.render(vs, attr, dependent=dep)}")
                vals[key] = f"self.{attr}"
        expr = lows[0].forward.format(*ins, m=f"self.{nid}", **vals)
        self.fwd.append(f"{lhs} = {expr}")

    def child_call(self, nodes: list[Node], path: str, tmaps: list[Types], extra: Mapping[str, Any] | None = None) -> str:
        """``Child(arg=...)`` for the block-instance ``nodes``; records their output types in ``tmaps``."""
        extra = extra or {}
        child = self.gen.classes[self.gen.key_of(nodes[0])]
        parts = []
        rendered: dict[str, str] = {}
        for arg, _ in child.args:
            param = child.param_of(arg)
            if param is not None:
                vals = [self.param_value(k, n, param, extra) for k, n in enumerate(nodes)]
                dep = False
            elif arg in child.extra_origin and child.extra_origin[arg][0] == "in":
                _, inp, axis = child.extra_origin[arg]
                pos = list(nodes[0].body.inputs).index(inp)
                vals = [tmaps[k][(n.inputs[pos].node, n.inputs[pos].index)].shape[axis] for k, n in enumerate(nodes)]
                dep = False
            else:
                vals = [child.extra[arg][child.index[id(n)]] for n in nodes]
                dep = self.symbolic  # computed inside the child from values that may depend on ours
                if self.top:  # the model class: only when the call reads an argument
                    dep = any(names_in(r) & self.sym.top_args for r in rendered.values()) or any(
                        has_sym(tmaps[k][(r.node, r.index)].shape) for k, n in enumerate(nodes) for r in n.inputs)
            rendered[arg] = self.sym.render(vals, f"{path}_{arg}", dependent=dep)
            parts.append(f"{arg}={rendered[arg]}")
        if self.top:
            self.check_passed(nodes[0], child)
            self.calls[path] = rendered
            for (iname, axis), p in child.bindings.items():
                pos = list(nodes[0].body.inputs).index(iname)
                r = nodes[0].inputs[pos]
                if is_sym(tmaps[0][(r.node, r.index)].shape[axis]):
                    raise ModelArgError("in_chans", f"block '{nodes[0].block}' (node '{path}') takes the size of its input "
                                        f"'{iname}' as its param '{p}'", nodes[0].loc)
        # the child assumed an input size equal to one of its params: when we pass our own param for it and
        # feed it our own input, that assumption becomes ours (our callers must honour it too)
        if self.symbolic:
            names = list(nodes[0].body.inputs)
            for (iname, axis), p in child.bindings.items():
                arg = child.arg_names.get(p)
                if arg is None or iname not in names or self.cls.param_of(rendered.get(arg, "")) is None:
                    continue
                pos = names.index(iname)
                dims = [tmaps[k][(n.inputs[pos].node, n.inputs[pos].index)].shape[axis] for k, n in enumerate(nodes)]
                origins = {getattr(d, "origin", None) for d in dims}
                if len(origins) == 1 and all(isinstance(d, SymInt) and d.expr is None for d in dims):
                    origin = origins.pop()
                    if origin is not None and origin[0] == "in":
                        self.cls.bindings.setdefault(origin[1:], self.cls.param_of(rendered[arg]))  # type: ignore[arg-type]
        for k, n in enumerate(nodes):
            outs = child.out_types[child.index[id(n)]]
            ins_k = [tmaps[k][(r.node, r.index)] for r in n.inputs]
            # sizes of the child's inputs passed as arguments are input sizes, followed below
            by_args = any(names_in(r) & self.sym.top_args for a, r in rendered.items()
                          if child.extra_origin.get(a, ("",))[0] != "in")
            reads = not self.top or by_args or any(has_sym(t.shape) for t in ins_k)
            for j, t in enumerate(outs):
                tmaps[k][(n.id, j)] = n.types[j] if not self.symbolic or not reads else self.settle(t.with_shape(
                    tuple(_subst(d, rendered, ins_k, list(n.body.inputs)) for d in t.shape)))
            if self.top and reads and by_args:
                # the child reads arguments: a size it leaves opaque is a constant when the spec expanded
                # with other argument values gives this node the same size
                alt = self.alt_types(path)
                for j in range(len(outs)):
                    t = tmaps[k][(n.id, j)]
                    if alt is not None and j < len(alt) and len(alt[j].shape) == len(t.shape):
                        tmaps[k][(n.id, j)] = t.with_shape(tuple(
                            plain(d) if is_sym(d) and d.expr is None and alt[j].shape[a] == plain(d) else d
                            for a, d in enumerate(t.shape)))
            elif self.top and reads:
                # only input sizes are arguments here (in_chans): a size the child leaves opaque is a
                # constant when inferring the body again with other such input sizes leaves it unchanged
                fixed = input_independent(n, ins_k)
                for j in range(len(outs)):
                    t = tmaps[k][(n.id, j)]
                    tmaps[k][(n.id, j)] = t.with_shape(tuple(
                        plain(d) if is_sym(d) and d.expr is None and fixed[j][a] else d for a, d in enumerate(t.shape)))
        return f"{child.name}({', '.join(parts)})"

    def alt_types(self, path: str) -> list[TensorType] | None:
        """Output types of top-level node (or repeat item ``<repeat>_<j>``) ``path`` in the spec expanded
        with every model argument changed; None when the spec cannot be expanded so."""
        if not hasattr(self, "_alt"):
            self._alt = perturbed(self.bodies[0], self.sym.top_args)
        g = self._alt
        if g is None:
            return None
        if path in g.nodes:
            return list(g.nodes[path].types)
        nid, _, j = path.rpartition("_")
        node = g.nodes.get(nid)
        if node is not None and node.is_repeat and node.body is not None and j in node.body.nodes:
            return list(node.body.nodes[j].types)
        return None

    def check_passed(self, node: Node, child: _Class) -> None:
        """The model class: a block param that reads an argument must reach the block's constructor.

        Otherwise the block class holds the spec's value as a literal and the argument would be
        silently ignored for it.
        """
        for param, src in (node.meta.get("exprs") or {}).items():
            taken = param in child.arg_names and child.arg_names[param] in {a for a, _ in child.args}
            if self.sym.reads_args(src) and not taken and not decides_alike(node, param, _env(node)):
                arg = sorted(n for n in self.sym.top_args if n in re.findall(r"\w+", src))
                raise ModelArgError(arg[0] if arg else "", f"block '{node.block}' (node '{node.id}') holds its param "
                                    f"'{param}' = {src} as a constant", node.loc)

    def emit_repeat(self, nodes: list[Node], ins: list[str], lhs: str) -> None:
        nid = nodes[0].id
        counts = [n.attrs["count"] for n in nodes]
        uniform = self.gen.node_sig(nodes[0])[3] == "uniform"
        if uniform and (self.cls.block is not None or len(set(counts)) > 1):
            self.emit_loop(nodes, ins, lhs, counts)
            return
        count = counts[0]
        # the items' own scope: the repeat body's inputs are the repeat's inputs
        tmaps: list[Types] = []
        for k, n in enumerate(nodes):
            tm: Types = {}
            for name, r in zip(n.body.inputs, n.inputs):
                tm[(name, 0)] = self.types[k][(r.node, r.index)]
            tmaps.append(tm)
        items = []
        for j in range(count):
            its = [n.body.nodes[str(j)] for n in nodes]
            ienvs = {"i": j, "n": count}
            if its[0].is_block:
                items.append(self.child_call(its, f"{nid}_{j}", tmaps, ienvs))
                continue
            got = [self.op_values(it, k, tmaps[k], ienvs) for k, it in enumerate(its)]
            for k, (it, (_, _, outs)) in enumerate(zip(its, got)):
                tmaps[k][(it.id, 0)] = self.settle(outs[0])
            dep = any(g[1] for g in got)
            lows = [_lowering(it) for it in its] if dep else [g[0] for g in got]
            if lows[0].module is None or lows[0].forward != "{m}({0})":
                from archc.diagnostics import SpecError

                raise SpecError(
                    f"repeat '{nid}' of op '{its[0].op}' cannot be lowered: only ops that are modules can repeat",
                    nodes[0].loc,
                    hint="wrap the op in a block and repeat the block",
                )
            items.append(_render_call([lw.module for lw in lows], f"{nid}_{j}", self.sym, dep))  # type: ignore[misc]
        for k, n in enumerate(nodes):
            r = n.body.outputs[0]
            self.types[k][(n.id, 0)] = tmaps[k][(r.node, r.index)]
        inner = "".join(f"\n            {it}," for it in items)
        if len(ins) == 1:
            self.init.append(f"self.{nid} = nn.Sequential({inner}\n        )")
            self.fwd.append(f"{lhs} = self.{nid}({ins[0]})")
        else:
            self.init.append(f"self.{nid} = nn.ModuleList([{inner}\n        ])")
            if lhs != ins[0]:
                self.fwd.append(f"{lhs} = {ins[0]}")
            self.fwd.append(f"for {self.locals.loop} in self.{nid}:")
            self.fwd.append(f"    {lhs} = {self.locals.loop}({lhs}, {', '.join(ins[1:])})")

    def loop_input_size(self, nodes: list[Node], child: _Class, arg: str, items: list[Node], rows: list[tuple[int, int]],
                        parts: list[str], counts: list[int]) -> str | None:
        """An item's input size in a loop: the loop's input for item 0, the previous item's output after.

        ``parts`` are the item arguments rendered so far (``name=expr``, expressions of ``i``).
        """
        origin = child.extra_origin.get(arg)
        first_in = list(items[0].body.inputs)[0]
        if origin is None or origin[0] != "in" or origin[1] != first_in:
            return None
        axis = origin[2]
        d0 = self.sym.derive([self.types[k][(n.inputs[0].node, n.inputs[0].index)].shape[axis] for k, n in enumerate(nodes)])
        if d0 is None:
            return None
        if max(counts) == 1:
            return d0
        try:
            outs = {child.out_types[child.index[id(it)]][0].shape[axis] for it in items}
        except Untraceable:
            return None  # sizes whose equality depends on the arguments: the items' values stay explicit
        exprs = {getattr(d, "expr", None) for d in outs}
        if len(exprs) != 1 or None in exprs or isinstance(next(iter(outs)), str):
            return None
        rendered = dict(p.split("=", 1) for p in parts)
        prev = _subst(next(iter(outs)), rendered, [], [])
        if not is_sym(prev) or prev.expr is None:
            return None
        after = _shift_i(prev.expr)
        return d0 if after == d0 else f"{d0} if i == 0 else {after}"

    def loop_bindings(self, nodes: list[Node], child: _Class, parts: list[str]) -> None:
        """Item 0 of a loop reads the loop's input: the child's input assumptions on it become ours."""
        rendered = dict(p.split("=", 1) for p in parts)
        first_in = list(nodes[0].body.nodes["0"].body.inputs)[0]
        for (iname, axis), p in child.bindings.items():
            arg = child.arg_names.get(p)
            if iname != first_in or arg not in rendered:
                continue
            at0 = _fold(tidy(ast.unparse(_ReplaceI(0).visit(ast.parse(rendered[arg], mode="eval").body))))
            param = self.cls.param_of(at0)
            dims = [self.types[k][(n.inputs[0].node, n.inputs[0].index)].shape[axis] for k, n in enumerate(nodes)]
            origins = {getattr(d, "origin", None) for d in dims}
            if param is not None and len(origins) == 1 and all(isinstance(d, SymInt) and d.expr is None for d in dims):
                origin = origins.pop()
                if origin is not None and origin[0] == "in":
                    self.cls.bindings.setdefault(origin[1:], param)

    def emit_loop(self, nodes: list[Node], ins: list[str], lhs: str, counts: list[int]) -> None:
        """``nn.Sequential(*[Block(...) for i in range(n)])`` with per-item args as expressions of i."""
        nid = nodes[0].id
        self.loops.add(nid)
        first = nodes[0].body.nodes["0"]
        child = self.gen.classes[self.gen.key_of(first)]
        if self.symbolic:
            cvals = [self.sym.symbolic(c, n.meta.get("count_expr"), self.envs[k], {}) for k, (c, n) in enumerate(zip(counts, nodes))]
        else:
            cvals = list(counts)
        n_src = self.sym.render(cvals, f"{nid}_depth")
        rows = [(k, j) for k, c in enumerate(counts) for j in range(c)]
        rsym = _Symbols(self.gen, self.cls, [{**self.envs[k], "i": j, "n": counts[k]} for k, j in rows], loop_n=n_src)
        rsym.used = self.sym.used
        rsym.extra = self.sym.extra
        parts = []
        for arg, _ in child.args:
            param = child.param_of(arg)
            items = [nodes[k].body.nodes[str(j)] for k, j in rows]
            sym_ = None
            if param is not None and self.symbolic:
                vals = [rsym.symbolic(_env(it)[param], (it.meta.get("exprs") or {}).get(param),
                                      {**self.envs[k], "i": j, "n": counts[k]}, {})
                        if param in (it.meta.get("exprs") or {}) else self.param_value(k, it, param, {})
                        for (k, j), it in zip(rows, items)]
                sym_ = rsym.derive(vals)
            elif param is not None:
                sym_ = rsym.derive([_env(it)[param] for it in items])
            if sym_ is None and param is None and self.symbolic:
                sym_ = self.loop_input_size(nodes, child, arg, items, rows, parts, counts)
            if sym_ is None:
                plain_vals = [_env(it)[param] if param is not None else child.extra[arg][child.index[id(it)]] for it in items]
                per_inst = [[plain_vals[r] for r, (k2, _) in enumerate(rows) if k2 == k] for k in range(len(nodes))]
                sym_ = f"{self.sym.render(per_inst, f'{nid}_{arg}', dependent=self.symbolic)}[i]"
            parts.append(f"{arg}={sym_}")
        for k, n in enumerate(nodes):
            t = n.types[0]
            self.types[k][(n.id, 0)] = t.with_shape(_opaque_shape(t.shape)) if self.symbolic else t
        if self.symbolic:
            self.loop_bindings(nodes, child, parts)
        call = f"{child.name}({', '.join(parts)})"
        if len(ins) == 1:
            self.init.append(f"self.{nid} = nn.Sequential(*[{call} for i in range({n_src})])")
            self.fwd.append(f"{lhs} = self.{nid}({ins[0]})")
        else:
            self.init.append(f"self.{nid} = nn.ModuleList([{call} for i in range({n_src})])")
            if lhs != ins[0]:
                self.fwd.append(f"{lhs} = {ins[0]}")
            self.fwd.append(f"for {self.locals.loop} in self.{nid}:")
            self.fwd.append(f"    {lhs} = {self.locals.loop}({lhs}, {', '.join(ins[1:])})")


class _ReplaceI(ast.NodeTransformer):
    def __init__(self, value: int) -> None:
        self.value = value

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(self.value) if node.id == "i" else node


_INVERSE = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt}


def _negate(py: str) -> str:
    """``not (py)``, written as the inverse comparison when ``py`` is a single one."""
    tree = ast.parse(py, mode="eval").body
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _INVERSE:
        tree.ops = [_INVERSE[type(tree.ops[0])]()]
        return ast.unparse(tree)
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not):
        return ast.unparse(tree.operand)
    return f"not ({py})"


def _fold(py: str) -> str:
    """Constant parts folded (after fixed params or a loop index were replaced by values).

    ``a if 0 == 0 else b`` → ``a``, ``K < 7 or False`` → ``K < 7``, ``not False`` → ``True``.
    """

    def const(node: ast.AST) -> Any:
        # a called function's name (sum, max, ...) is no variable: sum([2, 2][:1]) is a constant
        funcs = {id(x.func) for x in ast.walk(node) if isinstance(x, ast.Call)}
        if any(isinstance(x, ast.Name) and id(x) not in funcs for x in ast.walk(node)):
            raise ValueError
        v = compile_expr(ast.unparse(node)).eval({})
        if not isinstance(v, (bool, int, float, str, type(None))):
            raise ValueError
        return v

    class F(ast.NodeTransformer):
        def visit(self, node: ast.AST) -> ast.AST:
            node = super().visit(node)
            if isinstance(node, ast.expr) and not isinstance(node, ast.Constant):
                try:
                    return ast.Constant(const(node))
                except Exception:  # noqa: BLE001 - not constant, or not foldable: keep it
                    pass
            return node

        def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
            self.generic_visit(node)
            if isinstance(node.op, ast.Not):
                return ast.parse(_negate(ast.unparse(node.operand)), mode="eval").body
            return node

        def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
            self.generic_visit(node)
            if isinstance(node.test, ast.Constant):
                return node.body if node.test.value else node.orelse
            return node

        def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
            self.generic_visit(node)
            unit = isinstance(node.op, ast.And)  # True is neutral in 'and', False in 'or'
            kept = []
            for v in node.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, bool):
                    if v.value is unit:
                        continue
                    return ast.Constant(not unit)  # absorbing
                kept.append(v)
            if not kept:
                return ast.Constant(unit)
            return kept[0] if len(kept) == 1 else ast.BoolOp(node.op, kept)

    return ast.unparse(F().visit(ast.parse(py, mode="eval").body))


def _shift_i(py: str) -> str:
    """``py`` with the loop index ``i`` replaced by ``i - 1`` (the previous item)."""

    class S(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.parse("(i - 1)", mode="eval").body if node.id == "i" else node

    return tidy(ast.unparse(S().visit(ast.parse(py, mode="eval").body)))


def _input_sym(t: TensorType, name: str) -> TensorType:
    """A block input's type whose sizes are opaque numbers that remember which input and axis they are."""
    return t.with_shape(tuple(d if isinstance(d, str) else SymInt(d, None, ("in", name, j)) for j, d in enumerate(t.shape)))


def _opaque_shape(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(d if isinstance(d, str) else SymInt(plain(d), None) for d in shape)


def _subst(d: Any, rendered: Mapping[str, str], ins: list[TensorType], names: list[str]) -> Any:
    """A child's output size (over the child's arguments) over the parent's: substitute the call's arguments."""
    if isinstance(d, str) or not is_sym(d):
        return d
    if d.expr is None:
        if d.origin is not None and d.origin[0] == "in" and d.origin[1] in names:
            return ins[names.index(d.origin[1])].shape[d.origin[2]]
        return SymInt(d.v, None)
    if not names_in(d.expr) <= set(rendered):
        return SymInt(d.v, None)
    tree = ast.parse(d.expr, mode="eval")

    class S(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.parse(f"({rendered[node.id]})", mode="eval").body if node.id in rendered else node

    return SymInt(d.v, ast.unparse(S().visit(tree)))


def _plain_lowering(low: Lowering) -> Lowering:
    """``low`` with symbolic values replaced by their instance values (to check a traced lowering)."""
    def pv(v: Any) -> Any:
        if isinstance(v, Call):
            return Call(v.fn, tuple(pv(a) for a in v.args), {k: pv(x) for k, x in v.kwargs.items()}, v.defaults, v.names)
        return plain(v)

    return Lowering(pv(low.module) if low.module is not None else None, low.forward,
                    {k: pv(v) for k, v in low.values.items()}, low.helpers, low.imports)


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    return "any"


def _annotation(t: str) -> str:
    return {"int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list"}.get(t, "")


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The file skeleton (parsed once per process)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("module.py.j2")


def generate(graph: Graph, spec_label: str, model_name: str | None = None, block_info: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Source of a standalone module for ``graph``.

    ``block_info`` maps block names to ``{"params": {name: type}, "doc": str}`` (declared param
    order and types give constructor signatures and annotations; docs become class docstrings).
    """
    return generate_classes(graph, spec_label, model_name, block_info)[0]


def generate_classes(graph: Graph, spec_label: str, model_name: str | None = None,
                     block_info: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, list[_Class]]:
    """:func:`generate`, plus the generated block classes (name, block, arguments, instances, input bindings).

    A graph with a ``head`` (see :mod:`archc.spec.head`) gives a model class that takes the spec
    params ``num_classes``, ``in_chans`` and ``drop_path_rate`` (those the spec has) and timm's
    methods; ``drop_path_rate`` is left out when some value it sets could not be derived.
    """
    head = graph.meta.get("head")
    params = graph.meta.get("params") or {}
    args: list[str] = []
    if head is not None:
        from archc.spec.head import MODEL_ARGS, check_head

        rewritten = not {id(n) for n in graph} <= head.get("expanded", frozenset())
        try:
            check_head(graph, head)
            args = [a for a in MODEL_ARGS if a in params]
        except ArchcError:
            if not rewritten:
                raise
            head = None  # passes merged the head away: a plain module, as for a spec without one
    while True:
        try:
            return _generate(graph, spec_label, model_name, block_info, args, fixed=head is not None and not args,
                             use_head=head is not None)
        except ModelArgError as exc:
            if exc.arg == "drop_path_rate" and exc.arg in args:
                args.remove(exc.arg)  # stochastic depth is optional: a model without the argument is still right
                continue
            if args and head is not None and rewritten:
                # passes rewrote the graph (deploy, fused): the rewritten layers no longer carry the spec's
                # expressions, so the model is fixed to the compiled values (still split at the head)
                args = []
                continue
            from archc.backends.pytorch.timm import refuse

            raise refuse(exc, (graph.meta.get("head") or {}).get("loc")) from None


def _generate(graph: Graph, spec_label: str, model_name: str | None, block_info: Mapping[str, Mapping[str, Any]] | None,
              args: list[str], fixed: bool = False, use_head: bool = True) -> tuple[str, list[_Class]]:
    """One generation; ``fixed``: the head's methods without model arguments (no reset_classifier)."""
    head = graph.meta.get("head") if use_head and (args or fixed) else None
    params = graph.meta.get("params") or {}
    gen = _Gen(graph, class_name(model_name or graph.name), block_info or {})
    gen.fixed = fixed
    name = gen.model_name
    if head is not None:
        for cname in head["classifier"]:
            top, _, sub = cname.partition(".")
            if sub:
                gen.classifier_in[id(graph.nodes[top])] = sub
        if "in_chans" in args:
            # a block that reads the input's channels must take them as a size, not match them to a param
            t = next(iter(graph.inputs.values()))
            reached(graph, [t.with_shape((t.shape[0], plain(t.shape[1]) + 1, *t.shape[2:]))], gen.reached)
    gen.visit_children(graph)
    for cls in gen.order:  # every class name is known now: constructor arguments must not shadow one
        cls.assign_arg_names(gen.names | {"i"})
    emitted: list[_Emitted] = []
    for cls in gen.order:  # children come first: a parent reads its children's arguments and output sizes
        bodies = [n.body for n in cls.instances]  # type: ignore[misc]
        envs = [_env(n) for n in cls.instances]
        em = _ClassEmitter(gen, cls, bodies, envs)
        em.emit()
        cls.extra = em.sym.extra
        cls.extra_origin = em.sym.extra_origin
        cls.out_types = em.out_types
        used = [p for p in cls.param_decls if p in em.sym.used]
        cls.args = [(cls.arg_names[p], _annotation(cls.param_decls[p])) for p in used] + [(e, "") for e in em.sym.extra]
        emitted.append(_emit_class(cls.name, _doc_text(cls.doc), cls.args, em, bodies[0]))
    top_cls = _Class(None, name, None, "", param_decls={a: _type_name(params[a]) for a in args})
    top_cls.arg_names = {a: a for a in args}
    top = _ClassEmitter(gen, top_cls, [graph], [dict(params) if args else {}], top_args={a: params[a] for a in args})
    top.emit()
    if top.sym.extra:
        slots = ", ".join(sorted(top.sym.extra))
        raise ModelArgError("drop_path_rate" if "drop_path_rate" in args else args[0],
                            f"the op rules do not state how {slots} follow from it")
    sig = [f"{a}: {_annotation(_type_name(params[a]))} = {literal(params[a])}" for a in args]
    main = _emit_class(name, _doc_text(graph.meta.get("doc", "") or graph.name), [], top, graph)
    main.args = sig
    out_names = graph.meta.get("output_names") or ()
    if out_names:  # named outputs: forward returns {name: value} in the spec's order
        values = [top.locals[r] for r in graph.outputs]
        main.returns = "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(out_names, values)) + "}"
        main.return_type = "Dict[str, torch.Tensor]"
    cfg = ""
    if head is not None:
        from archc.backends.pytorch.timm import timm_parts

        for attr in ("num_features", "head_hidden_size", "default_cfg", "forward_features", "forward_head",
                     "reset_classifier", *args):
            if attr in top.attrs:
                from archc.diagnostics import SpecError

                raise SpecError(f"node '{attr}' has the name of an attribute of timm models", graph.nodes[attr].loc
                                if attr in graph.nodes else None, hint=f"rename the node, e.g. '{attr}_'")
        holders = {id(graph.nodes[c.partition('.')[0]]): gen.classes[gen.key_of(graph.nodes[c.partition('.')[0]])]
                   for c in head["classifier"] if "." in c}
        parts = timm_parts(top, graph, head, args, holders, fixed)
        main.init = parts.init_prefix + top.init
        main.forward, main.returns, main.methods, cfg = parts.forward, parts.returns, parts.methods, parts.cfg
    emitted.append(main)
    helpers = [HELPERS[h] for h in helper_closure(gen.helpers)]
    first = next(iter(graph.inputs.values()))
    # parameters follow the floating dtype of the (first) input; float32 is nn.Module's own default
    param_dtype = first.dtype if first.dtype in ("float64", "float16", "bfloat16") else None
    from archc.backends.pytorch.timm import create_model_source

    src = _template().render(
        title=_doc_text(graph.meta.get("title") or name),
        spec=_doc_text(spec_label),
        variant=_doc_text(graph.meta["variant"]) if graph.meta.get("variant") else None,
        digest=graph.meta.get("digest", ""),
        version=__version__,
        imports=sorted({imp for h in helpers for imp in h.imports}),
        needs_math="math." in "".join("\n".join(c.init) for c in emitted),
        typing_names=["Any", *(["Dict"] if head is not None or graph.meta.get("output_names") else []),
                      *(["Optional"] if head is not None else []),
                      "Tuple", "Union"],
        helpers=[h.source for h in helpers] + ([_DIVISIBLE.strip("\n") + "\n"] if gen.uses_divisible else []),
        classes=emitted,
        model=name,
        input_shape=literal(first.concrete(1)),
        input_shapes=[(k, literal(t.concrete(1))) for k, t in graph.inputs.items()] if len(graph.inputs) > 1 else [],
        cfg=cfg,
        create_model=create_model_source(name, args, param_dtype, head is not None, fixed),
    )
    ast.parse(src)
    return src, list(gen.order)


def _emit_class(name: str, doc: str, args: list[tuple[str, str]], em: _ClassEmitter, body: Graph) -> _Emitted:
    sig = [f"{a}: {t}" if t else a for a, t in args]
    fargs = [f"{em.locals[Ref(k, 0)]}: torch.Tensor" for k in body.inputs]
    if em.cls.classifier:
        fargs.append("pre_logits: bool = False")
    nout = len(body.outputs)
    rtype = "torch.Tensor" if nout == 1 else "Tuple[" + ", ".join(["torch.Tensor"] * nout) + "]"
    return _Emitted(name, doc, sig, em.init, fargs, em.fwd, em.returns, rtype)
