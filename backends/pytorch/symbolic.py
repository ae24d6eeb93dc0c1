"""Symbolic numbers: values that remember the expression of constructor arguments they came from.

A generated class must be right for argument values no instance used, so an expression in its
constructor may only be *derived*: the spec author's expression, pushed through the op's own rules
(``padding = dilation * (k - 1) // 2``, ``in_features = previous out``). The generator runs the op
rules on these numbers: each is the instance's value plus the Python source of how it follows from
the constructor arguments. Arithmetic builds the source; anything whose result would silently drop
the dependence (a comparison that picks a branch, ``int()``, use as an index, formatting) raises
:class:`Untraceable` while lowering, so the caller falls back to a literal-free explicit argument.
While inferring types (``checking()``), comparisons are allowed: there they only guard a refusal.

An *opaque* number (``expr is None``) depends on something not expressible in the constructor
arguments (an input's size); ``origin`` says which, when known.
"""

from __future__ import annotations

import ast
import contextlib
import operator
from collections.abc import Iterator
from typing import Any

__all__ = ["Untraceable", "SymInt", "SymFloat", "SymVal", "checking", "sym", "plain", "is_sym", "has_sym",
           "names_in", "tidy"]


class Untraceable(BaseException):
    """A symbolic value decided control flow or lost its expression (BaseException: op code must not catch it)."""


_CHECKING = [False]


@contextlib.contextmanager
def checking() -> Iterator[None]:
    """Within: comparisons and truth tests use the instance values (type inference guards refusals only)."""
    _CHECKING.append(True)
    try:
        yield
    finally:
        _CHECKING.pop()


def _checking() -> bool:
    return _CHECKING[-1]


def _src(v: Any) -> str | None:
    if isinstance(v, (SymInt, SymFloat)):
        return v.expr
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Untraceable(f"operand {v!r}")
    return repr(v) if v == v and abs(v) != float("inf") else None


def _val(v: Any) -> Any:
    return v.v if isinstance(v, (SymInt, SymFloat, SymVal)) else v


def _make(value: Any, expr: str | None, origin: Any = None) -> Any:
    if isinstance(value, bool):
        raise Untraceable("boolean result")
    if isinstance(value, int):
        return SymInt(value, expr, origin)
    if isinstance(value, float):
        return SymFloat(value, expr, origin)
    raise Untraceable(f"result {value!r}")


class _Simplify(ast.NodeTransformer):
    """``[a, b][0]`` → ``a``: an element of a list the author wrote, picked by a constant index."""

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        seq, idx = node.value, node.slice
        if (isinstance(seq, (ast.List, ast.Tuple)) and isinstance(idx, ast.Constant) and type(idx.value) is int
                and not any(isinstance(e, ast.Starred) for e in seq.elts) and -len(seq.elts) <= idx.value < len(seq.elts)):
            return seq.elts[idx.value]
        return node


def tidy(src: str) -> str:
    """``src`` with redundant parentheses dropped and constant picks from written lists resolved."""
    try:
        return ast.unparse(_Simplify().visit(ast.parse(src, mode="eval").body))
    except (SyntaxError, RecursionError, ValueError):
        return src


_tidy = tidy


def _binop(fn: Any, sym_: str, a: Any, b: Any) -> Any:
    out = fn(_val(a), _val(b))
    sa, sb = _src(a), _src(b)
    # identities keep the author's expression readable: x * 1, x // 1, x + 0, x - 0
    if sym_ in ("*", "//") and not isinstance(b, (SymInt, SymFloat)) and b == 1 and type(out) is type(_val(a)):
        return _make(out, sa, getattr(a, "origin", None))
    if sym_ == "*" and not isinstance(a, (SymInt, SymFloat)) and a == 1 and type(out) is type(_val(b)):
        return _make(out, sb, getattr(b, "origin", None))
    if sym_ in ("+", "-") and not isinstance(b, (SymInt, SymFloat)) and b == 0 and type(out) is type(_val(a)):
        return _make(out, sa, getattr(a, "origin", None))
    if sym_ == "+" and not isinstance(a, (SymInt, SymFloat)) and a == 0 and type(out) is type(_val(b)):
        return _make(out, sb, getattr(b, "origin", None))
    if sa is None or sb is None:
        return _make(out, None)
    return _make(out, _tidy(f"({sa}) {sym_} ({sb})"))


