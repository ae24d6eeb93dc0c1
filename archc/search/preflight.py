"""Checks before trial 0: a search that cannot succeed stops in seconds with the reason and the fix.

* every choice ``target`` (and every path under the space's ``params``) names an existing param of
  the base spec, down to the list index (``dims.99`` of a four-stage ``dims`` never can be set);
* some point of the space fits every cost constraint: the smallest costs are searched cheaply (the
  space's named points, its all-lowest point and a few seeded random points, each improved by
  coordinate descent, one choice at a time, on the summed relative excess over the limits; a cost is
  one expansion of the spec, about 10 ms). The search stops at the first point within budget. Only
  when it converges without one does the check fail, naming the smallest cost seen and the limit,
  so a space is never refused because the search ran out of time;
* the evaluator's dependencies and data load (scikit-learn for ``digits``, a readable ``.npz`` or
  image folder), on the proxy model of a point within budget, exactly as trial 0 would load them.

Latency constraints are measured, not computed, so they are left to the trials.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import ArchcError, SpecError
from archc.search.space import LATENCY_METRIC, SearchSpace

__all__ = ["PreflightError", "preflight", "check_targets", "smallest_costs", "check_data"]

#: how long the smallest-cost search may take before it gives up (without refusing the space)
COST_SEARCH_SECONDS = 4.0
#: random starting points of the smallest-cost search (besides named points and the lowest point)
RANDOM_STARTS = 4


class PreflightError(ArchcError):
    """The search cannot succeed: found before any trial runs."""


@dataclass
class CostSearch:
    """What the smallest-cost search saw: the best point, its costs, and whether it fits the budget."""

    feasible: bool
    converged: bool
    point: dict[str, Any] | None
    costs: dict[str, float]
    smallest: dict[str, float]  # the smallest value seen of each constrained cost, over every point
    evaluated: int


def preflight(space: SearchSpace, builder: Any, evaluator: Any, say: Callable[[str], None]) -> None:
    """Run every check; raises :class:`PreflightError` (or the evaluator's own error) on the first failure."""
    check_targets(space)
    search = smallest_costs(space, builder)
    if not search.feasible and search.converged and search.smallest:
        over = [k for k in space.constraints if k in search.smallest and search.smallest[k] > space.constraints[k]]
        if not over and search.point is not None:
            over = [k for k, v in search.costs.items() if k in space.constraints and v > space.constraints[k]]
        parts = [f"smallest {k} seen {search.smallest[k]:,.6g} > max {space.constraints[k]:,.6g}" for k in over]
        loc = space.raw.loc_of("constraints") if "constraints" in space.raw else None
        raise PreflightError("no architecture of the space fits the constraints: " + "; ".join(parts)
                             + f" ({search.evaluated} points searched)", loc,
                             hint="raise the limit under 'constraints', or add smaller values to the choices")
    if search.point is None and search.converged and search.evaluated:
        raise PreflightError(f"no point of the space gives a valid architecture ({search.evaluated} points tried)",
                             hint="check the choices against the base spec with 'archc validate'")
    if search.point is not None:
        check_data(space, builder, evaluator, search.point)


def check_targets(space: SearchSpace) -> None:
    """Every choice target and space param path exists in the base spec (list indices included)."""
    from archc.spec.document import resolve_params

    _, env = resolve_params(space.spec, space.variant, {})
    paths: list[tuple[tuple[str | int, ...], str, Any]] = []
    for c in space.choices:
        if c.target is not None:
            paths.append((c.target, f"choice '{c.name}'", c.loc))
    for path, _, loc in space.params:
        paths.append((path, "'params'", loc))
    for path, what, loc in paths:
        value = env.get(path[0])
        for j, part in enumerate(path[1:], 1):
            where = ".".join(map(str, path[:j]))
            if not isinstance(value, list):
                raise PreflightError(f"{what} targets '{'.'.join(map(str, path))}', but '{where}' of the base spec is "
                                     f"{value!r}, not a list", loc, hint=f"target '{where}' itself")
            if not isinstance(part, int) or not -len(value) <= part < len(value):
                raise PreflightError(f"{what} targets '{'.'.join(map(str, path))}', but '{where}' of the base spec has "
                                     f"{len(value)} items", loc, hint=f"use an index from 0 to {len(value) - 1}")
            value = value[part]


def _candidates(dist: Any) -> list[Any]:
    """Values the descent tries for one param: every categorical value, else the ends and a few steps."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution):
        n = (dist.high - dist.low) // dist.step + 1
        if n <= 16:
            return [dist.low + k * dist.step for k in range(n)]
        ks = sorted({round(k * (n - 1) / 8) for k in range(9)})
        return [dist.low + k * dist.step for k in ks]
    lo, hi = float(dist.low), float(dist.high)
    vals = [lo + (hi - lo) * k / 8 for k in range(9)]
    if dist.step:
        vals = [lo + round((v - lo) / dist.step) * dist.step for v in vals]
    return sorted(set(vals))


def _costs(space: SearchSpace, builder: Any, point: Mapping[str, Any], keys: list[str]) -> dict[str, float] | None:
    from archc.cost.model import graph_cost

    m = space.materialize(point)
    if m.reason:
        return None
    try:
        g = builder.graph(m.overrides)
    except SpecError:
        return None
    c = graph_cost(g)
    allc = {"params": float(c.params), "macs": float(c.macs), "acts": float(c.acts)}
    return {k: allc[k] for k in keys if k in allc}


def smallest_costs(space: SearchSpace, builder: Any, budget_s: float = COST_SEARCH_SECONDS) -> CostSearch:
    """Search the space for a point within the cost constraints (see the module docstring)."""
    dists = space.distributions()
    keys = [k for k in space.constraints if k != LATENCY_METRIC and k in ("params", "macs", "acts")]
    limits = {k: space.constraints[k] for k in keys}
    deadline = time.monotonic() + budget_s
    smallest: dict[str, float] = {}
    n = 0

    def score(costs: dict[str, float]) -> tuple[float, float]:
        excess = sum(max(0.0, costs[k] / limits[k] - 1.0) for k in keys)
        return excess, sum(costs[k] / limits[k] for k in keys)

    def cost(point: dict[str, Any]) -> dict[str, float] | None:
        nonlocal n
        n += 1
        c = _costs(space, builder, point, keys)
        if c is not None:
            for k, v in c.items():
                smallest[k] = min(smallest.get(k, v), v)
        return c

    starts: list[dict[str, Any]] = [dict(space.point(p)) for p in space.study.enqueue]
    starts += [dict(space.points[p]) for p in space.points if p not in space.study.enqueue]
    starts.append({name: _candidates(d)[0] for name, d in dists.items()})
    rng = random.Random(0)
    for _ in range(RANDOM_STARTS):
        starts.append({name: rng.choice(_candidates(d)) for name, d in dists.items()})
    best: tuple[tuple[float, float], dict[str, Any], dict[str, float]] | None = None
    converged = True
    for start in starts:
        point = {name: start.get(name, _candidates(d)[0]) for name, d in dists.items()}
        c = cost(point)
        if c is not None and (not keys or score(c)[0] == 0.0):
            return CostSearch(True, True, point, c, smallest, n)
        if c is None:
            continue
        cur = (score(c), point, c)
        improved = True
        while improved:
            improved = False
            for name, d in dists.items():
                for v in _candidates(d):
                    if v == cur[1][name]:
                        continue
                    if time.monotonic() > deadline:
                        return CostSearch(False, False, (best or cur)[1], (best or cur)[2], smallest, n)
                    trial_point = {**cur[1], name: v}
                    tc = cost(trial_point)
                    if tc is None:
                        continue
                    if score(tc)[0] == 0.0:
                        return CostSearch(True, True, trial_point, tc, smallest, n)
                    if score(tc) < cur[0]:
                        cur = (score(tc), trial_point, tc)
                        improved = True
        if best is None or cur[0] < best[0]:
            best = cur
    if best is None:
        return CostSearch(False, converged, None, {}, smallest, n)
    return CostSearch(False, converged, best[1], best[2], smallest, n)


def check_data(space: SearchSpace, builder: Any, evaluator: Any, point: Mapping[str, Any]) -> None:
    """Load the evaluator's data for the proxy model of ``point`` as trial 0 would (raises its error)."""
    from archc.search.evaluate import ProxyEvaluator

    if not isinstance(evaluator, ProxyEvaluator) or space.evaluator.task is None:
        return
    m = space.materialize(point)
    try:
        g = builder.graph(m.proxy_overrides() if m.proxy else m.overrides)
    except SpecError:
        return  # the proxy of this point is invalid: trials report it
    in_shape = tuple(next(iter(g.inputs.values())).concrete(1))
    out_shape = tuple(g.output_types[0].concrete(1))
    evaluator.data(in_shape, out_shape)
