"""Scaling rules and rounding: pycls's rounding rules, the rule grammar and its positioned errors."""

from __future__ import annotations

import math

import pytest

from archc.diagnostics import ArchcError, SpecError
from archc.scaling import (
    make_compatible,
    parse_flops,
    parse_rule,
    round_depth,
    round_group_width,
    round_resolution,
    round_width,
)

# ----------------------------------------------------------------------------------------- rounding


@pytest.mark.parametrize("x,expected", [(0.2, 1), (0.49, 1), (1.4, 1), (1.6, 2), (2.5, 2), (3.5, 4), (7.7, 8), (0, 0)])
def test_depth_rounds_to_nearest_at_least_one(x: float, expected: int) -> None:
    assert round_depth(x) == expected


def test_depth_multiple() -> None:
    assert round_depth(5.1, 2) == 6 and round_depth(0.3, 2) == 2


@pytest.mark.parametrize("x,expected", [(1.0, 8), (3.9, 8), (11.9, 8), (12.1, 16), (19.9, 16), (20.1, 24), (58.3, 56),
                                        (2331.0, 2328)])
def test_width_nearest_multiple_of_8(x: float, expected: int) -> None:
    assert round_width(x) == expected
    assert expected % 8 == 0


def test_width_other_multiple() -> None:
    assert round_width(50, 16) == 48 and round_width(5, 16) == 16


@pytest.mark.parametrize("x,expected", [(0.3, 1), (1.4, 1), (1.6, 2), (2.4, 2), (2.6, 4), (5.4, 4), (5.6, 8), (11.4, 8),
                                        (12.1, 16), (16, 16), (27.4, 24), (28.1, 32), (100, 96)])
def test_group_width_rule(x: float, expected: int) -> None:
    """pycls: kept if ≤ 2, 4 if ≤ 5, else the nearest multiple of 8 (after rounding to an integer)."""
    assert round_group_width(x) == expected


@pytest.mark.parametrize("x,expected", [(224.0, 224), (225.9, 224), (226.1, 228), (240.5, 240), (1.0, 4), (317.9, 316)])
def test_resolution_multiple_of_4(x: float, expected: int) -> None:
    assert round_resolution(x) == expected
    assert expected % 4 == 0


def test_group_compatibility() -> None:
    ws, gs = make_compatible([24, 64, 152, 392], [16, 16, 16, 16])
    assert ws == [32, 64, 160, 384] and gs == [16, 16, 16, 16]  # pycls's RegNetX-400MF
    ws, g = make_compatible([96, 200], 24)
    assert g == 24 and all(w % 24 == 0 for w in ws) and ws == [96, 192]
    ws, g = make_compatible([8, 64], 16)  # a shared group width is bounded by the narrowest width
    assert g == 8 and ws == [8, 64]


# ----------------------------------------------------------------------------------------- rules


def _exps(text: str) -> tuple[float, float, float, float]:
    r = parse_rule(text)
    return r.d, r.w, r.g, r.r


def test_fast_is_d1_w8_g8_r1() -> None:
    fast = parse_rule("fast")
    assert fast.canonical == "d1_w8_g8_r1"
    assert _exps("fast") == pytest.approx((0.1, 0.4, 0.4, 0.05))
    assert _exps("d1_w8_g8_r1") == pytest.approx(_exps("fast"))
    assert _exps("dWr") == pytest.approx(_exps("fast"))
    assert fast.act_exponent == pytest.approx(0.6)
    assert _exps("fast:0.6") == pytest.approx((0.2, 0.3, 0.3, 0.1))


def test_every_rule_conserves_macs() -> None:
    for text in ("fast", "dW", "dwr", "d", "w", "r", "dw", "wr", "d1_w8_g8_r1", "d2_w3_r0.5", "efficientnet",
                 "efficientnet:1.3,1.05,1.2", "fast:0.5"):
        d, w, _, r = _exps(text)
        assert d + 2 * w + 2 * r == pytest.approx(1.0), text
        f = parse_rule(text).factors(8.0)
        assert f["depth"] * f["width"] ** 2 * f["resolution"] ** 2 == pytest.approx(8.0), text


