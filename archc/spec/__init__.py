"""The spec language: YAML → typed graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archc.ir.graph import Graph
from archc.spec.document import SpecDoc, load_spec_doc, resolve_params
from archc.spec.expand import expand

__all__ = ["load_spec", "load_spec_doc", "resolve_params", "expand", "SpecDoc"]


def load_spec(
    path: str | Path,
    variant: str | None = None,
    params: Sequence[str] | Mapping[str, Any] = (),
    text: str | None = None,
) -> Graph:
    """Load a spec, bind a variant and param overrides, and expand it to a typed graph.

    ``params`` is a list of ``name=value`` overrides (as on the command line) or a mapping.

    >>> g = load_spec("specs/transxnet.yaml", variant="t")  # doctest: +SKIP
    >>> g.output_types[0].shape  # doctest: +SKIP
    ('B', 1000)
    """
    doc = load_spec_doc(path, text)
    chosen, env = resolve_params(doc, variant, params)
    return expand(doc, env, chosen)
