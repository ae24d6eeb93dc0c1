"""One-shot supernets built from cell search spaces (DARTS / PC-DARTS / SPOS).

>>> from archc.search.space import load_space                          # doctest: +SKIP
>>> sn = build_supernet(load_space("search_spaces/cdc.yaml"))           # doctest: +SKIP
>>> y = sn.model(torch.randn(2, 3, 32, 32))                             # mixed forward   # doctest: +SKIP
>>> sn.fix(sn.sample_path(random.Random(0)))                            # one path only   # doctest: +SKIP
>>> graph, child = sn.child(sn.derive())                                # inherited weights  # doctest: +SKIP

Every cell of the space becomes a mixed cell (see :mod:`archc.search.supernet.codegen`); the rest of
the network is the base spec's, at the space's first point for any non-cell choice (defaults when the
space has no points). The module is generated source (:attr:`Supernet.source`) that imports only torch.
A supernet fixed to one path computes exactly what the child compiled from that path computes with the
weights :meth:`Supernet.child` hands it (``partial_channels=1``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch

from archc.ir.graph import Graph
from archc.search.cells import edge_key
from archc.search.space import SearchSpace
from archc.search.supernet.anatomy import CellAnatomy, SupernetError, cell_anatomy
from archc.search.supernet.codegen import TAIL, candidate_name, supernet_source
from archc.search.supernet.derive import derive_choice, edge_strengths

__all__ = ["build_supernet", "Supernet", "SupernetError", "base_values", "edge_strengths"]


def base_values(space: SearchSpace) -> dict[str, Any]:
    """Values of the space's non-cell choices that a supernet uses: the first point's, else defaults."""
    first = next(iter(space.points.values()), {})
    out: dict[str, Any] = {}
    for c in space.choices:
        if c.name in first:
            out[c.name] = first[c.name]
        elif c.default is not None:
            out[c.name] = c.default
    return out


def _template(space: SearchSpace) -> dict[str, Any]:
    """A feasible choice of every param (the first point; edge (0,1) alone for cells it does not fix)."""
    vals = base_values(space)
    first = next(iter(space.points.values()), {})
    for cell in space.cells:
        names = cell.param_names()
        if all(n in first for n in names):
            vals.update({n: first[n] for n in names})
        else:
            op = next(o for o in cell.ops if o != cell.none)
            vals.update(cell.point({(0, 1): op}, 1))
    return vals


class Supernet:
    """A generated supernet module over a cell space, with path fixing, derivation and child export."""

    def __init__(self, space: SearchSpace, source: str, model: torch.nn.Module, anatomies: list[CellAnatomy],
                 proxy: bool, partial_channels: int, dtype: torch.dtype, input_shape: tuple[int, ...] = ()) -> None:
        self.space = space
        #: the model's input shape at batch 1 (the proxy or full-size input of the base spec)
        self.input_shape = input_shape
        self.source = source
        self.model = model
        self.anatomies = anatomies
        self.proxy = proxy
        self.partial_channels = partial_channels
        self.dtype = dtype
        self._cells = {a.node.id: model.get_submodule(a.node.id) for a in anatomies}
        self._fixed: dict[str, Any] | None = None

    # parameters ------------------------------------------------------------------------------------------
    def arch_parameters(self) -> list[torch.nn.Parameter]:
        """α per cell (edges × ops, 'none' included), β per cell (node attention), PC edge β when K > 1."""
        out = []
        for a in self.anatomies:
            m = self._cells[a.node.id]
            out += [m.alpha, m.beta] + ([m.edge_beta] if a.partial else [])
        return out

    def weight_parameters(self) -> list[torch.nn.Parameter]:
        """Every parameter that is not an architecture parameter."""
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.model.parameters() if id(p) not in arch]

    # paths -----------------------------------------------------------------------------------------------
    def normalized(self, choice: Mapping[str, Any]) -> dict[str, tuple[list[str], int]]:
        """Per cell block instance: the normalized edge ops and output node of ``choice`` (refused when infeasible)."""
        vals = {**base_values(self.space), **dict(choice)}
        out = {}
        for a in self.anatomies:
            cell = a.cell
            for name in cell.param_names():
                if name not in vals:
                    raise SupernetError(f"the choice has no value for '{name}'", hint=f"give every param of cell '{cell.name}'")
            for i, j in cell.edges:
                v = vals[edge_key(cell.name, i, j)]
                if v not in cell.ops:
                    raise SupernetError(f"'{v}' is not an op of cell '{cell.name}'", hint=f"ops: {', '.join(cell.ops)}")
            edges, out_node, reason = cell.materialize(vals)
            if reason:
                raise SupernetError(f"infeasible path: {reason}")
            out[a.node.id] = (edges, out_node)
        return out

    def fix(self, choice: Mapping[str, Any] | None) -> None:
        """Run only the path ``choice`` (the space's param values of the cells); ``None``: the mixed forward."""
        if choice is None:
            for m in self._cells.values():
                m.path = torch.zeros(0, dtype=torch.long)
            self._fixed = None
            return
        norm = self.normalized(choice)
        for a in self.anatomies:
            edges, out_node = norm[a.node.id]
            idx = [a.cell.ops.index(e) for e in edges] + [out_node]
            m = self._cells[a.node.id]
            # kept on the CPU: the forward only reads it as a list (no device sync per step on a GPU)
            m.path = torch.tensor(idx, dtype=torch.long)
        self._fixed = dict(choice)

    def cell_module(self, cell: str) -> torch.nn.Module:
        """The mixed-cell module of the space's cell ``cell`` (its ``alpha``, ``beta``, ``path``...)."""
        a = next((a for a in self.anatomies if a.cell.name == cell), None)
        if a is None:
            raise SupernetError(f"no cell '{cell}' in the supernet", hint=f"cells: {', '.join(x.cell.name for x in self.anatomies)}")
        return self._cells[a.node.id]

    @property
    def fixed(self) -> dict[str, Any] | None:
        """The fixed path, or None for the mixed forward."""
        return self._fixed

    def sample_path(self, rng: random.Random) -> dict[str, Any]:
        """A uniformly sampled feasible path (normalized: edges that cannot matter are 'none')."""
        out: dict[str, Any] = {}
        for a in self.anatomies:
            cell = a.cell
            for _ in range(10_000):
                vals = {edge_key(cell.name, i, j): rng.choice(cell.ops) for i, j in cell.edges}
                vals[cell.output_key] = rng.randint(1, cell.nodes)
                edges, out_node, reason = cell.materialize(vals)
                if reason is None:
                    out.update(cell.point(dict(zip(cell.edges, edges)), out_node))
                    break
            else:  # pragma: no cover - a cell whose op set is all 'none' is refused when the space loads
                raise SupernetError(f"cell '{cell.name}': no feasible path found")
        return out

    def derive(self) -> dict[str, Any]:
        """The discretized choice of the current α/β (see :func:`archc.search.supernet.derive.derive_choice`)."""
        out: dict[str, Any] = {}
        for a in self.anatomies:
            out.update(derive_choice(a.cell, self._cells[a.node.id], bool(a.partial)))
        return out

    # children --------------------------------------------------------------------------------------------
    def child_key(self, key: str, norm: Mapping[str, tuple[list[str], int]]) -> str:
        """The supernet state_dict key holding the child's ``key`` (``norm``: :meth:`normalized` of the child's choice)."""
        head, _, rest = key.partition(".")
        a = next((a for a in self.anatomies if a.node.id == head), None)
        if a is None:
            return key
        sub, _, tail = rest.partition(".")
        if sub in a.edge_ids:
            k = a.edge_ids.index(sub)
            i, j = a.cell.edges[k]
            op = norm[head][0][k]
            return f"{head}.{candidate_name(i, j, op)}.{tail}"
        if any(t.id == sub for t in a.tail):
            return f"{head}.{TAIL}.{rest}"
        raise SupernetError(f"child weight '{key}' has no counterpart in the supernet")

    def child(self, choice: Mapping[str, Any]) -> tuple[Graph, torch.nn.Module]:
        """The child graph of ``choice`` and its generated module carrying the supernet's weights."""
        from archc.search.runner import ModelBuilder

        if any(a.partial for a in self.anatomies):
            raise SupernetError(f"a supernet with partial channels (K={self.partial_channels}) runs its ops on 1/K of the "
                                "channels: children cannot inherit its weights",
                                hint="build it with partial_channels=1 for weight inheritance, or retrain the derived spec")
        norm = self.normalized(choice)
        m = self.space.materialize({**base_values(self.space), **dict(choice)})
        builder = ModelBuilder(self.space)
        graph = builder.graph(m.proxy_overrides() if self.proxy else m.overrides)
        module = builder.module(graph).to(self.dtype)
        sup = self.model.state_dict()
        state = {}
        for key, v in module.state_dict().items():
            sk = self.child_key(key, norm)
            if sk not in sup or sup[sk].shape != v.shape:
                raise SupernetError(f"child weight '{key}' {tuple(v.shape)} does not match supernet weight '{sk}' "
                                    f"{tuple(sup[sk].shape) if sk in sup else '(missing)'}",
                                    hint="children inherit weights only from a supernet without partial channels")
            state[key] = sup[sk].detach().clone().to(v.device)
        module.load_state_dict(state, strict=True)
        return graph, module


def build_supernet(space: SearchSpace, *, proxy: bool = True, partial_channels: int = 1,
                   dtype: torch.dtype = torch.float32, seed: int = 0) -> Supernet:
    """The supernet of ``space``'s cells at its proxy params (``proxy=True``) or at full size.

    ``partial_channels`` K > 1 sends 1/K of the channels of every edge whose input and output widths
    agree through the mixed op (PC-DARTS). Weights and α/β are initialized from ``seed``.
    """
    from archc.compiler import block_info
    from archc.passes.equivalence import module_from_source
    from archc.search.runner import ModelBuilder

    if not space.cells:
        raise SupernetError(f"search space '{space.name}' has no cells: one-shot strategies search cell spaces",
                            space.raw.loc, "add a 'cells:' section (docs/search_space.md) or use --strategy sample")
    if partial_channels < 1:
        raise SupernetError(f"partial channels must be >= 1, got {partial_channels}")
    m = space.materialize(_template(space))
    builder = ModelBuilder(space)
    graph = builder.graph(m.proxy_overrides() if proxy else m.overrides)
    anatomies = [cell_anatomy(space.spec, graph, cell, partial_channels) for cell in space.cells]
    name = f"{space.spec.name}_supernet"
    source, _ = supernet_source(graph, anatomies, graph.meta["spec_label"], name, block_info(space.spec))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = module_from_source(source, "archc_supernet").create_model().to(dtype)
    shape = tuple(next(iter(graph.inputs.values())).concrete(1))
    return Supernet(space, source, model, anatomies, proxy, partial_channels, dtype, shape)
