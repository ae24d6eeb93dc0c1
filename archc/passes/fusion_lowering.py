"""The fused lowering of regions: a codegen-level transform of the generated module and its numeric check.

:func:`fuse_source` rewrites the PyTorch backend's output for a ``fused``-pipeline graph: in each
class, a conv whose only consumer is a residual add and/or an activation becomes one ``FusedConv2d``
call with the add and the activation as oneDNN post-ops (``conv → add → act`` or ``conv → act``),
every other fusable conv/linear becomes its prepacked Fused* twin, the model runs in channels-last
memory format, and the runtime (:data:`archc.passes.fusion_runtime.RUNTIME_SOURCE`) is embedded into the
file. :func:`check_fused` certifies the result against the unfused module in float64 (the plain
PyTorch path: the rewrite's structure must be exact) and in float32 (the oneDNN path).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from archc.passes.fusion_runtime import RUNTIME_SOURCE

__all__ = ["FusionReport", "Flow", "fuse_source", "check_fused", "FUSED_TOLERANCE"]

#: max relative error (float32) of the fused lowering against the unfused module
FUSED_TOLERANCE = 1e-4

#: activation calls of generated code → (oneDNN post-op, scalars, algorithm)
_ACTS: dict[str, tuple[str, tuple[float, ...], str]] = {
    "F.relu": ("relu", (), ""),
    "F.silu": ("swish", (), ""),
    "F.gelu": ("gelu", (), "none"),
    "torch.sigmoid": ("sigmoid", (), ""),
    "torch.tanh": ("tanh", (), ""),
    "F.hardswish": ("hardswish", (), ""),
    "F.hardsigmoid": ("hardsigmoid", (), ""),
}


@dataclass
class FusionReport:
    """What :func:`fuse_source` did."""

    regions: int = 0
    convs: int = 0
    fused_add: int = 0
    fused_act: int = 0
    channels_last: bool = False
    #: per class: the fused chains, e.g. ``ConvfirstBlock: expand_conv+silu, project+add``
    details: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.regions} fused regions, {self.convs} convs/linears on oneDNN (weights prepacked), "
                f"{self.fused_add} residual adds and {self.fused_act} activations fused as post-ops"
                + (", channels-last" if self.channels_last else ""))


def _call_name(node: ast.AST) -> str | None:
    """``F.relu`` / ``torch.sigmoid`` / ``nn.Conv2d`` for an attribute chain, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _act_of(value: ast.expr, name: str) -> tuple[str, tuple[float, ...], str] | None:
    """The post-op for ``value`` when it is an activation applied to exactly the local ``name``."""
    if not isinstance(value, ast.Call) or not value.args or not isinstance(value.args[0], ast.Name) or value.args[0].id != name:
        return None
    fn = _call_name(value.func)
    if fn not in _ACTS:
        return None
    attr, scalars, algo = _ACTS[fn]
    extra = value.args[1:]
    kws = {k.arg: k.value for k in value.keywords}
    if fn == "F.gelu":
        if extra or set(kws) - {"approximate"}:
            return None
        if "approximate" in kws:
            v = kws["approximate"]
            if not isinstance(v, ast.Constant) or v.value not in ("tanh", "none"):
                return None
            algo = v.value
        return attr, scalars, algo
    if extra or kws:
        return None
    return attr, scalars, algo


_FUSED_CLASS = {"nn.Conv2d": "FusedConv2d", "nn.Linear": "FusedLinear"}


def _fusable_conv(call: ast.Call) -> bool:
    """An ``nn.Conv2d(...)`` call with explicit zero padding (what FusedConv2d takes), or an ``nn.Linear(...)``."""
    if _call_name(call.func) == "nn.Linear":
        return True
    if _call_name(call.func) != "nn.Conv2d":
        return False
    kws = {k.arg: k.value for k in call.keywords}
    if "padding_mode" in kws and not (isinstance(kws["padding_mode"], ast.Constant) and kws["padding_mode"].value == "zeros"):
        return False
    pad = kws.get("padding", call.args[4] if len(call.args) > 4 else None)
    return not (isinstance(pad, ast.Constant) and isinstance(pad.value, str)) and None not in kws


