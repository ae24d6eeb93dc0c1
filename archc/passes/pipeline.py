"""Named pipelines and the pass manager.

* ``train`` — the graph as written.
* ``deploy`` — every exact inference-time simplification: drop train-only ops, fold CDC convs, fold
  BN, inline single-op blocks, merge parallel branches, fold layer scales and GRN biases, CSE, DCE —
  repeated until nothing changes (one fold can enable another).

Every exact pass is certified: after it runs, a float64 differential check compares the original
graph (given or random weights) with the current one (converted weights); above the tolerance the
pipeline fails with :class:`PassError` naming the pass. In debug mode the IR verifier also runs after
every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from archc.diagnostics import PassError
from archc.ir.graph import Graph
from archc.ir.verify import verify
from archc.passes import bn_fold, branch_merge, cdc, cleanup, fusion, parallel_merge, permute_fold, scale_fold  # noqa: F401
from archc.passes.base import PASSES, WeightMap
from archc.passes.equivalence import Reference

__all__ = ["PIPELINES", "PassStep", "PipelineResult", "run_pipeline", "TOLERANCE"]

PIPELINES: dict[str, tuple[str, ...]] = {
    "train": (),
    "deploy": ("remove_train_only", "fold_cdc", "fold_bn", "inline_blocks", "merge_branches", "fold_bn",
               "fold_scales", "fold_through_permute", "merge_parallel_blocks", "inline_blocks", "cse", "dce"),
    # deploy, then each residual block flattened into one fused region (archc.passes.fusion), folded again
    "fused": ("remove_train_only", "fold_cdc", "fold_bn", "inline_blocks", "merge_branches", "fold_bn",
              "fold_scales", "fold_through_permute", "merge_parallel_blocks", "inline_blocks", "cse", "dce",
              "form_regions"),
}

#: max relative error of a float64 differential run accepted for an exact pass
TOLERANCE = 1e-9


@dataclass
class PassStep:
    name: str
    rewrites: int
    max_rel_error: float | None


@dataclass
class PipelineResult:
    graph: Graph
    maps: list[WeightMap]
    steps: list[PassStep] = field(default_factory=list)

    def convert(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Train-form state dict → the pipeline's state dict."""
        return WeightMap.chain(self.maps)(state_dict)

    @property
    def max_rel_error(self) -> float:
        errs = [s.max_rel_error for s in self.steps if s.max_rel_error is not None]
        return max(errs) if errs else 0.0


def run_pipeline(graph: Graph, name: str = "deploy", state_dict: Mapping[str, torch.Tensor] | None = None,
                 check: bool = True, debug: bool = False, passes: tuple[str, ...] | None = None,
                 max_iterations: int = 4, tolerance: float = TOLERANCE) -> PipelineResult:
    """Run pipeline ``name`` (or the given ``passes``) to a fixpoint, certifying each exact pass."""
    if passes is None:
        if name not in PIPELINES:
            from archc.diagnostics import suggest

            raise PassError(f"unknown pipeline '{name}'", hint=suggest(name, PIPELINES) or f"pipelines: {', '.join(PIPELINES)}")
        passes = PIPELINES[name]
    for p in passes:
        if p not in PASSES:
            raise PassError(f"unknown pass '{p}'", hint=f"passes: {', '.join(sorted(PASSES))}")
    result = PipelineResult(graph, [])
    if not passes:
        return result
    ref = Reference(graph, state_dict) if check else None
    totals: dict[str, PassStep] = {}
    order: list[str] = []
    for _ in range(max_iterations):
        changed = False
        for pname in passes:
            p = PASSES[pname]
            res = p.run(result.graph)
            step = totals.setdefault(pname, PassStep(pname, 0, None))
            if pname not in order:
                order.append(pname)
            if res.rewrites == 0:
                continue
            changed = True
            if debug:
                try:
                    verify(res.graph)
                except Exception as exc:
                    done = ", ".join(order)
                    raise PassError(f"IR verification failed after pass '{pname}' (passes run: {done}): {exc}") from None
            result.graph = res.graph
            result.maps.append(res.weights)
            step.rewrites += res.rewrites
            if ref is not None and p.exact:
                err = ref.error(result.graph, result.convert)
                step.max_rel_error = max(step.max_rel_error or 0.0, err)
                if not err <= tolerance:
                    raise PassError(
                        f"pass '{pname}' broke numerical equivalence: max relative error {err:.3e} > {tolerance:.0e}",
                        hint="this is a bug in the pass; run without it (or report the spec)",
                    )
        if not changed:
            break
    result.steps = [totals[n] for n in order]
    return result
