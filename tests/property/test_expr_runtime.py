"""The analyser and generated code evaluate spec expressions identically (differential, hypothesis).

Generated modules compute constructor values from the spec author's expressions (translated by
:func:`archc.backends.pytorch.codegen.to_python`); ``archc validate`` computes them with the safe
evaluator. Random expressions over random ints and floats must give the same value — or both fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archc.backends.pytorch.codegen import HELPER_SOURCE, to_python
from hypothesis import given, settings
from hypothesis import strategies as st

from archc.compiler import CompileOptions, compile_spec
from archc.cost.model import graph_cost
from archc.diagnostics import ArchcError
from archc.passes.equivalence import module_from_source
from archc.spec.expr import compile_expr

_RUNTIME: dict[str, Any] = {}
exec(compile(HELPER_SOURCE, "<helpers>", "exec"), _RUNTIME)  # archc's own helper source

ints = st.integers(-40, 200)
leaf = st.one_of(st.sampled_from(["a", "b", "c"]), ints.map(str), st.sampled_from(["0.5", "1.5", "0.9", "8.0"]))


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binop = st.tuples(children, st.sampled_from(["+", "-", "*", "//", "%", "/"]), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    fn1 = st.tuples(st.sampled_from(["abs", "int", "round", "ceil", "floor", "float"]), children).map(lambda t: f"{t[0]}({t[1]})")
    fn2 = st.tuples(st.sampled_from(["min", "max"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
    div = st.tuples(children, st.sampled_from(["1", "4", "8", "16", "b"]), st.sampled_from(["", ", 0", ", 1", ", 16", ", a"])).map(
        lambda t: f"divisible({t[0]}, {t[1]}{t[2]})")
    cond = st.tuples(children, st.sampled_from(["<", "<=", "==", "!="]), children, children, children).map(
        lambda t: f"({t[3]} if {t[0]} {t[1]} {t[2]} else {t[4]})")
    return st.one_of(binop, fn1, fn2, div, cond)


exprs = st.recursive(leaf, _expr, max_leaves=8)


def _analyser(src: str, env: dict[str, Any]) -> Any:
    try:
        return ("ok", compile_expr(src).eval(env))
    except ArchcError:
        return ("error", None)


def _generated(src: str, env: dict[str, Any]) -> Any:
    try:
        return ("ok", eval(to_python(src), dict(_RUNTIME), dict(env)))  # noqa: S307 - the translated test expression
    except (ArithmeticError, ValueError, TypeError):
        return ("error", None)


def _same(x: Any, y: Any) -> bool:
    if x[0] != y[0] or x[0] == "error":
        return x[0] == y[0] or x[0] == "error"  # the analyser also refuses what it bounds (huge values)
    a, b = x[1], y[1]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, derandomize=True)
@given(exprs, ints, st.integers(1, 64), st.floats(-100, 300, allow_nan=False))
def test_analyser_and_generated_code_agree(src: str, a: int, b: int, c: float) -> None:
    env = {"a": a, "b": b, "c": c}
    got, want = _generated(src, env), _analyser(src, env)
    assert _same(want, got), f"{src} with {env}: analyser {want}, generated code {got}"


def test_divisible_min_value_zero_is_honoured() -> None:
    env = {"c": 0}
    assert compile_expr("divisible(c, 8, 0) + 4").eval(env) == 4
    assert eval(to_python("divisible(c, 8, 0) + 4"), dict(_RUNTIME), env) == 4  # noqa: S307


SPEC = """archc: 1
name: t
inputs:
  x: [B, 4, 8, 8]
blocks:
  b:
    params: {c: int}
    graph:
      - conv: {op: conv2d, out: "${divisible(c, 8, 0) + 4}", kernel: 1}
      - back: {op: conv2d, out: 4, kernel: 1}
graph:
  - one: {op: b, c: 0}
  - two: {op: b, c: 20}
"""


def test_validate_and_module_agree_on_divisible(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(SPEC)
    res = compile_spec(spec, CompileOptions())
    assert "_divisible(c, 8, 0) + 4" in res.source
    model = module_from_source(res.source).create_model()
    assert model.one.conv.out_channels == 4
    assert sum(p.numel() for p in model.parameters()) == graph_cost(res.graph).params
