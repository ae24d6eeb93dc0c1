"""Every error in a search-space file is a SearchSpaceError at file:line:col; the CLI prints it and exits 1."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from archc.cli import main
from archc.diagnostics import SearchSpaceError
from archc.search import load_space

from .conftest import TINY, write_space

HEAD = """\
archc: 1
base: {base}
"""
OBJ = "objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, data: {{source: npz, path: data.npz}}, train: {{epochs: 1}}}}\n"


def _pos(text: str, token: str) -> tuple[int, int]:
    i = text.index(token)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


CASES = [
    # (body after the head, token the caret must point at, message fragment)
    ("colour: red\n" + OBJ, "colour", "unknown key 'colour' in the search space"),
    ("choices:\n  widht: {{type: int, low: 4, high: 8}}\n" + OBJ, "widht", "sets nothing"),
    ("choices:\n  width: {{type: int, low: 8, high: 4}}\n" + OBJ, "4}", "high (4) is below low (8)"),
    ("choices:\n  width: {{type: int, low: 4, high: 10, step: 4}}\n" + OBJ, "4}", "not a whole number of steps"),
    ("choices:\n  width: {{type: float, low: 0.0, high: 1.0, log: true}}\n" + OBJ, "0.0", "log range needs low > 0"),
    ("choices:\n  width: {{type: categorical}}\n" + OBJ, "{{type: cat", "needs 'values'"),
    ("choices:\n  width: {{type: categorical, values: [4, 8, 4]}}\n" + OBJ, "4]", "appears twice"),
    ("choices:\n  width: {{type: integer, low: 1, high: 2}}\n" + OBJ, "integer", "unknown type 'integer'"),
    ("choices:\n  act: {{type: op, values: [relu, gelux]}}\n" + OBJ, "gelux", "unknown op or block 'gelux'"),
    ("choices:\n  width: {{type: int, low: 4, high: 8, when: {{depht: 2}}}}\n" + OBJ, "depht", "not a choice declared before it"),
    ("choices:\n  depth: [1, 2]\n  width: {{type: int, low: 4, high: 8, when: {{depth: 3}}}}\n" + OBJ, "3}}}}", "3 is not a value of choice 'depth'"),
    ("choices:\n  w: [4, 8]\nparams:\n  width: '${{w * q}}'\n" + OBJ, "'${{w", "uses 'q', which is not a choice"),
    ("params:\n  widths: 4\n" + OBJ, "widths", "unknown param 'widths'"),
    ("objectives: {{val_accuracy: maximize}}\nevaluator: {{task: classification, train: {{}}}}\n", "val_accuracy", "unknown objective metric 'val_accuracy'"),
    ("objectives: {{val_acc: maximise}}\nevaluator: {{task: classification, train: {{}}}}\n", "maximise", "must be minimize or maximize"),
    ("objectives: {{naswot: maximize}}\n", "naswot", "unknown objective metric 'naswot'"),
    ("constraints: {{flops: 10}}\n" + OBJ, "flops", "unknown constraint 'flops'"),
    ("constraints: {{params: -1}}\n" + OBJ, "-1", "must be positive"),
    ("study: {{sampler: tpee}}\n" + OBJ, "tpee", "unknown name 'tpee'"),
    ("study: {{sampler: {{name: tpe, n_startup: 3}}}}\n" + OBJ, "n_startup", "sampler 'tpe' has no option 'n_startup'"),
    ("study: {{pruner: median}}\nobjectives: {{val_acc: maximize, params: minimize}}\nevaluator: {{task: classification, train: {{}}}}\n",
     "median", "pruning needs a single objective"),
    ("study: {{sampler: grid}}\nchoices:\n  lr: {{type: float, low: 0.1, high: 1.0, target: null}}\nparams: {{width: '${{int(lr * 8)}}'}}\n" + OBJ,
     "lr:", "float choice 'lr' has no 'step'"),
    ("study: {{enqueue: [nope]}}\n" + OBJ, "nope", "unknown point 'nope'"),
    ("points: {{p: {{width: 5}}}}\nchoices: {{width: [4, 8]}}\n" + OBJ, "5}", "5 is not a value of choice 'width'"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, data: {{source: npz, path: missing.npz}}, train: {{}}}}\n",
     "missing.npz", "does not exist"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{task: classify, train: {{}}}}\n", "classify", "unknown task 'classify'"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, train: {{epochs: 0}}}}\n", "0}", "must be positive"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{train: {{epochs: 1}}}}\n", "{{train", "needs a 'task'"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, train: {{ema: 1.5}}}}\n", "1.5", "'ema' is a decay below 1"),
    ("cells:\n  c1: {{nodes: 2, ops: [skip, conv], edges: width, output: depth}}\n" + OBJ, "[skip", "has no 'none'"),
    ("cells:\n  c1: {{nodes: 2, ops: [none, conv], edges: widths, output: depth}}\n" + OBJ, "widths", "'widths' is not a param"),
    ("cells:\n  c1: {{nodes: 2, ops: [none, conv]}}\n" + OBJ, "{{nodes", "needs 'edges'"),
    ("objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, zero_cost: [naswot, snip], train: {{}}}}\n",
     "snip", "unknown zero-cost proxy 'snip'"),
]


@pytest.mark.parametrize("body,token,fragment", CASES, ids=[c[2][:40] for c in CASES])
def test_space_error_positions(tmp_path: Path, body: str, token: str, fragment: str) -> None:
    p = write_space(tmp_path, HEAD + body)
    text = p.read_text()
    with pytest.raises(SearchSpaceError) as info:
        load_space(p)
    exc = info.value
    assert fragment in exc.message, exc.render()
    tok = token.replace("{{", "{").replace("}}", "}")
    line, col = _pos(text, tok)
    assert exc.loc is not None and (exc.loc.path, exc.loc.line, exc.loc.col) == (str(p), line, col), exc.render()


def test_missing_base_and_version(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("archc: 1\nobjectives: {params: minimize}\n")
    with pytest.raises(SearchSpaceError, match="needs 'base'") as info:
        load_space(p)
    assert str(info.value.loc) == f"{p}:1:1"
    p.write_text("archc: 2\nbase: x.yaml\n")
    with pytest.raises(SearchSpaceError, match="unsupported format version") as info:
        load_space(p)
    assert str(info.value.loc) == f"{p}:1:8"
    p.write_text("archc: 1\nbase: nothere.yaml\nobjectives: {params: minimize}\n")
    with pytest.raises(SearchSpaceError, match="does not exist") as info:
        load_space(p)
    assert str(info.value.loc) == f"{p}:2:7"


def test_yaml_syntax_error_is_a_search_space_error(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("archc: 1\nbase: [unclosed\n")
    with pytest.raises(SearchSpaceError, match="YAML syntax error") as info:
        load_space(p)
    assert info.value.loc is not None and info.value.loc.path == str(p) and info.value.loc.line >= 2


def test_invalid_base_spec_points_at_base(tmp_path: Path) -> None:
    bad = tmp_path / "bad_spec.yaml"
    bad.write_text("archc: 1\ninputs: {x: [B, 3, 8, 8]}\ngraph: [{op: nosuchop}]\nblocks: 3\n")
    p = tmp_path / "s.yaml"
    p.write_text("archc: 1\nbase: bad_spec.yaml\nobjectives: {params: minimize}\n")
    with pytest.raises(SearchSpaceError, match="base spec 'bad_spec.yaml' is invalid") as info:
        load_space(p)
    assert str(info.value.loc) == f"{p}:2:7"


def test_cli_reports_one_line_diagnostic_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_space(tmp_path, HEAD + "choices:\n  width: {{type: int, low: 8, high: 4}}\n" + OBJ)
    rc = main(["search", str(p), "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    first = err.splitlines()[0]
    assert first.startswith(f"{p}:4:36: ") and "error: choice 'width': high (4) is below low (8)" in first
    assert not (tmp_path / "run" / "study.log").exists()


def test_shipped_spaces_load() -> None:
    root = Path(__file__).resolve().parents[2]
    for p in sorted((root / "search_spaces").glob("*.yaml")):
        space = load_space(p)
        assert space.objectives, p
        for name in space.study.enqueue:
            assert space.materialize(space.point(name)).reason is None


def test_ema_reaches_the_trainer_and_changes_the_digest_only_when_set(tmp_path: Path) -> None:
    body = "objectives: {{val_acc: maximize}}\nevaluator: {{task: classification, train: {{epochs: 1EXTRA}}}}\n"
    plain = load_space(write_space(tmp_path, HEAD + body.replace("EXTRA", "")))
    ema = load_space(write_space(tmp_path, HEAD + body.replace("EXTRA", ", ema: 0.99")))
    assert plain.evaluator.train.ema is None and ema.evaluator.train.ema == 0.99
    assert plain.evaluator.digest() != ema.evaluator.digest()
    # without ema the digest is the one earlier versions computed: their studies and run logs still resume
    assert plain.evaluator.digest() == replace(ema.evaluator, train=replace(ema.evaluator.train, ema=None)).digest()
    from archc.train.config import TrainOptions

    assert TrainOptions.from_config(ema.evaluator.train).ema == 0.99


def test_tiny_fixture_is_used() -> None:
    assert TINY.exists()
    assert textwrap.dedent(HEAD).startswith("archc: 1")
