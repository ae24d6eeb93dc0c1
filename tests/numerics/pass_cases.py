"""Helpers of the pass tests; the rewrite-rule cases themselves live in :mod:`archc._docgen.pass_examples`.

The cases (:class:`FireCase`: ``before`` spec, pass, ``expected`` spec; :class:`NoFireCase`: a spec
where the named rule must refuse, with a fragment of the condition ``archc explain`` must name) are
part of the package because docs/passes.md shows them (``python -m archc._docgen --passes``); they
are re-exported here.

:func:`canon` prints a graph canonically (ops, attrs with conv padding resolved, edges, types,
block bodies), so two graphs are structurally equal when their printouts are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch

from archc._docgen.pass_examples import FIRE, NO_FIRE, FireCase, NoFireCase, example_graph
from archc.ir.graph import Graph
from archc.ops.conv import resolve_padding
from archc.passes import equivalence as eqv
from archc.passes.base import PASSES, PassResult
from archc.passes.equivalence import module_from_graph, randomize
from archc.passes.pipeline import run_pipeline

__all__ = ["FireCase", "NoFireCase", "FIRE", "NO_FIRE", "graph_of", "canon", "run_named", "no_model_construction",
           "rel_error", "converted_error"]

HERE = Path(__file__).resolve().parent


def graph_of(text: str, name: str = "case") -> Graph:
    """The typed graph of a spec given as text (a header ``archc: 1`` / ``name`` is added)."""
    return example_graph(text, name, HERE)


def _attr(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_attr(x) for x in v) + "]"
    if hasattr(v, "items"):
        return "{" + ", ".join(f"{k}: {_attr(x)}" for k, x in sorted(v.items())) + "}"
    return repr(v)


def canon(g: Graph, indent: str = "") -> str:
    """A canonical printout of ``g``: one line per node (id, op, inputs, attrs, types), bodies indented."""
    lines = []
    ins = ", ".join(f"{k}: {t}" for k, t in g.inputs.items())
    lines.append(f"{indent}graph({ins})")
    for n in g:
        attrs = dict(n.attrs)
        if n.op in ("conv2d", "cdc_conv2d"):
            attrs["padding"] = resolve_padding(attrs)
        a = ", ".join(f"{k}={_attr(v)}" for k, v in sorted(attrs.items()))
        op = f"{n.op}<{n.block}>" if n.block else n.op
        refs = ", ".join(str(r) for r in n.inputs)
        types = ", ".join(str(t) for t in n.types)
        lines.append(f"{indent}  {n.id} = {op}({refs}) {{{a}}} -> {types}")
        if n.body is not None:
            lines.append(canon(n.body, indent + "    "))
    lines.append(f"{indent}  return {', '.join(str(r) for r in g.outputs)}")
    return "\n".join(lines)


def run_named(g: Graph, pass_name: str) -> tuple[Graph, Any, int]:
    """Run a pass (or ``deploy``: the whole pipeline, uncertified); (graph, weight fn, rewrites)."""
    if pass_name == "deploy":
        res = run_pipeline(g, "deploy", check=False)
        return res.graph, res.convert, sum(s.rewrites for s in res.steps)
    r: PassResult = PASSES[pass_name].run(g)
    return r.graph, r.weights, r.rewrites


@contextlib.contextmanager
def no_model_construction() -> Iterator[None]:
    """Fail loudly if anything builds an nn.Module or a generated model inside the block."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the weight map built a module")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "__init__", refuse)
        mp.setattr(eqv, "module_from_graph", refuse)
        mp.setattr(eqv, "module_from_source", refuse)
        yield


def rel_error(a: torch.Tensor | tuple, b: torch.Tensor | tuple) -> float:
    a_t = a if isinstance(a, tuple) else (a,)
    b_t = b if isinstance(b, tuple) else (b,)
    assert len(a_t) == len(b_t)
    err = 0.0
    for x, y in zip(a_t, b_t):
        assert x.shape == y.shape
        err = max(err, float((x - y).abs().max()) / max(float(x.abs().max()), 1e-30))
    return err


def converted_error(before: Graph, after: Graph, weight_fn: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]],
                    dtype: torch.dtype, seed: int = 0) -> float:
    """Train module on random weights vs the rewritten module on ``weight_fn`` of those weights."""
    train = module_from_graph(before).to(dtype).eval()
    sd = randomize(train, seed)
    train.load_state_dict(sd, strict=True)
    deploy = module_from_graph(after).to(dtype).eval()
    frozen = {k: v.clone() for k, v in sd.items()}
    with no_model_construction():
        new_sd = weight_fn(sd)
    assert all(torch.equal(sd[k], frozen[k]) for k in frozen) and sd.keys() == frozen.keys(), "the map changed its input"
    deploy.load_state_dict(new_sd, strict=True)
    gen = torch.Generator().manual_seed(seed + 7)
    xs = [torch.randn(t.concrete(2), generator=gen, dtype=dtype) for t in before.inputs.values()]
    with torch.no_grad():
        return rel_error(train(*xs), deploy(*xs))
