"""Latency of pipeline × target × batch on this machine (``archc bench``).

Each (pipeline, target) artifact is built with :mod:`archc.targets`, written to a temporary folder
and loaded back the way a user loads it — the generated module imported from its file,
``torch.jit.load``, ``torch.export.load(...).module()``, an onnxruntime session — so what is timed is
the artifact, not archc's in-memory objects. The baseline is the train-form eager module (pipeline
``train``, target ``pytorch``), always measured.

Timing is interleaved: after ``warmup`` untimed calls of every candidate, each round calls every
candidate once, in an order rotated every round, so load drifting on a shared machine hits all
alike; a batch size stops after ``iters`` rounds or ``budget`` seconds (at least ``min_iters``
rounds). Reported: the median latency, the interquartile range, the ratio of medians against the
train-form eager module (speed-up: > 1 is faster) and, for fused rows, against the deploy pipeline
on the same target; ``noise`` is the largest IQR / median of the batch.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from archc.compiler import CompileOptions
from archc.diagnostics import ArchcError

__all__ = ["BenchRow", "BenchResult", "bench", "format_table", "import_file"]


@dataclass
class BenchRow:
    pipeline: str
    target: str
    batch: int
    runs: int
    median_ms: float
    q1_ms: float
    q3_ms: float
    min_ms: float
    #: median(train-form eager) / median(this): > 1 is faster than the train-form eager module
    vs_train: float
    #: median(deploy, same target) / median(this), for non-deploy pipelines when deploy was measured
    vs_deploy: float | None = None
    #: median over rounds of the per-round ratio train-eager / this (robust to drifting load)
    vs_train_paired: float | None = None
    times_ms: list[float] = field(default_factory=list, repr=False)


@dataclass
class BenchResult:
    spec: str
    variant: str | None
    threads: int
    batches: list[int]
    rows: list[BenchRow]
    notes: list[str]
    load: list[float]
    seconds: float
    build_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, pipeline: str, target: str, batch: int) -> BenchRow | None:
        return next((r for r in self.rows if (r.pipeline, r.target, r.batch) == (pipeline, target, batch)), None)


def import_file(path: Path, name: str | None = None) -> Any:
    """Import a generated module from its file, as a user would (registered in ``sys.modules``)."""
    name = name or f"archc_bench_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _loader(target: str, path: Path, state: dict[str, torch.Tensor], threads: int) -> Callable[..., Any]:
    """Load an artifact as a user would; returns a callable taking input tensors."""
    if target in ("pytorch", "cudagraph"):
        model = import_file(path).create_model()
        model.load_state_dict(state)
        return model.eval()
    if target == "torchscript":
        return torch.jit.load(str(path), map_location="cpu")
    if target == "export":
        return torch.export.load(str(path)).module()
    if target == "onnx":
        from archc.backends.onnx import session

        sess = session(path.read_bytes(), threads)
        names = [i.name for i in sess.get_inputs()]

        def run(*xs: torch.Tensor) -> Any:
            return sess.run(None, {n: x.numpy() for n, x in zip(names, xs)})

        return run
    raise ArchcError(f"cannot benchmark target '{target}'")


def bench(spec: str | Path, variant: str | None = None, params: Sequence[str] = (),
          pipelines: Sequence[str] = ("train", "deploy", "fused"), targets: Sequence[str] = ("pytorch", "torchscript"),
          batches: Sequence[int] = (1, 16), warmup: int = 3, iters: int = 30, min_iters: int = 5, budget: float = 60.0,
          threads: int | None = None, check: bool = True, weights: str | None = None,
          progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every pipeline × target × batch (plus the train-form eager baseline); see the module docstring."""
    from archc.targets import PIPELINE_NAMES, TARGETS, build_artifact, prepare, write_files

    for p in pipelines:
        if p not in PIPELINE_NAMES:
            raise ArchcError(f"unknown pipeline '{p}'", hint=f"pipelines: {', '.join(PIPELINE_NAMES)}")
    for t in targets:
        if t not in TARGETS:
            raise ArchcError(f"unknown target '{t}'", hint=f"targets: {', '.join(TARGETS)}")
    if not batches or any(b < 1 for b in batches):
        raise ArchcError("--batch needs positive batch sizes, e.g. --batch 1,16")
    say = progress or (lambda _msg: None)
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    t_start = time.perf_counter()
    notes: list[str] = []
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    pairs = [("train", "pytorch")] + [(p, t) for p in pipelines for t in targets if (p, t) != ("train", "pytorch")]
    preps: dict[str, Any] = {}
    runners: dict[tuple[str, str], Callable[..., Any]] = {}
    build_s: dict[str, float] = {}
    static: dict[tuple[str, str], bool] = {}
    variant_name = None
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as tmp:
        for pipeline, target in pairs:
            if target == "cudagraph":
                # the runner replays on CUDA, and this table is CPU latency
                notes.append(f"{pipeline}/cudagraph skipped: archc bench times CPU; benchmarks/bench_cuda.py times CUDA graphs")
                continue
            if target == "onnx":
                from archc.backends.onnx import have_onnx, have_onnxruntime

                if not (have_onnx() and have_onnxruntime()):
                    notes.append(f"{pipeline}/onnx skipped: needs onnx and onnxruntime (pip install 'archc[onnx]')")
                    continue
            if pipeline not in preps:
                say(f"compiling {pipeline} ...")
                t0 = time.perf_counter()
                preps[pipeline] = prepare(spec, CompileOptions(variant=variant, params=list(params), pipeline=pipeline,
                                                               check=check, weights=weights))
                build_s[f"{pipeline}/compile"] = time.perf_counter() - t0
                variant_name = preps[pipeline].compile.graph.meta.get("variant")
            prep = preps[pipeline]
            say(f"building {pipeline}/{target} ...")
            t0 = time.perf_counter()
            out = Path(tmp) / f"{pipeline}_{target}{TARGETS[target].suffix}"
            res = build_artifact(prep, target, out, verify=check)
            write_files(res.data)
            build_s[f"{pipeline}/{target}"] = time.perf_counter() - t0
            static[(pipeline, target)] = any(n.startswith("batch exported static") for n in res.notes)  # export, onnx
            runners[(pipeline, target)] = _loader(target, out, prep.state_dict, threads)
        base_shape = tuple(next(iter(preps.values())).inputs[0].shape)
        rows: list[BenchRow] = []
        for batch in batches:
            gen = torch.Generator().manual_seed(batch)
            x = torch.randn((batch,) + base_shape[1:], generator=gen)
            cands = [k for k in runners if not (static[k] and batch != base_shape[0])]
            for k in runners:
                if k not in cands:
                    notes.append(f"{k[0]}/{k[1]} skipped at batch {batch}: exported with a static batch")
            say(f"batch {batch}: warm-up ...")
            times: dict[tuple[str, str], list[float]] = {k: [] for k in cands}
            with torch.no_grad():
                for k in cands:
                    for _ in range(warmup):
                        runners[k](x)
                say(f"batch {batch}: timing {len(cands)} artifacts, interleaved ...")
                t_batch = time.perf_counter()
                rounds = 0
                while rounds < iters and (rounds < min_iters or time.perf_counter() - t_batch < budget):
                    order = cands[rounds % len(cands):] + cands[:rounds % len(cands)]
                    for k in order:
                        t0 = time.perf_counter()
                        runners[k](x)
                        times[k].append((time.perf_counter() - t0) * 1e3)
                    rounds += 1
            base = statistics.median(times[("train", "pytorch")])
            for k in cands:
                ts = times[k]
                q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0], ts[0], ts[0]]
                med = statistics.median(ts)
                paired = statistics.median(b / t for b, t in zip(times[("train", "pytorch")], ts))
                dep = times.get(("deploy", k[1]))
                rows.append(BenchRow(k[0], k[1], batch, len(ts), med, q[0], q[2], min(ts), base / med,
                                     statistics.median(dep) / med if dep and k[0] != "deploy" else None, paired, ts))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if load1 > (os.cpu_count() or 1) or load0 > (os.cpu_count() or 1):
        notes.append(f"the machine was busy (load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} cores): "
                     "absolute times are inflated; the interleaved ratios are the meaningful figures")
    return BenchResult(str(spec), variant_name, threads, list(batches), rows, notes, [load0, load1],
                       time.perf_counter() - t_start, build_s)


