"""Numerical equivalence of every rule's weight map, the certification's teeth, and the CLI round trip.

* For every before/expected case: the pass's weight map, applied ALONE to a random state dict of the
  train module (no module is built while it runs), gives weights with which the rewritten module
  matches the train module — float32 max rel. error ≤ 1e-5, float64 ≤ 1e-10.
* A deliberately wrong fold (or a bogus pass) makes the certified pipeline raise PassError.
* ``archc compile --pipeline deploy --weights`` converts a train checkpoint that loads strictly into
  the deploy module and reproduces the train outputs; bad checkpoints exit 1 with a one-line error
  and write nothing.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from archc.cli import main
from archc.diagnostics import PassError
from archc.ir.graph import Graph
from archc.passes import bn_fold
from archc.passes.base import PASSES, Pass, PassResult, WeightMap, make_node
from archc.passes.equivalence import module_from_graph, randomize
from archc.passes.pipeline import run_pipeline
from tests.numerics.pass_cases import FIRE, FireCase, converted_error, graph_of, rel_error, run_named

ROOT = Path(__file__).resolve().parents[2]
REPARAM = ROOT / "tests" / "fixtures" / "reparam.yaml"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids thread thrashing on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("case", FIRE, ids=lambda c: f"{c.rule}-{c.id}")
def test_weight_map_alone_converts(case: FireCase) -> None:
    before = graph_of(case.before, case.id)
    after, weight_fn, rewrites = run_named(before, case.pass_name)
    assert rewrites > 0
    for seed in (0, 1):
        assert converted_error(before, after, weight_fn, torch.float32, seed) <= 1e-5
        assert converted_error(before, after, weight_fn, torch.float64, seed) <= 1e-10


def test_weight_maps_are_hierarchical() -> None:
    """A body shared by several instances is rewritten once; its map runs under every instance path."""
    case = next(c for c in FIRE if c.id == "conv_bn_in_repeated_block")
    res = PASSES["fold_bn"].run(graph_of(case.before, case.id))
    stage = res.graph.nodes["stage"].body
    assert stage.nodes["0"].body is stage.nodes["1"].body, "the shared body was rewritten per instance"
    assert not res.weights.local and set(res.weights.children) == {"stage"}
    per_instance = res.weights.children["stage"].children
    assert set(per_instance) == {"0", "1"} and per_instance["0"] is per_instance["1"]
    train = module_from_graph(graph_of(case.before, case.id))
    new = res.weights(randomize(train))
    assert {k for k in new if k.endswith("conv.bias")} == {"stage.0.conv.bias", "stage.1.conv.bias"}
    assert not any(".bn." in k for k in new)


# -- the certification can fail ---------------------------------------------------------------------

CONV_BN = next(c for c in FIRE if c.id == "conv_bn")


def test_fold_that_drops_the_bn_shift_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bn_fold.bn_affine

    def scale_only(sd, prefix, node):  # noqa: ANN001, ANN202
        s, t = real(sd, prefix, node)
        return s, torch.zeros_like(t)

    monkeypatch.setattr(bn_fold, "bn_affine", scale_only)
    g = graph_of(CONV_BN.before, CONV_BN.id)
    # uncertified, the broken fold goes through silently ...
    assert run_pipeline(g, check=False).graph is not g
    # ... certified, the float64 differential check stops it and names the pass
    with pytest.raises(PassError, match=r"pass 'fold_bn' broke numerical equivalence: max relative error"):
        run_pipeline(g)


def test_slightly_wrong_fold_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error far below float32 resolution (1e-7 relative) still exceeds the float64 tolerance."""
    real = bn_fold.bn_affine

    def nudged(sd, prefix, node):  # noqa: ANN001, ANN202
        s, t = real(sd, prefix, node)
        return s * (1 + 1e-7), t

    monkeypatch.setattr(bn_fold, "bn_affine", nudged)
    with pytest.raises(PassError, match="pass 'fold_bn' broke numerical equivalence"):
        run_pipeline(graph_of(CONV_BN.before, CONV_BN.id), passes=("fold_bn",))


