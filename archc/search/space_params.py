"""What a search space sets on its base spec: fixed ``params`` (expressions of choices), ``cells`` and named
``points``; and the check that every choice is used."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from archc.diagnostics import SourceLoc, SpecError, suggest
from archc.search.cells import CellSpace, cell_edges
from archc.search.space_choices import Choice
from archc.search.space_config import CELL_KEYS
from archc.search.space_yaml import check_keys, encode, err, get_mapping, get_number, get_string, parse_path, plain
from archc.spec.document import SpecDoc, check_identifier
from archc.spec.expr import compile_expr, is_expr
from archc.spec.loader import YList, YMap

__all__ = ["parse_cells", "parse_params", "check_choice_use", "parse_points"]


def parse_cells(raw: YMap, spec: SpecDoc, choice_names: set[str]) -> list[CellSpace]:
    """The ``cells:`` section: each cell's DAG space, checked against the base-spec params it fills."""
    section = get_mapping(raw, "cells", "the search space")
    sparams = dict(spec.params)
    out = []
    for name, body in section.items():
        kloc = section.key_loc(name)
        try:
            check_identifier(name, kloc, "cell name")
        except SpecError as exc:
            raise err(exc.message, exc.loc, exc.hint) from None
        if name in choice_names:
            raise err(f"cell '{name}' has the name of a choice", kloc, "rename one of them")
        what = f"cell '{name}'"
        if not isinstance(body, YMap):
            raise err(f"{what} must be a mapping with nodes, ops, edges, output", section.loc_of(name))
        check_keys(body, CELL_KEYS, what)
        for key in ("nodes", "ops", "edges", "output"):
            if key not in body:
                raise err(f"{what} needs '{key}'", body.loc, {
                    "nodes": "the number of intermediate nodes, e.g. 'nodes: 4'",
                    "ops": "the op set of its edges, e.g. 'ops: [none, skip, cdc]'",
                    "edges": "the base-spec param that receives the edge list, e.g. 'edges: low_edges'",
                    "output": "the base-spec param that receives the output node, e.g. 'output: low_out'",
                }[key])
        nodes = get_number(body, "nodes", what, integer=True, positive=True)
        if nodes > 8:
            raise err(f"{what}: at most 8 intermediate nodes, got {nodes}", body.loc_of("nodes"))
        ops = body["ops"]
        if not isinstance(ops, YList) or len(ops) < 2:
            raise err(f"'ops' of {what} must list at least two op names", body.loc_of("ops"))
        none = get_string(body, "none", what, "none")
        for k, op in enumerate(ops):
            if not isinstance(op, str):
                raise err(f"{what}: op {op!r} must be a name", ops.loc_of(k))
            if op in ops[:k]:
                raise err(f"{what}: op '{op}' is listed twice", ops.loc_of(k))
        if none not in ops:
            raise err(f"{what}: the op set has no '{none}' (the op meaning 'no edge')", body.loc_of("ops"),
                       f"add '{none}' to ops, or name the no-edge op with 'none: <name>'")
        edges_param = get_string(body, "edges", what)
        output_param = get_string(body, "output", what)
        for key, pn in (("edges", edges_param), ("output", output_param)):
            if pn not in sparams:
                raise err(f"{what}: '{pn}' is not a param of the base spec", body.loc_of(key),
                           suggest(pn, sparams) or f"params: {', '.join(sparams)}")
        n_edges = len(cell_edges(nodes))
        default = sparams[edges_param]
        if isinstance(default, list) and len(default) != n_edges:
            raise err(f"{what} has {nodes} nodes ({n_edges} edges) but base param '{edges_param}' holds {len(default)} edges",
                       body.loc_of("nodes"), "the cell's node count must match the base spec's cell")
        op_table = get_string(body, "op_table", what)
        if op_table is not None:
            if op_table not in sparams:
                raise err(f"{what}: op_table '{op_table}' is not a param of the base spec", body.loc_of("op_table"),
                           suggest(op_table, sparams))
            table = sparams[op_table]
            if not isinstance(table, dict):
                raise err(f"{what}: base param '{op_table}' is not a mapping of op names", body.loc_of("op_table"))
            for k, op in enumerate(ops):
                if op != none and op not in table:
                    raise err(f"{what}: op '{op}' is not in the base spec's table '{op_table}'", ops.loc_of(k),
                               suggest(op, table) or f"ops: {', '.join(map(str, table))}")
        out.append(CellSpace(name, nodes, tuple(ops), edges_param, output_param, none, op_table, kloc))
    return out


def parse_params(raw: YMap, key: str, what: str, sparams: Mapping[str, Any], names: set[str],
                  section: YMap | None = None) -> list[tuple[tuple[str | int, ...], Any, SourceLoc | None]]:
    """A params mapping (``params:``, or ``section`` such as the evaluator's ``proxy``) as (path, raw value,
    position); values may be expressions of choice names, checked now and evaluated per sample."""
    sec = section if section is not None else get_mapping(raw, key, "the search space")
    out = []
    for k, v in sec.items():
        loc = sec.loc_of(k)
        path = parse_path(str(k), sec.key_loc(k), sparams, what)
        _check_exprs(v, loc, names, what)
        out.append((path, v, loc))
    return out


