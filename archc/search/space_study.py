"""The ``study`` and ``strategy`` sections of a search space (Optuna sampler/pruner options, one-shot strategies)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archc.diagnostics import SourceLoc, suggest
from archc.search.space_choices import Choice
from archc.search.space_config import PRUNERS, SAMPLERS, STUDY_KEYS, DataConfig, Objective, StudyConfig
from archc.search.space_evaluator import parse_data
from archc.search.space_yaml import check_keys, err, get_mapping, get_number, get_string, plain
from archc.spec.loader import YList, YMap

__all__ = ["parse_study", "parse_strategy"]

_MANAGED_KWARGS = ("seed", "constraints_func", "search_space")


def parse_study(raw: YMap, name: str, objectives: list[Objective], choices: list[Choice], points: Mapping[str, Any]) -> StudyConfig:
    """The ``study:`` section; sampler and pruner options are checked against the Optuna classes' signatures."""
    import optuna

    st = get_mapping(raw, "study", "the search space")
    what = "'study'"
    check_keys(st, STUDY_KEYS, what)
    sname = get_string(st, "name", what, name)
    sampler, skw, sseed = _component(st, "sampler", "tpe", SAMPLERS, optuna.samplers)
    pruner, pkw, _ = _component(st, "pruner", "none", PRUNERS, optuna.pruners)
    if pruner != "none" and len(objectives) > 1:
        raise err("pruning needs a single objective (Optuna does not prune multi-objective studies)", st.loc_of("pruner"),
                   "use 'pruner: none' or one objective")
    if sampler == "grid":
        for c in choices:
            if c.when:
                raise err(f"the grid sampler needs a fixed search space: choice '{c.name}' is conditional", c.loc,
                           "use another sampler, or drop the 'when'")
            if c.grid_values() is None:
                raise err(f"the grid sampler needs finite choices: float choice '{c.name}' has no 'step'", c.loc)
    seed = get_number(st, "seed", what, None, integer=True, nonneg=True, allow_none=True)
    if sseed is not None:
        seed = sseed
    enqueue = st.get("enqueue", YList())
    if isinstance(enqueue, str):
        enqueue = YList([enqueue])
    if not isinstance(enqueue, list):
        raise err(f"'enqueue' must list point names, got {enqueue!r}", st.loc_of("enqueue"))
    for k, pn in enumerate(enqueue):
        if pn not in points:
            eloc = enqueue.loc_of(k) if isinstance(enqueue, YList) else st.loc_of("enqueue")
            raise err(f"enqueue: unknown point '{pn}'", eloc, suggest(str(pn), points) or "declare it under 'points'")
    storage = get_string(st, "storage", what, None)
    out = get_string(st, "out", what, None)
    timeout = get_number(st, "timeout", what, None, positive=True, allow_none=True)
    return StudyConfig(sname, sampler, skw, pruner, pkw, get_number(st, "trials", what, 20, integer=True, positive=True),
                       timeout, storage, seed, tuple(enqueue),
                       get_number(st, "max_attempts", what, None, integer=True, positive=True, allow_none=True), out, st.loc)


def parse_strategy(raw: YMap, p: Path) -> tuple[dict[str, dict[str, tuple[Any, SourceLoc | None]]], DataConfig | None]:
    """``strategy: {data: {...}, darts: {epochs: 8}, pcdarts: {...}}``: the one-shot strategies' data set
    (None: the evaluator's) and options per strategy (checked by the strategy)."""
    from archc.search.strategies import STRATEGIES

    section = get_mapping(raw, "strategy", "the search space")
    out: dict[str, dict[str, tuple[Any, SourceLoc | None]]] = {}
    data = parse_data(get_mapping(section, "data", "'strategy'"), p, "strategy 'data'") if "data" in section else None
    for name, body in section.items():
        if name == "data":
            continue
        if name not in STRATEGIES:
            raise err(f"unknown strategy '{name}' under 'strategy'", section.key_loc(name),
                       suggest(str(name), STRATEGIES) or f"strategies: {', '.join(STRATEGIES)}")
        if STRATEGIES[name].options is None:
            raise err(f"strategy '{name}' takes no options here", section.key_loc(name),
                       "its settings are the 'study' and 'evaluator' sections")
        if not isinstance(body, YMap):
            raise err(f"options of strategy '{name}' must be a mapping, got {body!r}", section.loc_of(name),
                       "e.g. 'pcdarts: {epochs: 12}'")
        for k, v in body.items():
            if isinstance(v, (YMap, YList)):
                raise err(f"option '{k}' of strategy '{name}' must be a single value", body.loc_of(k))
        out[str(name)] = {str(k): (plain(v), body.loc_of(k)) for k, v in body.items()}
    return out, data


def _component(st: YMap, key: str, default: str, table: Mapping[str, str], module: Any) -> tuple[str, tuple[tuple[str, Any], ...], Any]:
    """``sampler: tpe`` or ``sampler: {name: tpe, n_startup_trials: 5}``; kwargs checked against Optuna's signature."""
    if key not in st:
        return default, (), None
    v = st[key]
    loc = st.loc_of(key)
    if isinstance(v, str):
        body = YMap({"name": v})
        body.loc = loc
        body.locs = {"name": loc}
        body.key_locs = {"name": loc}
    elif isinstance(v, YMap):
        body = v
    else:
        raise err(f"'{key}' must be a name or a mapping with 'name', got {v!r}", loc, f"{key}s: {', '.join(table)}")
    name = get_string(body, "name", f"'{key}'", None, tuple(table))
    if name is None:
        raise err(f"'{key}' needs a 'name'", body.loc, f"{key}s: {', '.join(table)}")
    cls = getattr(module, table[name])
    params = inspect.signature(cls.__init__).parameters
    kwargs = []
    seed = None
    for k, val in body.items():
        if k == "name":
            continue
        if k == "seed" and key == "sampler":
            seed = get_number(body, "seed", f"'{key}'", None, integer=True, nonneg=True, allow_none=True)
            continue
        if k in _MANAGED_KWARGS or k not in params or k == "self":
            allowed = [p for p in params if p not in ("self", *_MANAGED_KWARGS)]
            raise err(f"{key} '{name}' has no option '{k}'", body.key_loc(k),
                       suggest(str(k), allowed) or (f"options: {', '.join(allowed)}" if allowed else "it takes no options"))
        kwargs.append((str(k), plain(val)))
    return name, tuple(kwargs), seed