def test_single_dimension_rules() -> None:
    assert _exps("d") == (1.0, 0.0, 0.0, 0.0)
    assert _exps("w") == (0.0, 0.5, 0.0, 0.0)
    assert _exps("r") == (0.0, 0.0, 0.0, 0.5)
    assert parse_rule("w").act_exponent == 0.5 and parse_rule("d").act_exponent == parse_rule("r").act_exponent == 1.0


def test_efficientnet_rule() -> None:
    r = parse_rule("efficientnet")
    total = math.log(1.2 * 1.1**2 * 1.15**2)
    assert (r.d, r.w, r.r) == pytest.approx((math.log(1.2) / total, math.log(1.1) / total, math.log(1.15) / total))
    assert r.act_exponent == pytest.approx(0.854, abs=1e-3)
    # φ = 1 is one EfficientNet step: d = α, w = β, r = γ
    f = r.factors(1.2 * 1.1**2 * 1.15**2)
    assert (f["depth"], f["width"], f["resolution"]) == pytest.approx((1.2, 1.1, 1.15))
    assert parse_rule("efficientnet:1.2,1.1,1.15").canonical == "efficientnet:1.2,1.1,1.15"


def test_dw_and_pycls_forms() -> None:
    assert parse_rule("dW").canonical == "d2_w8_g8"
    assert _exps("dW") == pytest.approx((0.2, 0.4, 0.4, 0.0))
    assert _exps("dwr") == pytest.approx((1 / 3, 1 / 6, 0.0, 1 / 6))
    assert _exps("d1_w1") == pytest.approx(_exps("dw"))
    assert _exps("w8_d1_r1_g8") == pytest.approx(_exps("fast"))  # term order does not matter


@pytest.mark.parametrize("text,col,fragment", [
    ("d1_wx_r1", 4, "bad term 'wx'"),
    ("d1_w8_d2", 7, "names 'd' twice"),
    ("x", 1, "bad term 'x'"),
    ("fastest", 1, "bad term 'fastest'"),
    ("dd", 2, "names 'd' twice"),
    ("g", 1, "scales neither depth, width nor resolution"),
    ("g8", 1, "zero weight"),
    ("d0_w0", 1, "zero weight"),
    ("fast:2", 6, "must be in (0, 1]"),
    ("fast:x", 6, "bad number 'x'"),
    ("efficientnet:1.2,1.1", 14, "takes 3 numbers"),
    ("efficientnet:1.2,abc,1.1", 18, "bad number 'abc'"),
    ("efficientnet:0.9,1,1", 14, "α·β²·γ²"),
    ("dwr:1", 4, "takes no ':' argument"),
    ("", 1, "non-empty"),
])
def test_bad_rules_point_into_the_string(text: str, col: int, fragment: str) -> None:
    with pytest.raises(SpecError) as ei:
        parse_rule(text)
    err = ei.value
    assert fragment in err.message
    assert err.loc is not None and (err.loc.path, err.loc.line, err.loc.col) == ("--rule", 1, col)
    assert err.hint
    rendered = err.render()
    assert f"--rule:1:{col}: error:" in rendered and "^" in rendered


def test_misspelt_named_rule_is_suggested() -> None:
    with pytest.raises(SpecError) as ei:
        parse_rule("efficientnt")
    assert "efficientnet" in (ei.value.hint or "")


@pytest.mark.parametrize("text,expected", [("2", [2.0]), ("2,4,8,16", [2.0, 4.0, 8.0, 16.0]), ("1.5x, 3", [1.5, 3.0])])
def test_parse_flops(text: str, expected: list[float]) -> None:
    assert parse_flops(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "two", "2,,4", "inf"])
def test_bad_flops(text: str) -> None:
    with pytest.raises(ArchcError, match="flops"):
        parse_flops(text)
