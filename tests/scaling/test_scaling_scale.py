"""Scaling a spec to MAC targets: rounding grid, closeness to the target, compile-ready outputs, the CLI."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml

from archc.cli import main
from archc.compiler import CompileOptions, build_graph, compile_spec
from archc.cost.model import graph_cost
from archc.scaling import fit_exponent, load_scaling, output_paths, parse_rule, scale, write_scaled
from archc.spec.document import load_spec_doc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TINY = HERE / "fixtures" / "tiny.yaml"
SPECS = ROOT / "specs"


def _within_rounding(res) -> bool:  # noqa: ANN001
    """The achieved MACs are no farther from the target than half the gap between the achievable neighbours."""
    return abs(math.log(res.mac_ratio / res.target)) <= math.log(1 + res.step) / 2 + 1e-9


@pytest.mark.parametrize("rule", ["fast", "dW", "dwr", "efficientnet", "w", "d", "r", "d1_w4_g2_r2"])
def test_tiny_family_on_the_rounding_grid(rule: str) -> None:
    for res in scale(TINY, [2, 4, 8], rule):
        v = res.values
        assert all(isinstance(d, int) and d >= 1 for d in v["depths"])
        assert all(w % 8 == 0 for w in [v["stem"], *v["widths"]])
        g = v["group_width"]
        assert g in (1, 2, 4) or g % 8 == 0
        assert all(w % g == 0 for w in v["widths"])
        assert v["img"] % 4 == 0
        assert _within_rounding(res), (rule, res.target, res.mac_ratio, res.step)


def test_plain_pycls_rounding() -> None:
    """calibrate='none' is pycls's scale-then-round at s' = S."""
    res = scale(TINY, 4.0, "fast", calibrate="none")[0]
    d, w, g, r = 4 ** 0.1, 4 ** 0.4, 4 ** 0.4, 4 ** 0.05
    assert res.factor == 4.0 and not res.trim
    assert res.values["depths"] == [max(1, round(x * d)) for x in (1, 2)]
    assert res.values["stem"] == max(1, round(16 * w / 8)) * 8
    assert res.values["img"] == round(32 * r / 4) * 4
    gw = round(8 * g)
    gw = gw if gw <= 2 else 4 if gw <= 5 else round(gw / 8) * 8
    assert res.values["group_width"] == gw
    assert res.values["widths"] == [max(gw, round(max(1, round(x * w / 8)) * 8 / gw) * gw) for x in (16, 32)]


def test_efficientnet_b0_fast_compiles_near_target(tmp_path: Path) -> None:
    res = scale(SPECS / "efficientnet.yaml", 2.0, "fast")[0]
    assert abs(res.error) < 0.02 and _within_rounding(res)
    out = write_scaled(res, tmp_path / "eff_x2.yaml")  # outside the project tree: imported blocks copied in
    text = out.read_text()
    assert "imports:" not in text and "mbconv:" in text and "conv_bn_act:" in text
    compiled = compile_spec(out)
    assert compiled.cost.macs == res.cost.macs and compiled.cost.params == res.cost.params
    assert compiled.graph.meta["variant"] == "b0_x2"
    applied = load_spec_doc(out).raw["scaling"]["applied"]
    assert applied["rule"] == "d1_w8_g8_r1" and applied["flops"] == 2.0 and applied["variant"] == "b0"
    load_scaling(load_spec_doc(out))  # the declaration is kept, so the output can be scaled again


def test_imports_rewritten_inside_a_project(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(SPECS / "lib", tmp_path / "specs" / "lib")
    shutil.copy(SPECS / "resnet.yaml", tmp_path / "specs" / "resnet.yaml")
    res = scale(tmp_path / "specs" / "resnet.yaml", 2.0, "w", variant="resnet18")[0]
    out = write_scaled(res, tmp_path / "family" / "deep" / "r18.yaml")
    doc = yaml.safe_load(out.read_text())
    assert doc["imports"] == ["../../specs/lib/common.yaml"]
    assert doc["params"]["depths"] == [2, 2, 2, 2] and doc["params"]["block"] == "basic_block"  # variant folded in
    _, g = build_graph(out)
    assert graph_cost(g).macs == res.cost.macs
    assert abs(res.error) < 0.02


def test_variant_and_overrides_are_folded_in(tmp_path: Path) -> None:
    res = scale(TINY, 2.0, "d", variant="deeper", params=["widths.1=40"])[0]
    assert res.base_cost.macs == graph_cost(build_graph(TINY, CompileOptions(variant="deeper",
                                                                             params=["widths.1=40"]))[1]).macs
    assert res.values["depths"][0] >= 3  # scaled from the variant's [2, 3]
    out = write_scaled(res, tmp_path / "t.yaml")
    doc = yaml.safe_load(out.read_text())
    assert doc["params"]["widths"] == [16, 40] and list(doc["variants"]) == ["deeper_x2"]
    assert graph_cost(build_graph(out)[1]).macs == res.cost.macs


def test_multiplier_declaration() -> None:
    """width/depth multipliers: archc sets them (unrounded) and the spec's own expressions round."""
    text = (SPECS / "efficientnet.yaml").read_text().split("\nscaling:")[0] + (
        "\nscaling:\n  depth: {multiplier: depth_mult}\n  width: {multiplier: width_mult}\n  resolution: img\n")
    res = scale(SPECS / "efficientnet_mult.yaml", 2.0, "efficientnet", text=text)[0]
    assert isinstance(res.values["width_mult"], float) and res.values["width_mult"] > 1
    assert isinstance(res.values["depth_mult"], float) and res.values["depth_mult"] > 1
    assert abs(res.error) < 0.03


