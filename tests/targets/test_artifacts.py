"""Every target's artifact, loaded in a FRESH process without archc, matches the eager module.

* every spec in specs/ (small: one block per stage, 64-pixel input) → pytorch + torchscript (train pipeline)
  and export, onnx (with onnxruntime installed), cudagraph (deploy pipeline);
* a few specs × pipelines → export, onnx, cudagraph and the fused pytorch/torchscript artifacts.

Each group is built in this process (the build itself loads the artifact back and checks it), then all
artifacts of the group are loaded in ONE ``python -I`` subprocess in which ``import archc`` fails
(tests/targets/fresh_load.py). Tolerances (max |a − b| / max |a|, float32) are archc.targets.TOLERANCES:
pytorch 1e-5, torchscript 1e-4, export 1e-5, onnx 1e-4 (onnxruntime), cudagraph 5e-3 (on CUDA;
without CUDA the module is compared on CPU and create_runner() must refuse with a CUDA error).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from archc.compiler import CompileOptions
from archc.targets import TARGETS, TOLERANCES, build_artifact, prepare, write_files
from tests.targets.helpers import ROOT, SPECS, run_fresh, save_case, small_params

MINI = ROOT / "tests" / "fixtures" / "mini.yaml"


def _have(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def _expected(prep: Any, cpu: bool) -> Any:
    model = prep.factory(cpu)()
    with torch.no_grad():
        return model(*prep.inputs)


def _build_cases(folder: Path, jobs: list[tuple[Path, list[str], str, list[str]]],
                 tune: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build (spec, params, pipeline, targets) jobs; returns fresh-process cases and the in-process results."""
    cases: list[dict[str, Any]] = []
    built: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for spec, params, pipeline, targets in jobs:
            prep = prepare(spec, CompileOptions(params=params, pipeline=pipeline, check=pipeline == "fused"))
            for target in targets:
                cid = f"{spec.stem}/{pipeline}/{target}"
                out = folder / f"{spec.stem}_{pipeline}_{target}{TARGETS[target].suffix}"
                if target == "cudagraph":
                    out = out.with_name(out.stem + "_cg.py")
                res = build_artifact(prep, target, out, tune=tune)
                write_files(res.data)
                built[cid] = res
                portable = pipeline == "fused" and target in ("export", "onnx", "cudagraph")
                state = prep.state_dict if target in ("pytorch", "cudagraph") else None
                dynamic = target in ("export", "onnx") and not any("static" in n for n in res.notes)
                cases.append(save_case(folder, cid, target, out, prep.inputs, _expected(prep, not portable), TOLERANCES[target],
                                       state, batch2=dynamic))
    return cases, built


def _assert_all_ok(results: dict[str, Any], cases: list[dict[str, Any]]) -> None:
    bad = {k: v for k, v in results.items() if not v.get("ok")}
    assert not bad, bad
    assert set(results) == {c["id"] for c in cases}


def _portable_targets() -> list[str]:
    return ["export", "cudagraph"] + (["onnx"] if _have("onnx") and _have("onnxruntime") else [])


def test_every_spec_every_target(tmp_path: Path) -> None:
    """Train form → pytorch and torchscript; deploy form → export, onnx and cudagraph; all loaded in one fresh process."""
    jobs = []
    for spec in SPECS:
        jobs += [(spec, small_params(spec), "train", ["pytorch", "torchscript"]),
                 (spec, small_params(spec), "deploy", _portable_targets())]
    cases, built = _build_cases(tmp_path, jobs, tune=False)
    assert len(built) == len(SPECS) * (2 + len(_portable_targets()))
    for cid, res in built.items():
        if cid.endswith("torchscript"):
            assert res.errors["torchscript vs eager"] <= TOLERANCES["torchscript"], cid
    _assert_all_ok(run_fresh(cases, tmp_path), cases)


def _matrix() -> list[tuple[Path, list[str], str, list[str]]]:
    spec = {p.stem: p for p in SPECS}
    portable = _portable_targets()
    jobs = [(MINI, [], "train", ["pytorch", "torchscript"] + portable)]
    if "repvgg" in spec:
        jobs += [(spec["repvgg"], small_params(spec["repvgg"]), "deploy", portable),
                 (spec["repvgg"], small_params(spec["repvgg"]), "fused", ["pytorch", "torchscript"] + portable)]
    if "convnext" in spec:
        jobs.append((spec["convnext"], small_params(spec["convnext"]), "fused", ["pytorch", "torchscript"] + portable))
    if "inceptionnext" in spec:
        jobs.append((spec["inceptionnext"], small_params(spec["inceptionnext"]), "fused", ["pytorch", "torchscript", "export"]))
    if "convfirst" in spec:
        jobs.append((spec["convfirst"], small_params(spec["convfirst"]), "fused", ["pytorch", "torchscript"]))
    return jobs


def test_target_matrix_fresh_process(tmp_path: Path) -> None:
    cases, built = _build_cases(tmp_path, _matrix())
    kinds = {c["kind"] for c in cases}
    assert {"pytorch", "torchscript", "export", "cudagraph"} <= kinds
    for cid, res in built.items():
        if "/fused/" in cid:
            errs = res.errors
            assert errs["fused lowering (float64)"] <= 1e-9 and errs["fused lowering (float32)"] <= 1e-4, cid
        if cid.endswith("/export"):
            assert any("dynamic batch" in n for n in res.notes), (cid, res.notes)
    _assert_all_ok(run_fresh(cases, tmp_path), cases)


@pytest.mark.skipif(not (_have("onnx") and _have("onnxruntime")), reason="needs onnx and onnxruntime")
def test_onnx_artifact_is_checked_and_dynamic(tmp_path: Path) -> None:
    import onnx

    res = build_artifact(prepare(MINI, CompileOptions(pipeline="deploy")), "onnx", tmp_path / "m.onnx")
    write_files(res.data)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"
    assert res.errors["onnxruntime vs eager"] <= TOLERANCES["onnx"]
