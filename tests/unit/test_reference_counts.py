"""The published numbers of the seed architectures (../shared/REFERENCE.md), as tests.

Parameters must match exactly; MACs within 0.5% where the reference gives them; deploy-form counts
come from running the deploy pipeline (its numerical certification is tested elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from archc.compiler import CompileOptions, build_graph
from archc.cost.model import graph_cost, pycls_cost
from archc.passes.pipeline import run_pipeline

SPECS = Path(__file__).resolve().parents[2] / "specs"

TRAIN = [
    ("transxnet", "t", 12_834_808, 1.807e9),
    ("transxnet", "s", 26_864_068, None),
    ("transxnet", "b", 48_009_002, None),
    ("cdcn", "cdcn", 2_245_016, 52.60e9),
    ("cdcn", "cdcnpp", 2_257_352, 56.43e9),
    ("unireplknet", "a", 4_649_060, None),
    ("inceptionnext", "atto", 4_156_520, 0.503e9),
    ("inceptionnext", "tiny", 28_055_680, None),
    ("hornet", "tiny", 22_409_512, 3.968e9),
    ("lsnet", "t", 11_409_832, 0.315e9),
    ("repvgg", "a0", 9_108_968, None),
    ("efficientnet", "b0", 5_288_548, None),
    ("convnext", "tiny", 28_589_128, None),
    ("resnet", "resnet50", 25_557_032, None),
]

DEPLOY = [
    ("unireplknet", "a", 4_437_300, 0.640e9),
    ("repvgg", "a0", 8_309_384, 1.361e9),
    ("lsnet", "t", 11_370_488, None),
    ("cdcn", "cdcn", None, 47.34e9),
    ("cdcn", "cdcnpp", None, 50.78e9),
]


def _graph(spec: str, variant: str):  # noqa: ANN202
    if not (SPECS / f"{spec}.yaml").exists():
        pytest.fail(f"specs/{spec}.yaml is missing")
    return build_graph(SPECS / f"{spec}.yaml", CompileOptions(variant=variant))[1]


@pytest.mark.parametrize("spec,variant,params,macs", TRAIN, ids=[f"{t[0]}-{t[1]}" for t in TRAIN])
def test_train_form(spec: str, variant: str, params: int, macs: float | None) -> None:
    c = graph_cost(_graph(spec, variant))
    assert c.params == params
    if macs is not None:
        assert abs(c.macs - macs) / macs <= 0.005, f"MACs {c.macs:,} vs {macs:,.0f}"


@pytest.mark.parametrize("spec,variant,params,macs", DEPLOY, ids=[f"{t[0]}-{t[1]}" for t in DEPLOY])
def test_deploy_form(spec: str, variant: str, params: int | None, macs: float | None) -> None:
    g = run_pipeline(_graph(spec, variant), "deploy", check=False).graph
    c = graph_cost(g)
    if params is not None:
        assert c.params == params
    if macs is not None:
        assert abs(c.macs - macs) / macs <= 0.005, f"MACs {c.macs:,} vs {macs:,.0f}"


def test_efficientnet_b0_pycls_convention() -> None:
    c = pycls_cost(_graph("efficientnet", "b0"))
    assert (c.macs, c.acts) == (385_825_092, 6_748_036)


def test_vit_parallel_merges_to_single_path() -> None:
    merged = run_pipeline(_graph("vit_parallel", "tiny"), "deploy", check=False).graph
    single = _graph("vit", "tiny")
    a, b = graph_cost(merged), graph_cost(single)
    assert (a.params, a.macs) == (b.params, b.macs)
