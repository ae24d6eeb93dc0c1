"""Structural before/expected tests of every rewrite rule, written in the spec language.

A case runs one pass on a ``before`` spec and compares the result with an ``expected`` spec by
their canonical printouts (ops, attrs with padding resolved, edges, types, block bodies). Must-not-fire
cases check that the graph is unchanged and that ``archc explain`` names the failing condition.
The cases live in :mod:`archc._docgen.pass_examples` (docs/passes.md shows them); every graph they
involve also round-trips through the spec printer (:func:`archc.ir.printer.spec_text`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archc.ir.printer import spec_text, yaml_value
from archc.ir.verify import verify
from archc.passes.base import PASSES, RulePass
from archc.passes.explain import explain
from tests.numerics.pass_cases import FIRE, NO_FIRE, FireCase, NoFireCase, canon, graph_of, run_named


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids thread thrashing on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rules_of(pass_name: str) -> set[str]:
    p = PASSES[pass_name]
    return {r.name for r in p.rules} if isinstance(p, RulePass) else set()


def test_every_rule_has_a_firing_case() -> None:
    rules = set().union(*(_rules_of(p) for p in PASSES))
    covered = {c.rule for c in FIRE}
    assert rules <= covered, f"rules without a before/expected case: {sorted(rules - covered)}"
    assert set(PASSES) <= {c.pass_name for c in FIRE}, "every pass needs a before/expected case (docs/passes.md shows it)"


def test_cases_name_real_passes_and_rules() -> None:
    for c in [*FIRE, *NO_FIRE]:
        assert c.pass_name == "deploy" or c.rule in _rules_of(c.pass_name), f"{c.id}: no rule '{c.rule}' in '{c.pass_name}'"
    ids = [c.id for c in [*FIRE, *NO_FIRE]]
    assert len(ids) == len(set(ids)), "case ids are the names of their example specs: keep them unique"


def test_canon_sees_differences() -> None:
    a = graph_of("inputs: {x: [B, 4, 6, 6]}\ngraph:\n  - c: {op: conv2d, out: 4, kernel: 3}\n")
    b = graph_of("inputs: {x: [B, 4, 6, 6]}\ngraph:\n  - c: {op: conv2d, out: 4, kernel: 3, padding: 1}\n")
    c = graph_of("inputs: {x: [B, 4, 6, 6]}\ngraph:\n  - c: {op: conv2d, out: 4, kernel: 3, bias: false}\n")
    d = graph_of("inputs: {x: [B, 4, 6, 6]}\ngraph:\n  - d: {op: conv2d, out: 4, kernel: 3}\n")
    assert canon(a) == canon(b)  # default padding is the resolved padding
    assert canon(a) != canon(c)
    assert canon(a) != canon(d)


@pytest.mark.parametrize("case", FIRE, ids=lambda c: f"{c.rule}-{c.id}")
def test_rule_fires(case: FireCase) -> None:
    before = graph_of(case.before, case.id)
    text_before = canon(before)
    after, _, rewrites = run_named(before, case.pass_name)
    assert rewrites > 0
    verify(after)
    expected = graph_of(case.expected, case.id)
    assert canon(after) == canon(expected)
    assert canon(before) == text_before, "the pass mutated its input graph"
    # a second run finds nothing left to rewrite
    again, _, rewrites2 = run_named(after, case.pass_name)
    assert rewrites2 == 0
    assert canon(again) == canon(expected)


@pytest.mark.parametrize("case", [c for c in FIRE if c.pass_name != "deploy"], ids=lambda c: f"{c.rule}-{c.id}")
def test_explain_says_fired(case: FireCase) -> None:
    g = graph_of(case.before, case.id)
    text = explain(g, case.pass_name)
    assert f": {case.rule} fired" in text, text


@pytest.mark.parametrize("case", NO_FIRE, ids=lambda c: f"{c.rule}-{c.id}")
def test_rule_does_not_fire(case: NoFireCase) -> None:
    before = graph_of(case.before, case.id)
    after, _, rewrites = run_named(before, case.pass_name)
    assert rewrites == 0
    assert canon(after) == canon(before)
    text = explain(before, case.pass_name)
    refused = [ln for ln in text.splitlines() if f": {case.rule} refused: " in ln]
    assert any(case.reason in ln for ln in refused), f"explain does not name '{case.reason}':\n{text}"
    assert f"{case.rule} fired" not in text


def test_explain_unknown_pass_suggests() -> None:
    from archc.diagnostics import PassError

    g = graph_of("inputs: {x: [B, 4, 6, 6]}\ngraph:\n  - r: relu\n")
    with pytest.raises(PassError, match="unknown pass 'fold_bm'") as exc:
        explain(g, "fold_bm")
    assert "fold_bn" in exc.value.render()


def test_cli_explain_names_the_condition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from archc.cli import main

    case = next(c for c in NO_FIRE if c.id == "bn_into_zero_padded_conv")
    spec = tmp_path / "padded.yaml"
    spec.write_text(f"archc: 1\nname: padded\n{textwrap.dedent(case.before).strip()}\n")
    assert main(["explain", str(spec), "--pass", "fold_bn"]) == 0
    out = capsys.readouterr().out
    assert "padded/bn: fold_bn_into_next refused: 'conv' zero-pads its input (padding (1, 1))" in out, out
    assert "padded/bn: fold_bn_into_prev refused: its input 'x' is a graph input, not a conv" in out, out


# -- the spec printer (IR → spec) on every case ------------------------------------------------------


def _unnamed_blocks(text: str) -> str:
    """A canonical printout without block-definition names (the printer names each distinct body)."""
    return re.sub(r"<[A-Za-z_][A-Za-z0-9_]*>", "<>", text)


@pytest.mark.parametrize("case", [*FIRE, *NO_FIRE], ids=lambda c: c.id)
def test_printed_spec_round_trips(case: FireCase | NoFireCase) -> None:
    before = graph_of(case.before, case.id)
    graphs = [before] + ([run_named(before, case.pass_name)[0]] if isinstance(case, FireCase) else [])
    for g in graphs:
        text = spec_text(g)
        again = graph_of(text, case.id)
        assert _unnamed_blocks(canon(again)) == _unnamed_blocks(canon(g)), text
        assert spec_text(again) == text


def test_printer_splits_blocks_by_body_and_writes_varying_repeats() -> None:
    g = graph_of("""
        inputs: {x: [B, 4, 6, 6]}
        blocks:
          pw:
            params: {c: int}
            graph:
              - conv: {op: conv2d, out: "${c}", kernel: 1}
        graph:
          - a: {op: pw, c: 8}
          - b: {op: pw, c: 4}
          - d: {op: dropout, repeat: 3, p: "${0.1 * i}"}
          - two: {op: chunk, chunks: 2, dim: 1, names: [l, r]}
          - s: {op: add, in: [two.r, two.l]}
        outputs: [s, a]
        """)
    text = spec_text(g)
    assert "  pw:\n" in text and "  pw_2:\n" in text
    assert '- d: {op: dropout, repeat: 3, p: "${[0.0, 0.1, 0.2][i]}"}' in text
    assert "- s: {op: add, in: [two.r, two.l]}" in text
    assert "outputs: [s, a]" in text
    assert _unnamed_blocks(canon(graph_of(text))) == _unnamed_blocks(canon(g))


def test_yaml_value_reads_back() -> None:
    import yaml

    for v in (1e-05, 0.001, 2.5e20, "reflect", "yes", "a b", True, None, [1, [2, 3]], {"k": 1}):
        assert yaml.safe_load(f"v: {yaml_value(v)}")["v"] == v


def test_parallel_merge_doubles_only_the_params_that_set_the_width() -> None:
    """``hidden`` sets the merged width; ``dim`` has the same value here but sets the output, and must stay."""
    g = graph_of("""
        inputs: {x: [B, 5, 8]}
        blocks:
          mlp:
            params: {dim: int, hidden: int}
            graph:
              - fc1: {op: linear, out: "${hidden}"}
              - act: gelu
              - fc2: {op: linear, out: "${dim}"}
        graph:
          - ffn_a: {op: mlp, dim: 8, hidden: 8}
          - ffn_b: {op: mlp, in: x, dim: 8, hidden: 8}
          - xa: {op: add, in: [x, ffn_a]}
          - x2: {op: add, in: [xa, ffn_b]}
        """)
    out, _, rewrites = run_named(g, "merge_parallel_blocks")
    assert rewrites == 1
    merged = out.nodes["ffn_a"]
    assert dict(merged.params) == {"dim": 8, "hidden": 16}
    assert merged.body is not None and merged.body.nodes["fc1"].attrs["out"] == 16
