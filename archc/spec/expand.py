"""Expansion: a :class:`SpecDoc` with bound params becomes a typed :class:`Graph`.

Node items in a ``graph`` list take one of these forms::

    - gelu                               # op without attributes, anonymous
    - {op: conv2d, out: 64, kernel: 3}   # anonymous
    - stem: {op: conv2d, out: 64}        # named 'stem'
    - act: gelu                          # named, no attributes

Reserved node keys: ``op`` (an op or block name; may be an expression), ``in`` (input refs: graph
inputs or earlier nodes, so a graph is acyclic by construction; default the previous node, which must
then have one output), ``repeat`` (count; the items see ``i`` and ``n``), ``when`` (the node exists
only when true; otherwise it passes its first input through), ``names`` (names of a multi-output
node's outputs). Every other key is an op attribute or a block argument.

Types are inferred while expanding, so a shape mismatch is reported at the node that causes it.
Block bodies are instantiated once per distinct (block, params, input types) and shared.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from archc.diagnostics import ShapeError, SourceLoc, SpecError, suggest
from archc.ir.graph import BLOCK, REPEAT, Graph, Node, Ref, freeze
from archc.ir.types import BATCH, TensorType, numel
from archc.ops import REGISTRY
from archc.ops.base import OpCheckError
from archc.spec.document import BlockDef, SpecDoc, check_identifier, check_param_type
from archc.spec.expr import evaluate, is_expr, source_expr
from archc.spec.loader import YList, YMap
from archc.spec.suggestions import op_hint

__all__ = ["expand", "MAX_REPEAT", "MAX_NODES", "MAX_DIM"]

MAX_REPEAT = 10_000
MAX_NODES = 2_000_000
#: the largest tensor dimension (PyTorch kernels index dimensions with 32-bit integers)
MAX_DIM = 2**31 - 1
#: the most elements one parameter or buffer may hold (its byte size must fit PyTorch's 64-bit storage sizes)
MAX_TENSOR = 2**48
RESERVED = ("op", "in", "repeat", "when", "names", "doc")
#: names a node id must not take: nn.Module attributes it would shadow in generated code, and the
#: module-level names generated code uses (kept literal so expanding a spec never imports torch)
_MODULE_ATTRS = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches
    eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu load_state_dict
    modules mtia named_buffers named_children named_modules named_parameters parameters register_backward_hook
    register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook
    register_module register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_
    set_extra_state set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
    self torch nn F math Tuple Optional blk i
""".split())


@dataclass
class _Item:
    id: str | None
    op: Any
    attrs: YMap
    loc: SourceLoc
    raw: Any


def _parse_item(item: Any, loc: SourceLoc) -> _Item:
    if isinstance(item, str):
        return _Item(None, item, YMap(), loc, item)
    if isinstance(item, YMap):
        if "op" in item:
            return _Item(None, item["op"], item, loc, item)
        if len(item) == 1:
            (nid, body), = item.items()
            kloc = item.key_loc(nid)
            check_identifier(nid, kloc, "node id")
            if isinstance(body, str):
                attrs = YMap()
                attrs.loc = item.loc_of(nid)
                attrs.locs["op"] = item.loc_of(nid)
                return _Item(nid, body, attrs, kloc, item)
            if isinstance(body, YMap):
                if "op" not in body:
                    raise SpecError(f"node '{nid}' has no 'op'", body.loc, hint="add 'op: <op or block name>'")
                return _Item(nid, body["op"], body, kloc, item)
    raise SpecError(
        "a graph item must be an op name, a mapping with 'op', or '<id>: {op: ...}'",
        loc,
        hint="e.g. '- stem: {op: conv2d, out: 64, kernel: 3}'",
    )