def _compare(fn: Any, a: Any, b: Any) -> bool:
    sa = a.expr if isinstance(a, (SymInt, SymFloat)) else None
    sb = b.expr if isinstance(b, (SymInt, SymFloat)) else None
    if sa is not None and sa == sb:  # the same expression: decided for every argument value
        return bool(fn(0, 0))
    if _constant(a) and _constant(b):  # no argument involved (a literal the author wrote in an expression)
        return bool(fn(_val(a), _val(b)))
    if _checking():
        return bool(fn(_val(a), _val(b)))
    raise Untraceable("comparison")


def _constant(v: Any) -> bool:
    """True for a plain number or a symbolic one whose expression reads no argument."""
    if not isinstance(v, (SymInt, SymFloat)):
        return True
    return v.expr is not None and not names_in(v.expr)


class _SymMixin:
    v: Any
    expr: str | None
    origin: Any

    def _untraceable(self, *_: Any) -> Any:
        if _checking():
            return NotImplemented
        raise Untraceable(f"{self.expr} used where its value decides")

    def __add__(self, o: Any) -> Any:
        return _binop(operator.add, "+", self, o) if _num(o) else NotImplemented

    def __radd__(self, o: Any) -> Any:
        return _binop(operator.add, "+", o, self) if _num(o) else NotImplemented

    def __sub__(self, o: Any) -> Any:
        return _binop(operator.sub, "-", self, o) if _num(o) else NotImplemented

    def __rsub__(self, o: Any) -> Any:
        return _binop(operator.sub, "-", o, self) if _num(o) else NotImplemented

    def __mul__(self, o: Any) -> Any:
        return _binop(operator.mul, "*", self, o) if _num(o) else NotImplemented

    def __rmul__(self, o: Any) -> Any:
        return _binop(operator.mul, "*", o, self) if _num(o) else NotImplemented

    def __floordiv__(self, o: Any) -> Any:
        return _binop(operator.floordiv, "//", self, o) if _num(o) else NotImplemented

    def __rfloordiv__(self, o: Any) -> Any:
        return _binop(operator.floordiv, "//", o, self) if _num(o) else NotImplemented

    def __truediv__(self, o: Any) -> Any:
        return _binop(operator.truediv, "/", self, o) if _num(o) else NotImplemented

    def __rtruediv__(self, o: Any) -> Any:
        return _binop(operator.truediv, "/", o, self) if _num(o) else NotImplemented

    def __mod__(self, o: Any) -> Any:
        return _binop(operator.mod, "%", self, o) if _num(o) else NotImplemented

    def __rmod__(self, o: Any) -> Any:
        return _binop(operator.mod, "%", o, self) if _num(o) else NotImplemented

    def __pow__(self, o: Any) -> Any:
        return _binop(operator.pow, "**", self, o) if _num(o) else NotImplemented

    def __rpow__(self, o: Any) -> Any:
        return _binop(operator.pow, "**", o, self) if _num(o) else NotImplemented

    def __neg__(self) -> Any:
        return _make(-self.v, None if self.expr is None else _tidy(f"-({self.expr})"))

    def __pos__(self) -> Any:
        return self

    def __eq__(self, o: Any) -> bool:  # type: ignore[override]
        return _compare(operator.eq, self, o) if _num(o) else False

    def __ne__(self, o: Any) -> bool:  # type: ignore[override]
        return _compare(operator.ne, self, o) if _num(o) else True

    def __lt__(self, o: Any) -> bool:
        return _compare(operator.lt, self, o)

    def __le__(self, o: Any) -> bool:
        return _compare(operator.le, self, o)

    def __gt__(self, o: Any) -> bool:
        return _compare(operator.gt, self, o)

    def __ge__(self, o: Any) -> bool:
        return _compare(operator.ge, self, o)

    def __hash__(self) -> int:
        return hash(self.v)

    def __bool__(self) -> bool:
        if _checking():
            return bool(self.v)
        raise Untraceable(f"truth of {self.expr}")

    def __index__(self) -> int:
        if _checking():
            return int(self.v)
        raise Untraceable(f"{self.expr} used as an index or count")

    def __int__(self) -> int:
        if _checking():
            return int(self.v)
        raise Untraceable(f"int({self.expr})")

    def __float__(self) -> float:
        if _checking():
            return float(self.v)
        raise Untraceable(f"float({self.expr})")

    def __str__(self) -> str:
        return str(self.v)  # messages only (errors while checking)

    def __repr__(self) -> str:
        return repr(self.v)

    def __format__(self, spec: str) -> str:
        return format(self.v, spec)

    def __round__(self, nd: Any = None) -> Any:
        raise Untraceable("round")

    def __trunc__(self) -> Any:
        raise Untraceable("trunc")

    def __floor__(self) -> Any:
        raise Untraceable("floor")

    def __ceil__(self) -> Any:
        raise Untraceable("ceil")

    def __abs__(self) -> Any:
        return _make(abs(self.v), None if self.expr is None else f"abs({self.expr})")

    __and__ = __rand__ = __or__ = __ror__ = __xor__ = __rxor__ = _untraceable
    __lshift__ = __rlshift__ = __rshift__ = __rrshift__ = __invert__ = __divmod__ = __rdivmod__ = _untraceable


