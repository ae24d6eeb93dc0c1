"""The ``scaling:`` declaration of a spec: what it accepts, and errors located at the offending YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.diagnostics import SpecError
from archc.scaling import DEFAULT_ROUNDING, check_values, load_scaling, scale
from archc.spec.document import load_spec_doc, resolve_params

HERE = Path(__file__).resolve().parent
TINY = HERE / "fixtures" / "tiny.yaml"
BODY = TINY.read_text().split("scaling:")[0]
# the scaling section starts on this (1-based) line of every text built by _spec()
LINE = BODY.count("\n") + 1


def _spec(scaling: str | None) -> str:
    return BODY if scaling is None else BODY + "scaling:" + scaling


def _doc(text: str, name: str = "case.yaml"):  # noqa: ANN202
    return load_spec_doc(HERE / "fixtures" / name, text=text)


def _error(scaling: str | None) -> SpecError:
    with pytest.raises(SpecError) as ei:
        load_scaling(_doc(_spec(scaling)))
    return ei.value


def test_tiny_declaration() -> None:
    decl = load_scaling(load_spec_doc(TINY))
    assert [(t.dim, t.param, t.kind) for t in decl.targets] == [
        ("depth", "depths", "value"), ("width", "stem", "value"), ("width", "widths", "value"),
        ("group_width", "group_width", "value"), ("resolution", "img", "value")]
    assert decl.targets[3].divides == "widths"
    assert decl.rounding == DEFAULT_ROUNDING and decl.rule is None


def test_multiplier_and_rounding_and_rule() -> None:
    text = _spec("\n  width: {multiplier: group_width}\n  depth: [depths]\n  rounding: {width: 16, resolution: 8}\n"
                 "  rule: d1_w4\n")
    decl = load_scaling(_doc(text))
    assert {(t.dim, t.param, t.kind) for t in decl.targets} == {("width", "group_width", "multiplier"),
                                                                 ("depth", "depths", "value")}
    assert decl.rounding["width"] == 16 and decl.rounding["resolution"] == 8 and decl.rounding["depth"] == 1
    assert decl.rule is not None and decl.rule.canonical == "d1_w4"


def test_no_scaling_section() -> None:
    err = _error(None)
    assert "declares no scaling" in err.message and "'tiny'" in err.message
    assert (err.loc.line, err.loc.col) == (2, 1)  # the top-level mapping (after the comment line)
    assert "scaling:" in (err.hint or "")


def test_specs_without_scaling_name_the_file(tmp_path: Path) -> None:
    from archc.cli import main

    root = Path(__file__).resolve().parents[2]
    with pytest.raises(SpecError) as ei:
        scale(root / "specs" / "vit.yaml", 2.0)
    assert ei.value.loc is not None and ei.value.loc.path.endswith("vit.yaml") and ei.value.loc.line >= 1
    assert main(["scale", str(root / "specs" / "vit.yaml"), "--flops", "2", "-o", str(tmp_path / "v.yaml")]) == 1
    assert not (tmp_path / "v.yaml").exists()


@pytest.mark.parametrize("scaling,line,col,fragment,hint", [
    (" {depth: depths, widht: widths}\n", 0, 26, "unknown key 'widht' in 'scaling'", "width"),
    ("\n  depth: depth\n", 1, 10, "'depth' is not a param of spec 'tiny'", "depths"),
    ("\n  width: [widths, stemm]\n", 1, 19, "'stemm' is not a param", "stem"),
    ("\n  width: []\n", 1, 10, "empty list", None),
    ("\n  width: widths\n  depth: widths\n", 2, 10, "'widths' is scaled twice", None),
    ("\n  width: {param: widths, divides: stem}\n", 1, 26, "'divides' belongs to a group_width", None),
    ("\n  width: {param: widths, multiplier: stem}\n", 1, 10, "exactly one of 'param' and 'multiplier'", None),
    ("\n  width: {parm: widths}\n", 1, 11, "unknown key 'parm'", "param"),
    ("\n  width: 3\n", 1, 10, "must be a param name or a mapping", None),
    ("\n  rounding: {width: 0}\n  width: widths\n", 1, 21, "rounding of width must be a positive integer", None),
    ("\n  rounding: {widths: 8}\n  width: widths\n", 1, 14, "unknown key 'widths' in 'scaling.rounding'", "width"),
    ("\n  width: widths\n  rule: d1_wx\n", 2, 9, "bad term 'wx'", None),
    ("\n  rounding: {width: 8}\n", 0, 1, "declares no depth, width", None),
    (" [depths]\n", 0, 10, "'scaling' must be a mapping", None),
])
def test_declaration_errors_are_located(scaling: str, line: int, col: int, fragment: str, hint: str | None) -> None:
    err = _error(scaling)
    assert fragment in err.message
    assert err.loc is not None and (err.loc.line, err.loc.col) == (LINE + line, col), err.render()
    if hint:
        assert hint in (err.hint or "")
    assert err.render().startswith(f"{err.loc.path}:{LINE + line}:{col}: error:")


@pytest.mark.parametrize("scaling,fragment", [
    ("\n  width: img\n  depth: stem\n", None),  # both ints: fine
    ("\n  width: {multiplier: widths}\n", "multiplier param 'widths' must be a positive number"),
    ("\n  group_width: {param: group_width, divides: img}\n  width: widths\n", None),
    ("\n  group_width: {param: widths, divides: depths}\n  width: stem\n", None),
])
def test_value_checks(scaling: str, fragment: str | None) -> None:
    doc = _doc(_spec(scaling))
    decl = load_scaling(doc)
    _, env = resolve_params(doc)
    if fragment is None:
        check_values(decl, env)
        return
    with pytest.raises(SpecError) as ei:
        check_values(decl, env)
    assert fragment in ei.value.message
    assert ei.value.loc is not None and ei.value.loc.line == LINE + 1


def test_value_of_wrong_kind_is_located_at_the_declaration() -> None:
    text = BODY.replace("  img: 32\n", "  img: 32\n  name_: abc\n") + "scaling:\n  width: name_\n"
    with pytest.raises(SpecError) as ei:
        scale(HERE / "fixtures" / "case.yaml", 2.0, text=text)
    err = ei.value
    assert "width param 'name_' must be an integer" in err.message
    assert (err.loc.line, err.loc.col) == (LINE + 2, 10)


def test_rule_needs_a_declared_dimension() -> None:
    text = _spec("\n  width: widths\n")
    with pytest.raises(SpecError) as ei:
        scale(HERE / "fixtures" / "case.yaml", 2.0, "r", text=text)
    assert "scales resolution" in ei.value.message and ei.value.loc.line == LINE
    # a rule with some declared dimensions works, with a note for the missing ones
    res = scale(HERE / "fixtures" / "case.yaml", 2.0, "dw", text=_spec("\n  width: [stem, widths]\n"))[0]
    assert any("depth is not declared" in n for n in res.notes)
