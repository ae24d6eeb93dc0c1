"""Golden files: the cost table of every spec × variant, and generated code for fixed specs.

Run with ARCHC_UPDATE_GOLDEN=1 to rewrite the files after an intended change, then review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from archc.compiler import CompileOptions, build_graph, compile_spec
from archc.cost.model import graph_cost, pycls_cost
from archc.spec.document import load_spec_doc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
UPDATE = bool(os.environ.get("ARCHC_UPDATE_GOLDEN"))
COSTS = HERE / "costs.json"


def cost_table() -> dict[str, dict]:
    """params / MACs / activations / output types of every spec × variant."""
    table: dict[str, dict] = {}
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        doc = load_spec_doc(path)
        for variant in list(doc.variants) or [None]:
            _, g = build_graph(path, CompileOptions(variant=variant))
            c = graph_cost(g)
            pc = pycls_cost(g)
            table[f"{path.stem}:{variant}"] = {
                "params": c.params,
                "macs": c.macs,
                "activations": c.acts,
                "pycls_flops": pc.macs,
                "pycls_acts": pc.acts,
                "output": [str(t) for t in g.output_types],
            }
    return table


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(expected.splitlines(), actual.splitlines(), f"golden/{name}", "now", lineterm="")
    return "\n".join(list(lines)[:80])


def test_cost_table() -> None:
    actual = json.dumps(cost_table(), indent=1, sort_keys=True) + "\n"
    if UPDATE or not COSTS.exists():
        COSTS.write_text(actual)
    expected = COSTS.read_text()
    assert actual == expected, (
        "the cost table changed (rerun with ARCHC_UPDATE_GOLDEN=1 if intended):\n" + _diff(expected, actual, COSTS.name)
    )


GOLDEN_CODE = [("tests/fixtures/mini.yaml", None, "mini.py.txt"), ("specs/transxnet.yaml", "t", "transxnet_t.py.txt")]


@pytest.mark.parametrize("spec,variant,golden", GOLDEN_CODE, ids=[g[2] for g in GOLDEN_CODE])
def test_generated_code(spec: str, variant: str | None, golden: str) -> None:
    actual = compile_spec(ROOT / spec, CompileOptions(variant=variant)).source
    path = HERE / golden
    if UPDATE or not path.exists():
        path.write_text(actual)
    expected = path.read_text()
    assert actual == expected, "generated code changed (rerun with ARCHC_UPDATE_GOLDEN=1 if intended):\n" + _diff(expected, actual, golden)
