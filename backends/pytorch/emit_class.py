"""The source of one generated class: ``__init__`` and ``forward`` lines for all its instances.

:class:`_ClassEmitter` walks the body the instances share, node by node: an op emits its module
and forward statement, a block instance a call of its child class, a repeat an ``nn.Sequential`` or
``nn.ModuleList`` (a loop over ``range(n)`` when the items share one class). Values are written
through :class:`~archc.backends.pytorch.symbols._Symbols`; the sizes each instance sees are tracked
symbolically so that the parent can re-express its children's output sizes, and ``__init__``
refuses arguments that would change the structure the class was built for.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from archc.backends.pytorch.classes import _Class, _env, _Gen, _lowering
from archc.backends.pytorch.model_args import decides_alike, input_independent, perturbed, train_time_only
from archc.backends.pytorch.names import _FN_MAP, _Locals, _unique
from archc.backends.pytorch.pyexpr import _fold, _negate, _ReplaceI, _shift_i, _subst, _whole
from archc.backends.pytorch.render import literal
from archc.backends.pytorch.symbolic import SymInt, Untraceable, checking, has_sym, is_sym, names_in, plain, sym, tidy
from archc.backends.pytorch.symbols import (
    _input_sym,
    _opaque,
    _opaque_shape,
    _plain_lowering,
    _render_call,
    _same,
    _Symbols,
)
from archc.backends.pytorch.timm import ModelArgError, wrap_classifier

from archc.ir.graph import Graph, Node, Ref
from archc.ir.types import TensorType
from archc.ops import REGISTRY
from archc.ops.base import Lowering
from archc.spec.expand import _MODULE_ATTRS
from archc.spec.expr import compile_expr

Types = dict[tuple[str, int], TensorType]


class _ClassEmitter:
    """The ``__init__`` and ``forward`` lines of one class, written for all its instances at once."""

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
                    dep = any(self.reads_size_args(r) for r in rendered.values()) or any(
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
            by_args = any(self.reads_size_args(r) for a, r in rendered.items()
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

    def reads_size_args(self, src: str) -> bool:
        """True when ``src`` reads a model argument that sizes may follow (not one reaching train-only ops
        alone). Each argument read is settled once, by expanding the spec again with it moved."""
        if not hasattr(self, "_train_only"):
            self._train_only: dict[str, bool] = {}
        for arg in names_in(src) & self.sym.top_args:
            if arg not in self._train_only:
                self._train_only[arg] = bool(train_time_only(self.bodies[0], frozenset({arg})))
            if not self._train_only[arg]:
                return True
        return False

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