def format_table(res: BenchResult) -> str:
    """A plain-text table: one block per batch size."""
    lines = [f"{res.spec}" + (f" (variant {res.variant})" if res.variant else "")
             + f" — {res.threads} thread(s), load average {res.load[0]:.1f} → {res.load[1]:.1f}"]
    head = f"  {'pipeline':9s} {'target':12s} {'batch':>5s} {'median ms':>10s} {'IQR ms':>17s} {'noise':>6s} {'runs':>4s} " \
           f"{'× train eager':>13s} {'(paired)':>8s} {'× deploy':>8s}"
    for b in res.batches:
        rows = [r for r in res.rows if r.batch == b]
        if not rows:
            continue
        lines.append(head)
        for r in rows:
            iqr = f"{r.q1_ms:.1f}–{r.q3_ms:.1f}"
            noise = (r.q3_ms - r.q1_ms) / r.median_ms if r.median_ms else 0.0
            dep = f"{r.vs_deploy:.2f}" if r.vs_deploy is not None else ""
            lines.append(f"  {r.pipeline:9s} {r.target:12s} {r.batch:5d} {r.median_ms:10.2f} {iqr:>17s} {noise:6.0%} {r.runs:4d} "
                         f"{r.vs_train:13.2f} {r.vs_train_paired or 0:8.2f} {dep:>8s}")
    for n in res.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
