"""User-facing failures: one diagnostic, no traceback, no output file.

Every malformed spec under ``tests/fixtures/bad`` breaks exactly one rule. ``archc compile`` (and
``archc validate``) must exit 1 and print::

    FILE:LINE:COL: error: MESSAGE
     LINE | <the source line>
          |      ^
      help: HINT

where LINE:COL is the position of the offending value, MESSAGE names the broken rule and HINT
(where one exists) suggests the fix; ``-o out.py`` must not be created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from archc.cli import main
from archc.diagnostics import SourceLoc, SpecError, register_source, suggest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bad"


@dataclass(frozen=True)
class Case:
    id: str
    fixture: str
    line: int
    col: int
    #: fragments of the headline's message that name the rule and the offending value
    rule: tuple[str, ...]
    #: fragment of the 'help:' line; None where archc offers no hint for this rule
    hint: str | None = None
    args: tuple[str, ...] = ()


CASES = [
    Case("yaml_syntax", "yaml_syntax.yaml", 7, 8, ("YAML syntax error", "expected ',' or '}'"),
         "while parsing a flow mapping that starts at line 6, column 11"),
    Case("unknown_op", "unknown_op.yaml", 6, 16, ("unknown op 'conv2'",), "did you mean 'conv2d'?"),
    Case("unknown_op_short_form", "unknown_op_short.yaml", 7, 10, ("unknown op 'gleu'",), "did you mean 'gelu'?"),
    Case("attr_type", "attr_type.yaml", 6, 41, ("node 'stem' (conv2d)", "attribute 'kernel' must be an integer", "'three'")),
    Case("missing_input", "missing_input.yaml", 7, 25, ("unknown input 'nonexistent'",),
         "refer to an earlier node or a graph input"),
    Case("forward_reference", "forward_ref.yaml", 7, 31,
         ("input 'later' refers to a node defined later (line 8)", "cannot contain cycles"),
         "move 'later' above this node"),
    Case("self_reference", "self_ref.yaml", 7, 31, ("node 'mix' takes its own output as input (a cycle)",),
         "nodes above it"),
    Case("shape_mismatch", "shape_mismatch.yaml", 8, 24,
         ("node 'sum' (add)", "do not broadcast", "f32[B,16,32,32], f32[B,32,32,32]")),
    Case("duplicate_key", "duplicate_key.yaml", 6, 44, ("duplicate key 'out' (first defined at line 6)",),
         "remove or rename one of the two entries"),
    Case("python_tag", "python_tag.yaml", 6, 11, ("YAML tag 'tag:yaml.org,2002:python/object:builtins.dict' is not allowed",),
         "remove the tag"),
    Case("expr_call", "expr_call.yaml", 6, 29, ("call to 'open' is not allowed in expressions",), "allowed functions: abs"),
    Case("expr_attribute", "expr_attribute.yaml", 6, 41, ("attribute access '.__class__' is not allowed",),
         "whitelisted functions"),
    Case("expr_unknown_name", "expr_unknown_name.yaml", 8, 29, ("unknown name 'widht'",), "did you mean 'width'?"),
    Case("expr_unterminated", "unterminated_expr.yaml", 8, 29, ("unterminated '${'",), "close the expression with '}'"),
    Case("negative_channels", "negative_channels.yaml", 6, 29, ("attribute 'out' must be >= 1, got -16",)),
    Case("huge_repeat", "huge_repeat.yaml", 7, 30, ("'repeat' of 1000000000 exceeds the limit of 10000",),
         "check the repeat expression"),
    Case("import_outside_tree", "import_outside.yaml", 3, 11,
         ("import '../../../../../../../../etc/passwd.yaml' resolves outside the project tree",),
         "must stay inside the project"),
    Case("unknown_attr", "unknown_attr.yaml", 6, 44, ("unknown attribute 'strid' for op 'conv2d'",), "did you mean 'stride'?"),
    Case("unknown_block_param", "unknown_block_param.yaml", 12, 31, ("block 'unit' has no param 'dimm'",),
         "did you mean 'dim'?"),
    Case("missing_block_param", "missing_block_param.yaml", 12, 5, ("block 'unit' needs param 'dim'",), "add 'dim: ...'"),
    Case("unknown_variant", "variants.yaml", 5, 1, ("unknown variant 'smal' of 'tiny'",), "did you mean 'small'?",
         ("--variant", "smal")),
    Case("override_unknown_param", "variants.yaml", 3, 1, ("-p widht: unknown param 'widht'",), "did you mean 'width'?",
         ("-p", "widht=3")),
    Case("override_without_value", "variants.yaml", 3, 1, ("bad param override 'width'",), "write -p name=value",
         ("-p", "width")),
    Case("override_bad_index", "variants.yaml", 6, 18, ("-p width.3: cannot index width with 3",), "'width' is 8",
         ("-p", "width.3=1", "--variant", "small")),
    Case("multi_output_without_index", "multi_output.yaml", 8, 25, ("'halves' has 2 outputs; say which one",),
         "use 'halves.0' … 'halves.1'"),
    Case("unknown_top_key", "unknown_top_key.yaml", 5, 1, ("unknown key 'grpah' in the spec",), "did you mean 'graph'?"),
    Case("missing_version", "missing_version.yaml", 1, 1, ("missing format version 'archc: 1'",), "add 'archc: 1' at the top"),
    Case("alias_bomb", "alias_bomb.yaml", 11, 17, ("YAML alias '*l4' expands the document to more than 200000 values",),
         "instead of aliases"),
    Case("division_by_zero", "division_by_zero.yaml", 8, 29, ("in '${width // 0}': division by zero",)),
    Case("groups_do_not_divide", "groups.yaml", 7, 50, ("groups=4 must divide input channels (18)",)),
    Case("keyword_node_id", "keyword_id.yaml", 7, 5, ("node id 'class' is a Python keyword",), "rename it, e.g. 'class_'"),
    Case("module_attr_node_id", "module_attr_id.yaml", 7, 5, ("node id 'forward' clashes with a name used by generated modules",),
         "rename it, e.g. 'forward_'"),
    Case("empty_file", "empty.yaml", 1, 1, ("the document is empty",), "write a YAML mapping"),
    Case("variant_name_not_a_string", "variant_name_not_string.yaml", 6, 3, ("variant name 1 must be a string",),
         "quote it: '1'"),
    Case("non_string_attribute_name", "non_string_attr.yaml", 6, 44, ("unknown attribute 'True' for op 'conv2d'",),
         "'conv2d' takes: out, kernel"),
    Case("repeat_when_uses_i", "repeat_when_uses_i.yaml", 10, 42, ("unknown name 'i'",),
         "'when' is evaluated once for the whole repeat"),
]


@pytest.fixture(autouse=True)
def _in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the fixture folder, so diagnostics name files the way a user typed them."""
    monkeypatch.chdir(FIXTURES)
    monkeypatch.delenv("ARCHC_DEBUG", raising=False)


