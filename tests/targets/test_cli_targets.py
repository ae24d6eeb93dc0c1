"""`archc compile --target/--pipeline/--input-shape`, `archc bench`, weights and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from archc.cli import main
from archc.compiler import CompileOptions
from archc.passes.equivalence import module_from_source, randomize
from archc.targets import TARGETS, compile_target, parse_shape, prepare, write_files
from tests.targets.helpers import ROOT

MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
REPARAM = ROOT / "tests" / "fixtures" / "reparam.yaml"


def test_cli_compile_torchscript_fused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mini.pt"
    assert main(["compile", str(MINI), "--target", "torchscript", "--pipeline", "fused", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "form_regions" in text and "fusion" in text and "torchscript vs eager" in text
    m = torch.jit.load(str(out))
    assert m(torch.randn(3, 3, 32, 32)).shape == (3, 10, 8, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["mini.pt"]  # no temporary file left behind


def test_cli_compile_export_with_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mini.pt2"
    assert main(["compile", str(MINI), "--target", "export", "--input-shape", "2,3,32,32", "-o", str(out)]) == 0
    assert "dynamic batch" in capsys.readouterr().out
    prog = torch.export.load(str(out)).module()
    assert prog(torch.randn(5, 3, 32, 32)).shape[0] == 5


def test_cli_default_output_name_uses_the_target_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(MINI), "--target", "torchscript"]) == 0
    assert (tmp_path / f"mini_small{TARGETS['torchscript'].suffix}").exists()


@pytest.mark.parametrize("args,message", [
    (["--input-shape", "1,3,x"], "--input-shape must be comma-separated integers"),
    (["--input-shape", "1,3,32"], "has rank 3"),
])
def test_cli_errors_are_one_line(args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(MINI), "--target", "export", "-o", str(tmp_path / "m.pt2"), *args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cli_rejects_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compile", str(MINI), "--target", "tflite"])
    assert "invalid choice" in capsys.readouterr().err


def test_weights_are_converted_into_every_artifact(tmp_path: Path) -> None:
    train = prepare(REPARAM, CompileOptions())
    model = train.factory(False)()
    sd = randomize(model, seed=3)
    model.load_state_dict(sd)
    ckpt = tmp_path / "train.pth"
    torch.save(model.state_dict(), ckpt)
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        ref = model(x)
    ts = compile_target(REPARAM, CompileOptions(target="torchscript", pipeline="fused", weights=str(ckpt)), tmp_path / "r.pt")
    assert ts.files == [tmp_path / "r.pt"]
    py = compile_target(REPARAM, CompileOptions(target="pytorch", pipeline="deploy", weights=str(ckpt)), tmp_path / "r.py")
    assert py.files == [tmp_path / "r.py", tmp_path / "r.pth"]
    deploy = module_from_source((tmp_path / "r.py").read_text()).create_model().eval()
    deploy.load_state_dict(torch.load(tmp_path / "r.pth", weights_only=True))
    with torch.no_grad():
        for got in (torch.jit.load(str(tmp_path / "r.pt"))(x), deploy(x)):
            assert float((ref - got).abs().max()) / float(ref.abs().max()) <= 1e-4


def test_write_files_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = os.replace

    def flaky(a: str, b: str) -> None:
        calls["n"] += 1
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        write_files({tmp_path / "a.pt": b"1", tmp_path / "a.pth": b"2"})
    monkeypatch.setattr(os, "replace", real)
    assert not list(tmp_path.iterdir())
    assert write_files({tmp_path / "a.pt": b"1"}) == [tmp_path / "a.pt"]


def test_write_files_makes_missing_folders_and_removes_them_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "build" / "deploy" / "m.pt"
    assert write_files({out: b"1"}) == [out] and out.read_bytes() == b"1"

    def flaky(a: str, b: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError):
        write_files({tmp_path / "new" / "sub" / "m.pt": b"1"})
    assert not (tmp_path / "new").exists()


def test_failed_target_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import archc.backends.export as exp

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("unsupported op in exporter")

    monkeypatch.setattr(exp, "build_export", boom)
    from archc.diagnostics import ArchcError

    with pytest.raises(ArchcError, match="cannot compile"):
        compile_target(MINI, CompileOptions(target="export"), tmp_path / "m.pt2")
    assert not list(tmp_path.iterdir())


def test_parse_shape() -> None:
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape(None) is None


def test_cli_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", str(MINI), "--pipelines", "deploy,fused", "--targets", "pytorch,torchscript", "--batch", "1,2",
               "--iters", "3", "--warmup", "1", "--budget", "1", "--json", "--precisions", "fp32"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["pipeline"], r["target"], r["batch"]) for r in doc["rows"]}
    assert ("train", "pytorch", 1) in rows and ("fused", "torchscript", 2) in rows and len(rows) == 10
    base = next(r for r in doc["rows"] if (r["pipeline"], r["target"], r["batch"]) == ("train", "pytorch", 1))
    assert base["vs_train"] == 1.0 and base["runs"] >= 3
    fused = next(r for r in doc["rows"] if (r["pipeline"], r["target"]) == ("fused", "torchscript"))
    assert fused["vs_deploy"] is not None


def test_cli_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", str(MINI), "--pipelines", "deploy", "--targets", "pytorch", "--batch", "1", "--iters", "2",
               "--warmup", "1", "--budget", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "× train eager" in out and "deploy" in out


def test_cli_bench_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(MINI), "--targets", "tflite"]) == 1
    assert "unknown target 'tflite'" in capsys.readouterr().err
    assert main(["bench", str(MINI), "--batch", "one"]) == 1