def _check_exprs(v: Any, loc: SourceLoc | None, names: set[str], what: str) -> None:
    """Expressions in a space may use choice names only; check them now, at their position."""
    if isinstance(v, list):
        locs = getattr(v, "locs", [])
        for i, x in enumerate(v):
            _check_exprs(x, locs[i] if i < len(locs) else loc, names, what)
        return
    if isinstance(v, dict):
        for k, x in v.items():
            _check_exprs(x, getattr(v, "locs", {}).get(k, loc), names, what)
        return
    if not is_expr(v):
        return
    for m in re.finditer(r"\$\{(.*?)\}", v, re.S):
        try:
            expr = compile_expr(m.group(1), loc)
        except SpecError as exc:
            raise err(exc.message, exc.loc, exc.hint) from None
        for n in sorted(expr.names):
            if n not in names:
                raise err(f"expression '{m.group(0)}' in {what} uses '{n}', which is not a choice", loc,
                           suggest(n, names) or "expressions in a search space may use choice names")


def check_choice_use(choices: list[Choice], params: list[tuple[Any, Any, Any]], raw: YMap) -> None:
    """Refuse a choice that sets nothing: no target param, no expression and no condition uses it."""
    used: set[str] = set()

    def collect(v: Any) -> None:
        if isinstance(v, list):
            for x in v:
                collect(x)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x)
        elif is_expr(v):
            for m in re.finditer(r"\$\{(.*?)\}", v, re.S):
                used.update(compile_expr(m.group(1)).names)

    for _, v, _ in params:
        collect(v)
    ev = raw.get("evaluator")
    if isinstance(ev, dict):
        collect(ev.get("proxy"))
    for c in choices:
        used.update(name for name, _ in c.when)
    for c in choices:
        if c.target is None and c.name not in used:
            raise err(f"choice '{c.name}' sets nothing: it is not a param of the base spec, no expression uses it and no "
                       "condition tests it", c.loc,
                       "name it after a base-spec param, give it a 'target', or use it in 'params' as '${" + c.name + "}'")


def parse_points(raw: YMap, choices: list[Choice], cells: list[CellSpace]) -> dict[str, dict[str, Any]]:
    """The ``points:`` section: named samples as Optuna param values (encoded as Optuna stores them)."""
    section = get_mapping(raw, "points", "the search space")
    by_name = {c.name: c for c in choices}
    by_cell = {c.name: c for c in cells}
    out: dict[str, dict[str, Any]] = {}
    for pname, body in section.items():
        what = f"point '{pname}'"
        if not isinstance(body, YMap):
            raise err(f"{what} must map choices and cells to values", section.loc_of(pname))
        vals: dict[str, Any] = {}
        for k, v in body.items():
            loc = body.loc_of(k)
            if k in by_name:
                c = by_name[k]
                if not c.contains(v):
                    raise err(f"{what}: {v!r} is not a value of choice '{k}'", loc)
                vals[str(k)] = encode(plain(v))
            elif k in by_cell:
                vals.update(_cell_point(by_cell[k], v, loc, what))
            else:
                raise err(f"{what}: '{k}' is neither a choice nor a cell", body.key_loc(k),
                           suggest(str(k), list(by_name) + list(by_cell)))
        out[str(pname)] = vals
    return out


def _cell_point(cell: CellSpace, v: Any, loc: SourceLoc, what: str) -> dict[str, Any]:
    if not isinstance(v, YMap) or "out" not in v:
        raise err(f"{what}: cell '{cell.name}' takes {{edges: {{'i-j': op, ...}}, out: k}}", loc,
                   "edges not listed are 'none'")
    for key in v:
        if key not in ("edges", "out"):
            raise err(f"{what}: unknown key '{key}' in cell '{cell.name}'", v.key_loc(key), "use edges and out")
    edges: dict[tuple[int, int], str] = {}
    e = v.get("edges", YMap())
    if not isinstance(e, YMap):
        raise err(f"{what}: 'edges' of cell '{cell.name}' must map 'i-j' to op names", v.loc_of("edges"))
    for key, op in e.items():
        parts = str(key).split("-")
        if len(parts) != 2 or not all(s.strip().isdigit() for s in parts) or (int(parts[0]), int(parts[1])) not in cell.edges:
            raise err(f"{what}: '{key}' is not an edge of cell '{cell.name}'", e.key_loc(key),
                       f"edges are 'i-j' with 0 <= i < j <= {cell.nodes}")
        if op not in cell.ops:
            raise err(f"{what}: '{op}' is not in the op set of cell '{cell.name}'", e.loc_of(key), suggest(str(op), cell.ops))
        edges[(int(parts[0]), int(parts[1]))] = op
    out = v["out"]
    if isinstance(out, bool) or not isinstance(out, int) or not 1 <= out <= cell.nodes:
        raise err(f"{what}: 'out' of cell '{cell.name}' must be a node 1..{cell.nodes}, got {out!r}", v.loc_of("out"))
    return cell.point(edges, out)
