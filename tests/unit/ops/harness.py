"""The shared checks of the op test files: analytic facts against PyTorch, and scripting."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from archc.backends.pytorch.single import OpCheck, check_op

from archc.ir.types import TensorType
from archc.ops import get_op

__all__ = ["check", "infer", "scripted", "load_file"]


def scripted(r: OpCheck) -> torch.jit.ScriptModule:
    """The op's module under TorchScript (check_op registers its source, so torch.jit.script can read it)."""
    return torch.jit.script(r.module.eval())


def check(name: str, attrs: dict[str, Any], *shapes: tuple[int, ...]) -> OpCheck:
    """check_op must agree exactly (shapes, params, MACs), and the scripted lowering must match eager."""
    r = check_op(name, attrs, shapes)
    assert r.ok(), (r.inferred, r.observed, r.params, r.observed_params, r.macs, r.observed_macs)
    xs = [torch.randn(*s) for s in shapes]
    eager, script = r.module(*xs), scripted(r)(*xs)
    eager = list(eager) if isinstance(eager, (tuple, list)) else [eager]
    script = list(script) if isinstance(script, (tuple, list)) else [script]
    assert len(eager) == len(script)
    for e, s in zip(eager, script):
        torch.testing.assert_close(s, e)
    return r


def infer(name: str, attrs: dict[str, Any], *shapes: tuple[Any, ...]) -> list[TensorType]:
    """The op's inferred output types for inputs of ``shapes`` (symbolic dims allowed)."""
    op = get_op(name)
    assert op is not None
    return op.infer(op.bind(attrs), [TensorType(tuple(s)) for s in shapes])


def load_file(path: Path, name: str) -> Any:
    """Import a Python file as module ``name`` (the hand-written reference models)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
