"""Registry sweep: every bundled spec with a classifier gets timm's model interface.

For the smallest variant of each spec with a ``head:`` (at a 64×64 input, to stay fast): a model
made with ``create_model(num_classes=10, in_chans=1)`` has the state dict and the outputs of the
spec compiled with ``-p num_classes=10 -p in_chans=1`` (so only the declared layers changed, and the
cost table, computed from the spec with those values, counts its parameters); ``forward`` equals
``forward_head(forward_features(x))``; ``forward_features`` gives the features node's type;
``reset_classifier(0)`` makes ``forward`` the pre-logits features and ``reset_classifier(7)`` gives
seven logits; ``default_cfg`` names modules that exist. A spec with a ``drop_path_rate`` param gives a
model that takes it, and every stochastic-depth rate equals the spec's for that rate.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

import archc
from archc.compiler import CompileOptions, build_graph, compile_spec
from archc.cost.model import graph_cost
from archc.spec.document import load_spec_doc
from tests.artifact import import_source

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
SMALL = {"img": 64}


def _smallest(path: Path) -> str | None:
    """The variant with the fewest parameters (the sweep's cost grows with the model)."""
    doc = load_spec_doc(path)
    variants = list(doc.variants) or [None]
    return min(variants, key=lambda v: graph_cost(build_graph(path, CompileOptions(variant=v))[1]).params)


def _heads() -> list:
    return [pytest.param(p, _smallest(p), id=p.stem) for p in SPECS if load_spec_doc(p).head is not None]


def test_every_classifier_spec_declares_its_head() -> None:
    """A spec with a num_classes param classifies: it must say where its head is."""
    missing = [p.name for p in SPECS if "num_classes" in load_spec_doc(p).params and load_spec_doc(p).head is None]
    assert not missing, (f"{missing} classify (they have num_classes) but declare no head; add e.g. "
                         "'head: {features: stages, classifier: head}', an in_chans param and x: [B, \"${in_chans}\", ...]")


@pytest.mark.parametrize("path,variant", _heads())
def test_timm_interface(path: Path, variant: str | None, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    params = {k: v for k, v in SMALL.items() if k in load_spec_doc(path).params}
    mod = import_source(compile_spec(path, CompileOptions(variant=variant, params=params)).source, tmp_path)
    torch.manual_seed(0)
    # a spec with a drop_path_rate param gives a model that takes it (stochastic depth when retraining)
    model_class = inspect.signature(mod.create_model).return_annotation
    takes_rate = "drop_path_rate" in inspect.signature(model_class).parameters
    assert takes_rate == ("drop_path_rate" in load_spec_doc(path).params)
    rate = {"drop_path_rate": 0.3} if takes_rate else {}
    model = mod.create_model(num_classes=10, in_chans=1, **rate).eval()
    assert model.num_classes == 10
    # the spec compiled with the new values: the same layers, the same outputs on the same weights
    given = {**params, "num_classes": 10, "in_chans": 1, **rate}
    expected = compile_spec(path, CompileOptions(variant=variant, params=given))
    ref = import_source(expected.source, tmp_path).create_model().eval()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    ref.load_state_dict(model.state_dict())
    rates = [(name, m.p) for name, m in model.named_modules() if type(m).__name__ == "DropPath"]
    assert rates == [(name, m.p) for name, m in ref.named_modules() if type(m).__name__ == "DropPath"]
    assert sum(p.numel() for p in model.parameters()) == expected.cost.params == archc.cost(
        path, variant, given).params
    shape = mod.INPUT_SHAPE
    x = torch.randn(2, 1, *shape[2:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 10)
        assert torch.equal(y, ref(x))
        feats = model.forward_features(x)
        head = expected.graph.meta["head"]
        want = expected.graph.nodes[head["features"]].types[0].concrete(2)
        assert tuple(feats.shape) == tuple(want)
        assert torch.equal(model.forward_head(feats), y)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.flatten(1).shape == (2, model.head_hidden_size)
        assert model.num_features in (feats.shape[1], feats.shape[-1])
        model.reset_classifier(0)
        assert model.num_classes == 0
        assert torch.equal(model(x).flatten(1), pre.flatten(1))
        model.reset_classifier(7)
        assert model(x).shape == (2, 7)
    cfg = mod.DEFAULT_CFG
    assert cfg["num_classes"] == 1000 and cfg["input_size"] == tuple(shape[1:])
    assert len(cfg["mean"]) == len(cfg["std"]) == shape[1]
    names = [cfg["classifier"]] if isinstance(cfg["classifier"], str) else list(cfg["classifier"])
    for name in [cfg["first_conv"], *names]:
        model.get_submodule(name)
    assert isinstance(model.get_submodule(cfg["first_conv"]), torch.nn.Conv2d)
    assert model.get_submodule(cfg["first_conv"]).in_channels == 1


@pytest.mark.parametrize("name", ["repvgg", "convfirst"])
def test_deploy_form(name: str, tmp_path: Path) -> None:
    """After the deploy passes: RepVGG's merged stem still takes in_chans (from its input size) and
    num_classes; ConvFirst's classifier is folded with its batch norm, so its model is fixed to the
    compiled values and says so, keeping the feature/head split."""
    torch.set_num_threads(1)
    path = ROOT / "specs" / f"{name}.yaml"
    mod = import_source(compile_spec(path, CompileOptions(pipeline="deploy", params=SMALL)).source, tmp_path)
    x = torch.randn(2, 3, 64, 64)
    if name == "convfirst":
        model = mod.create_model().eval()
        assert not hasattr(model, "reset_classifier")
        with pytest.raises(TypeError):
            mod.create_model(num_classes=10)
        with torch.no_grad():
            assert torch.equal(model.forward_head(model.forward_features(x)), model(x))
        return
    model = mod.create_model(num_classes=10, in_chans=1).eval()
    given = {**SMALL, "num_classes": 10, "in_chans": 1}
    ref = import_source(compile_spec(path, CompileOptions(pipeline="deploy", params=given)).source, tmp_path).create_model()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x[:, :1]), ref.eval()(x[:, :1]))