class Flow:
    """Def-use facts of a forward's top-level statements, aware of names being reassigned.

    Generated code may reuse a local name (``x = self.conv(x)``; ``x = F.relu(x)``), so values
    are tracked as (name, version): ``value_read(k, name)`` is the version statement ``k`` reads
    and ``uses[(name, version)]`` how often that value is read anywhere (each occurrence counts;
    a statement nested in a loop counts as one statement).
    """

    def __init__(self, body: list[ast.stmt], args: list[str]) -> None:
        self.body = body
        self.reads: list[list[str]] = []
        self.writes: list[set[str]] = []
        self.before: list[dict[str, int]] = []
        self.written: list[dict[str, int]] = []  # name → version a statement writes
        cur: dict[str, int] = {a: 0 for a in args}
        self.uses: dict[tuple[str, int], int] = {}
        for st in body:
            reads = [t.id for t in ast.walk(st) if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Load)]
            writes = {t.id for t in ast.walk(st) if isinstance(t, ast.Name) and isinstance(t.ctx, (ast.Store, ast.Del))}
            self.before.append(dict(cur))
            for n in reads:
                key = (n, cur.get(n, -1))
                self.uses[key] = self.uses.get(key, 0) + 1
            out = {}
            for n in writes:
                cur[n] = cur.get(n, 0) + 1
                out[n] = cur[n]
            self.reads.append(reads)
            self.writes.append(writes)
            self.written.append(out)

    def assign(self, i: int) -> tuple[str, ast.expr] | None:
        """``(name, value)`` when statement ``i`` is ``name = value``."""
        st = self.body[i]
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
            return st.targets[0].id, st.value
        return None

    def only_consumer(self, i: int) -> int | None:
        """The one statement reading the value statement ``i`` assigns, if it is read exactly once."""
        a = self.assign(i)
        if a is None:
            return None
        key = (a[0], self.written[i][a[0]])
        if self.uses.get(key, 0) != 1:
            return None
        for k in range(i + 1, len(self.body)):
            if self.before[k].get(a[0]) == key[1] and a[0] in self.reads[k]:
                return k
        return None

    def same_value(self, name: str, i: int, j: int) -> bool:
        """``name`` holds the same value before statement ``i`` and before statement ``j``."""
        return name in self.before[i] and self.before[i].get(name) == self.before[j].get(name)

    def can_hoist(self, target: str, i: int, chain: list[int]) -> bool:
        """Writing ``target`` at statement ``i`` instead of at ``chain[-1]`` changes nothing in between."""
        for k in range(i + 1, chain[-1]):
            if k not in chain and (target in self.reads[k] or target in self.writes[k]):
                return False
        return True


