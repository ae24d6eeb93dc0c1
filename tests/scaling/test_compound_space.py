"""search_spaces/compound_scaling.yaml: EfficientNet's compound-scaling step 1 as an 'archc search' space,
and step 2 (the winner for φ = 1..N) through archc.scaling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from archc.compiler import CompileOptions, build_graph
from archc.cost.model import graph_cost
from archc.scaling import phi_targets, scale
from archc.search.space import load_space

ROOT = Path(__file__).resolve().parents[2]
SPACE = ROOT / "search_spaces" / "compound_scaling.yaml"


@pytest.fixture(scope="module")
def space():  # noqa: ANN201
    return load_space(SPACE)


def _macs(space, values: dict) -> int:  # noqa: ANN001
    m = space.materialize(values)
    params = {path[0]: v for path, v in m.overrides.items()}
    return graph_cost(build_graph(space.base, CompileOptions(variant=space.variant, params=params))[1]).macs


def test_grid_holds_efficientnets_choice(space) -> None:  # noqa: ANN001
    grid = space.grid()
    assert 1.2 in grid["alpha"] and 1.1 in grid["beta"]
    assert len(grid["alpha"]) * len(grid["beta"]) == space.study.trials


def test_gamma_follows_from_the_constraint(space) -> None:  # noqa: ANN001
    m = space.materialize(space.point("efficientnet"))
    ov = {path[0]: v for path, v in m.overrides.items()}
    gamma = math.sqrt(2 / (1.2 * 1.1**2))
    assert ov["depths"] == [max(1, round(d * 1.2)) for d in (1, 2, 2, 3, 3, 4, 1)] == [1, 2, 2, 4, 4, 5, 1]
    assert ov["width_mult"] == 1.1
    assert ov["img"] == round(224 * gamma / 4) * 4 == 264
    # the proxy keeps the candidate's depths and its relative width and resolution
    proxy = {path[0]: v for path, v in m.proxy.items()}
    assert "depths" not in proxy
    assert proxy["width_mult"] == pytest.approx(0.25 * 1.1) and proxy["img"] == round(32 * gamma / 4) * 4


def test_candidates_are_about_twice_b0(space) -> None:  # noqa: ANN001
    b0 = graph_cost(build_graph(space.base, CompileOptions(variant="b0"))[1]).macs
    for alpha, beta in ((1.0, 1.0), (1.2, 1.1), (1.4, 1.2)):
        r = _macs(space, {"alpha": alpha, "beta": beta}) / b0
        assert 1.6 < r < 2.4, (alpha, beta, r)


def test_step_two_applies_the_winner() -> None:
    targets = phi_targets("efficientnet:1.2,1.1,1.15", 7)
    assert len(targets) == 7 and targets[0] == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    res = scale(ROOT / "specs" / "efficientnet.yaml", None, "efficientnet:1.2,1.1,1.15", phi=[1], calibrate="none")[0]
    f = res.factors  # φ = 1: depth × α, width × β, resolution × γ before rounding
    assert (f["depth"], f["width"], f["resolution"]) == pytest.approx((1.2, 1.1, 1.15))
    assert res.values["img"] == 256  # 224 · 1.15 = 257.6 → multiple of 4