class _Expander:
    def __init__(self, doc: SpecDoc) -> None:
        self.doc = doc
        self.blocks = doc.blocks
        self.memo: dict[Any, Graph] = {}
        #: per set of taken ids (one per graph being built): base → next suffix to try (see fresh())
        self.counters: dict[int, dict[str, int]] = {}
        self.count = 0
        self.stack: list[str] = []
        #: per graph being expanded: ids of its items not yet expanded (the current one included), with positions
        self.pending: list[dict[str, SourceLoc]] = []
        #: names of the model's outputs when 'outputs' is a mapping (forward returns a dict)
        self.output_names: tuple[str, ...] = ()

    # -- graphs ---------------------------------------------------------------------------------
    def graph(self, name: str, items: YList, env: Mapping[str, Any], inputs: dict[str, TensorType],
              outputs_raw: Any, outputs_loc: SourceLoc) -> Graph:
        g = Graph(name, dict(inputs), {}, ())
        values: dict[str, tuple[Ref, ...]] = {k: (Ref(k, 0),) for k in inputs}
        out_names: dict[str, tuple[str, ...]] = {}
        prev: Ref | None = Ref(next(iter(inputs)), 0) if inputs else None
        taken = set(inputs)
        parsed = [_parse_item(raw, items.loc_of(idx)) for idx, raw in enumerate(items)]
        pending: dict[str, SourceLoc] = {}
        for it in parsed:
            if it.id is not None:
                pending.setdefault(it.id, it.loc)
        self.pending.append(pending)
        ambiguous = 0  # see item()
        try:
            for item in parsed:
                prev, ambiguous = self.item(g, item, env, values, out_names, prev, taken, ambiguous)
                if item.id is not None and pending.get(item.id) == item.loc:
                    del pending[item.id]
        finally:
            self.pending.pop()
            self.counters.pop(id(taken), None)  # the set dies with this graph; its id may be reused
        g.outputs = self.outputs(outputs_raw, outputs_loc, values, out_names, prev, name)
        return g

    def outputs(self, raw: Any, loc: SourceLoc, values: dict[str, tuple[Ref, ...]], out_names: dict[str, tuple[str, ...]],
                prev: Ref | None, name: str) -> tuple[Ref, ...]:
        if raw is None:
            if prev is None:
                raise SpecError(f"'{name}' has no nodes and no outputs", loc)
            return (prev,)
        if isinstance(raw, YMap):
            # named outputs: forward returns a dict (a detection head's boxes and scores, a model's features)
            if self.stack:
                raise SpecError("named outputs are for the model's 'outputs'; a block returns a ref or a list of refs",
                                loc, hint="list the refs, and name the values at the caller with 'names:'")
            if not raw:
                raise SpecError("'outputs' names no outputs", loc, hint="e.g. 'outputs: {logits: head}'")
            for key in raw:
                if not isinstance(key, str):
                    raise SpecError(f"output name {key!r} must be a string", raw.key_loc(key), hint=f"quote it: '{key}'")
                check_identifier(key, raw.key_loc(key), "output name")
            self.output_names = tuple(raw)
            return tuple(self.ref(r, raw.loc_of(k, loc), values, out_names)[0] for k, r in raw.items())
        refs = [raw] if isinstance(raw, str) else raw
        if not isinstance(refs, list):
            raise SpecError("'outputs' must be a ref, a list of refs, or a mapping of names to refs", loc)
        locs = getattr(refs, "locs", [])
        return tuple(self.ref(r, locs[i] if i < len(locs) else loc, values, out_names)[0] for i, r in enumerate(refs))

    def ref(self, text: Any, loc: SourceLoc, values: dict[str, tuple[Ref, ...]], out_names: dict[str, tuple[str, ...]],
            current: str | None = None) -> tuple[Ref, ...]:
        """Resolve ``name``, ``name.2``, ``name.k`` or ``name[2]`` to one output ref (as a 1-tuple).

        ``current`` is the id of the node whose input this is.
        """
        if not isinstance(text, str):
            raise SpecError(f"an input reference must be a node name, got {text!r}", loc)
        t = text.strip()
        base, sel = t, None
        if t.endswith("]") and "[" in t:
            base, _, rest = t.partition("[")
            sel = rest[:-1]
        elif "." in t:
            base, _, sel = t.partition(".")
        if base not in values:
            later = self.pending[-1] if self.pending else {}
            if base in later:
                # graphs are built in order, so only earlier nodes exist: a reference to the node itself or
                # to a later one would close a cycle
                if base == current:
                    raise SpecError(f"node '{base}' takes its own output as input (a cycle)", loc,
                                    hint="a node may only use graph inputs and nodes above it")
                raise SpecError(
                    f"input '{base}' refers to a node defined later (line {later[base].line}); a node may only use "
                    "graph inputs and nodes above it, so graphs cannot contain cycles",
                    loc,
                    hint=f"move '{base}' above this node, or use an earlier node",
                )
            raise SpecError(f"unknown input '{base}'", loc, hint=suggest(base, values) or "refer to an earlier node or a graph input")
        outs = values[base]
        if sel is None:
            if len(outs) != 1:
                raise SpecError(
                    f"'{base}' has {len(outs)} outputs; say which one",
                    loc,
                    hint=f"use '{base}.0' … '{base}.{len(outs) - 1}'" + (f" or '{base}.{out_names[base][0]}'" if out_names.get(base) else ""),
                )
            return (outs[0],)
        if sel.lstrip("-").isdigit():
            k = int(sel)
            if not -len(outs) <= k < len(outs):
                raise SpecError(f"'{base}' has {len(outs)} outputs; index {k} is out of range", loc)
            return (outs[k],)
        names = out_names.get(base, ())
        if sel in names:
            return (outs[names.index(sel)],)
        raise SpecError(f"'{base}' has no output named '{sel}'", loc, hint=suggest(sel, names) or (f"outputs: {', '.join(names)}" if names else "use an index"))

    # -- items ----------------------------------------------------------------------------------
    @staticmethod
    def node_level(item: _Item, key: str, value: Any, env: Mapping[str, Any]) -> Any:
        """Evaluate ``op`` or ``when``: they belong to the whole node, so a repeat's ``i``/``n`` are not in scope."""
        loc = item.attrs.loc_of(key, item.loc)
        try:
            return evaluate(value, env, loc)
        except SpecError as exc:
            if "repeat" in item.attrs and exc.message.endswith(("unknown name 'i'", "unknown name 'n'")):
                exc.hint = (f"'{key}' is evaluated once for the whole repeat, before its items exist; to vary it per "
                            "item, pass the expression to a block param (e.g. enabled: \"${i > 0}\") and use "
                            "'when' inside the block")
            raise

    def item(self, g: Graph, item: _Item, env: Mapping[str, Any], values: dict[str, tuple[Ref, ...]],
             out_names: dict[str, tuple[str, ...]], prev: Ref | None, taken: set[str],
             ambiguous: int = 0) -> tuple[Ref | None, int]:
        """Expand one item; returns the new previous value and its ambiguity.

        The previous value is *ambiguous* when it is output 0 of a node with several outputs, which a
        node without 'in' may not read: then the number of those outputs is passed along, else 0. A
        skipped node (when false, repeat 0) passes through the input it names, or the previous value.
        """
        attrs = item.attrs
        if "when" in attrs:
            cond = self.node_level(item, "when", attrs["when"], env)
            if not isinstance(cond, bool):
                raise SpecError(f"'when' must be true or false, got {cond!r}", attrs.loc_of("when"))
            _decided(g, "when", item.id, attrs["when"], cond)
            if not cond:
                if item.id is not None:
                    taken.add(item.id)  # a skipped node still owns its id
                try:
                    skipped_refs = self.inputs_of(item, values, out_names, prev)
                except SpecError:
                    # its inputs may not exist in this configuration (e.g. an output index); nothing passes through
                    return prev, ambiguous
                return self.passthrough(item, skipped_refs, values, prev), ambiguous if skipped_refs is None else 0
        in_refs = self.inputs_of(item, values, out_names, prev)
        op = self.node_level(item, "op", item.op, env)
        if not isinstance(op, str):
            raise SpecError(f"'op' must name an op or block, got {op!r}", attrs.loc_of("op", item.loc))
        _decided(g, "op", item.id, item.op, op)
        nid = item.id or self.fresh(op, taken)
        if nid in taken:
            raise SpecError(f"node id '{nid}' is used twice in '{g.name}'", item.loc, hint="give the node a unique id")
        if nid in _MODULE_ATTRS or keyword.iskeyword(nid) or nid.startswith("_"):
            raise SpecError(f"node id '{nid}' clashes with a name used by generated modules", item.loc, hint=f"rename it, e.g. '{nid}_'")
        taken.add(nid)
        args = {k: v for k, v in attrs.items() if k not in RESERVED}
        refs = self.default_inputs(op, in_refs, prev, item.loc, ambiguous)
        if "repeat" in attrs:
            n = evaluate(attrs["repeat"], env, attrs.loc_of("repeat"))
            rloc = attrs.loc_of("repeat")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise SpecError(f"'repeat' must be a non-negative integer, got {n!r}", rloc)
            if n > MAX_REPEAT:
                raise SpecError(f"'repeat' of {n} exceeds the limit of {MAX_REPEAT}", rloc, hint="check the repeat expression")
            _decided(g, "repeat", item.id, attrs["repeat"], n)
            if n == 0:
                return self.passthrough(item, in_refs, values, prev), ambiguous if in_refs is None else 0
            if not refs:
                raise SpecError(f"'{op}' takes no input, so it cannot be repeated", rloc, hint="repeat ops or blocks that take an input")
            node = self.repeat(g, nid, op, args, attrs, env, refs, n, item.loc)
        else:
            node = self.build(g, nid, op, args, attrs, env, refs, [g.type_of(r) for r in refs], item.loc)
        nout = len(node.types)
        names = self.names_of(attrs, nout, node)
        if names:
            out_names[nid] = names
            if names != node.out_names:
                node = node.replace(out_names=names, meta=node.meta)
        g.nodes[nid] = node
        values[nid] = tuple(Ref(nid, k) for k in range(nout))
        return Ref(nid, 0), nout if nout > 1 else 0

    def passthrough(self, item: _Item, in_refs: tuple[Ref, ...] | None, values: dict[str, tuple[Ref, ...]], prev: Ref | None) -> Ref | None:
        src = in_refs[0] if in_refs else prev
        if item.id is not None and src is not None:
            values[item.id] = (src,)
        return src

    def names_of(self, attrs: YMap, nout: int, node: Node) -> tuple[str, ...]:
        if "names" not in attrs:
            return node.out_names
        names = attrs["names"]
        loc = attrs.loc_of("names")
        if not isinstance(names, list) or len(names) != nout:
            raise SpecError(f"'names' must list {nout} output names, got {names!r}", loc)
        for j, nm in enumerate(names):
            check_identifier(nm, getattr(names, "locs", [loc] * nout)[j], "output name")
        return tuple(names)

    def inputs_of(self, item: _Item, values: dict[str, tuple[Ref, ...]], out_names: dict[str, tuple[str, ...]], prev: Ref | None) -> tuple[Ref, ...] | None:
        if "in" not in item.attrs:
            return None
        raw = item.attrs["in"]
        loc = item.attrs.loc_of("in")
        refs = [raw] if isinstance(raw, str) else raw
        if not isinstance(refs, list):
            raise SpecError(f"'in' must be a node name or a list of them, got {raw!r}", loc)
        locs = getattr(refs, "locs", [])
        out: list[Ref] = []
        for i, r in enumerate(refs):
            out += self.ref(r, locs[i] if i < len(locs) else loc, values, out_names, item.id)
        return tuple(out)

    def fresh(self, op: str, taken: set[str]) -> str:
        """``op``, else ``op1``, ``op2``, ...: the first free id (ids are never released, so the search
        resumes where the last one for this base stopped: linear, not quadratic, in anonymous nodes)."""
        base = op if op not in _MODULE_ATTRS and not keyword.iskeyword(op) else f"{op}_"
        if base not in taken:
            return base
        counters = self.counters.setdefault(id(taken), {})
        k = counters.get(base, 1)
        while f"{base}{k}" in taken:
            k += 1
        counters[base] = k + 1
        return f"{base}{k}"

    def default_inputs(self, op: str, in_refs: tuple[Ref, ...] | None, prev: Ref | None, loc: SourceLoc,
                       ambiguous: int = 0) -> tuple[Ref, ...]:
        """The node's inputs: 'in', else none for an op without inputs, else the previous value.

        ``ambiguous`` is the output count of the previous node when the previous value is output 0 of a
        node with several outputs (0 otherwise): reading it without saying which is an error.
        """
        if in_refs is not None:
            return in_refs
        if op in REGISTRY and REGISTRY[op].arity[1] == 0:
            return ()
        if prev is None:
            raise SpecError("this node has no input: it is the first node and the graph has no inputs", loc, hint="add 'in: <name>'")
        if ambiguous:
            raise SpecError(f"the previous node '{prev.node}' has {ambiguous} outputs; say which one this node reads", loc,
                            hint=f"add 'in: {prev.node}.0' (or another output)")
        return (prev,)

    def build(self, g: Graph, nid: str, op: str, args: dict[str, Any], attrs: YMap, env: Mapping[str, Any],
              refs: tuple[Ref, ...], in_types: list[TensorType], loc: SourceLoc) -> Node:
        """One op node or block instance with inputs of ``in_types``."""
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(f"the model expands to more than {MAX_NODES} nodes", loc, hint="check repeat counts")
        if op in self.blocks:
            return self.block_instance(nid, self.blocks[op], args, attrs, env, refs, in_types, loc)
        opdef = REGISTRY.get(op)
        if opdef is None:
            cands = list(REGISTRY) + list(self.blocks)
            raise SpecError(f"unknown op '{op}'", attrs.loc_of("op", loc), hint=op_hint(op, cands) or "see 'archc ops' for the op library")
        lo, hi = opdef.arity
        if len(refs) < lo or (hi is not None and len(refs) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            # too many inputs is most often a size or a constant written as an input: name the attributes that take them
            hint = (f"sizes and constants are attributes, not inputs: '{op}' takes {', '.join(opdef.attr_map())}"
                    if hi is not None and len(refs) > hi and opdef.attrs else None)
            raise SpecError(f"op '{op}' takes {want} inputs, got {len(refs)}", attrs.loc_of("in", loc), hint=hint)
        values = {k: evaluate(v, env, attrs.loc_of(k, loc)) for k, v in args.items()}
        try:
            bound = opdef.bind(values)
        except OpCheckError as exc:
            if exc.attr in attrs:  # an attribute the op does not take is reported at its name, others at the value
                where = attrs.key_loc(exc.attr) if exc.attr not in opdef.attr_map() else attrs.loc_of(exc.attr, loc)
            else:
                where = loc
            raise SpecError(f"node '{nid}' ({op}): {exc}", where, hint=exc.hint) from None
        for pos, t in enumerate(in_types):
            # bool and int64 tensors (comparisons, index tables) reach only the ops that say they take them
            if t.dtype in ("bool", "int64") and opdef.nonfloat_inputs is not None and pos not in opdef.nonfloat_inputs:
                where = attrs.loc_of("in", loc) if "in" in attrs else loc
                raise ShapeError(f"node '{nid}' ({op}): input {pos} is {t}, but '{op}' computes on floating-point tensors",
                                 where, hint="a bool tensor selects with 'where' or masks 'sdpa'; an int64 one indexes "
                                             "with 'index_select'")
        try:
            out_types = opdef.infer(bound, in_types)
        except OpCheckError as exc:
            shown = ", ".join(str(t) for t in in_types)
            # a rule naming no attribute is about the inputs
            where = attrs.loc_of(exc.attr) if exc.attr in attrs else attrs.loc_of("in", loc) if "in" in attrs else loc
            raise ShapeError(f"node '{nid}' ({op}): {exc} [inputs: {shown}]", where, hint=exc.hint) from None
        for t in out_types:
            if numel(t) > MAX_TENSOR:
                raise ShapeError(f"node '{nid}' ({op}): its output would hold {numel(t):.3g} numbers per sample, beyond what "
                                 f"a tensor can hold ({MAX_TENSOR:.3g})", loc, hint="check the sizes and scales that lead here")
            for d in t.shape:
                if isinstance(d, int) and d > MAX_DIM:
                    shown = f"{d:,}" if d < 10**30 else f"a {len(str(d))}-digit number"
                    raise ShapeError(f"node '{nid}' ({op}): an output dimension is {shown}, above the limit of {MAX_DIM:,}",
                                     loc, hint="check the sizes and scales that lead here")
        for pname, shape in {**opdef.params(bound, in_types), **opdef.buffers(bound, in_types)}.items():
            count = 1
            for d in shape:
                count *= d
            if count > MAX_TENSOR:
                raise ShapeError(f"node '{nid}' ({op}): its {pname} would hold {count:.3g} numbers, beyond what a tensor "
                                 f"can hold ({MAX_TENSOR:.3g})", loc, hint="check the channel counts and kernel sizes")
        exprs = {k: e for k, v in args.items() if (e := source_expr(v)) is not None}
        meta: dict[str, Any] = {"types": tuple(out_types), "in_types": tuple(in_types)}
        if exprs:
            meta["exprs"] = exprs
        return Node(nid, op, refs, freeze(bound), loc, meta=meta)

    def block_instance(self, nid: str, bd: BlockDef, args: dict[str, Any], attrs: YMap, env: Mapping[str, Any],
                       refs: tuple[Ref, ...], in_types: list[TensorType], loc: SourceLoc) -> Node:
        if len(refs) != len(bd.inputs):
            raise SpecError(
                f"block '{bd.name}' takes {len(bd.inputs)} inputs ({', '.join(bd.inputs)}), got {len(refs)}",
                attrs.loc_of("in", loc),
            )
        bound: dict[str, Any] = {}
        for k, v in args.items():
            if k not in bd.params:
                raise SpecError(
                    f"block '{bd.name}' has no param '{k}'",
                    attrs.key_loc(k),
                    hint=suggest(k, bd.params) or (f"params: {', '.join(bd.params)}" if bd.params else "it takes no params"),
                )
            val = evaluate(v, env, attrs.loc_of(k, loc))
            bound[k] = check_param_type(bd.params[k], val, attrs.loc_of(k, loc), bd.name)
        benv: dict[str, Any] = {}
        for pname, decl in bd.params.items():
            if pname in bound:
                benv[pname] = bound[pname]
            elif decl.required:
                raise SpecError(f"block '{bd.name}' needs param '{pname}'", loc, hint=f"add '{pname}: ...'")
            else:
                benv[pname] = check_param_type(decl, evaluate(decl.default, benv, decl.loc), decl.loc, bd.name)
        key = (bd.name, _hashable(benv), tuple(in_types))
        body = self.memo.get(key)
        if body is None:
            if bd.name in self.stack:
                raise SpecError(f"block '{bd.name}' uses itself", loc, hint="blocks may not be recursive")
            self.stack.append(bd.name)
            try:
                body = self.graph(bd.name, bd.graph, benv, dict(zip(bd.inputs, in_types)), bd.outputs, bd.loc)
            finally:
                self.stack.pop()
            self.memo[key] = body
        else:
            self.count += sum(1 for _ in body.walk())
        out_names = tuple(str(r) if r.index == 0 else f"{r.node}_{r.index}" for r in body.outputs) if len(body.outputs) > 1 else ()
        # what the author wrote (given args, expressions, expression defaults) lets generated code derive
        # each argument from the caller's own instead of matching values
        meta = {"types": body.output_types, "in_types": tuple(in_types), "exprs": {k: e for k, v in args.items() if (e := source_expr(v)) is not None},
                "args": tuple(args),
                "default_exprs": {p: e for p, d in bd.params.items() if p not in args and (e := source_expr(d.default)) is not None}}
        return Node(nid, BLOCK, refs, freeze({}), loc, body=body, block=bd.name, params=freeze(benv),
                    out_names=out_names, meta=meta)

    def repeat(self, g: Graph, nid: str, op: str, args: dict[str, Any], attrs: YMap, env: Mapping[str, Any],
               refs: tuple[Ref, ...], n: int, loc: SourceLoc) -> Node:
        outer = [g.type_of(r) for r in refs]
        body = Graph(nid, {"x": outer[0], **{f"in{j}": t for j, t in enumerate(outer[1:], 1)}}, {}, ())
        extra = [Ref(f"in{j}", 0) for j in range(1, len(refs))]
        cur = Ref("x", 0)
        for i in range(n):
            ienv = {**env, "i": i, "n": n}
            item_refs = (cur, *extra)
            in_types = [body.type_of(r) for r in item_refs]
            node = self.build(body, str(i), op, args, attrs, ienv, item_refs, in_types, loc)
            if len(node.types) != 1:
                raise SpecError(f"repeated '{op}' must have exactly one output, it has {len(node.types)}", loc)
            body.nodes[node.id] = node
            cur = Ref(node.id, 0)
        body.outputs = (cur,)
        meta: dict[str, Any] = {"types": body.output_types, "in_types": tuple(outer), "repeat_op": op}
        if is_expr(attrs["repeat"]):
            meta["count_expr"] = attrs["repeat"]
        return Node(nid, REPEAT, refs, freeze({"count": n}), loc, body=body, meta=meta)

def _decided(g: Graph, key: str, nid: str | None, src: Any, value: Any) -> None:
    """Record that ``key`` of node ``nid`` was the expression ``src`` and evaluated to ``value``.

    The structure of a body depends on these decisions; generated classes check them against their
    constructor arguments (a class built for ``when: ${s == 1}`` refuses s=2 instead of being wrong).
    """
    if is_expr(src):
        g.meta.setdefault("decisions", []).append((key, nid, src, value))


def _hashable(v: Any) -> Any:
    """A memo key for a param value: equal only for equal values of the same types.

    ``1``, ``1.0`` and ``True`` compare equal in Python but are different params (``out: ${c}`` is
    valid for the first only), so each value is keyed with its type.
    """
    if isinstance(v, Mapping):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return type(v).__name__, tuple(_hashable(x) for x in v)
    return type(v).__name__, v


def expand(doc: SpecDoc, params: Mapping[str, Any], variant: str | None = None) -> Graph:
    """Expand ``doc`` with resolved top-level ``params`` into a typed graph.

    >>> from archc.spec import load_spec
    >>> g = load_spec("specs/transxnet.yaml")  # doctest: +SKIP
    """
    ex = _Expander(doc)
    inputs: dict[str, TensorType] = {}
    locs: dict[str, SourceLoc] = {}
    for name, shape in doc.inputs.items():
        loc = doc.inputs.loc_of(name)
        inputs[name] = _input_type(shape, params, loc, name)
        locs[name] = loc
    try:
        g = ex.graph(doc.name, doc.graph, params, inputs, doc.outputs, doc.raw.loc_of("outputs"))
    except RecursionError:
        raise SpecError("the spec nests too deeply", doc.raw.loc) from None
    g.input_locs = locs
    g.meta.update({"spec": doc.path, "variant": variant, "params": dict(params), "digest": doc.digest, "doc": doc.doc})
    if ex.output_names:
        if doc.head is not None:
            raise SpecError("a spec with a 'head' returns one tensor, not named outputs", doc.raw.loc_of("outputs"),
                            hint="drop the names (outputs: <ref>) or the head")
        g.meta["output_names"] = ex.output_names
    # the author's text of each input dimension: generated models derive in_chans-dependent sizes from it
    g.meta["input_exprs"] = {k: tuple(_input_dims(v)) for k, v in doc.inputs.items()}
    if doc.head is not None:
        from archc.spec.head import resolve_head

        declared = [next(iter(it)) for it in doc.graph if isinstance(it, YMap) and len(it) == 1]
        g.meta["head"] = resolve_head(doc.head, g, params, g.meta["input_exprs"], declared)
        # the generator expands the spec again with other argument values to see which sizes follow them
        g.meta["head"]["spec"] = (doc, variant)
        # the node objects as expanded: a graph holding others was rewritten by passes
        g.meta["head"]["expanded"] = frozenset(id(n) for n in g)
    return g


def _input_dims(shape: Any) -> list[Any]:
    """The dimensions of an input as written (a list, or the 'shape' of a mapping; [] when it is an expression)."""
    if isinstance(shape, YMap):
        shape = shape.get("shape")
    return list(shape) if isinstance(shape, list) else []


def _input_type(shape: Any, params: Mapping[str, Any], loc: SourceLoc, name: str) -> TensorType:
    dtype = "float32"
    if isinstance(shape, YMap):
        dtype = shape.get("dtype", "float32")
        if dtype not in ("float32", "float64", "float16", "bfloat16"):
            raise SpecError(f"unsupported input dtype {dtype!r}", shape.loc_of("dtype"), hint="use float32")
        loc = shape.loc_of("shape", loc)
        shape = shape.get("shape")
    shape = evaluate(shape, params, loc)
    if not isinstance(shape, list) or not shape:
        raise SpecError(f"input '{name}' needs a shape list like [B, 3, 224, 224], got {shape!r}", loc)
    dims: list[Any] = []
    for j, d in enumerate(shape):
        if j == 0 and d == BATCH:
            dims.append(BATCH)
        elif isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_DIM:
            dims.append(d)
        elif isinstance(d, int) and not isinstance(d, bool) and d > MAX_DIM:
            raise SpecError(f"input '{name}': dimension {j} is {d:,}, above the limit of {MAX_DIM:,}" if d < 10**30 else
                            f"input '{name}': dimension {j} is a {len(str(d))}-digit number, above the limit of {MAX_DIM:,}",
                            loc, hint="use a realistic input size")
        else:
            raise SpecError(f"input '{name}': dimension {j} must be a positive integer (or B for the batch), got {d!r}", loc)
    t = TensorType(tuple(dims), dtype)
    if numel(t) > MAX_TENSOR:
        raise SpecError(f"input '{name}' {t} would hold {numel(t):.3g} numbers per sample, beyond what a tensor can hold "
                        f"({MAX_TENSOR:.3g})", loc, hint="use a realistic input size")
    return t
