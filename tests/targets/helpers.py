"""Shared helpers of the target tests: small versions of every spec and a fresh-process loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from archc.compiler import CompileOptions
from archc.spec.document import load_spec_doc, resolve_params

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
FRESH = Path(__file__).resolve().parent / "fresh_load.py"

#: params that set a network's depth (shrunk to one block per stage in the tests)
DEPTH_PARAMS = ("depths", "depth", "layers")


def small_params(spec: Path, img: int | None = 64) -> list[str]:
    """Param overrides that make ``spec`` small: one block per stage, ``img`` pixels (when it has those params)."""
    doc = load_spec_doc(spec)
    _, env = resolve_params(doc, None, [])
    out = []
    for name in DEPTH_PARAMS:
        v = env.get(name)
        if isinstance(v, list) and all(isinstance(d, int) for d in v):
            out.append(f"{name}=[{','.join(str(min(d, 1)) for d in v)}]")
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(f"{name}=1")
    if img is not None and "img" in env:
        out.append(f"img={img}")
    return out


def small_options(spec: Path, **kw: Any) -> CompileOptions:
    return CompileOptions(params=small_params(spec), **kw)


def save_case(folder: Path, case_id: str, kind: str, path: Path, inputs: list[torch.Tensor], expected: Any, tol: float,
              state: dict[str, torch.Tensor] | None = None, batch2: bool = False) -> dict[str, Any]:
    """Write the inputs/expected outputs (and weights) of one artifact check; returns its manifest entry."""
    stem = folder / case_id.replace("/", "_")
    torch.save(list(inputs), f"{stem}.inputs.pt")
    torch.save(expected, f"{stem}.expected.pt")
    case = {"id": case_id, "kind": kind, "path": str(path), "inputs": f"{stem}.inputs.pt", "expected": f"{stem}.expected.pt",
            "tol": tol, "batch2": batch2}
    if state is not None:
        torch.save(state, f"{stem}.state.pt")
        case["state"] = f"{stem}.state.pt"
    return case


def run_fresh(cases: list[dict[str, Any]], folder: Path, timeout: float = 600) -> dict[str, Any]:
    """Load every case in ONE fresh ``python -I`` process in which archc cannot be imported."""
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-I", str(FRESH), str(manifest)], cwd=folder, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
