"""Checkpoints in torchvision / timm / reference layouts mapped onto the bundled specs, checked in float64;
truncated and shuffled checkpoints refused; `archc weights` and `archc compile --weights --map`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.passes.equivalence import module_from_source
from archc.weights import compare_outputs, map_checkpoint
from tests.weights.references import TimmConvNeXt, TorchvisionResNet, randomized, torchvision_resnet18

ROOT = Path(__file__).resolve().parents[2]
RESNET = ["specs/resnet.yaml", "-v", "resnet18", "-p", "img=32"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(ROOT)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TorchvisionResNet]:
    """A torchvision-layout ResNet-18 with random weights and statistics, saved as a training script would."""
    model = randomized(torchvision_resnet18(), 1)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 90}, path)
    return path, model


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_torchvision_resnet18_maps_and_matches(resnet: tuple[Path, TorchvisionResNet]) -> None:
    path, _ = resnet
    res = map_checkpoint("specs/resnet.yaml", str(path), variant="resnet18", params=["img=32"],
                         check="tests.weights.references:torchvision_resnet18")
    wm = res.map
    assert wm.complete and not wm.reordered and not wm.reshaped
    assert len(wm.mapping) == 102 and len(wm.carried) == 20
    assert wm.mapping["stem.conv.weight"] == "conv1.weight"
    assert wm.mapping["layers.1.blocks.0.downsample.conv.weight"] == "layer2.0.downsample.0.weight"
    assert wm.mapping["layers.3.blocks.1.conv2.bn.running_var"] == "layer4.1.bn2.running_var"
    assert wm.mapping["fc.bias"] == "fc.bias"
    assert res.check_error is not None and res.check_error <= 1e-12


@pytest.mark.parametrize("conv_mlp", [False, True], ids=["linear_mlp", "conv_mlp"])
def test_timm_convnext_gamma_first_maps_onto_atto(conv_mlp: bool) -> None:
    """timm's block lists its layer scale first; the spec's ln_mlp has it last. With conv_mlp the MLP weights are
    1×1 convolutions [o, i, 1, 1] onto the spec's linear [o, i]."""
    src = randomized(TimmConvNeXt([2, 2, 6, 2], [40, 80, 160, 320], 1000, conv_mlp=conv_mlp), 2)
    sd = src.state_dict()
    assert list(sd)[4] == "stages.0.blocks.0.gamma"
    res = map_checkpoint("specs/convnext.yaml", sd, variant="atto", params=["img=32"])
    wm = res.map
    assert wm.complete, wm.problems()
    assert len(wm.reordered) == 12  # one gamma per block
    assert wm.mapping["stages.2.blocks.5.mlp.gamma.gamma"] == "stages.2.blocks.5.gamma"
    assert wm.mapping["stages.1.down.conv.weight"] == "stages.1.downsample.1.weight"
    assert len(wm.reshaped) == (24 if conv_mlp else 0)
    err = compare_outputs(src, sd, res.model, res.state, [(2, 3, 32, 32)])
    assert err <= 1e-12


def test_transxnet_t_against_the_reference_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.reference.transxnet import transxnet_t

    ckpt = tmp_path / "transxnet_t.pth"
    torch.save(randomized(transxnet_t(img_size=64), 4).state_dict(), ckpt)
    factory = tmp_path / "factory.py"
    factory.write_text("from benchmarks.reference.transxnet import transxnet_t\n\n\n"
                       "def build():\n    return transxnet_t(img_size=64)\n")
    out = tmp_path / "mapped.pth"
    rc, stdout, err = _run(capsys, "weights", "specs/transxnet.yaml", "-v", "t", "-p", "img=64", "--from", str(ckpt),
                           "-o", str(out), "--check", f"{factory}:build")
    assert rc == 0, err
    assert "mapped 1348 of 1348 tensors" in stdout
    found = re.search(r"max rel\. error (\S+)", stdout)
    assert found and float(found.group(1)) <= 1e-12
    state = torch.load(out, weights_only=True)
    res = map_checkpoint("specs/transxnet.yaml", str(ckpt), variant="t", params=["img=64"])
    res.model.load_state_dict(state, strict=True)
    assert list(state) == list(res.model.state_dict())


