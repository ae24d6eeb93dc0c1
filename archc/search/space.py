"""Search-space files: loading, validation with positions, Optuna distributions, materialization.

A search space is a YAML file (``docs/search_space.md``) naming a base spec and what to search over
it: choices over spec params, op choices, cell spaces, constraints, objectives, an evaluator and a
study. Every error in the file is a :class:`~archc.diagnostics.SearchSpaceError` at its
``file:line:col``.

>>> space = load_space("search_spaces/cdc.yaml")            # doctest: +SKIP
>>> m = space.materialize(space.point("cdcnpp"))             # doctest: +SKIP
>>> m.overrides[("low_out",)]                                # doctest: +SKIP
2
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.diagnostics import ArchcError, SearchSpaceError, SourceLoc, SpecError, suggest
from archc.search.cells import CellSpace, edge_key

# the sections are read by one module each; the names callers import from here stay importable from here
from archc.search.space_choices import Choice, choices_from_distributions, parse_choices
from archc.search.space_config import (  # noqa: F401 (re-exported: the docs-schema test reads the key tables here)
    CELL_KEYS,
    CHOICE_KEYS,
    CHOICE_TYPES,
    CONSTRAINED_SAMPLERS,
    CONSTRAINT_METRICS,
    COST_METRICS,
    DATA_KEYS,
    EVAL_KEYS,
    FORMAT_VERSION,
    LATENCY_KEYS,
    LATENCY_METRIC,
    OPTIMIZERS,
    PRUNERS,
    SAMPLERS,
    SCHEDULES,
    SCREEN_KEYS,
    SOURCES,
    STUDY_KEYS,
    TASKS,
    TOP_KEYS,
    TRAIN_KEYS,
    TRAIN_METRICS,
    ZERO_COST_METRICS,
    ZERO_KEYS,
    DataConfig,
    EvaluatorConfig,
    LatencyConfig,
    Objective,
    StudyConfig,
    TrainConfig,
    ZeroCostConfig,
)
from archc.search.space_evaluator import parse_constraints, parse_evaluator, parse_objectives
from archc.search.space_params import check_choice_use, parse_cells, parse_params, parse_points
from archc.search.space_study import parse_strategy, parse_study
from archc.search.space_yaml import check_keys, decode, err, parse_path, plain  # noqa: F401 (parse_path re-exported)
from archc.spec.document import SpecDoc, load_spec_doc
from archc.spec.expr import evaluate
from archc.spec.loader import YMap, load_yaml

__all__ = [
    "Choice", "CellSpace", "Objective", "DataConfig", "TrainConfig", "ZeroCostConfig", "LatencyConfig",
    "EvaluatorConfig", "StudyConfig", "SearchSpace", "Materialized", "load_space", "choices_from_distributions",
    "COST_METRICS", "ZERO_COST_METRICS", "SAMPLERS", "PRUNERS", "FORMAT_VERSION",
]


@dataclass
class Materialized:
    """A sample turned into fixed spec params.

    ``overrides`` set the target model (what constraints, costs and exported specs see);
    ``proxy`` are applied on top of them for the model that is trained or screened. ``reason`` is
    set when the sample is infeasible (e.g. a cell's output node has no live input).
    """

    values: dict[str, Any]
    overrides: dict[tuple[str | int, ...], Any]
    proxy: dict[tuple[str | int, ...], Any]
    reason: str | None = None
    cells: dict[str, tuple[list[str], int]] = field(default_factory=dict)

    def proxy_overrides(self) -> dict[tuple[str | int, ...], Any]:
        return {**self.overrides, **self.proxy}


# ---------------------------------------------------------------------------------------------------------
# the space
# ---------------------------------------------------------------------------------------------------------
@dataclass
class SearchSpace:
    """A loaded, validated search space (see :func:`load_space`)."""

    path: str
    name: str
    doc: str
    base: Path
    variant: str | None
    spec: SpecDoc
    params: list[tuple[tuple[str | int, ...], Any, SourceLoc | None]]
    choices: list[Choice]
    cells: list[CellSpace]
    constraints: dict[str, float]
    objectives: list[Objective]
    evaluator: EvaluatorConfig
    study: StudyConfig
    points: dict[str, dict[str, Any]]
    raw: YMap
    text: str = ""
    #: options of the search strategies from the ``strategy:`` section: name -> {option: (value, position)}
    strategy: dict[str, dict[str, tuple[Any, SourceLoc | None]]] = field(default_factory=dict)
    #: the one-shot strategies' data set (``strategy: {data: ...}``); None: they train on the evaluator's
    strategy_data: DataConfig | None = None

    def for_oneshot(self) -> SearchSpace:
        """This space as the one-shot strategies see it: the evaluator's data replaced by ``strategy: {data: ...}``.

        A supernet's cost is set by its own budget, not by one trial's, and a data set on which a short
        stand-alone training ranks architectures can be larger than a supernet search needs.
        """
        if self.strategy_data is None:
            return self
        return dataclasses.replace(self, evaluator=dataclasses.replace(self.evaluator, data=self.strategy_data))

    @property
    def digest(self) -> str:
        """sha256 of the space file and the base spec's sources."""
        h = hashlib.sha256(self.text.encode())
        h.update(self.spec.digest.encode())
        return h.hexdigest()

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def param_names(self) -> list[str]:
        """Every Optuna param name of the space (choices, then cells)."""
        return [c.name for c in self.choices] + [n for cell in self.cells for n in cell.param_names()]

    def distributions(self) -> dict[str, Any]:
        """Optuna distributions of every param (conditional choices included)."""
        from optuna.distributions import CategoricalDistribution

        out = {c.name: c.distribution() for c in self.choices}
        for cell in self.cells:
            for i, j in cell.edges:
                out[edge_key(cell.name, i, j)] = CategoricalDistribution(list(cell.ops))
            out[cell.output_key] = CategoricalDistribution(list(range(1, cell.nodes + 1)))
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The search space of Optuna's GridSampler (every value of every param)."""
        out: dict[str, list[Any]] = {}
        for c in self.choices:
            vals = c.grid_values()
            assert vals is not None
            out[c.name] = vals
        for cell in self.cells:
            for i, j in cell.edges:
                out[edge_key(cell.name, i, j)] = list(cell.ops)
            out[cell.output_key] = list(range(1, cell.nodes + 1))
        return out

    def sample(self, trial: Any) -> dict[str, Any]:
        """Sample every active choice and every cell in ``trial`` (define-by-run); decoded values."""
        values: dict[str, Any] = {}
        for c in self.choices:
            if c.active(values):
                values[c.name] = c.suggest(trial)
        for cell in self.cells:
            for i, j in cell.edges:
                values[edge_key(cell.name, i, j)] = trial.suggest_categorical(edge_key(cell.name, i, j), list(cell.ops))
            values[cell.output_key] = trial.suggest_categorical(cell.output_key, list(range(1, cell.nodes + 1)))
        return values

    def materialize(self, values: Mapping[str, Any]) -> Materialized:
        """Fixed spec params for sampled ``values`` (decoded, as :meth:`sample` returns them)."""
        vals = {k: decode(v) for k, v in values.items()}
        env = {c.name: vals.get(c.name, c.default) if c.active(vals) else c.default for c in self.choices}
        overrides: dict[tuple[str | int, ...], Any] = {}
        for path, raw, loc in self.params:
            overrides[path] = plain(evaluate(raw, env, loc))
        for c in self.choices:
            if c.target is not None and c.active(vals) and c.name in vals:
                overrides[c.target] = plain(vals[c.name])
        reasons: list[str] = []
        cells: dict[str, tuple[list[str], int]] = {}
        for cell in self.cells:
            edges, out, reason = cell.materialize(vals)
            cells[cell.name] = (edges, out)
            overrides[(cell.edges_param,)] = edges
            overrides[(cell.output_param,)] = out
            if reason:
                reasons.append(reason)
        proxy = {path: plain(evaluate(raw, env, loc)) for path, raw, loc in self.evaluator.proxy}
        return Materialized(dict(vals), overrides, proxy, "; ".join(reasons) or None, cells)

    def run_folder(self, suffix: str = "") -> Path:
        """The default run folder: the space's ``study.out``, else ``runs/<name><suffix>`` with the name made a
        plain folder name (a space named ``../../x`` must not write outside ``runs/``)."""
        from archc._fs import safe_stem

        if not suffix and self.study.out:
            return Path(self.study.out)
        return Path("runs") / safe_stem(self.name + suffix, "space")

    def point(self, name: str) -> dict[str, Any]:
        """Optuna param values (encoded as Optuna stores them) of the named point."""
        if name not in self.points:
            raise err(f"unknown point '{name}'", self.raw.loc_of("points"), suggest(name, self.points))
        return dict(self.points[name])


# ---------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------
def load_space(path: str | Path, text: str | None = None) -> SearchSpace:
    """Load and validate a search-space file; raises :class:`SearchSpaceError` at ``file:line:col``."""
    p = Path(path)
    try:
        raw = load_yaml(p, text)
    except SearchSpaceError:
        raise
    except SpecError as exc:  # YAML syntax, unreadable file: same message, search-space error class
        raise err(exc.message, exc.loc, exc.hint) from None
    if text is None:
        text = p.read_text(encoding="utf-8")
    loc0 = getattr(raw, "loc", SourceLoc(str(p), 1, 1))
    if not isinstance(raw, YMap):
        raise err("a search space must be a YAML mapping at the top level", loc0, "start with 'archc: 1' and 'base: <spec>'")
    check_keys(raw, TOP_KEYS, "the search space")
    if "archc" not in raw:
        raise err("missing format version 'archc: 1'", loc0, "add 'archc: 1' at the top")
    if raw["archc"] != FORMAT_VERSION:
        raise err(f"unsupported format version {raw['archc']!r}", raw.loc_of("archc"), f"this archc reads 'archc: {FORMAT_VERSION}'")
    if "base" not in raw:
        raise err("a search space needs 'base', the spec it searches over", loc0,
                   "add 'base: ../specs/<spec>.yaml' (relative to this file)")
    name = raw.get("name", p.stem)
    if not isinstance(name, str) or not name:
        raise err(f"'name' must be a non-empty string, got {name!r}", raw.loc_of("name"))
    doc_text = str(raw.get("doc", "") or "")
    spec = _load_base(raw, p)
    variant = raw.get("variant")
    if variant is not None and variant not in spec.variants:
        raise err(f"unknown variant '{variant}' of '{spec.name}'", raw.loc_of("variant"),
                   suggest(str(variant), spec.variants) or (f"variants: {', '.join(spec.variants)}" if spec.variants else "the base spec has no variants"))
    sparams = dict(spec.params)
    choices = parse_choices(raw, spec)
    cells = parse_cells(raw, spec, {c.name for c in choices})
    names = {c.name for c in choices}
    params = parse_params(raw, "params", "'params'", sparams, names)
    taken = {pth[0]: loc for pth, _, loc in params}
    for c in choices:
        if c.target is not None and c.target[0] in taken and len(c.target) == 1:
            raise err(f"param '{c.target[0]}' is both fixed under 'params' and set by choice '{c.name}'", c.loc,
                       "remove one of them")
    for cell in cells:
        for pn in (cell.edges_param, cell.output_param):
            if pn in taken:
                raise err(f"param '{pn}' is both fixed under 'params' and set by cell '{cell.name}'", taken[pn])
    check_choice_use(choices, params, raw)
    evaluator = parse_evaluator(raw, p, sparams, names)
    objectives = parse_objectives(raw, evaluator)
    constraints = parse_constraints(raw)
    if LATENCY_METRIC in constraints and evaluator.latency is None:
        evaluator = EvaluatorConfig(evaluator.task, evaluator.data, evaluator.proxy, evaluator.train, evaluator.zero_cost,
                                    LatencyConfig(), evaluator.threads)
    points = parse_points(raw, choices, cells)
    study = parse_study(raw, name, objectives, choices, points)
    strategy, strategy_data = parse_strategy(raw, p)
    return SearchSpace(str(p), name, doc_text, Path(spec.path), variant, spec, params, choices, cells, constraints,
                       objectives, evaluator, study, points, raw, text, strategy, strategy_data)


def _load_base(raw: YMap, p: Path) -> SpecDoc:
    base = raw["base"]
    loc = raw.loc_of("base")
    if not isinstance(base, str) or not base.endswith((".yaml", ".yml")):
        raise err(f"'base' must be a relative path to a spec .yaml file, got {base!r}", loc)
    target = (p.parent / base)
    if not target.exists():
        raise err(f"base spec '{base}' does not exist", loc, f"looked for {target.resolve()} (paths are relative to the space file)")
    try:
        return load_spec_doc(target)
    except ArchcError as exc:
        # the spec's own diagnostic, said to come from this space's base
        raise err(f"base spec '{base}' is invalid: {exc.headline()}", loc, exc.hint) from None
