"""--dtype and --channels-last on every target: artifacts loaded back as a user loads them, against float32 eager.

Each artifact of mini (and the fused pytorch/torchscript forms) is written to disk, loaded the way
its README section says (the .py imported, torch.jit.load, torch.export.load, onnxruntime) and run
on the example input converted for it; the result is compared with the float32 eager module at the
tolerance of the dtype (archc.precision.DTYPE_TOLERANCES) or the target, whichever is larger.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.bench import import_file
from archc.cli import main
from archc.compiler import CompileOptions
from archc.precision import DTYPE_TOLERANCES, Precision, cannot_run, convert_inputs, parse_precision
from archc.targets import TARGETS, TOLERANCES, build_artifact, max_rel_error, prepare, write_files

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "tests" / "fixtures" / "mini.yaml"
ONNX = all(__import__("importlib").util.find_spec(m) for m in ("onnx", "onnxruntime"))

torch.set_num_threads(1)

FFT_SPEC = """archc: 1
name: fft
inputs:
  x: [B, 3, 16, 16]
graph:
  - conv: {op: conv2d, out: 8, kernel: 3}
  - f: rfft2
  - back: {op: irfft2, size: [16, 16]}
"""


@pytest.fixture(scope="module")
def preps() -> dict[str, Any]:
    return {p: prepare(MINI, CompileOptions(pipeline=p, check=False)) for p in ("deploy", "fused")}


def _reference(prep: Any) -> torch.Tensor:
    model = prep.factory(True)()
    with torch.no_grad():
        return model(*prep.inputs)


def _load_and_run(target: str, out: Path, prep: Any, precision: Precision) -> Any:
    xs = convert_inputs(prep.inputs, precision)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if target in ("pytorch", "cudagraph"):
            mod = import_file(out)
            model = mod.create_model()
            model.load_state_dict(prep.state_dict)
            model.eval()
            want = precision.torch_dtype
            assert all(p.dtype == want for p in model.parameters() if p.is_floating_point())
            if precision.channels_last:
                conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
                assert conv.weight.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(mod.prepare_input(prep.inputs[0]), xs[0])
            return model(*xs)
        if target == "torchscript":
            return torch.jit.load(str(out))(*xs)
        if target == "export":
            return torch.export.load(str(out)).module()(*xs)
        from archc.backends.onnx import run_onnx

        return run_onnx(out.read_bytes(), xs)


def _targets() -> list[str]:
    return [t for t in TARGETS if t != "onnx" or ONNX]


@pytest.mark.parametrize("target", _targets())
@pytest.mark.parametrize("precision", [Precision("bf16"), Precision("fp32", channels_last=True)], ids=lambda p: p.label)
def test_every_target_in_bf16_and_channels_last(tmp_path: Path, preps: dict[str, Any], target: str, precision: Precision) -> None:
    prep = preps["deploy"]
    out = tmp_path / f"m{TARGETS[target].suffix}"
    if target == "onnx" and precision.dtype == "bf16":  # ONNX's Conv has no bfloat16: refused, not written
        with pytest.raises(Exception, match="target 'onnx' cannot run bf16"):
            build_artifact(prep, target, out, precision=precision)
        return
    res = build_artifact(prep, target, out, precision=precision)
    write_files(res.data)
    tol = max(TOLERANCES[target], DTYPE_TOLERANCES[precision.dtype])
    checked = [v for k, v in res.errors.items() if "float32 eager" in k]
    assert checked and checked[0] <= tol
    got = _load_and_run(target, out, prep, precision)
    ys = got if isinstance(got, (list, tuple)) else [got]
    if target != "onnx":
        assert ys[0].dtype == precision.torch_dtype
    err = max_rel_error(_reference(prep), got)
    assert err <= tol, (target, precision.label, err)
    if precision.dtype == "fp32":
        assert err <= TOLERANCES[target]  # channels-last changes no value


@pytest.mark.parametrize("target", ["pytorch", "torchscript"])
def test_fused_artifacts_in_bf16_channels_last(tmp_path: Path, preps: dict[str, Any], target: str) -> None:
    prep = preps["fused"]
    precision = Precision("bf16", channels_last=True)
    out = tmp_path / f"f{TARGETS[target].suffix}"
    res = build_artifact(prep, target, out, precision=precision)
    write_files(res.data)
    if target == "pytorch":  # bfloat16 has no oneDNN post-op path: every chain is recorded unfused, untimed
        import json

        rec = json.loads((tmp_path / "f.fusion.json").read_text())
        assert rec["key"]["dtype"] == "bfloat16" and all(not c["fused"] for c in rec["chains"])
        assert rec["channels_last"] is True  # channels-last was asked for: kept
    err = max_rel_error(_reference(prep), _load_and_run(target, out, prep, precision))
    assert err <= DTYPE_TOLERANCES["bf16"]


def test_default_precision_adds_nothing_to_the_module(preps: dict[str, Any], tmp_path: Path) -> None:
    prep = preps["deploy"]
    plain = build_artifact(prep, "pytorch", tmp_path / "a.py").data[tmp_path / "a.py"]
    same = build_artifact(prep, "pytorch", tmp_path / "a.py", precision=Precision()).data[tmp_path / "a.py"]
    bf16 = build_artifact(prep, "pytorch", tmp_path / "a.py", precision=Precision("bf16")).data[tmp_path / "a.py"]
    assert plain == same == prep.source.encode() and b"DTYPE" not in plain
    assert bf16.startswith(plain.rstrip(b"\n")) and b"DTYPE = torch.bfloat16" in bf16
    again = build_artifact(prep, "pytorch", tmp_path / "a.py", precision=Precision("bf16")).data[tmp_path / "a.py"]
    assert again == bf16  # deterministic


def test_cli_dtype_and_channels_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "compile", str(MINI), "--pipeline", "deploy", "--target", "export", "--dtype", "bf16",
                 "--channels-last", "-o", "m.pt2"]) == 0
    text = capsys.readouterr().out
    assert "export vs float32 eager (bf16+channels-last)" in text and (tmp_path / "m.pt2").is_file()


def test_onnx_bf16_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    if not ONNX:
        pytest.skip("needs onnx and onnxruntime")
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(MINI), "--target", "onnx", "--dtype", "bf16", "-o", "m.onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: target 'onnx' cannot run bf16 on this CPU") and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_a_missing_kernel_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str], dtype: str) -> None:
    # torch.fft has no float16/bfloat16 kernel on CPU: a real missing kernel, not a simulated one
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fft.yaml").write_text(FFT_SPEC)
    assert main(["-q", "compile", "fft.yaml", "--dtype", dtype, "-o", "f.py"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: target 'pytorch' cannot run {dtype} on this CPU:") and "Traceback" not in err
    assert "help: use --dtype fp32" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fft.yaml"]
    assert main(["-q", "compile", "fft.yaml", "-o", "f.py"]) == 0  # float32 compiles


def test_precision_names_and_refusals() -> None:
    assert parse_precision("bfloat16") == Precision("bf16") and parse_precision(None, True) == Precision("fp32", True)
    with pytest.raises(Exception, match="unknown --dtype 'int3'"):
        parse_precision("int3")
    exc = RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')
    refusal = cannot_run(exc, "torchscript", Precision("fp16"))
    assert refusal is not None and "target 'torchscript' cannot run fp16" in str(refusal)
    assert cannot_run(exc, "torchscript", Precision()) is None  # float32 failures stay the target's own errors
    assert cannot_run(RuntimeError("shape mismatch"), "export", Precision("fp16")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph runner in bf16 needs CUDA")
def test_cudagraph_runner_in_bf16_on_cuda(tmp_path: Path, preps: dict[str, Any]) -> None:
    prep = preps["deploy"]
    out = tmp_path / "cg.py"
    res = build_artifact(prep, "cudagraph", out, precision=Precision("bf16", channels_last=True))
    write_files(res.data)
    mod = import_file(out)
    model = mod.create_model()
    model.load_state_dict(prep.state_dict)
    runner = mod.CUDAGraphRunner(model, tuple(prep.inputs[0].shape))
    assert runner.static_input.dtype == torch.bfloat16
    got = runner(mod.prepare_input(prep.inputs[0]).cuda())
    assert max_rel_error(_reference(prep), got) <= DTYPE_TOLERANCES["bf16"]


def test_fp16_overflow_is_named_not_blamed_on_archc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # weights whose activations pass float16's 65504: the fp16 artifact is refused as an overflow, bf16 compiles
    from archc.compiler import compile_spec
    from archc.passes.equivalence import module_from_source

    monkeypatch.chdir(tmp_path)
    model = module_from_source(compile_spec(MINI).source).create_model()
    state = {k: (v * 40 if k.endswith("conv.weight") else v) for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "big.pth")
    assert main(["-q", "compile", str(MINI), "--pipeline", "deploy", "--weights", "big.pth", "--dtype", "fp16", "-o", "m.py"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the pytorch artifact overflows in its reduced dtype") and "help: use --dtype bf16" in err
    assert not (tmp_path / "m.py").exists()
    assert main(["-q", "compile", str(MINI), "--pipeline", "deploy", "--weights", "big.pth", "--dtype", "bf16", "-o", "m.py"]) == 0


def test_bench_rows_per_precision_and_the_cpu_it_ran_on(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    rc = main(["-q", "bench", str(MINI), "--pipelines", "deploy", "--targets", "pytorch,torchscript", "--batch", "1",
               "--precisions", "bf16+cl,fp16", "--iters", "2", "--warmup", "1", "--budget", "1", "--json"])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["pipeline"], r["target"], r["precision"]): r for r in doc["rows"]}
    assert set(rows) == {("train", "pytorch", "fp32")} | {("deploy", t, q) for t in ("pytorch", "torchscript")
                                                          for q in ("fp32", "bf16+cl", "fp16")}
    assert rows[("deploy", "pytorch", "bf16+cl")]["vs_fp32"] > 0 and rows[("deploy", "pytorch", "fp32")]["vs_fp32"] is None
    assert doc["cpu"] and isinstance(doc["cpu_features"], list) and any(f.startswith("dispatch") for f in doc["cpu_features"])
    from archc.bench import BenchResult, format_table, parse_precisions

    table = format_table(BenchResult(**{k: v for k, v in doc.items() if k != "rows"}, rows=[]))
    assert table.splitlines()[1].startswith("  CPU: ")
    assert parse_precisions("bf16,fp32,bf16+cl,bf16") == ["fp32", "bf16", "bf16+cl"]
    with pytest.raises(Exception, match=r"unknown precision 'bf16\+nhwc'"):
        parse_precisions("bf16+nhwc")
