"""Safe expressions over spec params.

A spec string of the form ``"${expr}"`` evaluates to the value of ``expr``; a string with embedded
``${...}`` parts is interpolated into a string. ``expr`` uses a small Python-like grammar parsed with
:mod:`ast` and walked by a whitelisting interpreter — nothing is ever handed to Python's ``eval``:

* literals (int, float, bool, str, None), lists and tuples, names of params in scope;
* ``+ - * / // % **`` (``%`` on numbers only; exponent, integer size, list/string lengths, source
  length and nesting bounded), unary ``- + not``, ``and or``, comparisons (not ``is``),
  ``a if c else b``, indexing and slicing of lists/strings;
* calls to a fixed set of pure functions: ``min max abs int float round len sum ceil floor sqrt``
  (``sum`` of numbers only) and ``divisible(v, d)`` (round to the nearest multiple of d, never below
  90% of v, timm's rule).

Anything else — attribute access, calls to other names, lambdas, comprehensions, dunder names — is an
:class:`~archc.diagnostics.ExprError` located at the string in the YAML, and so is every failure while
evaluating (division by zero, an unknown name, a bound exceeded). A ``${`` without its ``}`` is an error.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import ExprError, SourceLoc, suggest

__all__ = ["Expr", "compile_expr", "evaluate", "is_expr", "FUNCTIONS", "divisible", "elements"]

_WHOLE = re.compile(r"^\$\{(.*)\}$", re.S)
_PART = re.compile(r"\$\{(.*?)\}", re.S)
_MAX_POW = 64
_MAX_LEN = 100_000
_MAX_INT = 10**30
_MAX_SOURCE = 2_000
_MAX_DEPTH = 100
#: leaves of a list result, nested lists counted in full (shared sub-lists once per occurrence)
_MAX_ELEMENTS = 1_000_000
#: digits a round() may keep or drop (round(10**30, -10**18) computes a 10**18-digit power)
_MAX_ROUND_DIGITS = 400


def elements(value: Any, limit: int | None = None) -> int:
    """Leaves of a nested list counted as if written out: ``[a] * 1000`` holds 1000 × the leaves of ``a``.

    Lists may share sub-lists (``[a] * n`` repeats one object), so their length says nothing about
    the work of printing, comparing or interpolating them; this counts what that work visits, in
    time linear in the number of *distinct* lists (sizes are memoized by identity), stopping early
    once ``limit`` (default: the expression budget) is passed.
    """
    cap = _MAX_ELEMENTS if limit is None else limit
    memo: dict[int, int] = {}

    def size(v: Any, depth: int) -> int:
        if not isinstance(v, (list, tuple)):
            return 1
        key = id(v)
        if key in memo:
            return memo[key]
        if depth > _MAX_DEPTH:
            return cap + 1
        total = 0
        for x in v:
            total += size(x, depth + 1)
            if total > cap:
                break
        memo[key] = total
        return total

    return size(value, 0)


def divisible(v: float, d: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``d``, at least ``min_value`` and >= 90% of ``v``."""
    min_value = d if min_value is None else min_value
    new_v = max(min_value, int(v + d / 2) // d * d)
    if new_v < 0.9 * v:
        new_v += d
    return new_v


def _sum(values: Any, start: Any = 0) -> Any:
    """``sum`` of numbers only (a list ``start`` would make it a quadratic list concatenation)."""
    items = list(values)
    for v in (start, *items):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"sum() adds numbers, got {v!r}")
    return sum(items, start)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "float": float,
    "round": round,
    "len": len,
    "sum": _sum,
    "ceil": math.ceil,
    "floor": math.floor,
    "sqrt": math.sqrt,
    "divisible": divisible,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNARYOPS = (ast.USub, ast.UAdd, ast.Not)
_OP_NAMES = {ast.Is: "is", ast.IsNot: "is not", ast.Invert: "~", ast.LShift: "<<", ast.RShift: ">>",
             ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.MatMult: "@"}


def is_expr(value: Any) -> bool:
    """True when ``value`` is a string holding at least one ``${...}``."""
    return isinstance(value, str) and "${" in value


def source_expr(value: Any) -> str | None:
    """The author's expression behind an argument, as one ``${...}`` text; None for a plain value.

    A list written element by element (``sizes: ["${2 * g}", "${g}", 4]``) is the list expression
    ``${[(2 * g), (g), 4]}``: it evaluates to the same list, and generated code can derive it as a whole.
    A list mixing in text around expressions, strings or nested lists has no such form (None).
    """
    if is_expr(value):
        return value
    if not isinstance(value, (list, tuple)) or not any(is_expr(x) for x in value):
        return None
    parts = []
    for x in value:
        if isinstance(x, str):
            m = re.fullmatch(r"\s*\$\{(.*)\}\s*", x, re.S)
            if m is None or "${" in m.group(1):
                return None
            parts.append(f"({m.group(1).strip()})")
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            parts.append(repr(x))
        else:
            return None
    return "${[" + ", ".join(parts) + "]}"


