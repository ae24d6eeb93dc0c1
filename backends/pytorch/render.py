"""Rendering of constructor calls, literal values and op helpers as Python source."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from archc.ops.base import HELPERS, Call, Lowering

__all__ = ["literal", "render_call", "render_forward", "helper_closure"]


def literal(v: Any) -> str:
    """Python source for a plain value (ints, floats, bools, None, strings, tuples, lists)."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == float("inf"):
            return "float('inf')"
        if v == float("-inf"):
            return "float('-inf')"
        if v != v:
            return "float('nan')"
        return repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, tuple):
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(literal(x) for x in v) + "]"
    if isinstance(v, Call):
        return render_call(v)
    raise TypeError(f"cannot render {v!r} as a literal")


def render_call(call: Call, sym: Callable[[Any], str] = literal) -> str:
    """``fn(arg, ..., key=value)`` with every value rendered by ``sym``."""
    parts = [render_call(a, sym) if isinstance(a, Call) else sym(a) for a in call.args]
    for k, v in call.kwargs.items():
        if k in call.defaults and not isinstance(v, Call) and v == call.defaults[k] and type(v) is type(call.defaults[k]):
            continue
        parts.append(f"{k}={render_call(v, sym) if isinstance(v, Call) else sym(v)}")
    return f"{call.fn}({', '.join(parts)})"


def render_forward(low: Lowering, module_ref: str, inputs: list[str], sym: Callable[[str, Any], str] | None = None) -> str:
    """The forward expression of a lowering; ``sym(name, value)`` renders per-instance values."""
    values = {k: (sym(k, v) if sym else literal(v)) for k, v in low.values.items()}
    return low.forward.format(*inputs, m=module_ref, **values)


def helper_closure(names: Iterable[str]) -> list[str]:
    """Helper names including their dependencies, dependencies first, in deterministic order."""
    out: list[str] = []

    def visit(n: str) -> None:
        if n in out:
            return
        for dep in HELPERS[n].needs:
            visit(dep)
        out.append(n)

    for n in sorted(set(names)):
        visit(n)
    return out
