"""Spaces as Optuna distributions (round trip), cells, materialization and the CDCN++ point."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import distribution_to_json, json_to_distribution

from archc.compiler import CompileOptions, build_graph
from archc.cost.model import graph_cost
from archc.search import (
    ModelBuilder,
    canonical_hash,
    canonical_text,
    choices_from_distributions,
    load_space,
    normalize_cell,
)
from archc.search.cells import cell_edges
from archc.search.space import Choice

from .conftest import ROOT, write_space

CDC = ROOT / "search_spaces" / "cdc.yaml"
CDCNPP_PARAMS = 2_257_352


def _strip(c: Choice) -> tuple:
    """The parts of a choice an Optuna distribution carries."""
    values = tuple(c.values)
    return (c.name, c.kind, values, c.low, c.high, c.step or (1 if c.kind == "int" else None), c.log)


def test_round_trip_space_distributions_space() -> None:
    for path in sorted((ROOT / "search_spaces").glob("*.yaml")):
        space = load_space(path)
        dists = space.distributions()
        assert list(dists) == space.param_names()
        # through Optuna's own JSON form, as the storage keeps them
        dists = {k: json_to_distribution(distribution_to_json(d)) for k, d in dists.items()}
        back = {c.name: c for c in choices_from_distributions(dists)}
        for c in space.choices:
            assert _strip(back[c.name]) == _strip(c), (path, c.name)
        for cell in space.cells:
            for name in cell.param_names()[:-1]:
                assert back[name].values == cell.ops
            assert back[cell.output_key].values == tuple(range(1, cell.nodes + 1))


choice_st = st.one_of(
    st.builds(lambda lo, n, s, log: Choice("c", "int", (), lo, lo + n * s, s if not log else 1, log and lo > 0),
              st.integers(0, 50), st.integers(0, 20), st.integers(1, 8), st.booleans()),
    st.builds(lambda lo, w, log: Choice("c", "float", (), lo, lo + w, None, log), st.floats(0.01, 10), st.floats(0.0, 10),
              st.booleans()),
    st.builds(lambda vals: Choice("c", "categorical", tuple(vals)),
              st.lists(st.one_of(st.integers(-5, 300), st.text("abcdef_", min_size=1, max_size=6), st.booleans(),
                                 st.lists(st.integers(1, 9), min_size=1, max_size=4)), min_size=1, max_size=6, unique_by=repr)),
)


@given(choice_st)
def test_round_trip_any_choice(c: Choice) -> None:
    if any(isinstance(v, bool) for v in c.values) and any(v in (0, 1) and not isinstance(v, bool) for v in c.values):
        return  # True == 1 for Optuna's categorical choices too: not a distinct set
    back = Choice.from_distribution(c.name, json_to_distribution(distribution_to_json(c.distribution())))
    assert _strip(back) == _strip(c)


def test_sample_decodes_list_values_and_conditions(tmp_path: Path) -> None:
    p = write_space(tmp_path, """\
        archc: 1
        base: {base}
        choices:
          mode: [plain, wide]
          width: {{type: int, low: 12, high: 16, step: 4, when: {{mode: wide}}, default: 8}}
          shape: {{type: categorical, values: [[1, 2], [3, 4]], target: null}}
        params:
          depth: "${{shape[0]}}"
        objectives: {{params: minimize}}
        """)
    space = load_space(p)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_modes = set()
    for _ in range(12):
        t = study.ask()
        vals = space.sample(t)
        seen_modes.add(vals["mode"])
        assert isinstance(vals["shape"], list)
        m = space.materialize(vals)
        assert m.overrides[("depth",)] == vals["shape"][0]
        if vals["mode"] == "plain":
            assert "width" not in vals and ("width",) not in m.overrides
        else:
            assert m.overrides[("width",)] in (12, 16)
        study.tell(t, 1.0)
    assert seen_modes == {"plain", "wide"}


def test_cell_normalization() -> None:
    # (0,1) skip, (0,2) none, (1,2) none: node 2 is dead; the output node 1 keeps only edge (0,1)
    assert normalize_cell(["skip", "none", "none"], 1, 2) == (["skip", "none", "none"], None)
    # edges into a node that does not lead to the output are dropped
    assert normalize_cell(["cdc", "cdc", "cdc"], 1, 2) == (["cdc", "none", "none"], None)
    # an output node without a live path is infeasible
    edges, reason = normalize_cell(["none", "none", "cdc"], 2, 2)
    assert reason and "no live path" in reason
    # edges from a dead node are dropped: node 1 dead, (1,2) cannot matter
    assert normalize_cell(["none", "cdc", "skip"], 2, 2) == (["none", "cdc", "none"], None)
    assert cell_edges(4) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4)]


def test_cdcnpp_point_is_the_released_model() -> None:
    space = load_space(CDC)
    m = space.materialize(space.point("cdcnpp"))
    assert m.reason is None
    b = ModelBuilder(space)
    g = b.graph(m.overrides)
    assert graph_cost(g).params == CDCNPP_PARAMS
    # and the very same graph as specs/cdcn.yaml's cdcnpp variant (op for op, at a small input)
    small = {**m.overrides, ("img",): 32, ("map_size",): 8}
    _, ref = build_graph(ROOT / "specs" / "cdcn.yaml", CompileOptions(variant="cdcnpp", params={"img": 32, "map_size": 8}))
    assert canonical_text(b.graph(small)) == canonical_text(ref)
    # the base spec's own defaults are the released model too
    _, g0 = build_graph(ROOT / "specs" / "cdcn_cells.yaml")
    assert graph_cost(g0).params == CDCNPP_PARAMS


def _edge_params(kind: str, cin: int, c: int) -> int:
    row = {"skip": (0, 1.0), "cdc": (1, 1.0), "cdc_t0.5": (1, 1.0), "conv": (1, 1.0), "cdc_2_1.2": (2, 1.2),
           "cdc_2_1.4": (2, 1.4), "cdc_2_1.6": (2, 1.6), "cdc_2_2.0": (2, 2.0)}[kind]
    if row[0] == 0:
        return 0 if cin == c else cin * c + 2 * c
    if row[0] == 1:
        return 9 * cin * c + 2 * c
    mid = int(c * row[1])
    return 9 * cin * mid + 2 * mid + 9 * mid * c + 2 * c


def _cells_params(cells: dict[str, tuple[list[str], int]], stem: int, width: int) -> int:
    total = 0
    for name, (edges, _) in cells.items():
        cin = stem if name == "low" else width
        for (i, _j), kind in zip(cell_edges(4), edges):
            if kind != "none":
                total += _edge_params(kind, cin if i == 0 else width, width)
    return total


@given(st.lists(st.sampled_from(["none", "skip", "cdc", "cdc_2_1.2", "cdc_2_1.4", "cdc_2_1.6", "cdc_t0.5", "conv"]),
                min_size=30, max_size=30),
       st.lists(st.integers(1, 4), min_size=3, max_size=3))
def test_any_feasible_cell_sample_builds_with_the_expected_params(kinds: list[str], outs: list[int]) -> None:
    """The spec's cell wiring (when/second/add) is right for every sample: params follow the live edges."""
    space = _cdc_space()
    vals = {}
    for k, cell in enumerate(space.cells):
        for e, (i, j) in enumerate(cell.edges):
            vals[f"{cell.name}.e{i}_{j}"] = kinds[10 * k + e]
        vals[cell.output_key] = outs[k]
    m = space.materialize(vals)
    if m.reason is not None:
        assert "no live path" in m.reason
        return
    small = {**m.overrides, ("img",): 16, ("map_size",): 4, ("stem_width",): 8, ("width",): 8, ("head",): [8]}
    g = _cdc_builder().graph(small)
    ref = _cdc_builder().graph({**space.materialize(space.point("cdcnpp")).overrides, **{k: v for k, v in small.items() if k[0] in ("img", "map_size", "stem_width", "width", "head")}})
    released = space.materialize(space.point("cdcnpp")).cells
    expected = graph_cost(ref).params - _cells_params(released, 8, 8) + _cells_params(m.cells, 8, 8)
    assert graph_cost(g).params == expected


