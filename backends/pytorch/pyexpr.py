"""Rewriting of the Python expressions generated code holds.

Negation as the inverse comparison, folding of constant parts once fixed params or a loop index are
replaced by values, the loop index shifted to the previous item, a child's sizes re-expressed over
the parent's arguments — all on :mod:`ast` trees, unparsed back to source.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from archc.backends.pytorch.symbolic import SymInt, is_sym, names_in, tidy

from archc.ir.types import TensorType
from archc.spec.expr import compile_expr


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


def _whole(src: Any) -> bool:
    """True for a spec value that is one ``${...}`` expression (not text with expressions inside)."""
    m = re.fullmatch(r"\s*\$\{(.*)\}\s*", src, re.S) if isinstance(src, str) else None
    return m is not None and "${" not in m.group(1)
