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

Precision: each deploy/fused artifact is also built in every entry of ``precisions`` — ``bf16``,
``fp16``, ``fp32+cl`` (channels-last), ``bf16+cl``, ... (:mod:`archc.precision`) — and timed in the same
rounds, on the same input converted for it; ``× fp32`` is the ratio against the float32 NCHW row of
the same pipeline and target. The default adds ``bf16`` and ``bf16+cl`` rows on a CPU with native
bfloat16 (``avx512_bf16`` or ``amx_bf16`` in /proc/cpuinfo), and the table names the CPU and the
reduced-precision features it found. The train-form baseline stays float32.
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
from archc.diagnostics import ArchcError, first_line

__all__ = ["BenchRow", "BenchResult", "bench", "format_table", "import_file", "parse_precisions", "default_precisions"]


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
    #: dtype and layout: fp32, bf16, fp16, with "+cl" for channels-last
    precision: str = "fp32"
    #: median(same pipeline and target in fp32 NCHW) / median(this), for the other precisions
    vs_fp32: float | None = None


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
    #: the CPU model and the reduced-precision features found (archc.precision.cpu_features)
    cpu: str = ""
    cpu_features: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def row(self, pipeline: str, target: str, batch: int, precision: str = "fp32") -> BenchRow | None:
        return next((r for r in self.rows if (r.pipeline, r.target, r.batch, r.precision) == (pipeline, target, batch, precision)),
                    None)


def parse_precisions(text: str | Sequence[str]) -> list[str]:
    """``"fp32,bf16,bf16+cl"`` → the precision labels, checked (``+cl``: channels-last); fp32 always first."""
    from archc.precision import parse_precision

    items = [p.strip() for p in text.split(",")] if isinstance(text, str) else [p.strip() for p in text]
    out = ["fp32"]
    for item in items:
        if not item:
            continue
        name, _, layout = item.partition("+")
        if layout not in ("", "cl"):
            raise ArchcError(f"unknown precision '{item}'", hint="e.g. --precisions fp32,bf16,bf16+cl (+cl: channels-last)")
        label = parse_precision(name, layout == "cl").dtype + ("+cl" if layout else "")
        if label not in out:
            out.append(label)
    return out


def default_precisions() -> list[str]:
    """fp32, plus bf16 and bf16 channels-last on a CPU with native bfloat16 instructions."""
    from archc.precision import cpu_features

    native = {"avx512_bf16", "amx_bf16"} & set(cpu_features())
    return ["fp32", "bf16", "bf16+cl"] if native else ["fp32"]


def _precision(label: str) -> Any:
    from archc.precision import parse_precision

    name, _, layout = label.partition("+")
    return parse_precision(name, layout == "cl")


