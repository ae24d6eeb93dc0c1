"""Bounded work on any input: expression budgets, linear id generation, no needless or oversized allocation."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.compiler import CompileOptions, compile_spec
from archc.diagnostics import ArchcError, ExprError
from archc.spec.expand import _Expander
from archc.spec.expr import compile_expr, elements
from archc.targets import build_artifact, prepare

HEAD = "archc: 1\nname: t\ninputs:\n  x: [B, 4, 8, 8]\n"


def test_round_with_huge_digits_is_refused_at_once() -> None:
    with pytest.raises(ExprError, match="round\\(\\) to -1000000000000000000 digits"):
        compile_expr("round(10**30, -10**18)").eval({})
    assert compile_expr("round(1234.5678, 2)").eval({}) == 1234.57


def test_shared_sub_lists_count_in_full() -> None:
    a = [0] * 100_000
    assert elements([a] * 10) == 1_000_000 and elements([a, [a, a]]) == 300_000
    with pytest.raises(ExprError, match="more than 1,000,000 elements"):
        compile_expr("[a] * 100000").eval({"a": a})
    with pytest.raises(ExprError, match="more than 1,000,000 elements"):
        compile_expr("[a, a, a, a, a, a, a, a, a, a, a]").eval({"a": a})


def test_spec_params_built_from_shared_lists_are_refused(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(HEAD + 'params:\n  a: "${[0] * 100000}"\n  b: "${[a] * 100000}"\ngraph:\n  - relu\n')
    with pytest.raises(ArchcError, match="more than 1,000,000 elements"):
        compile_spec(spec)


class _CountingSet(set):
    lookups = 0

    def __contains__(self, item: object) -> bool:
        _CountingSet.lookups += 1
        return super().__contains__(item)


def test_fresh_ids_are_linear() -> None:
    ex = _Expander.__new__(_Expander)
    ex.counters = {}
    taken = _CountingSet({"relu3"})
    names = []
    for _ in range(20_000):
        nid = ex.fresh("relu", taken)
        taken.add(nid)
        names.append(nid)
    assert names[:5] == ["relu", "relu1", "relu2", "relu4", "relu5"]  # the numbering anonymous nodes always had
    assert _CountingSet.lookups < 3 * 20_000  # quadratic search made ~2 * 10^8


def test_many_anonymous_nodes_validate(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(HEAD + "graph:\n" + "  - relu\n" * 20_000)
    res = compile_spec(spec)
    assert len(res.graph.nodes) == 20_000 and "relu19999" in res.graph.nodes


def test_example_input_only_when_a_target_needs_it(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text("archc: 1\nname: t\ninputs:\n  x: [B, 3, 20000, 20000]\ngraph:\n  - {op: conv2d, out: 8, kernel: 3}\n")
    prep = prepare(spec, CompileOptions(max_elements=10**8))
    build_artifact(prep, "pytorch", tmp_path / "t.py")
    assert prep._inputs is None  # a 1.2 GB example input was built for nothing before
    with pytest.raises(ArchcError, match="the example input 'x' \\(1, 3, 20000, 20000\\) would hold 1,200,000,000 elements"):
        build_artifact(prep, "torchscript", tmp_path / "t.pt")


def test_model_above_the_size_limit_is_refused_before_it_is_built(tmp_path: Path) -> None:
    spec = tmp_path / "t.yaml"
    spec.write_text(HEAD + "graph:\n  - {op: conv2d, out: 1000000000, kernel: 3}\n")
    with pytest.raises(ArchcError, match="the model 't' would hold 37,000,000,000 elements.*") as exc:
        compile_spec(spec, CompileOptions(pipeline="deploy"))
    assert "--max-elements 37000000000" in (exc.value.hint or "")
    prep = prepare(spec, CompileOptions(max_elements=1000))
    with pytest.raises(ArchcError, match="above the limit of 1,000"):
        build_artifact(prep, "torchscript", tmp_path / "t.pt")
