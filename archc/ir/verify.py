"""IR verification: a pass that can run anywhere.

Checks that every input reference points at an earlier node or a graph input, that output indices
exist, that op attributes still bind, and that re-inferring every node's types reproduces the
recorded ones (blocks and repeats recursively).
"""

from __future__ import annotations

from archc.diagnostics import ArchcError
from archc.ir.graph import Graph
from archc.ops import REGISTRY

__all__ = ["VerifyError", "verify"]


class VerifyError(ArchcError):
    """The IR is malformed (always a bug in a pass, never in a spec)."""


def verify(g: Graph, _seen: set[int] | None = None) -> None:
    """Raise :class:`VerifyError` describing the first problem found in ``g``."""
    seen = _seen if _seen is not None else set()
    if id(g) in seen:
        return
    seen.add(id(g))
    defined = {k: 1 for k in g.inputs}
    for n in g:
        for r in n.inputs:
            if r.node not in defined:
                raise VerifyError(f"'{g.name}': node '{n.id}' reads '{r}', which is not defined before it")
            if r.index >= defined[r.node]:
                raise VerifyError(f"'{g.name}': node '{n.id}' reads output {r.index} of '{r.node}', which has {defined[r.node]}")
        in_types = tuple(g.type_of(r) for r in n.inputs)
        if n.body is not None:
            verify(n.body, seen)
            if n.is_block and tuple(n.body.inputs.values()) != in_types:
                raise VerifyError(f"'{g.name}': block '{n.id}' gets {in_types} but its body expects {tuple(n.body.inputs.values())}")
            if n.types != n.body.output_types:
                raise VerifyError(f"'{g.name}': block '{n.id}' records {n.types} but its body yields {n.body.output_types}")
        else:
            op = REGISTRY.get(n.op)
            if op is None:
                raise VerifyError(f"'{g.name}': node '{n.id}' has unknown op '{n.op}'")
            if in_types != tuple(n.meta.get("in_types", ())):
                raise VerifyError(f"'{g.name}': node '{n.id}' records input types {n.meta.get('in_types')} but gets {in_types}")
            outs = tuple(op.infer(op.bind(dict(n.attrs)), list(in_types)))
            if outs != n.types:
                raise VerifyError(f"'{g.name}': node '{n.id}' records {n.types} but infers {outs}")
        defined[n.id] = len(n.types)
    for r in g.outputs:
        if r.node not in defined:
            raise VerifyError(f"'{g.name}': output '{r}' is not defined")
