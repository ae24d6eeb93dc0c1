"""The run of a differentiable strategy: supernet, data, bi-level search, discretization, outputs.

Outputs in the run folder (default ``runs/<space name>_<strategy>``):

* ``derived.yaml`` — the discretized architecture as a compile-ready spec (full size, imports inlined);
* ``alpha.csv`` — the final softmax(α) per cell, edge and op (plus the PC-DARTS edge weight), and one
  ``beta`` row per cell with the node attention softmax(β);
* ``alpha.svg`` — per cell, the mean softmax(α) weight of each op over the epochs and the node attention;
* ``history.json`` — per epoch: losses, validation metrics, learning rate, the discretized choice and the
  α/β table; ``summary.json`` — options, the derived choice, its full-size cost, the files;
* ``supernet.py`` / ``supernet.pt`` — the generated supernet source and its final state (weights and α/β).
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archc.compiler import write_atomic
from archc.search.export import export_spec, write_csv
from archc.search.runner import ModelBuilder, SearchError
from archc.search.space import SearchSpace, load_space
from archc.search.strategies.bilevel import BilevelOptions, EpochRecord, format_arch, train_bilevel
from archc.search.strategies.plots import svg_alpha
from archc.train.device import resolve_device, torch_threads

__all__ = ["DifferentiableResult", "run_differentiable", "options_for"]


@dataclass
class DifferentiableResult:
    """What a differentiable search did."""

    space: SearchSpace
    strategy: str
    options: BilevelOptions
    out: Path
    history: list[EpochRecord]
    derived: dict[str, Any]
    cost: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def options_for(space: SearchSpace, strategy: str, values: Mapping[str, Any] | None = None) -> BilevelOptions:
    """The strategy's defaults ← the space file's ``strategy: {<strategy>: ...}`` ← ``values``."""
    from archc.search.strategies import resolve_options

    return resolve_options(strategy, space, values)


def _data(space: SearchSpace, supernet: Any) -> Any:
    from archc.search.evaluate import ProxyEvaluator
    from archc.train.losses import check_output

    builder = ModelBuilder(space)
    probe = builder.graph(space.materialize(supernet.sample_path(random.Random(0))).proxy_overrides())
    in_shape = tuple(next(iter(probe.inputs.values())).concrete(1))
    out_shape = tuple(probe.output_types[0].concrete(1))
    data = ProxyEvaluator(space.evaluator).data(in_shape, out_shape)
    if data is None:
        raise SearchError(f"{space.path}: a differentiable search trains on the evaluator's task and data",
                          hint="set evaluator.task (classification or depth) and evaluator.data")
    check_output(data.task, out_shape, data.classes, tuple(data.y_train.shape[-2:]) if data.task == "depth" else None)
    return data


def _cost(space: SearchSpace, choice: Mapping[str, Any]) -> dict[str, float]:
    """Full-size params and MACs of the derived child (what the space's constraints bound)."""
    from archc.cost.model import graph_cost

    g = ModelBuilder(space).graph(space.materialize(dict(choice)).overrides)
    c = graph_cost(g)
    return {"params": float(c.params), "macs": float(c.macs)}


def run_differentiable(space_path: str | Path | SearchSpace, strategy: str, opts: BilevelOptions, *,
                       out: str | Path | None = None, threads: int | None = None,
                       log: Callable[[str], None] | None = None) -> DifferentiableResult:
    """Search ``space_path``'s cells with bi-level optimization (see :mod:`.bilevel`) and write the outputs."""
    from archc.search.supernet import build_supernet

    say = log or (lambda s: None)
    opts.check()
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    space = space.for_oneshot()  # the supernet trains on 'strategy: {data: ...}' when the space sets it
    if not space.cells:
        raise SearchError(f"{space.path}: the {strategy} strategy searches cells, and this space has none",
                          hint="use --strategy sample for a space of plain choices")
    if space.evaluator.task is None:
        raise SearchError(f"{space.path}: the {strategy} strategy trains on the evaluator's task",
                          hint="set evaluator.task (classification or depth) and evaluator.data")
    seed = opts.seed if opts.seed is not None else (space.study.seed or 0)
    device = resolve_device(opts.device)
    out_dir = Path(out) if out is not None else space.run_folder(f"_{strategy}")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    with torch_threads(threads or space.evaluator.threads or 1):
        supernet = build_supernet(space, proxy=True, partial_channels=opts.partial_channels, seed=seed)
        data = _data(space, supernet)
        bs = opts.batch_size or (space.evaluator.train.batch_size if space.evaluator.train else 32)
        n_w = sum(p.numel() for p in supernet.weight_parameters())
        n_a = sum(p.numel() for p in supernet.arch_parameters())
        say(f"{strategy}: supernet of {space.name} at the proxy size on {device}: {n_w:,} weights, {n_a} architecture "
            f"parameters; partial channels K={opts.partial_channels}; data {data.description or data.task} "
            f"({data.sizes[0]} train for the weights / {data.sizes[1]} val for α/β); {opts.epochs} epochs "
            f"(α frozen for {opts.warmup_epochs}), batch {bs}, {'second' if opts.order == 2 else 'first'} order")
        torch.manual_seed(seed)
        history = train_bilevel(supernet, data, opts, bs, seed, device, say, strategy)
        derived = supernet.derive()
        cost = _cost(space, derived)
        res = DifferentiableResult(space, strategy, opts, out_dir, history, derived, cost)
        res.files = _write(res, supernet)
        res.seconds = round(time.perf_counter() - t_start, 2)
        say(f"{strategy}: derived {format_arch(supernet, derived)}")
        say(f"{strategy}: derived at full size: {cost['params'] / 1e6:.3f} M params, {cost['macs'] / 1e9:.3f} G MACs; "
            f"final val_loss {history[-1].val_loss:.5g} (supernet, mixed forward)")
        over = [f"{k} {cost[k]:,.0f} > {v:,.0f}" for k, v in space.constraints.items() if k in cost and cost[k] > v]
        if over:
            say(f"{strategy}: note: the derived architecture exceeds the space's constraints ({'; '.join(over)}): "
                "differentiable search does not see budgets")
        return res


def _write(res: DifferentiableResult, supernet: Any) -> dict[str, Path]:
    space, out = res.space, res.out
    files: dict[str, Path] = {}
    m = space.materialize(res.derived)
    files["derived"] = export_spec(space.spec, space.variant, m.overrides, out / "derived.yaml",
                                   header=[f"derived by archc search --strategy {res.strategy} from {space.path}",
                                           "cells: " + format_arch(supernet, res.derived)],
                                   doc_suffix=f"(Architecture found by {res.strategy} over {space.name}.)")
    rows = res.history[-1].alpha if res.history else []
    cols = ["cell", "edge"]
    for r in rows:
        cols += [k for k in r if k not in cols]
    write_csv(out / "alpha.csv", cols, [[r.get(c, "") for c in cols] for r in rows])
    files["alpha"] = out / "alpha.csv"
    files["plot"] = out / "alpha.svg"
    write_atomic(files["plot"], svg_alpha(supernet, res.history, f"{res.strategy}: α and β over epochs ({space.name})"))
    hist = [dataclasses.asdict(h) for h in res.history]
    files["history"] = out / "history.json"
    write_atomic(files["history"], json.dumps(hist, indent=1) + "\n")
    files["source"] = out / "supernet.py"
    write_atomic(files["source"], supernet.source)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in supernet.model.state_dict().items()}, buf)
    files["checkpoint"] = out / "supernet.pt"
    write_atomic(files["checkpoint"], buf.getvalue())
    summary = {"strategy": res.strategy, "space": space.path, "options": dataclasses.asdict(res.options),
               "derived": res.derived, "cost_full_size": res.cost, "constraints": space.constraints,
               "epochs": len(res.history), "final": dataclasses.asdict(res.history[-1]) if res.history else None,
               "files": {k: str(v) for k, v in files.items()}}
    if summary["final"]:
        summary["final"].pop("alpha", None)  # the table is in alpha.csv and history.json
    files["summary"] = out / "summary.json"
    write_atomic(files["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    return files