def _source_line(fixture: str, line: int) -> str:
    lines = (FIXTURES / fixture).read_text(encoding="utf-8").splitlines()
    return lines[line - 1] if line <= len(lines) else ""


def _check_diagnostic(err: str, case: Case) -> None:
    assert "Traceback" not in err
    lines = err.rstrip("\n").split("\n")
    head = lines[0]
    assert head.startswith(f"{case.fixture}:{case.line}:{case.col}: error: "), err
    for fragment in case.rule:
        assert fragment in head, err
    assert sum("error:" in ln for ln in lines) == 1, err
    num = str(case.line)
    assert lines[1] == f" {num} | {_source_line(case.fixture, case.line)}", err
    assert lines[2] == f" {' ' * len(num)} | {' ' * (case.col - 1)}^", err
    if case.hint is not None:
        assert len(lines) == 4, err
        assert lines[3].startswith("  help: ") and case.hint in lines[3], err
    else:
        assert len(lines) == 3, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_compile_reports_one_located_diagnostic(case: Case, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "out.py"
    code = main(["compile", case.fixture, "-o", str(out_file), *case.args])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    _check_diagnostic(err, case)
    assert not out_file.exists()
    assert list(tmp_path.iterdir()) == []  # not even a temporary file


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validate_reports_the_same_diagnostic(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", case.fixture, *case.args])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    _check_diagnostic(err, case)


def test_missing_file_names_the_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "out.py"
    code = main(["compile", "does_not_exist.yaml", "-o", str(out_file)])
    _, err = capsys.readouterr()
    assert code == 1
    # a whole-file failure has no line to quote: just the path, the message and the hint
    assert err.splitlines() == ["does_not_exist.yaml: error: file not found", "  help: check the path"]
    assert not out_file.exists()


def test_failed_compile_keeps_an_existing_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "out.py"
    out_file.write_text("# previous build\n")
    assert main(["compile", "unknown_op.yaml", "-o", str(out_file)]) == 1
    capsys.readouterr()
    assert out_file.read_text() == "# previous build\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.py"]


def test_fixtures_are_otherwise_valid(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The base spec the fixtures are cut from compiles, so each fixture breaks only its own rule."""
    good = tmp_path / "good.yaml"
    good.write_text((FIXTURES / "variants.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    out_file = tmp_path / "good.py"
    assert main(["compile", str(good), "-o", str(out_file), "--variant", "small", "-p", "width=12"]) == 0
    capsys.readouterr()
    assert out_file.exists()


def test_every_fixture_is_covered() -> None:
    used = {c.fixture for c in CASES}
    assert {p.name for p in FIXTURES.glob("*.yaml")} == used


def test_python_m_archc_end_to_end(tmp_path: Path) -> None:
    """The real entry point: exit status 1, the diagnostic on stderr, no traceback, no file."""
    out_file = tmp_path / "out.py"
    proc = subprocess.run(
        [sys.executable, "-m", "archc", "compile", "unknown_op.yaml", "-o", str(out_file)],
        cwd=FIXTURES, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "ARCHC_DEBUG"},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "unknown_op.yaml:6:16: error: unknown op 'conv2'",
        " 6 |   - stem: {op: conv2, out: 16, kernel: 3}",
        "   |                ^",
        "  help: did you mean 'conv2d'?",
    ]
    assert not out_file.exists()



# -- rendering --------------------------------------------------------------------------------------

def test_render_headline_source_caret_and_help() -> None:
    register_source("mem.yaml", "archc: 1\ngraph:\n  - stem: {op: conv2, out: 48}\n")
    err = SpecError("unknown op 'conv2'", SourceLoc("mem.yaml", 3, 16), hint="did you mean 'conv2d'?")
    assert err.render().split("\n") == [
        "mem.yaml:3:16: error: unknown op 'conv2'",
        " 3 |   - stem: {op: conv2, out: 48}",
        "   |                ^",
        "  help: did you mean 'conv2d'?",
    ]
    assert str(err) == "mem.yaml:3:16: error: unknown op 'conv2' (help: did you mean 'conv2d'?)"


def test_render_keeps_tabs_so_the_caret_lines_up() -> None:
    register_source("tabs.yaml", "a: [\tx]\n")
    lines = SpecError("bad", SourceLoc("tabs.yaml", 1, 6)).render().split("\n")
    assert lines[1] == " 1 | a: [\tx]"
    assert lines[2] == "   |     \t^"  # 'a: [' as spaces, the tab kept


def test_render_at_the_end_of_the_file() -> None:
    register_source("eof.yaml", "a: [1,\n")
    assert SpecError("unexpected end", SourceLoc("eof.yaml", 2, 1)).render().split("\n")[1:] == [" 2 | ", "   | ^"]


def test_whole_file_location_has_no_line() -> None:
    loc = SourceLoc("x.yaml", 0, 0)
    assert str(loc) == "x.yaml"
    assert SpecError("file not found", loc, hint="check the path").render() == "x.yaml: error: file not found\n  help: check the path"


def test_without_location() -> None:
    assert SpecError("boom").render() == "error: boom"


def test_suggest_tolerates_any_scalar() -> None:
    assert suggest("conv2", ["conv2d", "gelu"]) == "did you mean 'conv2d'?"
    assert suggest(True, ["out", "kernel"]) is None
    assert suggest("Tru", [True, 1, None, "x"]) == "did you mean 'True'?"
    assert suggest("zzz", ["conv2d"]) is None
