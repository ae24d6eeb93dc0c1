"""Do merged (reparameterized) kernels quantize worse than the branches they replace?

The deploy pipeline merges parallel branches (RepVGG's 3×3 + 1×1 + identity, parallel convs) into
one kernel: exact in float, but the merged kernel's weight distribution and its output range differ
from each branch's. When the deploy pipeline merged anything, the ONNX report quantizes both forms
of the same function — the train form (branches separate; the exporter folds each BN into its conv)
and the deploy form (branches merged), the deploy weights converted from the train-form ones — with
the same calibration, and compares the model output SQNR and the layers' own SQNR.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from archc.quantize.calibrate import CalibrationData

__all__ = ["MERGE_PASSES", "merged_anything", "reparam_comparison"]

#: passes whose rewrites merge branches into one kernel
MERGE_PASSES = ("merge_branches", "merge_parallel_convs")


def merged_anything(prep: Any) -> int:
    """How many branch merges the deploy pipeline of a Prepared made."""
    pipe = prep.compile.pipeline
    return sum(s.rewrites for s in (pipe.steps if pipe is not None else []) if s.name in MERGE_PASSES)


def _quantize_form(make, prep: Any, calib: CalibrationData, method: str) -> dict[str, Any]:  # noqa: ANN001
    from archc.backends.onnx import build_onnx
    from archc.quantize.quantize_onnx import analyze_onnx, collect_ranges, inline_shared_weights, quantize_qdq

    float_model = inline_shared_weights(build_onnx(make, prep.inputs, prep.input_names)[0])
    ranges, collectors = collect_ranges(float_model, calib, method)
    stats, model_sqnr = analyze_onnx(float_model, quantize_qdq(float_model, calib, ranges), calib, collectors, ranges)
    own = [s.own_sqnr for s in stats if s.weight_sqnr is not None and s.own_sqnr is not None and math.isfinite(s.own_sqnr)]
    wq = [s.weight_sqnr for s in stats if s.weight_sqnr is not None and math.isfinite(s.weight_sqnr)]
    return {"model_output_sqnr_db": model_sqnr, "weighted_layers": len(own),
            "mean_own_sqnr_db": float(np.mean(own)) if own else None, "min_own_sqnr_db": float(min(own)) if own else None,
            "mean_weight_sqnr_db": float(np.mean(wq)) if wq else None}


def reparam_comparison(spec: Any, options: Any, prep: Any, calib: CalibrationData, method: str) -> dict[str, Any] | None:
    """Merged vs unmerged int8 error of a deploy-compiled spec; None when the pipeline merged nothing."""
    merges = merged_anything(prep)
    if not merges:
        return None
    from archc.targets import prepare

    train = prepare(spec, replace(options, pipeline="train"), prep.shapes[0] if prep.shapes else None)
    train_sd = train.state_dict
    deploy_sd = prep.compile.pipeline.convert(train_sd)
    mod = prep.module(True)

    def make_deploy():  # noqa: ANN202
        m = mod.create_model()
        m.load_state_dict(deploy_sd, strict=True)
        return m.eval()

    unmerged = _quantize_form(train.factory(True), train, calib, method)
    merged = _quantize_form(make_deploy, prep, calib, method)
    loss = unmerged["model_output_sqnr_db"] - merged["model_output_sqnr_db"]
    verdict = (f"merged kernels lose {loss:.1f} dB more model output SQNR than the unmerged branches" if loss > 0 else
               f"merged kernels lose {-loss:.1f} dB less model output SQNR than the unmerged branches")
    return {"branch_merges": merges, "merged": merged, "unmerged": unmerged,
            "merged_minus_unmerged_db": -loss, "verdict": verdict,
            "note": "both forms quantized with the same calibration; the deploy weights converted from the train-form ones"}