def _cpu_name() -> str:
    from archc.fusion_choice import fusion_device

    return fusion_device().removeprefix("cpu: ")


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
          progress: Callable[[str], None] | None = None, precisions: Sequence[str] | None = None) -> BenchResult:
    """Measure every pipeline × target × precision × batch (plus the train-form eager baseline); see the module docstring."""
    from archc.precision import convert_inputs, cpu_features
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
    precs = parse_precisions(precisions if precisions is not None else default_precisions())
    if precisions is None and len(precs) == 1:
        notes.append("no bf16 rows: this CPU has no native bfloat16 (avx512_bf16/amx_bf16); ask with --precisions fp32,bf16")
    pairs = [("train", "pytorch", "fp32")] + [(p, t, q) for p in pipelines for t in targets for q in precs
                                             if (p, t) != ("train", "pytorch") and (p != "train" or q == "fp32")]
    if "train" in pipelines and len(precs) > 1:
        notes.append("the train form is timed in fp32 only (the baseline); precisions apply to deploy and fused")
    preps: dict[str, Any] = {}
    runners: dict[tuple[str, str, str], Callable[..., Any]] = {}
    build_s: dict[str, float] = {}
    static: dict[tuple[str, str, str], bool] = {}
    variant_name = None
    with tempfile.TemporaryDirectory(prefix="archc-bench-") as tmp:
        for pipeline, target, prec in pairs:
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
            name = f"{pipeline}/{target}" + (f"/{prec}" if prec != "fp32" else "")
            say(f"building {name} ...")
            t0 = time.perf_counter()
            out = Path(tmp) / f"{pipeline}_{target}_{prec.replace('+', '_')}{TARGETS[target].suffix}"
            try:
                res = build_artifact(prep, target, out, verify=check, precision=_precision(prec))
            except ArchcError as exc:
                if prec == "fp32":
                    raise
                notes.append(f"{name} skipped: {first_line(exc)}")  # e.g. a dtype this target cannot run here
                continue
            write_files(res.data)
            build_s[name] = time.perf_counter() - t0
            static[(pipeline, target, prec)] = any(n.startswith("batch exported static") for n in res.notes)  # export, onnx
            runners[(pipeline, target, prec)] = _loader(target, out, prep.state_dict, threads)
        base_shape = tuple(next(iter(preps.values())).inputs[0].shape)
        rows: list[BenchRow] = []
        for batch in batches:
            gen = torch.Generator().manual_seed(batch)
            x32 = torch.randn((batch,) + base_shape[1:], generator=gen)
            xs = {q: convert_inputs([x32], _precision(q))[0] for q in precs}
            cands = [k for k in runners if not (static[k] and batch != base_shape[0])]
            for k in runners:
                if k not in cands:
                    notes.append(f"{'/'.join(k)} skipped at batch {batch}: exported with a static batch")
            say(f"batch {batch}: warm-up ...")
            times: dict[tuple[str, str, str], list[float]] = {k: [] for k in cands}
            with torch.no_grad():
                for k in cands:
                    for _ in range(warmup):
                        runners[k](xs[k[2]])
                say(f"batch {batch}: timing {len(cands)} artifacts, interleaved ...")
                t_batch = time.perf_counter()
                rounds = 0
                while rounds < iters and (rounds < min_iters or time.perf_counter() - t_batch < budget):
                    order = cands[rounds % len(cands):] + cands[:rounds % len(cands)]
                    for k in order:
                        x = xs[k[2]]
                        t0 = time.perf_counter()
                        runners[k](x)
                        times[k].append((time.perf_counter() - t0) * 1e3)
                    rounds += 1
            base_k = ("train", "pytorch", "fp32")
            base = statistics.median(times[base_k])
            for k in cands:
                ts = times[k]
                q = statistics.quantiles(ts, n=4) if len(ts) >= 2 else [ts[0], ts[0], ts[0]]
                med = statistics.median(ts)
                paired = statistics.median(b / t for b, t in zip(times[base_k], ts))
                dep = times.get(("deploy", k[1], k[2]))
                f32 = times.get((k[0], k[1], "fp32"))
                rows.append(BenchRow(k[0], k[1], batch, len(ts), med, q[0], q[2], min(ts), base / med,
                                     statistics.median(dep) / med if dep and k[0] != "deploy" else None, paired, ts,
                                     k[2], statistics.median(f32) / med if f32 and k[2] != "fp32" else None))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if load1 > (os.cpu_count() or 1) or load0 > (os.cpu_count() or 1):
        notes.append(f"the machine was busy (load average {load0:.1f} → {load1:.1f} on {os.cpu_count()} cores): "
                     "absolute times are inflated; the interleaved ratios are the meaningful figures")
    return BenchResult(str(spec), variant_name, threads, list(batches), rows, notes, [load0, load1],
                       time.perf_counter() - t_start, build_s, _cpu_name(), cpu_features())


def format_table(res: BenchResult) -> str:
    """A plain-text table: one block per batch size."""
    lines = [f"{res.spec}" + (f" (variant {res.variant})" if res.variant else "")
             + f" — {res.threads} thread(s), load average {res.load[0]:.1f} → {res.load[1]:.1f}"]
    if res.cpu:
        lines.append(f"  CPU: {res.cpu}; reduced-precision features: {', '.join(res.cpu_features) or 'none found'}")
    head = f"  {'pipeline':9s} {'target':12s} {'precision':9s} {'batch':>5s} {'median ms':>10s} {'IQR ms':>17s} {'noise':>6s} " \
           f"{'runs':>4s} {'× train eager':>13s} {'(paired)':>8s} {'× deploy':>8s} {'× fp32':>6s}"
    for b in res.batches:
        rows = [r for r in res.rows if r.batch == b]
        if not rows:
            continue
        lines.append(head)
        for r in rows:
            iqr = f"{r.q1_ms:.1f}–{r.q3_ms:.1f}"
            noise = (r.q3_ms - r.q1_ms) / r.median_ms if r.median_ms else 0.0
            dep = f"{r.vs_deploy:.2f}" if r.vs_deploy is not None else ""
            f32 = f"{r.vs_fp32:.2f}" if r.vs_fp32 is not None else ""
            lines.append(f"  {r.pipeline:9s} {r.target:12s} {r.precision:9s} {r.batch:5d} {r.median_ms:10.2f} {iqr:>17s} "
                         f"{noise:6.0%} {r.runs:4d} {r.vs_train:13.2f} {r.vs_train_paired or 0:8.2f} {dep:>8s} {f32:>6s}")
    for n in res.notes:
        lines.append(f"  note: {n}")
    return "\n".join(lines)