def test_truncated_checkpoint_is_refused_with_the_list(resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, model = resnet
    sd = model.state_dict()
    ckpt = tmp_path / "trunc.pth"
    torch.save({k: v for k, v in list(sd.items())[:-3]}, ckpt)  # fc.weight, fc.bias, a counter
    out = tmp_path / "o.pth"
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(ckpt), "-o", str(out))
    assert rc == 1 and not out.exists()
    lines = err.strip().splitlines()
    assert "does not map onto resnet.yaml: 2 tensors of the model are not in it" in lines[0]
    assert any(line.split()[:2] == ["model", "fc.weight"] for line in lines)
    assert any(line.split()[:2] == ["model", "fc.bias"] for line in lines)
    assert "Traceback" not in err
    # --allow-partial writes it, says what is missing, keeps the module's initialized values there
    rc, stdout, err = _run(capsys, "weights", *RESNET, "--from", str(ckpt), "-o", str(out), "--allow-partial")
    assert rc == 0 and out.exists() and "partial" in stdout and "fc.weight" in stdout
    state = torch.load(out, weights_only=True)
    assert torch.equal(state["layers.0.blocks.0.conv1.conv.weight"], sd["layer1.0.conv1.weight"])


@pytest.mark.parametrize("kind", ["stages_reordered", "tensor_dropped"])
def test_shuffled_checkpoint_is_refused(kind: str, resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, model = resnet
    sd = model.state_dict()
    if kind == "stages_reordered":  # layer3 (256 channels) listed before layer2 (128 channels)
        def part(*prefixes: str) -> list[str]:
            return [k for k in sd if k.startswith(prefixes)]

        order = part("conv1", "bn1", "layer1") + part("layer3") + part("layer2") + part("layer4", "fc")
        assert sorted(order) == sorted(sd)
        shuffled = {k: sd[k] for k in order}
        want = ["out of order"]
    else:
        shuffled = {k: v for k, v in sd.items() if k != "layer2.0.bn1.running_var"}
        want = ["model      layers.1.blocks.0.conv1.bn.running_var [128]"]
    ckpt = tmp_path / "bad.pth"
    torch.save(shuffled, ckpt)
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(ckpt), "-o", str(tmp_path / "o.pth"))
    assert rc == 1 and "does not map" in err.splitlines()[0]
    assert all(w in err for w in want), err


