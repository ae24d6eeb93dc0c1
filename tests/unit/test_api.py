"""The Python API (archc.build / compile / cost / load), the head declaration's refusals, and the
examples of README.md's "Python API" section and docs/api.md, which run here."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archc
from archc import ArchcError

ROOT = Path(__file__).resolve().parents[2]
RESNET = ROOT / "specs" / "resnet.yaml"
MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
SMALL = {"img": 64}

TINY = """archc: 1
name: tiny
params: {num_classes: 10, in_chans: 3, drop_path_rate: 0.1}
inputs: {x: [B, "${in_chans}", 16, 16]}
graph:
  - stem: {op: conv2d, out: 8, kernel: 3, padding: 1}
  - act: relu
  - drop: {op: drop_path, p: "${drop_path_rate}"}
  - pool: {op: global_avgpool, keepdim: false}
  - fc: {op: linear, out: "${num_classes}"}
head: {features: drop, classifier: fc}
"""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _import(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(f"api_test_{path.stem}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_import_is_cheap() -> None:
    code = "import archc, sys; print(sorted(m for m in ('torch', 'yaml', 'jinja2', 'networkx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_names() -> None:
    for name in archc.__all__:
        assert getattr(archc, name) is not None, name
    assert callable(archc.cost)
    importlib.import_module("archc.cost.model")  # the subpackage must not rebind the function
    assert callable(archc.cost)
    with pytest.raises(AttributeError):
        archc.no_such_thing  # noqa: B018


def test_build_follows_params() -> None:
    model = archc.build(RESNET, "resnet18", {**SMALL, "num_classes": 10}).eval()
    assert model.fc.out_features == 10
    assert sum(p.numel() for p in model.parameters()) == archc.cost(RESNET, "resnet18", {**SMALL, "num_classes": 10}).params
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    # the same overrides written as on the command line
    assert archc.cost(RESNET, "resnet18", ["num_classes=10"]).params == archc.cost(RESNET, "resnet18", {"num_classes": 10}).params


def test_loaded_spec_compiles_from_its_text(tmp_path: Path) -> None:
    doc = archc.load_spec_doc(MINI, MINI.read_text().replace("out: 10", "out: 7"))
    assert archc.cost(doc).params == archc.cost(MINI).params - 3 * 32 - 3
    assert "nn.Conv2d(32, 7, 1)" in archc.compile(doc).source
    with torch.no_grad():
        assert archc.build(doc)(torch.randn(1, 3, 32, 32)).shape == (1, 7, 8, 8)


def test_compile_writes_module_and_weights_and_load_reads_them(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = archc.build(RESNET, "resnet18", SMALL).state_dict()
    ckpt = tmp_path / "ckpt.pth"
    torch.save(trained, ckpt)
    out = tmp_path / "r18.py"
    res = archc.compile(RESNET, "resnet18", SMALL, weights=ckpt, out=out)
    assert res.files == [out, out.with_suffix(".pth")]
    model = archc.load(out)
    for k, v in trained.items():
        assert torch.equal(model.state_dict()[k], v), k
    # timm's rules for other class and channel counts: a fresh classifier, the first conv summed
    five = archc.load(out, num_classes=5)
    assert five.fc.out_features == 5 and torch.equal(five.layers[0].blocks[0].conv1.conv.weight,
                                                     trained["layers.0.blocks.0.conv1.conv.weight"])
    gray = archc.load(out, in_chans=1)
    assert torch.equal(gray.stem.conv.weight, trained["stem.conv.weight"].sum(dim=1, keepdim=True))
    mod = _import(out)
    assert torch.equal(mod.create_model(pretrained=True).fc.weight, trained["fc.weight"])
    assert torch.equal(mod.create_model(pretrained=str(ckpt)).fc.weight, trained["fc.weight"])


def test_pretrained_without_weights_says_so(tmp_path: Path) -> None:
    out = tmp_path / "tiny.py"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    archc.compile(spec, out=out)
    mod = _import(out)
    with pytest.raises(FileNotFoundError, match="no weights beside this module"):
        mod.create_model(pretrained=True)
    assert archc.load(out).fc.out_features == 10  # no .pth: fresh weights


def test_other_artifacts_load(tmp_path: Path) -> None:
    x = torch.randn(1, 3, 32, 32)
    ts = archc.compile(MINI, target="torchscript", out=tmp_path / "m.pt")
    assert ts.files and archc.load(tmp_path / "m.pt")(x).shape == (1, 10, 8, 8)
    archc.compile(MINI, target="export", out=tmp_path / "m.pt2")
    assert archc.load(tmp_path / "m.pt2")(x).shape == (1, 10, 8, 8)
    with pytest.raises(ArchcError, match="keyword arguments apply to a generated .py module only"):
        archc.load(tmp_path / "m.pt", num_classes=3)


def test_onnx_loads_or_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from archc.backends.onnx import have_onnx, have_onnxruntime

    if not have_onnx():
        pytest.skip("the onnx package is not installed")
    archc.compile(MINI, target="onnx", out=tmp_path / "m.onnx")
    if have_onnxruntime():
        y = archc.load(tmp_path / "m.onnx")(torch.randn(2, 3, 32, 32))
        assert y.shape == (2, 10, 8, 8)
        with pytest.raises(ArchcError, match="takes 1 input "):
            archc.load(tmp_path / "m.onnx")()
    monkeypatch.setattr("archc.backends.onnx.have_onnxruntime", lambda: False)
    with pytest.raises(ArchcError, match="needs onnxruntime"):
        archc.load(tmp_path / "m.onnx")


def test_load_refuses_what_it_cannot_load(tmp_path: Path) -> None:
    (tmp_path / "w.pth").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "plain.py").write_text("x = 1\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    cases = {"missing.py": "artifact not found", "w.pth": "holds weights, not a model", "notes.txt": "unknown artifact suffix",
             "plain.py": "not a module generated by archc", "broken.py": "cannot import"}
    for name, message in cases.items():
        with pytest.raises(ArchcError, match=message):
            archc.load(tmp_path / name)


def test_user_errors_are_archc_errors() -> None:
    with pytest.raises(ArchcError, match="spec not found"):
        archc.build("no/such/spec.yaml")
    with pytest.raises(ArchcError, match="did you mean 'num_classes'"):
        archc.cost(RESNET, params={"num_class": 10})
    with pytest.raises(ArchcError, match="a spec is a path or a loaded spec"):
        archc.cost(42)  # type: ignore[arg-type]


def test_drop_path_rate_and_script(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    archc.compile(spec, out=tmp_path / "tiny.py")
    mod = _import(tmp_path / "tiny.py")
    model = mod.create_model(drop_path_rate=0.25, num_classes=3).eval()
    assert model.drop.p == 0.25 and model.drop_path_rate == 0.25
    scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(scripted(x), model(x))
        feats = scripted.forward_features(x)
        assert torch.equal(scripted.forward_head(feats, pre_logits=True), model.forward_head(feats, pre_logits=True))


HEAD_ERRORS = {
    "classifier: fcx": ("11:36", "head: classifier 'fcx' is not in the graph", "did you mean 'fc'?"),
    "classifier: [fc, pool]": ("11:", "the classifiers read different values", None),
    "classifier: stem.conv": ("11:36", "classifier 'stem' is not after the features node 'drop'", None),
    "classifier: fc.weight": ("11:36", "classifier 'fc.weight': 'fc' is not a block instance", "name the node itself: fc"),
    "features: nope": ("11:18", "features node 'nope' is not in the graph", None),
    "colour: red": ("11:", "unknown key 'colour' in head", None),
    "interpolation: cubic": ("11:", "unknown interpolation 'cubic'", "did you mean 'bicubic'?"),
}


@pytest.mark.parametrize("change", list(HEAD_ERRORS))
def test_head_refusals_point_at_the_declaration(change: str, tmp_path: Path) -> None:
    key = change.split(":")[0]
    line = re.sub(rf"{key}: [^,}}]+", change, "head: {features: drop, classifier: fc}") if key in (
        "classifier", "features") else "head: {features: drop, classifier: fc, " + change + "}"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("head: {features: drop, classifier: fc}", line))
    where, message, hint = HEAD_ERRORS[change]
    with pytest.raises(ArchcError) as info:
        archc.cost(spec)
    text = info.value.render() if hasattr(info.value, "render") else str(info.value)
    assert f"tiny.yaml:{where}" in text and message in text, text
    if hint:
        assert hint in text, text


def test_head_structure_refusals(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    bypass = TINY.replace("  - fc: {op: linear", "  - side: {op: global_avgpool, in: act, keepdim: false}\n"
                                                 "  - both: {op: add, in: [pool, side]}\n  - fc: {op: linear")
    spec.write_text(bypass)
    with pytest.raises(ArchcError, match="reads 'act', computed before it"):
        archc.cost(spec)
    spec.write_text(TINY.replace("num_classes: 10, ", "").replace('"${num_classes}"', "10"))
    with pytest.raises(ArchcError, match="needs a param 'num_classes'"):
        archc.cost(spec)
    spec.write_text(TINY.replace('"${in_chans}"', "3"))
    with pytest.raises(ArchcError, match="must take its channels from the param 'in_chans'"):
        archc.cost(spec)


def test_cli_reports_a_bad_head_in_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY.replace("classifier: fc}", "classifier: fcx}"))
    proc = subprocess.run([sys.executable, "-m", "archc", "compile", str(spec), "-o", str(tmp_path / "t.py")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: head: classifier 'fcx' is not in the graph" in proc.stderr
    assert not (tmp_path / "t.py").exists()


def _readme_python() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "README's Python API section has no python block"
    return "\n".join(blocks)


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code = _readme_python()
    exec(compile(code, "README.md#python-api", "exec"), {"__name__": "readme_example"})  # noqa: S102


def test_api_md_examples_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = doctest.testfile(str(ROOT / "docs" / "api.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0