class _ClassFuser:
    """Fuses the forward of one generated class; records the edits as line replacements."""

    def __init__(self, cls: ast.ClassDef, lines: list[str]) -> None:
        self.cls = cls
        self.lines = lines
        self.init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
        self.fwd = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "forward"), None)
        self.edits: dict[int, list[str] | None] = {}  # first line (1-based) of a statement → new lines (None: deleted)
        self.spans: dict[int, int] = {}  # first line → last line of the replaced statement
        self.fused: list[str] = []
        self.adds = 0
        self.acts = 0
        self.convs: dict[str, ast.Assign] = {}
        self.region = False

    def run(self) -> None:
        if self.init is None or self.fwd is None:
            return
        for st in self.init.body:
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and (a := _self_attr(st.targets[0])) is not None \
                    and isinstance(st.value, ast.Call) and _fusable_conv(st.value):
                self.convs[a] = st
        if not self.convs:
            return
        body = self.fwd.body
        args = [a.arg for a in self.fwd.args.args[1:]]
        flow = Flow(body, args)
        # a region: a residual add reads one of the forward's inputs as it came in
        self.region = any(isinstance(v, ast.BinOp) and isinstance(v.op, ast.Add) and any(
            isinstance(o, ast.Name) and o.id in args and flow.before[k].get(o.id) == 0 for o in (v.left, v.right))
            for k in range(len(body)) if (sa := flow.assign(k)) is not None for v in [sa[1]])
        attr_uses: dict[str, int] = {}
        for st in body:
            for t in ast.walk(st):
                if (a := _self_attr(t)) is not None:
                    attr_uses[a] = attr_uses.get(a, 0) + 1
        new_stmt: dict[int, tuple[str, ast.expr]] = {}
        deleted: set[int] = set()
        posts: dict[str, dict[str, Any]] = {}
        for i in range(len(body)):
            sa = flow.assign(i)
            if sa is None or i in deleted or i in new_stmt:
                continue
            _, value = sa
            if not (isinstance(value, ast.Call) and (a := _self_attr(value.func)) in self.convs and len(value.args) == 1
                    and not value.keywords and attr_uses.get(a) == 1 and isinstance(value.args[0], ast.Name)):
                continue
            conv_arg = value.args[0].id
            chain = [i]
            names = [a]
            other: str | None = None
            post: tuple[str, tuple[float, ...], str] | None = None
            cur = i
            j = flow.only_consumer(cur)
            is_conv = _call_name(self.convs[a].value.func) == "nn.Conv2d"  # type: ignore[union-attr]
            if is_conv and j is not None and (sj := flow.assign(j)) is not None:
                vj = sj[1]
                y = sa[0]
                if isinstance(vj, ast.BinOp) and isinstance(vj.op, ast.Add) and isinstance(vj.left, ast.Name) \
                        and isinstance(vj.right, ast.Name) and (vj.left.id == y) != (vj.right.id == y):
                    o = vj.right.id if vj.left.id == y else vj.left.id
                    if flow.same_value(o, i, j) and o not in flow.writes[i]:
                        other = o
                        chain.append(j)
                        names.append("add")
                        cur = j
                        j = flow.only_consumer(cur)
            if j is not None and (sj := flow.assign(j)) is not None:
                src_name = flow.assign(cur)[0]  # type: ignore[index]
                act = _act_of(sj[1], src_name)
                if act is not None:
                    post = act
                    chain.append(j)
                    names.append(act[0])
            if len(chain) == 1:
                continue
            target = flow.assign(chain[-1])[0]  # type: ignore[index]
            if not flow.can_hoist(target, i, chain) or (other is not None and target == other and chain[-1] != chain[1]):
                continue
            args = [ast.Name(conv_arg, ast.Load())] + ([ast.Name(other, ast.Load())] if other is not None else [])
            call = ast.Call(func=ast.Attribute(ast.Name("self", ast.Load()), a, ast.Load()), args=args, keywords=[])
            new_stmt[i] = (target, call)
            deleted.update(chain[1:])
            posts[a] = {"binary": "add" if other is not None else "none", "post": post}
            self.fused.append("+".join(names))
            self.adds += other is not None
            self.acts += post is not None

        indent = " " * 8
        for i in sorted(deleted):
            st = body[i]
            self.edits[st.lineno] = None
            self.spans[st.lineno] = st.end_lineno or st.lineno
        for i, (target, val) in new_stmt.items():
            st = body[i]
            self.edits[st.lineno] = [indent + ast.unparse(ast.Assign([ast.Name(target, ast.Store())], val, lineno=0))]
            self.spans[st.lineno] = st.end_lineno or st.lineno
        for a, st in self.convs.items():
            call = st.value
            assert isinstance(call, ast.Call)
            kws = list(call.keywords)
            spec = posts.get(a)
            if spec is not None:
                if spec["post"] is not None:
                    attr, _, algo = spec["post"]
                    kws.append(ast.keyword("post", ast.Constant(attr)))
                    if algo:
                        kws.append(ast.keyword("post_algorithm", ast.Constant(algo)))
                if spec["binary"] != "none":
                    kws.append(ast.keyword("binary", ast.Constant(spec["binary"])))
            new_call = ast.Call(ast.Name(_FUSED_CLASS[_call_name(call.func) or ""], ast.Load()), call.args, kws)
            text = ast.unparse(ast.Assign([st.targets[0]], new_call, lineno=0))
            self.edits[st.lineno] = [indent + text]
            self.spans[st.lineno] = st.end_lineno or st.lineno


