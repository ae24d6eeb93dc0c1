"""Worked examples of every pass, written in the spec language: the pass tests' cases and the docs' examples.

Each :class:`FireCase` is a ``before`` spec, the pass to run on it (or ``deploy``: the whole
pipeline), the rule it exercises and the ``expected`` spec of the result; each :class:`NoFireCase`
is a spec where the named rule must refuse, with a fragment of the condition ``archc explain`` must
name. The cases are data, ``pass_cases/fire.yaml`` and ``pass_cases/no_fire.yaml`` next to this
module, read once on import. ``tests/numerics`` runs every case (structure, numerical equivalence of the weight map,
``archc explain``); ``python -m archc._docgen --passes`` prints the cases of each pass in
docs/passes.md, with the *after* graph produced by running the pass. Specs are small so the
numerical tests stay fast.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from archc.diagnostics import SpecError
from archc.ir.graph import Graph
from archc.spec.loader import YList, YMap, load_yaml

__all__ = ["FireCase", "NoFireCase", "FIRE", "NO_FIRE", "example_graph", "spec_of"]


def spec_of(text: str, name: str = "case") -> str:
    """A complete spec file from a case's text: the ``archc: 1`` / ``name`` header added."""
    body = textwrap.dedent(text).strip("\n")
    return f"archc: 1\nname: {name}\n{body}\n"


def example_graph(text: str, name: str = "case", folder: Path | None = None) -> Graph:
    """The typed graph of a case's spec text (read as ``folder/name.yaml`` for diagnostics)."""
    from archc.compiler import CompileOptions, build_graph

    path = (folder or Path.cwd()) / f"{name}.yaml"
    return build_graph(path, CompileOptions(), text=spec_of(text, name))[1]


@dataclass(frozen=True)
class FireCase:
    """``before`` becomes ``expected`` under ``pass_name``; ``rule`` is the rule that fires."""

    id: str
    pass_name: str
    rule: str
    before: str
    expected: str


@dataclass(frozen=True)
class NoFireCase:
    """``rule`` of ``pass_name`` refuses every site of ``before``; ``archc explain`` says ``reason``."""

    id: str
    pass_name: str
    rule: str
    before: str
    reason: str


_Case = TypeVar("_Case", FireCase, NoFireCase)
#: YAML key of each field where the two differ (``pass`` is a Python keyword)
_KEYS = {"pass_name": "pass"}


def _load_cases(file: str, cls: type[_Case]) -> list[_Case]:
    """The cases in ``pass_cases/<file>``, in file order; a malformed entry is an error at its position."""
    res = resources.files("archc._docgen") / "pass_cases" / file
    path = Path(__file__).with_name("pass_cases") / file  # how diagnostics name it
    raw: Any = load_yaml(path, res.read_text(encoding="utf-8"))
    if not isinstance(raw, YList):
        raise SpecError(f"{file} must be a list of cases", getattr(raw, "loc", None))
    keys = [_KEYS.get(f.name, f.name) for f in fields(cls)]
    out = []
    for k, entry in enumerate(raw):
        if not isinstance(entry, YMap) or set(entry) != set(keys):
            got = sorted(map(str, entry)) if isinstance(entry, YMap) else type(entry).__name__
            raise SpecError(f"case {k + 1} of {file} has keys {got}", raw.loc_of(k), hint=f"a case has: {', '.join(keys)}")
        for key in keys:
            if not isinstance(entry[key], str):
                raise SpecError(f"'{key}' of case {k + 1} in {file} must be a string", entry.loc_of(key))
        out.append(cls(*(entry[key] for key in keys)))
    return out


FIRE: list[FireCase] = _load_cases("fire.yaml", FireCase)
NO_FIRE: list[NoFireCase] = _load_cases("no_fire.yaml", NoFireCase)
