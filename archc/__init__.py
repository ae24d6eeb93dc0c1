"""archc: a declarative graph compiler and architecture-search engine for vision networks.

The public API (see docs/api.md)::

    import archc

    model = archc.build("specs/resnet.yaml", variant="resnet18", params={"num_classes": 10})
    res = archc.compile("specs/resnet.yaml", out="resnet50.py")   # source, cost, files
    archc.cost("specs/resnet.yaml").params                        # from the spec, nothing built
    model = archc.load("resnet50.py")                             # or a .pt / .pt2 / .onnx artifact

Importing archc is cheap: torch and the compiler load when a function first needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# the subpackage first: importing it later (archc.cost.model) would otherwise rebind the name
# archc.cost from the function below to the subpackage
import archc.cost as _cost_package  # noqa: F401
from archc.api import build, compile, cost, load
from archc.diagnostics import ArchcError

if TYPE_CHECKING:
    from archc.compiler import CompileOptions, CompileResult
    from archc.spec.document import SpecDoc

__version__ = "0.1.0"

__all__ = ["build", "compile", "cost", "load", "load_spec", "load_spec_doc", "ArchcError", "CompileOptions",
           "CompileResult", "SpecDoc", "__version__"]

# loaded on first use (they import the compiler)
_LAZY = {"load_spec": "archc.spec", "load_spec_doc": "archc.spec.document", "CompileOptions": "archc.compiler",
         "CompileResult": "archc.compiler", "SpecDoc": "archc.spec.document"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'archc' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
