"""Supernet source: archc's PyTorch code generator plus the mixed-cell forwards.

The supernet graph is the child network's graph with every cell's block instance replaced by a
*mixed cell* block whose body holds every candidate op of every edge (named ``e{i}_{j}_{op}``) and the
cell's tail (``tail``). archc's code generator turns that graph into classes exactly as it does for any
spec (one class per distinct block, node ids as attribute names, so the candidate ops are the classes
the child would use). The generated ``forward`` of a mixed cell only computes every candidate; it is
replaced by the forwards written here:

* ``forward``: node ``j`` = Σ_i mixed_i_j(n_i), mixed = Σ_o softmax(α_ij)_o · o(x) ('none' adds
  nothing); with partial channels 1/K of the channels go through the ops, the rest bypass, then the two
  parts are concatenated and channel-shuffled, and a node weights its incoming edges by softmax(β_edge);
  the cell output is the node attention Σ_j softmax(β)_j · n_j; then the tail.
* ``forward_path`` when a path is fixed (``path`` buffer: one op index per edge, 0 = none, then the
  output node): only the chosen ops run; a node sums its live incoming edges in edge order (a node
  without one stands for the cell input, as in the cell block) and the tail follows the chosen node.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.graph import BLOCK, Graph, Node, Ref
from archc.search.supernet.anatomy import CellAnatomy, SupernetError

__all__ = ["supernet_source", "op_slug", "candidate_name", "MIXED_BLOCK", "TAIL"]

MIXED_BLOCK = "mixed_cell"
TAIL = "tail"
_MIXED_DOC = ("A mixed cell: every edge (i, j) runs each candidate op weighted by softmax(alpha[edge]) ('none' adds "
              "nothing); node j sums its incoming edges; the output is the node attention softmax(beta) over the "
              "intermediate nodes, then the cell's tail. With a fixed path only the chosen ops run.")
_TAIL_DOC = "The cell's ops after its output node."

_HELPERS = '''

def _channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (ShuffleNet; PC-DARTS mixes the bypass back in)."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _node_sum(terms: List[torch.Tensor], default: torch.Tensor) -> torch.Tensor:
    """The sum of a node's live incoming edges in edge order (the cell input when none is live)."""
    if len(terms) == 0:
        return default
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out
'''


def op_slug(op: str) -> str:
    """An identifier fragment for op name ``op`` (``cdc_2_1.2`` -> ``cdc_2_1_2``)."""
    s = re.sub(r"[^0-9A-Za-z_]", "_", op)
    return s if s and not s[0].isdigit() else "op_" + s


def candidate_name(i: int, j: int, op: str) -> str:
    """The supernet attribute of op ``op`` on edge ``(i, j)`` of a mixed cell."""
    return f"e{i}_{j}_{op_slug(op)}"


def _mixed_node(anat: CellAnatomy) -> Node:
    """The mixed-cell block instance replacing ``anat.node`` (its forward is written by :func:`_methods`)."""
    node = anat.node
    x_type = node.meta["in_types"][0]
    nodes: dict[str, Node] = {}
    slugs = {op: op_slug(op) for op in anat.ops}
    if len(set(slugs.values())) != len(slugs):
        raise SupernetError(f"cell '{anat.cell.name}': op names {list(slugs)} do not map to distinct identifiers",
                            anat.cell.loc)
    for k, (i, j) in enumerate(anat.cell.edges):
        for op in anat.ops:
            cand = anat.candidates[(k, op)]
            meta = {key: v for key, v in cand.meta.items() if key != "exprs"}  # the mixed block has no params
            nid = candidate_name(i, j, op)
            nodes[nid] = cand.replace(id=nid, inputs=(Ref("x"),), meta=meta)
    out_type = node.types[0]
    if anat.tail:
        first_in = anat.tail[0].meta["in_types"][0]
        tail_nodes = {}
        for pos, t in enumerate(anat.tail):
            ins = (Ref("x"),) if pos == 0 else t.inputs
            tail_nodes[t.id] = t.replace(inputs=ins, meta={k: v for k, v in t.meta.items() if k != "exprs"})
        tail_body = Graph(TAIL, {"x": first_in}, tail_nodes, (Ref(anat.tail[-1].id),))
        nodes[TAIL] = Node(TAIL, BLOCK, (Ref("x"),), body=tail_body, block=TAIL, params={},
                           meta={"types": (out_type,), "in_types": (first_in,)})
        outputs: tuple[Ref, ...] = (Ref(TAIL),)
    else:
        outputs = (Ref("x"),)
    body = Graph(MIXED_BLOCK, {"x": x_type}, nodes, outputs)
    return Node(node.id, BLOCK, node.inputs, loc=node.loc, body=body, block=MIXED_BLOCK, params={},
                meta={"types": node.types, "in_types": node.meta["in_types"]})


def _methods(anat: CellAnatomy) -> tuple[list[str], list[str]]:
    """``(init lines, method source lines)`` of a mixed cell class (indented for the class body)."""
    cell = anat.cell
    ops = list(cell.ops)  # α columns: every op of the cell, 'none' included
    E, N = len(cell.edges), cell.nodes
    init = [
        "# architecture parameters: α (edge × op, 'none' included), β (node attention)",
        f"self.alpha = nn.Parameter(1e-3 * torch.randn({E}, {len(ops)}))",
        f"self.beta = nn.Parameter(1e-3 * torch.randn({N}))",
    ]
    if anat.partial:
        init.append(f"self.edge_beta = nn.Parameter(1e-3 * torch.randn({E}))  # PC-DARTS edge normalization")
    init += ["# a fixed path: op index per edge (0 = none), then the output node; empty = mixed",
             "self.register_buffer('path', torch.zeros(0, dtype=torch.long), persistent=False)"]
    m: list[str] = []
    # forward (mixed)
    m += ["def forward(self, x: torch.Tensor) -> torch.Tensor:",
          "    if self.path.numel() > 0:",
          "        return self.forward_path(x)",
          "    alpha = F.softmax(self.alpha, dim=-1)",
          "    beta = F.softmax(self.beta, dim=-1)"]
    if anat.partial:
        m.append("    edge_beta = self.edge_beta")
    m.append("    n0 = x")
    for j in range(1, N + 1):
        ins = [(k, i) for k, (i, jj) in enumerate(cell.edges) if jj == j]
        if anat.partial:
            k0, k1 = ins[0][0], ins[-1][0] + 1
            m.append(f"    w{j} = F.softmax(edge_beta[{k0}:{k1}], dim=0)")
            terms = [f"w{j}[{p}] * self.mixed_{i}_{j}(n{i}, alpha[{k}])" for p, (k, i) in enumerate(ins)]
        else:
            terms = [f"self.mixed_{i}_{j}(n{i}, alpha[{k}])" for k, i in ins]
        m.append(f"    n{j} = " + " + ".join(terms))
    m.append("    x = " + " + ".join(f"beta[{j - 1}] * n{j}" for j in range(1, N + 1)))
    m += (["    x = self.tail(x)"] if anat.tail else []) + ["    return x", ""]
    # forward_path
    m += ["def forward_path(self, x: torch.Tensor) -> torch.Tensor:",
          "    p: List[int] = self.path.tolist()",
          "    n0 = x"]
    for j in range(1, N + 1):
        m.append(f"    t{j}: List[torch.Tensor] = []")
        for k, (i, jj) in enumerate(cell.edges):
            if jj == j:
                m += [f"    if p[{k}] > 0:", f"        t{j}.append(self.op_{i}_{j}(n{i}, p[{k}]))"]
        m.append(f"    n{j} = _node_sum(t{j}, x)")
    m.append(f"    nodes = [{', '.join(f'n{j}' for j in range(1, N + 1))}]")
    m.append(f"    x = nodes[p[{E}] - 1]")
    m += (["    x = self.tail(x)"] if anat.tail else []) + ["    return x", ""]
    # per-edge mixed op and single op
    for k, (i, j) in enumerate(cell.edges):
        pc = anat.partial.get(k)
        terms = [f"w[{ops.index(op)}] * self.{candidate_name(i, j, op)}({'xa' if pc else 'x'})" for op in anat.ops]
        m.append(f"def mixed_{i}_{j}(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:")
        if pc:
            c = anat.channels[1] // pc
            m += [f'    """Edge ({i}, {j}): Σ_o w_o · o(x) on the first 1/{pc} of the channels, the rest bypass."""',
                  f"    xa, xb = x[:, :{c}], x[:, {c}:]",
                  "    y = " + " + ".join(terms),
                  f"    return _channel_shuffle(torch.cat([y, xb], 1), {pc})", ""]
        else:
            m += [f'    """Edge ({i}, {j}): Σ_o w_o · o(x) over its ops (\'none\' adds nothing)."""',
                  "    return " + " + ".join(terms), ""]
        m += [f"def op_{i}_{j}(self, x: torch.Tensor, k: int) -> torch.Tensor:",
               f'    """Edge ({i}, {j}) with op k alone (k indexes alpha\'s columns)."""']
        src = "xa" if pc else "x"
        if pc:
            c = anat.channels[1] // pc
            m.append(f"    xa, xb = x[:, :{c}], x[:, {c}:]")
        for n, op in enumerate(anat.ops):
            kw = "if" if n == 0 else "elif"
            m += [f"    {kw} k == {ops.index(op)}:", f"        y = self.{candidate_name(i, j, op)}({src})"]
        m += ["    else:", "        raise RuntimeError('op index out of range')"]
        m += ([f"    return _channel_shuffle(torch.cat([y, xb], 1), {pc})"] if pc else ["    return y"]) + [""]
    return init, m


def supernet_source(graph: Graph, anatomies: Sequence[CellAnatomy], spec_label: str, model_name: str,
                    block_info: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, str]]:
    """``(source, {cell node id: mixed class name})`` of the supernet of ``graph``'s cells."""
    from archc.backends.pytorch.codegen import generate

    by_id = {a.node.id: a for a in anatomies}
    nodes = [(_mixed_node(by_id[n.id]) if n.id in by_id else n) for n in graph]
    g = Graph(graph.name, dict(graph.inputs), {n.id: n for n in nodes}, graph.outputs, dict(graph.input_locs),
              dict(graph.meta))
    g.meta["title"] = f"{model_name} (one-shot supernet)"
    info = dict(block_info)
    info[MIXED_BLOCK] = {"params": {}, "doc": _MIXED_DOC}
    info[TAIL] = {"params": {}, "doc": _TAIL_DOC}
    src = generate(g, spec_label, model_name, info)
    tree = ast.parse(src)
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
    top = classes[max(classes, key=lambda n: classes[n].lineno)]
    owner: dict[str, str] = {}
    for fn in top.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
            for st in fn.body:
                if (isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Attribute)
                        and st.targets[0].attr in by_id and isinstance(st.value, ast.Call)
                        and isinstance(st.value.func, ast.Name)):
                    owner[st.targets[0].attr] = st.value.func.id
    if set(owner) != set(by_id):
        raise SupernetError(f"the generated supernet does not hold every cell: found {sorted(owner)}")
    lines = src.splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # (start, end) 0-based line ranges to replace, new lines
    done: dict[str, str] = {}
    for cid, cname in owner.items():
        init, methods = _methods(by_id[cid])
        text = "\n".join(init + methods)
        if cname in done:
            if done[cname] != text:
                raise SupernetError(f"cells sharing generated class {cname} need the same op sets and nodes")
            continue
        done[cname] = text
        cls = classes[cname]
        init_fn = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
        fwd = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward")
        assert init_fn.end_lineno is not None and fwd.end_lineno is not None
        edits.append((init_fn.end_lineno, init_fn.end_lineno, ["        " + s for s in init]))
        edits.append((fwd.lineno - 1, fwd.end_lineno, [("    " + s) if s else "" for s in methods[:-1]]))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    out = "\n".join(lines) + "\n"
    # the mixed-op helpers annotate lists: add List to the module's typing import
    out = re.sub(r"^from typing import (.+)$", lambda m: "from typing import " + ", ".join(
        sorted({*(n.strip() for n in m.group(1).split(",")), "List"})), out, count=1, flags=re.M)
    anchor = "\n\nclass "
    pos = out.index(anchor)
    out = out[:pos] + "\n" + _HELPERS.rstrip("\n") + "\n" + out[pos:]
    ast.parse(out)
    return out, owner
