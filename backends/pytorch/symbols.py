"""The values of one generated class: derived expressions, literals, or constructor arguments.

:class:`_Symbols` decides how each constructor value of a class is written (see its docstring);
:func:`_render_call` writes a module constructor call through it. The helpers here build the
symbolic values it reads: opaque numbers, block inputs whose sizes remember their origin, and the
plain form of a traced lowering.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from typing import Any

from archc.backends.pytorch.classes import _Class, _Gen
from archc.backends.pytorch.names import _FN_MAP
from archc.backends.pytorch.pyexpr import _fold, _negate
from archc.backends.pytorch.render import literal
from archc.backends.pytorch.symbolic import SymInt, has_sym, is_sym, names_in, plain, sym, tidy

from archc.ir.types import TensorType
from archc.ops.base import Call, Lowering
from archc.spec.expr import compile_expr


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


def _input_sym(t: TensorType, name: str) -> TensorType:
    """A block input's type whose sizes are opaque numbers that remember which input and axis they are."""
    return t.with_shape(tuple(d if isinstance(d, str) else SymInt(d, None, ("in", name, j)) for j, d in enumerate(t.shape)))


def _opaque_shape(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(d if isinstance(d, str) else SymInt(plain(d), None) for d in shape)


def _plain_lowering(low: Lowering) -> Lowering:
    """``low`` with symbolic values replaced by their instance values (to check a traced lowering)."""
    def pv(v: Any) -> Any:
        if isinstance(v, Call):
            return Call(v.fn, tuple(pv(a) for a in v.args), {k: pv(x) for k, x in v.kwargs.items()}, v.defaults, v.names)
        return plain(v)

    return Lowering(pv(low.module) if low.module is not None else None, low.forward,
                    {k: pv(v) for k, v in low.values.items()}, low.helpers, low.imports)