class _ReluToGelu(Pass):
    """A bogus 'exact' pass: swaps every relu for a gelu, claiming nothing changes."""

    name = "bogus_relu_to_gelu"
    doc = "wrong on purpose"

    def run(self, graph: Graph, explain: bool = False) -> PassResult:
        nodes = [make_node(graph, n.id, "gelu", n.inputs, {}, like=n) if n.op == "relu" else n for n in graph]
        count = sum(n.op == "relu" for n in graph)
        return PassResult(graph.with_nodes(nodes) if count else graph, WeightMap(), count)


def test_bogus_pass_in_pipeline_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PASSES, _ReluToGelu.name, _ReluToGelu())
    g = graph_of(CONV_BN.before, CONV_BN.id)
    res = run_pipeline(g, passes=("fold_bn", _ReluToGelu.name), check=False)
    assert [n.op for n in res.graph] == ["conv2d", "gelu"]
    with pytest.raises(PassError, match=f"pass '{_ReluToGelu.name}' broke numerical equivalence"):
        run_pipeline(g, passes=("fold_bn", _ReluToGelu.name))


def test_unknown_pass_in_pipeline() -> None:
    with pytest.raises(PassError, match="unknown pass 'nope'"):
        run_pipeline(graph_of(CONV_BN.before, CONV_BN.id), passes=("fold_bn", "nope"))


# -- end to end through the CLI ---------------------------------------------------------------------


def _import(path: Path) -> ModuleType:
    name = f"archc_test_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def train_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """The train form of the reparam fixture compiled by the CLI, with a randomized checkpoint."""
    d = tmp_path_factory.mktemp("train")
    assert main(["compile", str(REPARAM), "-o", str(d / "train.py")]) == 0
    model = _import(d / "train.py").create_model().eval()
    sd = randomize(model, seed=3)  # random BN statistics and perturbed parameters
    model.load_state_dict(sd, strict=True)
    torch.save(model.state_dict(), d / "train.pth")
    return d / "train.pth", model


def test_cli_deploy_weights_round_trip(train_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, train = train_checkpoint
    out = tmp_path / "deploy.py"
    assert main(["compile", str(REPARAM), "--pipeline", "deploy", "--weights", str(ckpt), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights" in printed and "merge_branches" in printed
    deploy = _import(out).create_model().eval()
    state = torch.load(out.with_suffix(".pth"), weights_only=True)
    deploy.load_state_dict(state, strict=True)
    assert not any(k.endswith("running_mean") for k in state), "BN left in the deploy module"
    assert sum(p.numel() for p in deploy.parameters()) < sum(p.numel() for p in train.parameters())
    x = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert rel_error(train(x), deploy(x)) <= 1e-5


def _corrupt(kind: str, ckpt: Path, dest: Path) -> str:
    """Write a bad checkpoint of ``kind`` to ``dest``; the text its error must contain."""
    sd = torch.load(ckpt, weights_only=True)
    key = "b3.big.conv.weight"
    if kind == "missing":
        del sd[key]
        torch.save(sd, dest)
        return f"missing key '{key}'"
    if kind == "unexpected":
        sd["b3.extra.weight"] = torch.zeros(3)
        torch.save(sd, dest)
        return "unexpected key 'b3.extra.weight'"
    if kind == "shape":
        sd[key] = sd[key][:, :, :5, :5].clone()
        torch.save(sd, dest)
        return f"key '{key}' has shape [16, 1, 5, 5], the model expects [16, 1, 7, 7]"
    if kind == "not_a_state_dict":
        torch.save([1, 2, 3], dest)
        return "holds a list, not a state_dict"
    if kind == "empty_file":
        dest.write_bytes(b"")
        return f"cannot load checkpoint '{dest}'"
    if kind == "text_file":
        dest.write_text(REPARAM.read_text())
        return f"cannot load checkpoint '{dest}'"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "missing", "unexpected", "shape", "not_a_state_dict", "empty_file",
    "text_file",
])
def test_cli_bad_checkpoint(kind: str, train_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pth"
    needle = _corrupt(kind, train_checkpoint[0], bad)
    out = tmp_path / "deploy.py"
    rc = main(["compile", str(REPARAM), "--pipeline", "deploy", "--weights", str(bad), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: ") and needle in lines[0], err
    assert all(ln.startswith("  help: ") for ln in lines[1:]), f"not a one-line error:\n{err}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"], "output written despite the error"