def test_compile_map_carries_the_mapped_weights(resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, model = resnet
    out = tmp_path / "r18.py"
    rc, _, err = _run(capsys, "compile", *RESNET, "--weights", str(path), "-o", str(out))
    assert rc == 1 and "missing key" in err  # without --map the layout is refused
    rc, _, err = _run(capsys, "compile", *RESNET, "--weights", str(path), "--map", "-o", str(out))
    assert rc == 0, err
    net = module_from_source(out.read_text()).create_model()
    net.load_state_dict(torch.load(out.with_suffix(".pth"), weights_only=True), strict=True)
    err64 = compare_outputs(TorchvisionResNet(), model.state_dict(), net, net.state_dict(), [(2, 3, 32, 32)])
    assert err64 <= 1e-12
    trunc = tmp_path / "trunc.pth"
    torch.save(dict(list(model.state_dict().items())[:-5]), trunc)
    rc, _, err = _run(capsys, "compile", *RESNET, "--weights", str(trunc), "--map", "-o", str(tmp_path / "t.py"))
    assert rc == 1 and "does not map" in err and not (tmp_path / "t.py").exists()


def test_check_fails_when_the_models_compute_differently(resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = resnet
    factory = tmp_path / "other.py"
    factory.write_text("import torch\nfrom tests.weights.references import TorchvisionResNet\n\n\n"
                       "class NoFinalReLU(TorchvisionResNet):\n"
                       "    def forward(self, x):\n        return super().forward(x) * 1.001\n\n\n"
                       "def build():\n    return NoFinalReLU()\n")
    out = tmp_path / "o.pth"
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(path), "-o", str(out), "--check", f"{factory}:build")
    assert rc == 1 and not out.exists()
    assert "float64 relative error" in err and "> 1e-12" in err


@pytest.mark.parametrize("check, message", [
    ("no_colon", "--check takes MODULE:FACTORY"),
    ("tests.weights.nonexistent_module:build", "no module 'tests.weights.nonexistent_module'"),
    ("tests.weights.references:nothing_here", "has no function 'nothing_here'"),
    ("tests.weights.references:TorchvisionResNet", None),  # a class is a factory too (its defaults: ResNet-18)
])
def test_check_argument_errors(check: str, message: str | None, resnet: tuple[Path, TorchvisionResNet],
                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = resnet
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(path), "-o", str(tmp_path / "o.pth"), "--check", check)
    if message is None:
        assert rc == 0, err
    else:
        assert rc == 1 and message in err and len(err.strip().splitlines()) <= 2, err


def test_checkpoint_that_does_not_load_into_the_factory(resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = resnet
    factory = tmp_path / "ten.py"
    factory.write_text("from tests.weights.references import TorchvisionResNet\n\n\n"
                       "def build():\n    return TorchvisionResNet(num_classes=10)\n")
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(path), "-o", str(tmp_path / "o.pth"),
                      "--check", f"{factory}:build")
    assert rc == 1 and "does not load into the source model" in err


def test_outputs_are_checked(resnet: tuple[Path, TorchvisionResNet], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = resnet
    before = path.read_bytes()
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(path), "-o", str(path))
    assert rc == 1 and path.read_bytes() == before
    rc, _, err = _run(capsys, "weights", *RESNET, "--from", str(path), "-o", str(tmp_path / "o.pt"))
    assert rc == 1 and "must be a .pth file" in err


_HEADS_SPEC = """archc: 1
name: heads
inputs:
  x: [B, 4, 8, 8]
graph:
- lconv: {op: conv2d, in: x, out: 4, kernel: 3}
- cconv: {op: conv2d, in: x, out: 4, kernel: 3}
- NAME1: {op: conv2d, in: x, out: 4, kernel: 3}
- NAME2: {op: conv2d, in: x, out: 4, kernel: 3}
- loc: {op: relu, in: lconv}
- cls: {op: sigmoid, in: cconv}
- other: {op: tanh, in: NAME1}
- fourth: {op: abs, in: NAME2}
outputs: [cls, loc, other, fourth]
"""

_HEADS_SOURCE = """import torch
import torch.nn as nn


class Official(nn.Module):
    # registered cls first: the checkpoint lists cconv before lconv
    def __init__(self):
        super().__init__()
        self.cconv = nn.Conv2d(4, 4, 3, padding=1)
        self.lconv = nn.Conv2d(4, 4, 3, padding=1)
        self.NAME1 = nn.Conv2d(4, 4, 3, padding=1)
        self.NAME2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.cconv(x)), torch.relu(self.lconv(x)), torch.tanh(self.NAME1(x)), self.NAME2(x).abs()
"""


@pytest.mark.parametrize(("spec_names", "src_names"), [
    (("extra", "last"), ("extra", "last")), (("extra", "last"), ("extra", "conv4")), (("p", "r"), ("q", "s"))],
    ids=["named", "left_over", "unsettled"])
def test_swapped_equal_shape_convs_via_cli(spec_names: tuple[str, str], src_names: tuple[str, str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Four convs of one shape, the checkpoint's first two the other way round: names settle it (the
    others pair by name, or one by name and the last as the one left over) and --check confirms the
    outputs; with two names on each side that match nothing, the names contradict the order without
    settling it, and the map is refused with the group listed."""
    spec = tmp_path / "heads.yaml"
    spec.write_text(_HEADS_SPEC.replace("NAME1", spec_names[0]).replace("NAME2", spec_names[1]))
    factory = tmp_path / "official.py"
    factory.write_text(_HEADS_SOURCE.replace("NAME1", src_names[0]).replace("NAME2", src_names[1]))
    ns: dict[str, object] = {}
    exec(compile(factory.read_text(), str(factory), "exec"), ns)  # noqa: S102 - the test's own source model
    model = randomized(ns["Official"](), 5)  # type: ignore[operator]
    ckpt, out = tmp_path / "official.pth", tmp_path / "mapped.pth"
    torch.save(model.state_dict(), ckpt)
    rc, stdout, err = _run(capsys, "weights", str(spec), "--from", str(ckpt), "-o", str(out),
                           "--check", f"{factory}:Official")
    if spec_names[0] == "p":
        assert rc == 1 and not out.exists()
        assert "1 group is ambiguous" in err.splitlines()[0], err
        line = next(ln for ln in err.splitlines() if "ambiguous  checkpoint" in ln)
        assert all(f"{k}.{t}" in line for k in ("cconv", "lconv", "p", "q", "r", "s") for t in ("weight", "bias")), line
        return
    assert rc == 0, err
    assert "mapped 8 of 8 tensors (2 reordered within blocks)" in stdout, stdout
    found = re.search(r"max rel\. error (\S+)", stdout)
    assert found and float(found.group(1)) <= 1e-12
    state = torch.load(out, weights_only=True)
    assert torch.equal(state["lconv.weight"], model.state_dict()["lconv.weight"])
