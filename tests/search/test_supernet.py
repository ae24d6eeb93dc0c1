"""Supernets of cell spaces: exact weight sharing, standalone generated source, path fixing, derivation."""

from __future__ import annotations

import ast
import importlib.util
import random
from pathlib import Path

import pytest
import torch

from archc.passes.equivalence import randomize
from archc.search.space import load_space
from archc.search.supernet import SupernetError, build_supernet
from archc.search.supernet.codegen import candidate_name

from .conftest import ROOT, write_space

torch.set_num_threads(1)

CELL_SPACES = sorted(p for p in (ROOT / "search_spaces").glob("*.yaml") if load_space(p).cells)


def _paths(sn, n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [dict(v) for v in sn.space.points.values()] + [sn.sample_path(rng) for _ in range(n)]


def test_there_is_a_bundled_cell_space() -> None:
    assert CELL_SPACES, "no bundled search space has cells"


@pytest.mark.parametrize("path", CELL_SPACES, ids=lambda p: p.stem)
def test_fixed_supernet_equals_the_child_with_inherited_weights(path: Path) -> None:
    space = load_space(path)
    sn = build_supernet(space, dtype=torch.float64, seed=3)
    sn.model.load_state_dict(randomize(sn.model, seed=1))  # random weights and BN statistics
    sn.model.eval()
    x = torch.randn(2, *sn.input_shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for choice in _paths(sn, 5):
        _, child = sn.child(choice)
        sn.fix(choice)
        child.eval()
        with torch.no_grad():
            want, got = child(x), sn.model(x)
        err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-300))
        assert err <= 1e-12, (choice, err)
    # the mixed forward is a different function (all ops, softmax-weighted)
    sn.fix(None)
    with torch.no_grad():
        assert not torch.allclose(sn.model(x), want)


def test_weight_sharing_holds_in_training_mode_and_for_gradients() -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space, dtype=torch.float64)
    choice = _paths(sn, 1, seed=5)[-1]
    sn.fix(choice)
    _, child = sn.child(choice)
    x = torch.randn(2, *sn.input_shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sn.model.train()
    child.train()
    a, b = sn.model(x), child(x)
    assert float(((a - b).abs().max() / b.abs().max()).detach()) <= 1e-12
    a.square().sum().backward()
    b.square().sum().backward()
    sup = dict(sn.model.named_parameters())
    for key, p in child.named_parameters():
        sp = sup[sn.child_key(key, sn.normalized(choice))]
        assert torch.allclose(sp.grad, p.grad, rtol=1e-10, atol=1e-14), key


def test_a_fixed_path_runs_only_the_chosen_ops() -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space)
    choice = space.point("cdcnpp") if "cdcnpp" in space.points else sn.sample_path(random.Random(0))
    called: set[str] = set()
    for name, mod in sn.model.named_modules():
        if name.count(".") == 1 and name.split(".")[1].startswith("e"):
            mod.register_forward_hook(lambda m, i, o, name=name: called.add(name))
    sn.fix(choice)
    x = torch.randn(2, *sn.input_shape[1:])
    sn.model(x)
    norm = sn.normalized(choice)
    want = set()
    for a in sn.anatomies:
        edges, _ = norm[a.node.id]
        for (i, j), op in zip(a.cell.edges, edges):
            if op != a.cell.none:
                want.add(f"{a.node.id}.{candidate_name(i, j, op)}")
    assert called == want
    called.clear()
    sn.fix(None)
    sn.model(x)
    assert len(called) == sum(len(a.cell.edges) * len(a.ops) for a in sn.anatomies)


def test_source_is_standalone_and_deterministic(tmp_path: Path) -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space)
    tree = ast.parse(sn.source)
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    # torch and the standard library only (os: create_model(pretrained=True) finds the .pth beside the module)
    assert roots <= {"torch", "typing", "math", "os"}, roots
    f = tmp_path / "supernet.py"
    f.write_text(sn.source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("standalone_supernet", f)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # a plain file import: nothing of archc is needed
    assert mod.create_model()(torch.randn(mod.INPUT_SHAPE)).shape[0] == 1
    assert build_supernet(space).source == sn.source


SMALL = """\
archc: 1
name: small_cells
base: {base}
cells:
  low: {{nodes: 4, ops: [none, skip, cdc, conv], edges: low_edges, output: low_out, op_table: edge_ops}}
objectives: {{val_loss: minimize}}
evaluator:
  task: depth
  data: {{source: digits, train: 64, val: 64}}
  proxy: {{img: 16, map_size: 4, stem_width: 8, width: 8, head: [8]}}
  train: {{epochs: 1, batch_size: 32}}
"""


def test_supernet_scripts_and_the_script_follows_fixed_paths(tmp_path: Path) -> None:
    p = tmp_path / "small.yaml"
    text = SMALL.format(base=(ROOT / "specs" / "cdcn_cells.yaml").as_posix())
    p.write_text(text, encoding="utf-8")
    space = load_space(p)
    sn = build_supernet(space)
    sn.model.eval()
    scripted = torch.jit.script(sn.model)
    x = torch.randn(2, *sn.input_shape[1:])
    with torch.no_grad():
        assert torch.equal(scripted(x), sn.model(x))
        choice = sn.sample_path(random.Random(2))
        sn.fix(choice)
        scripted.low.path = sn.cell_module("low").path
        assert torch.equal(scripted(x), sn.model(x))


def test_derive_follows_the_discretization_rules() -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space)
    cell = sn.anatomies[0].cell
    m = sn.cell_module(cell.name)
    ops = list(cell.ops)
    with torch.no_grad():
        m.alpha.zero_()
        m.alpha[:, ops.index("none")] = 5.0  # 'none' strongest everywhere: never kept
        # node 1: (0,1) skip; node 2: (1,2) conv beats (0,2) cdc; node 3: (2,3) cdc_t0.5 strongest
        for (i, j), op, v in [((0, 1), "skip", 1.0), ((0, 2), "cdc", 1.0), ((1, 2), "conv", 2.0),
                              ((0, 3), "cdc", 0.5), ((1, 3), "cdc", 0.5), ((2, 3), "cdc_t0.5", 3.0)]:
            m.alpha[cell.edges.index((i, j)), ops.index(op)] = v
        m.beta.zero_()
        m.beta[2] = 1.0  # node 3
    d = sn.derive()
    got = {k.split(".")[1]: v for k, v in d.items() if k.startswith(cell.name + ".")}
    assert got["out"] == 3
    assert (got["e0_1"], got["e1_2"], got["e2_3"]) == ("skip", "conv", "cdc_t0.5")
    assert got["e0_2"] == got["e0_3"] == got["e1_3"] == "none"
    # node 4 is not on the path to node 3: its edges are dropped by normalization
    assert all(got[f"e{i}_4"] == "none" for i in range(4))