@dataclass(frozen=True)
class Expr:
    """A parsed, whitelisted expression."""

    source: str
    tree: ast.expr
    loc: SourceLoc | None

    @property
    def names(self) -> frozenset[str]:
        """Free variable names (function names excluded)."""
        out = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id not in FUNCTIONS:
                out.add(node.id)
        return frozenset(out)

    def eval(self, env: Mapping[str, Any]) -> Any:
        return _Interp(env, self.loc, self.source).run(self.tree)


def _fail(msg: str, loc: SourceLoc | None, hint: str | None = None) -> ExprError:
    return ExprError(msg, loc, hint)


def compile_expr(source: str, loc: SourceLoc | None = None) -> Expr:
    """Parse ``source`` (the text inside ``${...}``) and check it against the whitelist."""
    if len(source) > _MAX_SOURCE:
        raise _fail(f"expression longer than {_MAX_SOURCE} characters", loc, "compute it in several params")
    try:
        tree = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise _fail(f"invalid expression '{source}': {exc.msg}", loc) from None
    except (RecursionError, MemoryError):
        raise _fail("expression nests too deeply", loc, "compute it in several params") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            raise _fail(
                f"attribute access '.{node.attr}' is not allowed in expressions",
                loc,
                "expressions may only use params, arithmetic, comparisons, indexing and whitelisted functions",
            )
        if isinstance(node, ast.Call):
            fname = node.func.id if isinstance(node.func, ast.Name) else None
            if fname not in FUNCTIONS or node.keywords and fname != "divisible":
                shown = fname or ast.unparse(node.func)
                hint = suggest(shown, FUNCTIONS) or f"allowed functions: {', '.join(sorted(FUNCTIONS))}"
                raise _fail(f"call to '{shown}' is not allowed in expressions", loc, hint)
            if any(k.arg is None for k in node.keywords):
                raise _fail(f"'**' arguments are not allowed in expressions ('{source.strip()}')", loc)
        if isinstance(node, (ast.cmpop, ast.operator, ast.unaryop)) and not (
            type(node) in _CMPOPS or type(node) in _BINOPS or isinstance(node, _UNARYOPS)
        ):
            shown = _OP_NAMES.get(type(node), type(node).__name__)
            raise _fail(f"operator '{shown}' is not allowed in expressions ('{source.strip()}')", loc,
                        "use '==' / '!=' to compare values" if shown in ("is", "is not") else None)
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise _fail(f"name '{node.id}' is not allowed in expressions", loc)
        allowed = (
            ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
            ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Call, ast.keyword,
            ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
        )  # fmt: skip
        if not isinstance(node, allowed):
            raise _fail(
                f"'{type(node).__name__}' is not allowed in expressions ('{source.strip()}')",
                loc,
                "use arithmetic, comparisons, 'a if c else b', indexing and whitelisted functions",
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
            raise _fail(f"literal {node.value!r} is not allowed", loc)
    return Expr(source.strip(), tree, loc)


class _Interp:
    def __init__(self, env: Mapping[str, Any], loc: SourceLoc | None, source: str) -> None:
        self.env = env
        self.loc = loc
        self.source = source
        self.depth = 0

    def err(self, msg: str, hint: str | None = None) -> ExprError:
        return _fail(f"in '${{{self.source}}}': {msg}", self.loc, hint)

    def run(self, node: ast.expr) -> Any:
        if self.depth >= _MAX_DEPTH:
            raise self.err(f"expression nests more than {_MAX_DEPTH} levels deep", "compute it in several params")
        method = getattr(self, "_" + type(node).__name__)
        self.depth += 1
        try:
            return method(node)
        finally:
            self.depth -= 1

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        if node.id not in self.env:
            raise self.err(f"unknown name '{node.id}'", suggest(node.id, self.env) or "declare it under params")
        return self.env[node.id]

    def _List(self, node: ast.List) -> Any:
        return self.bounded([self.run(e) for e in node.elts])

    def _Tuple(self, node: ast.Tuple) -> Any:
        return self.bounded([self.run(e) for e in node.elts])

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        v = self.run(node.operand)
        try:
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return +v
            if isinstance(node.op, ast.Not):
                return not v
        except TypeError:
            raise self.err(f"bad operand {v!r}") from None
        raise self.err("unsupported unary operator")

    def _BinOp(self, node: ast.BinOp) -> Any:
        a, b = self.run(node.left), self.run(node.right)
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.err(f"operator '{type(node.op).__name__}' is not allowed")
        if isinstance(node.op, ast.Pow) and isinstance(b, (int, float)) and abs(b) > _MAX_POW:
            raise self.err(f"exponent {b} exceeds {_MAX_POW}")
        if isinstance(node.op, ast.Mod) and isinstance(a, str):
            raise self.err("'%' formatting of strings is not allowed", "use interpolation: 'name${i}'")
        if isinstance(node.op, ast.Mult) and (isinstance(a, (str, list)) or isinstance(b, (str, list))):
            n = b if isinstance(a, (str, list)) else a
            seq = a if isinstance(a, (str, list)) else b
            if isinstance(n, int) and len(seq) * max(n, 0) > _MAX_LEN:
                raise self.err(f"result longer than {_MAX_LEN}")
        try:
            out = op(a, b)
        except ZeroDivisionError:
            raise self.err("division by zero") from None
        except (TypeError, OverflowError, ValueError) as exc:
            raise self.err(f"cannot apply operator to {a!r} and {b!r} ({exc})") from None
        return self.bounded(out)

    def bounded(self, out: Any) -> Any:
        if isinstance(out, int) and not isinstance(out, bool) and abs(out) > _MAX_INT:
            raise self.err("integer result too large")
        if isinstance(out, (str, list)) and len(out) > _MAX_LEN:
            raise self.err(f"result longer than {_MAX_LEN}")
        if isinstance(out, list) and elements(out) > _MAX_ELEMENTS:
            raise self.err(f"result holds more than {_MAX_ELEMENTS:,} elements (nested lists counted in full)",
                           "build smaller lists; a list repeated inside another counts once per repetition")
        return out

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            v: Any = True
            for e in node.values:
                v = self.run(e)
                if not v:
                    return v
            return v
        v = False
        for e in node.values:
            v = self.run(e)
            if v:
                return v
        return v

    def _Compare(self, node: ast.Compare) -> Any:
        left = self.run(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = self.run(comp)
            cmp = _CMPOPS.get(type(op))
            if cmp is None:  # pragma: no cover - rejected by compile_expr
                raise self.err(f"operator '{type(op).__name__}' is not allowed")
            try:
                if not cmp(left, right):
                    return False
            except TypeError:
                raise self.err(f"cannot compare {left!r} and {right!r}") from None
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    def _Subscript(self, node: ast.Subscript) -> Any:
        seq = self.run(node.value)
        if isinstance(node.slice, ast.Slice):
            parts = [self.run(p) if p is not None else None for p in (node.slice.lower, node.slice.upper, node.slice.step)]
            try:
                return seq[slice(*parts)]
            except (TypeError, ValueError) as exc:
                raise self.err(f"bad slice ({exc})") from None
        idx = self.run(node.slice)
        try:
            return seq[idx]
        except IndexError:
            raise self.err(f"index {idx!r} out of range for {seq!r}") from None
        except (TypeError, KeyError):
            raise self.err(f"cannot index {seq!r} with {idx!r}") from None

    def _Slice(self, node: ast.Slice) -> Any:  # pragma: no cover - handled in _Subscript
        raise self.err("bare slice")

    def _Call(self, node: ast.Call) -> Any:
        assert isinstance(node.func, ast.Name)
        fn = FUNCTIONS[node.func.id]
        args = [self.run(a) for a in node.args]
        kwargs = {k.arg: self.run(k.value) for k in node.keywords if k.arg}
        if node.func.id == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > _MAX_ROUND_DIGITS:
            raise self.err(f"round() to {args[1]} digits is outside ±{_MAX_ROUND_DIGITS}")
        try:
            out = fn(*args, **kwargs)
        except ZeroDivisionError:
            raise self.err(f"{node.func.id}(...) failed: division by zero") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise self.err(f"{node.func.id}(...) failed: {exc}") from None
        return self.bounded(out)


def evaluate(value: Any, env: Mapping[str, Any], loc: SourceLoc | None = None) -> Any:
    """Evaluate ``${...}`` in a spec value; containers are evaluated recursively.

    >>> evaluate("${dims[1] * 2}", {"dims": [48, 96]})
    192
    >>> evaluate("stage${i}", {"i": 3})
    'stage3'
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = _WHOLE.match(value)
        if whole and "${" not in whole.group(1):
            return compile_expr(whole.group(1), loc).eval(env)
        if "${" in _PART.sub("", value):
            raise _fail(f"unterminated '${{' in {value!r}", loc, "close the expression with '}'")
        return _PART.sub(lambda m: str(compile_expr(m.group(1), loc).eval(env)), value)
    if isinstance(value, list):
        locs = getattr(value, "locs", None)
        return [evaluate(v, env, locs[i] if locs and i < len(locs) else loc) for i, v in enumerate(value)]
    if isinstance(value, dict):
        locs = getattr(value, "locs", {})
        return {k: evaluate(v, env, locs.get(k, loc)) for k, v in value.items()}
    return value
