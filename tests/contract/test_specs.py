"""Registry sweep: every spec × variant in specs/ gets the same contract, analytic = observed.

For each: the generated module's parameter count equals the analytic count, FlopCounterMode's MACs
equal the analytic MACs, inferred output shapes (of the model and of every block) equal observed
ones, and the module scripts and exports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from archc.compiler import CompileOptions, compile_spec
from archc.cost.model import graph_cost
from archc.spec.document import load_spec_doc
from tests.artifact import import_source, observed

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml"))


def _cases() -> list:
    cases = []
    for p in SPECS:
        doc = load_spec_doc(p)
        variants = list(doc.variants) or [None]
        default = doc.default_variant or variants[0]
        for v in variants:
            cases.append(pytest.param(p, v, v == default, id=f"{p.stem}-{v}"))
    return cases


def test_specs_exist() -> None:
    assert SPECS, "no specs found"


@pytest.mark.parametrize("path,variant,is_default", _cases())
def test_spec_contract(path: Path, variant: str | None, is_default: bool, tmp_path: Path) -> None:
    res = compile_spec(path, CompileOptions(variant=variant))
    g = res.graph
    module = import_source(res.source, tmp_path)
    model = module.create_model().eval()
    assert sum(p.numel() for p in model.parameters()) == res.cost.params
    assert module.INPUT_SHAPE == next(iter(g.inputs.values())).concrete(1)
    shapes, macs, blocks = observed(model, g)
    assert [tuple(s) for s in shapes] == [t.concrete(1) for t in g.output_types]
    assert macs == res.cost.macs, f"analytic MACs {res.cost.macs:,} != counted {macs:,}"
    memo: dict = {}
    for p, node in g.walk():
        if p in blocks:
            assert blocks[p] == tuple(t.concrete(1) for t in node.types), p
    assert graph_cost(g, memo).params == res.cost.params
    if is_default:
        x = tuple(torch.randn(t.concrete(1)) for t in g.inputs.values())
        scripted = torch.jit.script(model)
        with torch.no_grad():
            ref = model(*x)
            got = scripted(*x)
        refs = ref if isinstance(ref, tuple) else (ref,)
        gots = got if isinstance(got, tuple) else (got,)
        for a, b in zip(refs, gots):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        torch.export.export(model, x)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_regeneration_is_byte_identical(path: Path) -> None:
    a = compile_spec(path).source
    b = compile_spec(path).source
    assert a == b