def test_partial_channels_edge_normalization_ranks_edges() -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space, partial_channels=4)
    arch = sn.arch_parameters()
    assert len(arch) == 3 * len(sn.anatomies)
    m = sn.cell_module("low")
    assert hasattr(m, "edge_beta")
    cell = sn.anatomies[0].cell
    with torch.no_grad():
        m.alpha.zero_()
        m.alpha[:, cell.ops.index("cdc")] = 1.0
        m.alpha[cell.edges.index((0, 2)), cell.ops.index("cdc")] = 2.0  # α favours (0,2) ...
        m.edge_beta.zero_()
        m.edge_beta[cell.edges.index((1, 2))] = 3.0                    # ... edge β favours (1,2)
        m.beta.zero_()
        m.beta[1] = 1.0
    d = sn.derive()
    assert d["low.e1_2"] == "cdc" and d["low.e0_2"] == "none" and d["low.out"] == 2
    x = torch.randn(2, *sn.input_shape[1:])
    assert sn.model(x).shape[0] == 2
    with pytest.raises(SupernetError, match="partial channels"):
        sn.child(space.point("cdcnpp"))


def test_sample_path_is_feasible_and_normalized() -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space)
    rng = random.Random(0)
    for _ in range(20):
        choice = sn.sample_path(rng)
        m = space.materialize(choice)
        assert m.reason is None
        for cell in space.cells:
            edges, out = m.cells[cell.name]
            assert [choice[f"{cell.name}.e{i}_{j}"] for i, j in cell.edges] == edges


def test_bad_paths_and_spaces_are_refused(tmp_path: Path) -> None:
    space = load_space(CELL_SPACES[0])
    sn = build_supernet(space)
    bad = dict(space.point("cdcnpp"))
    bad["low.e0_1"] = "none"
    bad["low.e0_2"] = "none"
    with pytest.raises(SupernetError, match="infeasible"):
        sn.fix(bad)
    bad = dict(space.point("cdcnpp"))
    bad["low.e0_1"] = "conv9"
    with pytest.raises(SupernetError, match="not an op"):
        sn.fix(bad)
    with pytest.raises(SupernetError, match="has no cells"):
        build_supernet(load_space(write_space(tmp_path)))
    with pytest.raises(SupernetError, match="do not divide"):
        build_supernet(space, partial_channels=3)


def test_weight_sharing_when_the_cell_changes_the_width(tmp_path: Path) -> None:
    # stem 8 → cells 16: 'skip' on an edge from the cell input is a 1×1 conv-BN projection
    p = tmp_path / "wide.yaml"
    p.write_text(SMALL.format(base=(ROOT / "specs" / "cdcn_cells.yaml").as_posix()).replace(
        "stem_width: 8, width: 8", "stem_width: 8, width: 16"), encoding="utf-8")
    space = load_space(p)
    sn = build_supernet(space, dtype=torch.float64)
    assert any("proj" in k for k in sn.model.state_dict())
    sn.model.load_state_dict(randomize(sn.model, seed=2))
    sn.model.eval()
    x = torch.randn(2, *sn.input_shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    skip_first = sn.sample_path(random.Random(0))
    skip_first.update({"low.e0_1": "skip", "low.out": 1})
    for choice in [skip_first] + _paths(sn, 4, seed=7):
        _, child = sn.child(choice)
        sn.fix(choice)
        with torch.no_grad():
            want, got = child.eval()(x), sn.model(x)
        assert float((got - want).abs().max() / want.abs().max()) <= 1e-12, choice
    pc = build_supernet(space, partial_channels=4)
    anat = pc.anatomies[0]
    # edges from the 8-wide cell input keep all channels (the bypass could not be concatenated back)
    assert anat.partial and all(anat.cell.edges[e][0] != 0 for e in anat.partial)
    assert pc.model(torch.randn(2, *pc.input_shape[1:])).shape[0] == 2