_CACHE: dict[str, object] = {}


def _cdc_space():  # noqa: ANN202
    if "space" not in _CACHE:
        _CACHE["space"] = load_space(CDC)
    return _CACHE["space"]


def _cdc_builder() -> ModelBuilder:
    if "builder" not in _CACHE:
        _CACHE["builder"] = ModelBuilder(_cdc_space())
    return _CACHE["builder"]  # type: ignore[return-value]


def test_dead_edges_give_the_same_architecture() -> None:
    space = _cdc_space()
    base = space.point("cdcnpp")
    other = dict(base)
    other["low.e2_3"] = "cdc_2_1.6"   # into node 3, which does not lead to the output node 2
    other["mid.e3_4"] = "conv"        # from dead node 3 into dead node 4
    m1, m2 = space.materialize(base), space.materialize(other)
    assert m1.overrides == m2.overrides
    b = _cdc_builder()
    assert canonical_hash(b.graph(m1.overrides)) == canonical_hash(b.graph(m2.overrides))
    other["high.out"] = 1              # a different output node is a different architecture
    assert canonical_hash(b.graph(space.materialize(other).overrides)) != canonical_hash(b.graph(m1.overrides))


def test_proxy_overrides_apply_on_top(tmp_path: Path) -> None:
    space = _cdc_space()
    m = space.materialize(space.point("cdcnpp"))
    assert m.proxy_overrides()[("width",)] == 16 and m.overrides.get(("width",)) is None
    with pytest.raises(KeyError):
        space.materialize({})
