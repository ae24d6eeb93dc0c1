"""SPOS: single-path one-shot search (Guo et al., ECCV 2020) with an Optuna study over the children.

1. **Supernet training** (:mod:`.spos_train`): the space's supernet at the proxy size is trained with one
   uniformly sampled feasible path per batch (SGD, momentum 0.9, cosine schedule, weight decay 3e-4,
   gradient clipping 5, the task's own loss: for CDC depth MSE + contrastive depth loss). Checkpointed
   every epoch in the run folder; a rerun resumes it.
2. **Child search** (:mod:`.spos_children`): an Optuna study with the space's sampler (TPE by default;
   NSGA-II or TPE for multi-objective spaces) proposes cells; each child is costed at full size and
   rejected when over the space's hard budgets *before* it runs, then scored with the supernet's
   weights after BatchNorm recalibration (:mod:`archc.search.bn_recal`) on the task's validation
   metrics. This replaces the paper's evolutionary search by any Optuna sampler.
3. **Confirmation** (:mod:`.spos_check`): the ``topk`` best distinct children are trained from scratch
   at the proxy size with the space's training budget and reported beside their inherited scores; the
   best of them after retraining becomes ``derived.yaml``. ``check_proxy K`` adds the one-shot proxy
   check: τ/ρ between inherited scores and stand-alone training over K children.

Outputs in the run folder: ``supernet.pt`` (checkpoint), ``study.log`` (the children study),
``children.csv``, ``topk.csv``, ``topk/trial_*.yaml``, ``derived.yaml`` (compile-ready), ``summary.json``
and, with a check, ``proxy_check.json``.

>>> from archc.search.strategies.spos import run_spos, SposOptions       # doctest: +SKIP
>>> res = run_spos("search_spaces/cdc.yaml", SposOptions(), out="runs/cdc_spos")  # doctest: +SKIP
>>> res.files["derived"]                                                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archc.compiler import write_atomic
from archc.search.evaluate import ProxyEvaluator, check_output
from archc.search.export import export_spec, overrides_from_json, trials_table, write_csv
from archc.search.runner import ModelBuilder, SearchError, make_sampler, make_storage
from archc.search.space import COST_METRICS, SearchSpace, load_space
from archc.search.strategies.options import options_from_mapping
from archc.search.strategies.spos_check import format_check, oneshot_check, ranked_children, retrain_cached
from archc.search.strategies.spos_children import ChildScorer, bn_batches, run_children
from archc.search.strategies.spos_train import CHECKPOINT, SupernetTraining, train_supernet
from archc.train.device import torch_threads

__all__ = ["SposOptions", "SposResult", "run_spos", "OPTION_DOCS"]

#: option name → meaning (for the CLI help, the space file's ``strategy:`` section and the docs)
OPTION_DOCS = {
    "epochs": "supernet training epochs (one uniformly sampled path per batch)",
    "batch_size": "supernet batch size (default: the evaluator's train batch size)",
    "lr": "supernet SGD learning rate (cosine to lr_min)",
    "lr_min": "final learning rate of the cosine schedule",
    "momentum": "SGD momentum",
    "weight_decay": "SGD weight decay",
    "grad_clip": "gradient-norm clip (0: none)",
    "children": "complete children wanted in the child study (inherited-weight scores)",
    "bn_batches": "training batches each child's BatchNorm statistics are recalibrated on",
    "bn_batch_size": "batch size of the recalibration batches",
    "topk": "best distinct children retrained from scratch to confirm (0: none)",
    "check_proxy": "one-shot proxy check: children retrained for τ between inherited and stand-alone (0: off)",
    "check_seeds": "seeds per child in the one-shot check",
    "check_epochs": "epochs of the stand-alone training in the one-shot check (default: the evaluator's)",
    "check_metric": "validation metric the one-shot check ranks by (default: the first objective)",
    "device": "auto (CUDA when present), cpu, cuda or cuda:N: supernet, scoring and retraining",
    "seed": "seed of the supernet, its path sampling and the child sampler (default: the space's)",
}


@dataclass(frozen=True)
class SposOptions:
    """Options of the ``spos`` strategy (defaults fit the bundled CDC space on a 2-core CPU)."""

    epochs: int = 50
    batch_size: int | None = None
    lr: float = 0.025
    lr_min: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    children: int = 100
    bn_batches: int = 4
    bn_batch_size: int = 64
    topk: int = 3
    check_proxy: int = 0
    check_seeds: int = 2
    check_epochs: int | None = None
    check_metric: str | None = None
    device: str = "auto"
    seed: int | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: SposOptions | None = None) -> SposOptions:
        """Options from a mapping (CLI or space file); ``None`` values keep ``base``'s. Raises SearchError."""
        return options_from_mapping(cls, values, base, "unknown spos option '{key}'")

    def check(self) -> None:
        """Raise :class:`SearchError` for an option out of range."""
        ints = {"epochs": 1, "children": 1, "bn_batches": 1, "bn_batch_size": 1, "topk": 0, "check_proxy": 0,
                "check_seeds": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise SearchError(f"spos option {name} must be an integer ≥ {low}, got {v!r}")
        for name in ("batch_size", "check_epochs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise SearchError(f"spos option {name} must be a positive integer, got {v!r}")
        for name in ("lr", "lr_min", "momentum", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "lr" and v == 0):
                raise SearchError(f"spos option {name} must be a {'positive' if name == 'lr' else 'non-negative'} "
                                  f"number, got {v!r}")
        if self.check_metric is not None and not isinstance(self.check_metric, str):
            raise SearchError(f"spos option check_metric must be a metric name, got {self.check_metric!r}")
        if not isinstance(self.device, str):
            raise SearchError(f"spos option device must be a name (auto, cpu, cuda, cuda:N), got {self.device!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise SearchError(f"spos option seed must be a non-negative integer, got {self.seed!r}")
        if 0 < self.check_proxy < 3:
            raise SearchError(f"the one-shot check needs at least 3 children, got check_proxy {self.check_proxy}")


@dataclass
class SposResult:
    """What :func:`run_spos` did."""

    space: SearchSpace
    out: Path
    study: Any
    storage: str
    options: SposOptions
    supernet: dict[str, Any]
    children: dict[str, Any]
    topk: list[dict[str, Any]]
    best: dict[str, Any] | None
    check: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def _check_space(space: SearchSpace, check_metric: str | None = None) -> None:
    if not space.cells:
        raise SearchError(f"{space.path}: the spos strategy searches cells, and this space has none",
                          hint="use --strategy sample for a space of plain choices")
    if space.evaluator.task is None:
        raise SearchError(f"{space.path}: the spos strategy needs the evaluator's task and data to score children",
                          hint="set evaluator.task (classification or depth) and evaluator.data")
    from archc.search.space import TRAIN_METRICS

    # inherited weights are scored on the validation split only: there is no training loss of a child
    ok = set(COST_METRICS) | (set(TRAIN_METRICS[space.evaluator.task]) - {"train_loss"})
    for o in space.objectives:
        if o.metric not in ok:
            raise SearchError(f"objective '{o.metric}' cannot be measured with inherited weights (spos scores "
                              f"children on {', '.join(sorted(ok))})", o.loc,
                              hint="use --strategy sample for latency or zero-cost objectives")
    if check_metric is not None and check_metric not in ok:
        raise SearchError(f"the one-shot check cannot rank by '{check_metric}': children are scored on "
                          f"{', '.join(sorted(ok))}", hint="e.g. --metric val_loss")


def supernet_digest(space: SearchSpace) -> str:
    """What the supernet's weights and the children's scores depend on in the space: the base spec, the
    space's params, the cells and the evaluator's task, data and proxy params. Docs, objectives,
    constraints, the training budget and study settings do not enter, so editing them keeps a run
    resumable."""
    import hashlib

    ev = space.evaluator  # its training budget only shapes the retraining, which is keyed by it separately
    blob = json.dumps([space.spec.digest, space.variant, [(list(p), v) for p, v, _ in space.params],
                       [(c.name, c.nodes, list(c.ops), c.edges_param, c.output_param, c.none, c.op_table)
                        for c in space.cells],
                       [(c.name, repr(c.default)) for c in space.choices], ev.task,
                       [getattr(ev.data, k) for k in ("source", "path", "train", "val", "val_fraction", "seed")],
                       [(list(p), v) for p, v, _ in ev.proxy]],
                      default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _open_study(space: SearchSpace, out: Path, storage: str | None, name: str, seed: int, digest: str,
                say: Callable[[str], None]) -> tuple[Any, str]:
    import optuna
    from optuna.trial import TrialState

    storage_obj, desc = make_storage(storage, out)
    try:
        study = optuna.create_study(study_name=name, storage=storage_obj, directions=space.directions,
                                    load_if_exists=True)
    except Exception as exc:  # noqa: BLE001 - storage drivers raise their own errors
        raise SearchError(f"cannot open study '{name}' in {desc}: {type(exc).__name__}: {exc}") from None
    if [d.name.lower() for d in study.directions] != space.directions:
        raise SearchError(f"study '{name}' in {desc} has other directions than the space",
                          hint="use another --study name or --out folder")
    have = study.user_attrs.get("supernet_digest")
    if have is None:
        study.set_user_attr("strategy", "spos")
        study.set_user_attr("space", space.path)
        study.set_user_attr("supernet_digest", digest)
        if study.metric_names is None:
            study.set_metric_names(space.metric_names)
    elif have != digest:
        raise SearchError(f"study '{name}' in {desc} scored its children with another supernet (other base spec, "
                          "cells, evaluator, seed or supernet options); its scores cannot be mixed with this one's",
                          hint="use another --out folder or --study name")
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(space, seed + existing)
    if existing == 0:
        for pname in space.study.enqueue:
            study.enqueue_trial(space.point(pname), skip_if_exists=True)
    from archc.search.trial import host, pid_alive

    me = host()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a child left running by a killed run of this machine is failed (its sampler slot is asked again);
        # children of live processes are left alone
        h, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if h == me and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            study._storage.set_trial_user_attr(t._trial_id, "status", "failed")
            study._storage.set_trial_user_attr(t._trial_id, "reason", "stale: its process ended without finishing it")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    if existing:
        say(f"spos: resuming study '{name}' ({existing} trials in {desc})")
    return study, desc


def run_spos(space_path: str | Path | SearchSpace, options: SposOptions | None = None, *, out: str | Path | None = None,
             storage: str | None = None, study_name: str | None = None, threads: int | None = None,
             timeout: float | None = None, log: Callable[[str], None] | None = None) -> SposResult:
    """Run (or resume) an SPOS search of a cell space; see the module doc.

    Args:
        space_path: the search-space file (or a loaded space).
        options: :class:`SposOptions` (default: the defaults).
        out: the run folder (default ``runs/<space name>_spos``).
        storage: Optuna storage URL or journal file for the child study (default ``<out>/study.log``).
        study_name: default ``<space study name>_spos``.
        threads: torch threads (default the evaluator's ``threads``, else 1).
        timeout: stop asking for children after this many seconds of the child search.
        log: receives the progress lines (one per supernet epoch and per child).

    Raises:
        SearchSpaceError: the space file is invalid. SearchError: the space does not suit SPOS, the
        storage holds a study scored by another supernet, training diverges or children keep failing.
    """
    import optuna

    say = log or (lambda s: None)
    opts = options or SposOptions()
    opts.check()
    space = space_path if isinstance(space_path, SearchSpace) else load_space(space_path)
    space = space.for_oneshot()  # the supernet trains on 'strategy: {data: ...}' when the space sets it
    _check_space(space, opts.check_metric)
    seed = opts.seed if opts.seed is not None else (space.study.seed or 0)
    out_dir = Path(out) if out is not None else space.run_folder("_spos")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    prev_level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with torch_threads(threads or space.evaluator.threads or 1), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            # the child study asks and tells one short trial at a time; heartbeats matter to long trials only
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            return _run(space, opts, seed, out_dir, storage, study_name, timeout, say, t_start)
    finally:
        optuna.logging.set_verbosity(prev_level)


def _run(space: SearchSpace, opts: SposOptions, seed: int, out_dir: Path, storage: str | None, study_name: str | None,
         timeout: float | None, say: Callable[[str], None], t_start: float) -> SposResult:
    import random

    from archc.search.supernet import build_supernet
    from archc.train.device import resolve_device

    train_cfg = space.evaluator.train
    sn_cfg = SupernetTraining(epochs=opts.epochs, batch_size=opts.batch_size or (train_cfg.batch_size if train_cfg else 32),
                              lr=opts.lr, lr_min=opts.lr_min, momentum=opts.momentum, weight_decay=opts.weight_decay,
                              grad_clip=opts.grad_clip, seed=seed)
    device = resolve_device(opts.device)
    torch.manual_seed(seed)
    supernet = build_supernet(space, proxy=True, seed=seed)
    supernet.model.to(device)
    builder = ModelBuilder(space)
    probe = builder.graph(space.materialize(supernet.sample_path(random.Random(seed))).proxy_overrides())
    in_shape = next(iter(probe.inputs.values())).concrete(1)
    out_shape = probe.output_types[0].concrete(1)
    data = ProxyEvaluator(space.evaluator).data(tuple(in_shape), tuple(out_shape))
    assert data is not None  # _check_space made sure there is a task
    check_output(data.task, tuple(out_shape), data)
    cpu_data, data = data, data.to(device)
    n_w = sum(p.numel() for p in supernet.weight_parameters())
    say(f"spos: supernet of {space.name} at the proxy size: {n_w:,} shared weights; data {data.description or data.task} "
        f"({data.sizes[0]} train / {data.sizes[1]} val); {sn_cfg.epochs} epochs of one sampled path per batch on {device}")
    # the study first: one scored by another supernet is refused before any training time is spent
    name = study_name or f"{space.study.name}_spos"
    structure = supernet_digest(space)
    study, desc = _open_study(space, out_dir, storage, name, seed, sn_cfg.digest(structure), say)
    t0 = time.perf_counter()
    try:
        history = train_supernet(supernet, data, sn_cfg, checkpoint=out_dir / CHECKPOINT, space_digest=structure, say=say)
    except FloatingPointError as exc:
        raise SearchError(str(exc), hint="lower the supernet learning rate (lr)") from None
    sn_info = {"epochs": sn_cfg.epochs, "history": history.epochs, "resumed_from": history.resumed_from,
               "seconds": round(time.perf_counter() - t0, 2), "shared_weights": n_w, "device": str(device),
               **dataclasses.asdict(sn_cfg)}

    scorer = ChildScorer(supernet, data, bn_batches(data, opts.bn_batches, opts.bn_batch_size, seed))
    say(f"spos: searching children with the {space.study.sampler} sampler until {opts.children} are scored "
        f"(BN recalibrated on {len(scorer.recal)} batches of ≤{opts.bn_batch_size}); budgets: "
        + (", ".join(f"{k} ≤ {v:,.6g}" for k, v in sorted(space.constraints.items())) or "none"))
    t1 = time.perf_counter()
    counts = run_children(space, study, scorer, opts.children, say=say, max_attempts=space.study.max_attempts,
                          timeout=timeout)
    counts["seconds"] = round(time.perf_counter() - t1, 2)
    if counts["stopped"]:
        say(f"spos: child search stopped: {counts['stopped']}")

    ranked = ranked_children(study, space)
    if not ranked:
        raise SearchError(f"no child of {space.path} was scored ({counts['rejected']} over budget, "
                          f"{counts['infeasible']} infeasible, {counts['failed']} failed)",
                          hint="loosen the space's constraints or sample more children")
    topk = _confirm(study, space, builder, cpu_data, device, _confirm_order(study, space, ranked), opts.topk, say)
    best, best_trial = _best_of(space, ranked, topk)
    check = None
    if opts.check_proxy:
        check = oneshot_check(study, space, builder, cpu_data, opts.check_proxy, opts.check_seeds, say, device=device,
                              epochs=opts.check_epochs, metric=opts.check_metric)
        for line in format_check(check).splitlines():
            say(f"spos: {line}")
    res = SposResult(space, out_dir, study, desc, opts, sn_info, counts, topk, best, check)
    res.files = _write_outputs(res, best_trial)
    res.seconds = round(time.perf_counter() - t_start, 2)
    say(f"spos: derived child #{best['trial']} ({best['by']} {best['value']:.5g}) → {res.files['derived']}")
    if counts["stopped"] and not counts["stopped"].startswith("timeout"):
        # the outputs describe what was scored, but the run did not do what was asked
        raise SearchError(f"only {len(ranked)} of the {opts.children} children asked for were scored: {counts['stopped']} "
                          f"(outputs for those in {out_dir})",
                          hint="loosen the space's constraints, raise study.max_attempts or ask for fewer children")
    return res


def _confirm_order(study: Any, space: SearchSpace, ranked: list[Any]) -> list[Any]:
    """Children in the order they are confirmed: by the first objective; for several objectives the
    Pareto front of the inherited scores first (itself by the first objective)."""
    if not space.multi_objective:
        return ranked
    from archc.search.export import pareto_trials

    front = {t.number for t in pareto_trials(study)}
    return [t for t in ranked if t.number in front] + [t for t in ranked if t.number not in front]


def _confirm(study: Any, space: SearchSpace, builder: ModelBuilder, data: Any, device: torch.device, ranked: list[Any],
             k: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    metric = space.objectives[0].metric
    for rank, t in enumerate(ranked[:k], 1):
        m = retrain_cached(study, space, builder, t, data, space.evaluator.train.seed if space.evaluator.train else 0, say,
                           device=device)
        rows.append({"rank": rank, "trial": t.number, "arch": t.user_attrs.get("arch"),
                     "inherited": dict(t.user_attrs.get("eval_metrics") or {}), "retrained": m,
                     "params": t.user_attrs.get("metrics", {}).get("params"),
                     "macs": t.user_attrs.get("metrics", {}).get("macs")})
        say(f"spos: top {rank}: child #{t.number} inherited {metric} {t.values[0]:.5g} → retrained {m.get(metric, float('nan')):.5g}")
    return rows


def _best_of(space: SearchSpace, ranked: list[Any], topk: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """The derived child: the best retrained top-k child (the best inherited one when none was retrained)."""
    o = space.objectives[0]
    sign = 1.0 if o.direction == "minimize" else -1.0
    if topk and all(o.metric in r["retrained"] for r in topk):
        row = min(topk, key=lambda r: (sign * r["retrained"][o.metric], r["rank"]))
        trial = next(t for t in ranked if t.number == row["trial"])
        return {"trial": trial.number, "by": f"retrained {o.metric}", "value": row["retrained"][o.metric],
                "inherited": trial.values[0]}, trial
    t = ranked[0]
    return {"trial": t.number, "by": f"inherited {o.metric}", "value": t.values[0], "inherited": t.values[0]}, t


def _write_outputs(res: SposResult, bt: Any) -> dict[str, Path]:
    space, out, study = res.space, res.out, res.study
    files: dict[str, Path] = {}
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    header, rows = trials_table(trials, space.metric_names, space.param_names())
    files["children"] = write_csv(out / "children.csv", header, rows)
    metric = space.objectives[0].metric
    th = ["rank", "trial", f"inherited_{metric}", f"retrained_{metric}", "params", "macs", "arch"]
    trows = [[r["rank"], r["trial"], r["inherited"].get(metric), r["retrained"].get(metric), r["params"], r["macs"], r["arch"]]
             for r in res.topk]
    files["topk"] = write_csv(out / "topk.csv", th, trows)
    tdir = out / "topk"
    for old in tdir.glob("trial_*.yaml") if tdir.exists() else []:
        old.unlink()
    by_number = {t.number: t for t in trials}
    for r in res.topk:
        _export(space, study, by_number[r["trial"]], tdir / f"trial_{r['trial']:05d}.yaml", r)
    files["derived"] = _export(space, study, bt, out / "derived.yaml",
                               next((r for r in res.topk if r["trial"] == bt.number), None))
    if res.check is not None:
        files["proxy_check"] = out / "proxy_check.json"
        write_atomic(files["proxy_check"], json.dumps(res.check, indent=2) + "\n")
    summary = {"strategy": "spos", "space": space.path, "study": study.study_name, "storage": res.storage,
               "objectives": space.metric_names, "directions": space.directions,
               "options": dataclasses.asdict(res.options), "supernet": res.supernet, "children": res.children,
               "topk": res.topk, "best": res.best,
               "oneshot_check": None if res.check is None else
               {k: res.check.get(k) for k in ("k", "kendall_tau", "kendall_tau_ci95", "spearman_rho", "spearman_rho_ci95")}}
    files["summary"] = out / "summary.json"
    write_atomic(files["summary"], json.dumps(summary, indent=2, default=str) + "\n")
    return files


def _export(space: SearchSpace, study: Any, t: Any, path: Path, row: dict[str, Any] | None) -> Path:
    ov = overrides_from_json(t.user_attrs["spec_params"])
    metric = space.objectives[0].metric
    vals = f"inherited {metric} {t.values[0]:.6g}"
    if row is not None and metric in row["retrained"]:
        vals += f", retrained {metric} {row['retrained'][metric]:.6g}"
    header = [f"Generated by archc search --strategy spos from {space.path} (study '{study.study_name}', trial {t.number}).",
              f"Scores: {vals}.", "No choices left: compile with 'archc compile <this file>'."]
    return export_spec(space.spec, space.variant, ov, path, header, f"[archc search spos: {space.name}, trial {t.number}: {vals}]")
