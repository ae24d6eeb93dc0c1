"""``--check MODULE:FACTORY``: the source model and the spec's module compute the same, in float64.

The source model comes from the user's own importable code (a dotted module or a ``.py`` file, then
``:`` and a function called without arguments). It gets the checkpoint (``strict=True``), the spec's
module gets the mapped weights (``strict=True``); both run in eval mode in float64 on one seeded
input, and the error is ``max|a − b| / max|a|`` over all outputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from archc.diagnostics import ArchcError, first_line
from archc.passes.equivalence import rel_error

__all__ = ["load_factory", "compare_outputs", "TOLERANCE"]

#: the largest relative error a mapped checkpoint may show in float64
TOLERANCE = 1e-12


def load_factory(text: str) -> Callable[[], torch.nn.Module]:
    """``pkg.module:fn`` or ``path/to/file.py:fn`` → the function (the user's code is imported as is)."""
    where, sep, name = text.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ArchcError(f"--check takes MODULE:FACTORY, got '{text}'",
                         hint="e.g. --check benchmarks.reference.transxnet:transxnet_t or --check model.py:build")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise ArchcError(f"--check: no file '{where}'", hint="give the path of a .py file, or a dotted module name")
        spec = importlib.util.spec_from_file_location(f"archc_check_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ArchcError(f"--check: cannot import '{where}'", hint="give a .py file")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # its sibling imports work as when run from there
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ArchcError(f"--check: importing '{where}' failed: {type(exc).__name__}: {first_line(exc)}") from None
        finally:
            sys.path.pop(0)
    else:
        cwd = str(Path.cwd())
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)  # the user's project, as `python -c 'import ...'` from here would see it
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise ArchcError(f"--check: no module '{where}' ({first_line(exc)})",
                             hint="run from the folder the module imports from, or give a .py file path") from None
        except Exception as exc:
            raise ArchcError(f"--check: importing '{where}' failed: {type(exc).__name__}: {first_line(exc)}") from None
        finally:
            if added:
                sys.path.remove(cwd)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ArchcError(f"--check: '{where}' has no function '{name}'", hint="name a function that returns the model")
    return fn


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for k in sorted(out) for t in _tensors(out[k])]
    if isinstance(out, (tuple, list)):
        return [t for x in out for t in _tensors(x)]
    return []


def compare_outputs(source_model: torch.nn.Module, source_state: Mapping[str, torch.Tensor], model: torch.nn.Module,
                    state: Mapping[str, torch.Tensor], shapes: Sequence[Sequence[int]], seed: int = 0) -> float:
    """Relative error between the source model with its checkpoint and ``model`` with the mapped weights.

    Both are loaded with ``strict=True`` and run in float64, eval mode, on inputs of ``shapes``.
    """
    try:
        source_model.load_state_dict(dict(source_state), strict=True)
    except RuntimeError as exc:
        raise ArchcError(f"--check: the checkpoint does not load into the source model: {first_line(exc)}",
                         hint="name the factory of the model the checkpoint was saved from") from None
    model.load_state_dict(dict(state), strict=True)
    source_model.double().eval()
    model.double().eval()
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(tuple(s), generator=gen, dtype=torch.float64) for s in shapes]
    with torch.no_grad():
        try:
            ref = _tensors(source_model(*inputs))
        except Exception as exc:
            raise ArchcError(f"--check: the source model fails on input {[list(s) for s in shapes]}: {first_line(exc)}",
                             hint="set the spec's input size to the one the source model was built for (-p img=...)") from None
        got = _tensors(model(*inputs))
    if not ref or len(ref) != len(got):
        return math.inf
    return max(rel_error(a.double(), b.double()) for a, b in zip(ref, got))
