"""Mutation fuzzing of the bundled specs, time-boxed for the suite (benchmarks/bench_fuzz.py runs >= 10,000).

Every mutant must be rejected with a clean error, or compile to a module whose parameter and buffer
counts and output shapes equal the analytic ones; none may raise an internal error or take more than
5 CPU seconds. Mutants run in a fixed order (spec by spec, seeds counting up), so a failure names the
``(spec, seed)`` that reproduces it: ``tests.fuzz.mutator.mutant(spec, seed)``.
"""

from __future__ import annotations

import os
import time

import torch

from tests.fuzz.mutator import cases, run_case

#: wall-clock seconds the suite spends fuzzing (ARCHC_FUZZ_SECONDS overrides)
BUDGET = float(os.environ.get("ARCHC_FUZZ_SECONDS", "45"))
#: mutants run whatever the budget (a loaded machine runs fewer in the budget, never fewer than these)
MIN_CASES = 30


def test_mutants_are_rejected_cleanly_or_compile_exactly() -> None:
    torch.set_num_threads(1)
    deadline = time.monotonic() + BUDGET
    counts: dict[str, int] = {}
    failures = []
    for spec, seed in cases():
        out = run_case(spec, seed)
        counts[out.kind] = counts.get(out.kind, 0) + 1
        if out.kind in ("internal", "hang", "mismatch"):
            failures.append(f"{out.spec} seed {out.seed}: {out.kind} ({out.seconds:.1f} s) {out.detail}")
        if time.monotonic() > deadline and sum(counts.values()) >= MIN_CASES:
            break
    assert sum(counts.values()) >= MIN_CASES, counts  # the corpus is big enough to mean something
    assert counts.get("accepted", 0) + counts.get("unchecked", 0) > 0, counts  # some mutants reach the module checks
    assert not failures, "\n".join(failures[:20])