def fuse_source(source: str, channels_last: bool = True) -> tuple[str, FusionReport]:
    """Lower the regions of a generated module to fused oneDNN calls (see the module docstring).

    ``source`` is the PyTorch backend's output for a ``fused``-pipeline graph. Returns the new source
    (parsed before it is returned) and a report. Plain ``nn.Conv2d`` calls inside other expressions
    (``nn.Sequential`` items) become ``FusedConv2d`` without post-ops.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    # every other fusable nn.Conv2d(...) (e.g. items of an nn.Sequential) still gets prepacked weights
    renames: dict[int, list[int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _fusable_conv(node) and node.func.lineno == node.func.end_lineno:
            renames.setdefault(node.func.lineno, []).append(node.func.col_offset)
    for ln, cols in renames.items():
        text = lines[ln - 1]
        for col in sorted(cols, reverse=True):
            old = next(o for o in _FUSED_CLASS if text[col:col + len(o)] == o)
            text = text[:col] + _FUSED_CLASS[old] + text[col + len(old):]
        lines[ln - 1] = text
    report = FusionReport(channels_last=channels_last)
    edits: dict[int, list[str] | None] = {}
    spans: dict[int, int] = {}
    model_cls = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "create_model" and isinstance(node.returns, ast.Name):
            model_cls = node.returns.id
    first_def = None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and first_def is None:
            first_def = node
        if not isinstance(node, ast.ClassDef):
            continue
        f = _ClassFuser(node, lines)
        f.run()
        edits.update(f.edits)
        spans.update(f.spans)
        report.convs += len(f.convs)
        report.fused_add += f.adds
        report.fused_act += f.acts
        if f.fused:
            report.details[node.name] = f.fused
        if f.region:
            report.regions += 1
        if channels_last and node.name == model_cls and f.fwd is not None and f.init is not None:
            args = [a.arg for a in f.fwd.args.args[1:]]
            first = f.fwd.body[0]
            # a switch, not a fixed layout: the measured choice (archc.fusion_choice) may keep NCHW
            sup = f.init.body[0]
            end = sup.end_lineno or sup.lineno
            edits[sup.lineno] = lines[sup.lineno - 1:end] + ["        self.channels_last = True"]
            spans[sup.lineno] = end
            pre = []
            for a in args:
                pre += [f"        if self.channels_last and {a}.dim() == 4:",
                        f"            {a} = {a}.contiguous(memory_format=torch.channels_last)"]
            if first.lineno in edits:
                cur = edits[first.lineno]
                edits[first.lineno] = pre + (cur or [])
            else:
                edits[first.lineno] = pre + lines[first.lineno - 1:(first.end_lineno or first.lineno)]
                spans[first.lineno] = first.end_lineno or first.lineno
    out: list[str] = []
    i = 1
    runtime_at = None
    while i <= len(lines):
        if first_def is not None and i == first_def.lineno:
            runtime_at = len(out)
        if i in edits:
            new = edits[i]
            if new is not None:
                out += new
            i = spans[i] + 1
            continue
        out.append(lines[i - 1])
        i += 1
    runtime = RUNTIME_SOURCE.strip("\n").splitlines() + ["", ""]
    out = out[:runtime_at] + runtime + out[runtime_at:] if runtime_at is not None else out + [""] + runtime
    text = "\n".join(out).rstrip("\n") + "\n"
    ast.parse(text)
    return text, report


# -- the numeric check of the lowering --------------------------------------------------------------


def check_fused(unfused_source: str, fused_source: str, state_dict: Mapping[str, torch.Tensor] | None = None,
                inputs: list[torch.Tensor] | None = None, seed: int = 0) -> dict[str, float]:
    """Compare the fused module with the unfused module of the same graph; raise PassError above tolerance.

    Two runs, both with random (perturbed) weights unless ``state_dict`` is given: float64, where
    the fused module runs its plain-PyTorch path (the structure of the rewrite must be exact,
    tolerance 1e-9), and float32, where it runs the oneDNN path (tolerance :data:`FUSED_TOLERANCE`).
    Returns the two max relative errors.
    """
    from archc.diagnostics import PassError
    from archc.passes.equivalence import module_from_source, output_tuple, randomize, rel_error

    ref_mod = module_from_source(unfused_source, "archc_unfused")
    fused_mod = module_from_source(fused_source, "archc_fused")
    ref = ref_mod.create_model().eval()
    fused = fused_mod.create_model().eval()
    weights = dict(state_dict) if state_dict is not None else randomize(ref, seed)
    if inputs is None:
        gen = torch.Generator().manual_seed(seed + 1)
        shapes = list(getattr(ref_mod, "INPUT_SHAPES", {}).values()) or [ref_mod.INPUT_SHAPE]
        inputs = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    errs = {}
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, FUSED_TOLERANCE)):
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}
        ref.to(dtype).load_state_dict(sd, strict=True)
        fused.to(dtype).load_state_dict(sd, strict=True)
        xs = [x.to(dtype) for x in inputs]
        with torch.no_grad():
            a = ref(*xs)
            b = fused(*xs)
        a_t, b_t = output_tuple(a), output_tuple(b)
        err = 0.0 if len(a_t) == len(b_t) else math.inf
        for u, v in zip(a_t, b_t):
            err = max(err, rel_error(u, v))  # inf on any NaN/inf: max(0.0, nan) would pass
        errs[str(dtype).replace("torch.", "")] = err
        if not err <= tol:
            raise PassError(f"fused lowering broke numerical equivalence in {dtype}: max relative error {err:.3e} > {tol:.0e}",
                            hint="this is a bug in archc's fusion; use --pipeline deploy")
    return errs