def test_group_width_compatibility_regnet() -> None:
    res = scale(SPECS / "regnet.yaml", 4.0, "fast")[0]
    g = res.values["group_width"]
    assert g > 16 and all(w % g == 0 for w in res.values["widths"])
    assert _within_rounding(res)


@pytest.mark.parametrize("rule,lo,hi", [("fast", 0.5, 0.68), ("w", 0.45, 0.56), ("r", 0.93, 1.05)])
def test_activation_exponents(rule: str, lo: float, hi: float) -> None:
    """The paper's finding on archc's own numbers (the full study is docs/scaling.md)."""
    rs = scale(SPECS / "regnet.yaml", [4, 16], rule)
    e = fit_exponent([r.mac_ratio for r in rs], [r.act_ratio for r in rs])
    assert lo <= e <= hi, e
    assert abs(e - parse_rule(rule).act_exponent) < 0.1


def test_output_paths() -> None:
    assert output_paths("out/m.yaml", [2.0]) == [Path("out/m.yaml")]
    assert output_paths("out/m.yaml", [2.0, 4.0, 1.5]) == [Path("out/m_s2.yaml"), Path("out/m_s4.yaml"),
                                                          Path("out/m_s1.5.yaml")]


def test_cli_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.yaml"
    assert main(["scale", str(TINY), "--flops", "2,4", "--rule", "fast", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for s in (2, 4):
        path = tmp_path / f"tiny_s{s}.yaml"
        assert path.exists() and str(path) in printed
        assert compile_spec(path).cost.macs > 0
    for word in ("MACs", "params", "acts", "target", "achieved", "acts ratio", "2×", "4×"):
        assert word in printed
    assert not out.exists()


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.yaml"
    assert main(["scale", str(TINY), "--flops", "2", "--rule", "d1_w8_q1", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("--rule:1:7: error: bad term 'q1'") and "^" in err
    assert main(["scale", str(TINY), "--flops", "0", "-o", str(out)]) == 1
    assert "error: --flops ratio must be a positive number" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "dir.yaml").mkdir()
    assert main(["scale", str(TINY), "--flops", "2", "-o", str(tmp_path / "dir.yaml")]) == 1
    assert "is a directory" in capsys.readouterr().err