def _num(o: Any) -> bool:
    return isinstance(o, (int, float)) and not isinstance(o, bool)


class SymInt(_SymMixin, int):
    """An int with the expression it follows from (``expr``), or opaque (``expr`` None)."""

    def __new__(cls, value: int, expr: str | None, origin: Any = None) -> SymInt:
        obj = int.__new__(cls, value)
        obj.v = int(value)
        obj.expr = expr
        obj.origin = origin
        return obj


class SymFloat(_SymMixin, float):
    """A float with the expression it follows from."""

    def __new__(cls, value: float, expr: str | None, origin: Any = None) -> SymFloat:
        obj = float.__new__(cls, value)
        obj.v = float(value)
        obj.expr = expr
        obj.origin = origin
        return obj


class SymVal:
    """A non-numeric value (bool, string, list) with its expression; it may only be passed along."""

    __slots__ = ("v", "expr", "origin")

    def __init__(self, value: Any, expr: str | None, origin: Any = None) -> None:
        self.v = value
        self.expr = expr
        self.origin = origin

    def __bool__(self) -> bool:
        if _checking():
            return bool(self.v)
        raise Untraceable(f"truth of {self.expr}")

    def __eq__(self, o: Any) -> bool:
        if isinstance(o, SymVal) and o.expr is not None and o.expr == self.expr:
            return True
        if _checking():
            return bool(self.v == _val(o))
        raise Untraceable("comparison")

    def __hash__(self) -> int:
        return hash(self.v) if not isinstance(self.v, list) else id(self)

    def __getattr__(self, name: str) -> Any:
        if _checking():
            return getattr(self.v, name)
        raise Untraceable(f"{self.expr}.{name}")

    def __iter__(self) -> Any:
        if _checking():
            return iter(self.v)
        raise Untraceable("iteration")

    def __len__(self) -> int:
        if _checking():
            return len(self.v)
        raise Untraceable("len")

    def __getitem__(self, k: Any) -> Any:
        if _checking():
            return self.v[k]
        raise Untraceable("index")

    def __repr__(self) -> str:
        return repr(self.v)

    __str__ = __repr__


def sym(value: Any, expr: str | None, origin: Any = None) -> Any:
    """``value`` carrying ``expr``: SymInt/SymFloat for numbers, SymVal otherwise (tuples elementwise)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return SymVal(value, expr, origin)
    if isinstance(value, (int, float)):
        return _make(value, expr, origin)
    return SymVal(value, expr, origin)


def is_sym(v: Any) -> bool:
    return isinstance(v, (SymInt, SymFloat, SymVal))


def has_sym(v: Any) -> bool:
    """True when ``v`` (or anything inside a tuple/list/dict) is symbolic."""
    if is_sym(v):
        return True
    if isinstance(v, (list, tuple)):
        return any(has_sym(x) for x in v)
    if isinstance(v, dict):
        return any(has_sym(x) for x in v.values())
    return False


def plain(v: Any) -> Any:
    """``v`` with every symbolic value replaced by the instance value (recursively)."""
    if is_sym(v):
        return plain(v.v)
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def names_in(src: str) -> set[str]:
    """Free names of a Python expression (called functions excluded)."""
    tree = ast.parse(src, mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called}
