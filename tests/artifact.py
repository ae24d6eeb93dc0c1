"""Helpers for tests that import generated modules (TorchScript needs real source files)."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.flop_counter import FlopCounterMode

from archc.ir.graph import Graph


def import_source(source: str, folder: Path, name: str = "generated") -> ModuleType:
    """Write generated source to ``folder`` and import it as a fresh module."""
    mod_name = f"{name}_{uuid.uuid4().hex[:8]}"
    path = folder / f"{mod_name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(mod_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module


def observed(model: torch.nn.Module, graph: Graph, batch: int = 1) -> tuple[list[torch.Size], int, dict[str, tuple]]:
    """Run ``model`` on random inputs of the graph's input types.

    Returns output shapes, counted MACs (FlopCounterMode total / 2) and the observed output shape of
    every block and repeat module, by module path.
    """
    model.eval()
    seen: dict[str, tuple] = {}
    modules = dict(model.named_modules())
    hooks = []
    for path, node in graph.walk():
        if node.body is None or path not in modules or isinstance(modules[path], torch.nn.ModuleList):
            continue

        def hook(_m, _i, out, path=path):  # noqa: ANN001
            outs = out if isinstance(out, (tuple, list)) else (out,)
            seen.setdefault(path, tuple(tuple(o.shape) for o in outs))

        hooks.append(modules[path].register_forward_hook(hook))
    xs = [torch.randn(t.concrete(batch)) for t in graph.inputs.values()]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            y = model(*xs)
    finally:
        for h in hooks:
            h.remove()
    ys = list(y.values()) if isinstance(y, dict) else y if isinstance(y, (tuple, list)) else (y,)  # named outputs in order
    return [o.shape for o in ys], fc.get_total_flops() // 2, seen
