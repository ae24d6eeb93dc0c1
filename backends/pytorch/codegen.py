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
import keyword
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from archc.backends.pytorch.render import helper_closure, literal

from archc import __version__
from archc.ir.graph import Graph, Node, Ref
from archc.ops import HELPERS, REGISTRY
from archc.ops.base import Call, Lowering
from archc.spec.expand import _MODULE_ATTRS
from archc.spec.expr import compile_expr

__all__ = ["generate", "class_name"]

_TEMPLATE_DIR = Path(__file__).parent
_FN_MAP = {"ceil": "math.ceil", "floor": "math.floor", "sqrt": "math.sqrt", "divisible": "_divisible"}
_DIVISIBLE = '''
def _divisible(v: float, d: int = 8, min_value: int = 0) -> int:
    """Round v to the nearest multiple of d, at least min_value (default d) and >= 90% of v."""
    min_value = min_value or d
    new_v = max(min_value, int(v + d / 2) // d * d)
    if new_v < 0.9 * v:
        new_v += d
    return new_v
'''


#: module-level names of generated files (imports, constants, the factory, the divisible helper) and
#: Python's builtins: no identifier the generator allocates may take one of them
_GLOBAL_NAMES = frozenset({"math", "torch", "nn", "F", "Tuple", "INPUT_SHAPE", "INPUT_SHAPES", "create_model",
                           "_divisible", "self"}) | frozenset(dir(builtins)) | frozenset(HELPERS)


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
        key = (node.block, self.sig(node.body))
        self.visit_children(node.body)
        cls = self.classes.get(key)
        if cls is None:
            base = class_name(node.block or "block")
            name = _unique(base, self.names, sep="")
            self.names.add(name)
            info = self.param_types.get(node.block or "", {})
            decls = info.get("params") or {k: _type_name(v) for k, v in (node.params or {}).items()}
            cls = _Class(key, name, node.block, info.get("doc", ""), param_decls=decls)
            self.classes[key] = cls
            self.order.append(cls)
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
    """Explains values that vary across the instances of one class by constructor arguments."""

    def __init__(self, gen: _Gen, cls: _Class, envs: list[Mapping[str, Any]], exprs: list[tuple[str, dict[str, Any]]],
                 loop_n: str | None = None) -> None:
        self.loop_n = loop_n  # inside a loop: 'i' stays the loop variable and 'n' is the count expression
        self.gen = gen
        self.cls = cls
        self.envs = envs
        self.exprs = exprs  # (expression source, extra bindings such as a repeat index)
        self.used: list[str] = []
        self.extra: dict[str, list[Any]] = {}  # fallback args → per-instance values

    def use(self, name: str) -> str:
        """Record that the constructor needs ``name`` (a block param or an extra); its Python name."""
        if name not in self.used:
            self.used.append(name)
        return self.cls.arg_names.get(name, name)

    def _taken(self, name: str) -> bool:
        return (name in self.cls.param_decls or name in self.cls.arg_names.values() or name in self.gen.names
                or name in ("i", "n"))

    def _params(self) -> list[str]:
        """Block params a value may be explained by; inside a loop 'i' and 'n' are the loop's own."""
        return [p for p in self.cls.param_decls if self.loop_n is None or p not in ("i", "n")]

    def render(self, values: list[Any], slot: str, owner: str = "") -> str:
        first = values[0]
        if all(_same(v, first) for v in values):
            return literal(first)
        if all(isinstance(v, (list, tuple)) and len(v) == len(first) for v in values):
            parts = [self.explain([v[j] for v in values]) for j in range(len(first))]
            if all(p is not None for p in parts):
                inner = ", ".join(parts)  # type: ignore[arg-type]
                return f"({inner},)" if isinstance(first, tuple) and len(first) == 1 else (f"({inner})" if isinstance(first, tuple) else f"[{inner}]")
        sym = self.explain(values)
        if sym is not None:
            return sym
        name = re.sub(r"[^0-9a-zA-Z_]", "_", slot)
        if owner and (self._taken(name) or (name in self.extra and self.extra[name] != values)):
            name = re.sub(r"[^0-9a-zA-Z_]", "_", f"{owner}_{slot}")
        while self._taken(name) or keyword.iskeyword(name) or (name in self.extra and self.extra[name] != values):
            name += "_"
        self.extra[name] = values
        return self.use(name)

    def explain(self, values: list[Any]) -> str | None:
        first = values[0]
        if all(_same(v, first) for v in values):
            return literal(first)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            for p in self._params():
                if all(_same(env.get(p), v) for env, v in zip(self.envs, values)):
                    return self.use(p)
            return None
        for p in self._params():
            if all(_same(env.get(p), v) for env, v in zip(self.envs, values)):
                return self.use(p)
        if self.loop_n is not None and all(_same(env.get("i"), v) for env, v in zip(self.envs, values)):
            return "i"
        for src, extra in self.exprs:
            expr = compile_expr(src)
            try:
                got = [expr.eval({**env, **extra}) for env in self.envs]
            except Exception:  # an expression that does not apply to every instance is no explanation
                continue
            if all(_same(g, v) for g, v in zip(got, values)):
                return self.translate(expr.tree, extra)
        for p in self._params():
            pv = [env.get(p) for env in self.envs]
            if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in pv):
                continue
            for k in (2, 3, 4, 8, 16):
                if all(v == x * k for v, x in zip(values, pv)):
                    return f"{self.use(p)} * {k}"
                if all(v == x // k for v, x in zip(values, pv)):
                    return f"{self.use(p)} // {k}"
        return None

    def translate(self, tree: ast.expr, extra: Mapping[str, Any]) -> str:
        gen = self.gen
        sym = self

        class T(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> ast.AST:
                if node.id in extra:
                    return ast.Constant(extra[node.id])
                if sym.loop_n is not None and node.id == "i":
                    return node
                if sym.loop_n is not None and node.id == "n":
                    return ast.parse(sym.loop_n, mode="eval").body
                return ast.Name(sym.use(node.id), node.ctx)

            def visit_Call(self, node: ast.Call) -> ast.AST:
                # the function name is not a param: only the arguments are translated
                node.args = [self.visit(a) for a in node.args]
                node.keywords = [self.visit(k) for k in node.keywords]
                if isinstance(node.func, ast.Name) and node.func.id in _FN_MAP:
                    mapped = _FN_MAP[node.func.id]
                    if mapped == "_divisible":
                        gen.uses_divisible = True
                    node.func = ast.Name(mapped)
                return node

        import copy

        out = T().visit(copy.deepcopy(tree))
        return ast.unparse(out)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _leaves(v: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(v, Call):
        for j, a in enumerate(v.args):
            yield from _leaves(a, f"{path}{j}")
        for k, a in v.kwargs.items():
            yield from _leaves(a, f"{path}{k}")
    else:
        yield path, v


def _render_call(calls: list[Call], path: str, sym: _Symbols) -> str:
    c0 = calls[0]
    parts = []
    for j in range(len(c0.args)):
        vals = [c.args[j] for c in calls]
        slot = c0.names[j] if j < len(c0.names) else f"{path}_{j}"
        parts.append(_render_call(vals, f"{path}_{j}", sym) if isinstance(vals[0], Call) else sym.render(vals, slot, path))
    for k in c0.kwargs:
        vals = [c.kwargs[k] for c in calls]
        if isinstance(vals[0], Call):
            parts.append(f"{k}={_render_call(vals, f'{path}_{k}', sym)}")
            continue
        if k in c0.defaults and all(_same(v, c0.defaults[k]) for v in vals):
            continue
        parts.append(f"{k}={sym.render(vals, k, path)}")
    return f"{c0.fn}({', '.join(parts)})"


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


class _Locals:
    """Python names of the values of one forward: inputs, node outputs and the loop variable.

    A graph input or single-output node is named after itself; output k of a multi-output node
    after ``<node>_<output name or k>``; a name that is taken (by an earlier name or one the code
    uses) gets trailing ``_``. A node whose input dies at it reuses that input's name, so a live
    value is never overwritten (nor by the loop variable) while dead ones are freed early.
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
        for i, n in enumerate(order):
            for r in n.inputs:
                last[(r.node, r.index)] = i
        for r in body.outputs:
            last[(r.node, r.index)] = len(order)
        for i, n in enumerate(order):
            if len(n.types) != 1:
                continue
            # a loop feeds its extra inputs to every item, so only its first input may be rebound
            cands = (n.inputs[:1] if n.inputs[0] not in n.inputs[1:] else ()) if n.is_repeat else n.inputs
            for r in cands:
                key = (r.node, r.index)
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


class _ClassEmitter:
    def __init__(self, gen: _Gen, cls: _Class, bodies: list[Graph], envs: list[Mapping[str, Any]], exprs: list[tuple[str, dict[str, Any]]]) -> None:
        self.gen = gen
        self.cls = cls
        self.bodies = bodies
        self.sym = _Symbols(gen, cls, envs, exprs)
        self.init: list[str] = []
        self.fwd: list[str] = []
        self.locals = _Locals(bodies[0])
        # attributes are self.<node id> (modules) and self.<node>_<value> (per-instance values)
        self.attrs: set[str] = set(_MODULE_ATTRS) | set(bodies[0].nodes)

    def emit(self) -> None:
        b0 = self.bodies[0]
        for n in b0:
            nodes = [b.nodes[n.id] for b in self.bodies]
            ins = [self.locals[r] for r in n.inputs]
            outs = [self.locals[Ref(n.id, k)] for k in range(len(n.types))]
            lhs = ", ".join(outs)
            if n.is_block:
                self.init.append(f"self.{n.id} = {self.child_call(nodes, n.id)}")
                self.fwd.append(f"{lhs} = self.{n.id}({', '.join(ins)})")
            elif n.is_repeat:
                self.emit_repeat(nodes, ins, lhs)
            else:
                self.emit_op(nodes, ins, lhs)
        outs = [self.locals[r] for r in b0.outputs]
        self.returns = ", ".join(outs)

    def child_call(self, nodes: list[Node], path: str) -> str:
        child = self.gen.classes[(nodes[0].block, self.gen.sig(nodes[0].body))]
        parts = []
        for arg, _ in child.args:
            vals = [self.child_arg_value(child, n, arg) for n in nodes]
            parts.append(f"{arg}={self.sym.render(vals, f'{path}_{arg}')}")
        return f"{child.name}({', '.join(parts)})"

    def child_arg_value(self, child: _Class, node: Node, arg: str) -> Any:
        """The value of ``child``'s constructor argument ``arg`` for the instance ``node``."""
        param = child.param_of(arg)
        if param is not None:
            return _env(node)[param]
        idx = child.index.get(id(node))
        assert idx is not None
        return child_extra(child)[arg][idx]

    def emit_op(self, nodes: list[Node], ins: list[str], lhs: str) -> None:
        lows = [_lowering(n) for n in nodes]
        nid = nodes[0].id
        if lows[0].module is not None:
            self.init.append(f"self.{nid} = {_render_call([lw.module for lw in lows], nid, self.sym)}")  # type: ignore[misc]
        vals: dict[str, str] = {}
        for key in lows[0].values:
            vs = [lw.values[key] for lw in lows]
            if all(_same(v, vs[0]) for v in vs):
                vals[key] = literal(vs[0])
            else:
                attr = _unique(f"{nid}_{key}", self.attrs)
                self.attrs.add(attr)
                self.init.append(f"self.{attr} = {self.sym.render(vs, attr)}")
                vals[key] = f"self.{attr}"
        expr = lows[0].forward.format(*ins, m=f"self.{nid}", **vals)
        self.fwd.append(f"{lhs} = {expr}")

    def emit_repeat(self, nodes: list[Node], ins: list[str], lhs: str) -> None:
        nid = nodes[0].id
        counts = [n.attrs["count"] for n in nodes]
        uniform = self.gen.node_sig(nodes[0])[3] == "uniform"
        if uniform and (self.cls.block is not None or len(set(counts)) > 1):
            self.emit_loop(nodes, ins, lhs, counts)
            return
        count = counts[0]
        items = []
        for j in range(count):
            its = [n.body.nodes[str(j)] for n in nodes]
            if its[0].is_block:
                items.append(self.child_call(its, f"{nid}_{j}"))
            else:
                lows = [_lowering(it) for it in its]
                if lows[0].module is None or lows[0].forward != "{m}({0})":
                    from archc.diagnostics import SpecError

                    raise SpecError(
                        f"repeat '{nid}' of op '{its[0].op}' cannot be lowered: only ops that are modules can repeat",
                        nodes[0].loc,
                        hint="wrap the op in a block and repeat the block",
                    )
                items.append(_render_call([lw.module for lw in lows], f"{nid}_{j}", self.sym))  # type: ignore[misc]
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


    def emit_loop(self, nodes: list[Node], ins: list[str], lhs: str, counts: list[int]) -> None:
        """``nn.Sequential(*[Block(...) for i in range(n)])`` with per-item args as expressions of i."""
        nid = nodes[0].id
        first = nodes[0].body.nodes["0"]
        child = self.gen.classes[(first.block, self.gen.sig(first.body))]
        n_src = self.sym.render(counts, f"{nid}_depth")
        rows = [(k, j) for k, c in enumerate(counts) for j in range(c)]
        row_envs = [{**self.sym.envs[k], "i": j, "n": counts[k]} for k, j in rows]
        exprs = [(src, {}) for src in _expr_sources(first)] + self.sym.exprs
        rsym = _Symbols(self.gen, self.cls, row_envs, exprs, loop_n=n_src)
        rsym.used = self.sym.used
        parts = []
        for arg, _ in child.args:
            vals = [self.child_arg_value(child, nodes[k].body.nodes[str(j)], arg) for k, j in rows]
            sym = rsym.explain(vals)
            if sym is None:
                per_inst = [[vals[r] for r, (k2, _) in enumerate(rows) if k2 == k] for k in range(len(nodes))]
                sym = f"{self.sym.render(per_inst, f'{nid}_{arg}')}[i]"
            parts.append(f"{arg}={sym}")
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


def _expr_sources(node: Node) -> list[str]:
    out = []
    for v in (node.meta.get("exprs") or {}).values():
        m = re.fullmatch(r"\$\{(.*)\}", v.strip(), re.S) if isinstance(v, str) else None
        if m and "${" not in m.group(1):
            out.append(m.group(1))
    return out


_EXTRA: dict[int, dict[str, list[Any]]] = {}


def child_extra(cls: _Class) -> dict[str, list[Any]]:
    return _EXTRA.get(id(cls), {})


def _exprs_of(body: Graph) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for n in body:
        for v in (n.meta.get("exprs") or {}).values():
            for src in re.findall(r"\$\{(.*?)\}", v, re.S) if isinstance(v, str) else ():
                if v.strip() == "${" + src + "}":
                    out.append((src, {}))
    return out


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
    _EXTRA.clear()
    gen = _Gen(graph, class_name(model_name or graph.name), block_info or {})
    name = gen.model_name
    gen.visit_children(graph)
    for cls in gen.order:  # every class name is known now: constructor arguments must not shadow one
        cls.assign_arg_names(gen.names | {"i"})
    emitted: list[_Emitted] = []
    for cls in gen.order:
        bodies = [n.body for n in cls.instances]  # type: ignore[misc]
        envs = [_env(n) for n in cls.instances]
        em = _ClassEmitter(gen, cls, bodies, envs, _exprs_of(bodies[0]))
        em.emit()
        _EXTRA[id(cls)] = em.sym.extra
        used = [p for p in cls.param_decls if p in em.sym.used]
        cls.args = [(cls.arg_names[p], _annotation(cls.param_decls[p])) for p in used] + [(e, "") for e in em.sym.extra]
        emitted.append(_emit_class(cls.name, _doc_text(cls.doc), cls.args, em, bodies[0]))
    top = _ClassEmitter(gen, _Class(None, name, None, ""), [graph], [{}], [])
    top.emit()
    emitted.append(_emit_class(name, _doc_text(graph.meta.get("doc", "") or graph.name), [], top, graph))
    helpers = [HELPERS[h] for h in helper_closure(gen.helpers)]
    first = next(iter(graph.inputs.values()))
    src = _template().render(
        title=_doc_text(graph.meta.get("title") or name),
        spec=_doc_text(spec_label),
        variant=_doc_text(graph.meta["variant"]) if graph.meta.get("variant") else None,
        digest=graph.meta.get("digest", ""),
        version=__version__,
        imports=sorted({imp for h in helpers for imp in h.imports}),
        needs_math="math." in "".join("\n".join(c.init) for c in emitted),
        helpers=[h.source for h in helpers] + ([_DIVISIBLE.strip("\n") + "\n"] if gen.uses_divisible else []),
        classes=emitted,
        model=name,
        input_shape=literal(first.concrete(1)),
        input_shapes=[(k, literal(t.concrete(1))) for k, t in graph.inputs.items()] if len(graph.inputs) > 1 else [],
        # parameters follow the floating dtype of the (first) input; float32 is nn.Module's own default
        param_dtype=first.dtype if first.dtype in ("float64", "float16", "bfloat16") else None,
    )
    ast.parse(src)
    return src


def _emit_class(name: str, doc: str, args: list[tuple[str, str]], em: _ClassEmitter, body: Graph) -> _Emitted:
    sig = [f"{a}: {t}" if t else a for a, t in args]
    fargs = [f"{em.locals[Ref(k, 0)]}: torch.Tensor" for k in body.inputs]
    nout = len(body.outputs)
    rtype = "torch.Tensor" if nout == 1 else "Tuple[" + ", ".join(["torch.Tensor"] * nout) + "]"
    return _Emitted(name, doc, sig, em.init, fargs, em.fwd, em.returns, rtype)
