"""Block fusion: the ``fused`` pipeline (deploy + ``form_regions``) and the fused lowering of its regions.

Two halves, each checked numerically:

* ``form_regions`` — a pure graph pass (Graph → Graph + WeightMap), certified by the float64
  differential check like every pass. A *region* is a residual block: a block body with an ``add``
  that reads one of the body's inputs (the skip connection) and no repeats. Every nested block
  instance inside a region is inlined into it, recursively, so the block's whole chain — conv,
  norm, activation, elementwise ops, the residual add — is one flat body and one generated class
  (state-dict keys ``expand.conv.weight`` become ``expand_conv.weight``). Deploy's folds run again
  in the same fixpoint loop, so whatever folds across the former block boundaries folds.

* :func:`fuse_source` — the lowering of regions (a codegen-level transform of the generated module,
  certified in :func:`check_fused`): in each class, a conv whose only consumer is a residual add
  and/or an activation becomes one :class:`FusedConv2d` call with the add and the activation as
  oneDNN post-ops (``conv → add → act`` or ``conv → act``), every conv keeps its weight reordered
  once into oneDNN's blocked layout, and the model runs in channels-last memory format (every
  NCHW↔NHWC permute of a ConvNeXt-style block becomes a view). ``FusedConv2d`` is emitted into the
  generated file (:data:`RUNTIME_SOURCE`), has exactly the state dict of ``nn.Conv2d`` and falls
  back to plain PyTorch ops off CPU, in other dtypes, in training mode or when an input does not
  fit — so the float64 check of the fused source runs the same arithmetic as the unfused module.

What runs faster on a small CPU was measured (see README "Benchmarks"): oneDNN post-op fusion with
prepacked weights and channels-last beat both ``torch.jit.freeze`` + ``optimize_for_inference``
(whose MKLDNN weight constants cannot be serialized) and plain channels-last eager.
"""

from __future__ import annotations

import ast
import keyword
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from archc.ir.graph import Graph, Node, Ref
from archc.passes.base import Match, Rewrite, Rule, RulePass, StateDict, register_pass

__all__ = ["FormRegions", "Flow", "RUNTIME_SOURCE", "autotune", "reset_packed", "FusionReport", "fuse_source", "runtime_module", "pack_convs",
           "set_onednn", "check_fused", "is_region", "MAX_REGION_OPS", "FUSED_TOLERANCE"]

#: a region is not grown beyond this many op nodes by inlining
MAX_REGION_OPS = 96

#: max relative error (float32) of the fused lowering against the unfused module
FUSED_TOLERANCE = 1e-4


# -- the graph pass ------------------------------------------------------------------------------


def _has_repeat(g: Graph) -> bool:
    return any(n.is_repeat or (n.body is not None and _has_repeat(n.body)) for n in g)


def _op_count(g: Graph) -> int:
    return sum(_op_count(n.body) if n.body is not None else 1 for n in g)


def is_region(g: Graph) -> bool:
    """A residual block body: an ``add`` reads a body input directly, and there is no repeat inside."""
    if _has_repeat(g):
        return False
    return any(n.op == "add" and any(r.node in g.inputs for r in n.inputs) for n in g)


def _reserved() -> frozenset[str]:
    from archc.spec.expand import _MODULE_ATTRS

    return _MODULE_ATTRS


class _FlattenRegion(Rule):
    """A block instance inside a residual block's body is inlined into it (recursively, up to MAX_REGION_OPS ops)."""

    name = "form_regions"

    def match(self, g: Graph, node: Node, users: dict[str, list[str]]) -> Match | str | None:
        # is_region(g) rules out repeats at any depth, so node's body holds none either
        if not node.is_block or node.body is None or not is_region(g):
            return None
        if _op_count(g) - 1 + _op_count(node.body) > MAX_REGION_OPS:
            return f"inlining '{node.id}' would grow the region beyond {MAX_REGION_OPS} ops"
        return Match(node)

    def rewrite(self, g: Graph, m: Match, users: dict[str, list[str]]) -> Rewrite:
        c = m.anchor
        body = c.body
        assert body is not None
        names = list(body.inputs)
        taken = set(g.nodes) | set(g.inputs) | set(_reserved())
        idmap: dict[str, str] = {}
        for n in body:
            new_id = f"{c.id}_{n.id}"
            while new_id in taken or keyword.iskeyword(new_id):
                new_id += "_"
            taken.add(new_id)
            idmap[n.id] = new_id

        def ref(r: Ref) -> Ref:
            return c.inputs[names.index(r.node)] if r.node in body.inputs else Ref(idmap[r.node], r.index)

        added = [n.replace(id=idmap[n.id], inputs=tuple(ref(r) for r in n.inputs), meta=dict(n.meta)) for n in body]
        replace = {Ref(c.id, k): ref(r) for k, r in enumerate(body.outputs)}
        pairs = [(f"{c.id}.{old}", new) for old, new in idmap.items()]

        def rename(sd: StateDict) -> None:
            for old, new in pairs:
                for k in [k for k in sd if k == old or k.startswith(old + ".")]:
                    sd[new + k[len(old):]] = sd.pop(k)
            for k in [k for k in sd if k == c.id or k.startswith(c.id + ".")]:
                raise KeyError(f"form_regions: weight '{k}' of inlined block '{c.id}' has no node")  # pragma: no cover

        return Rewrite({c.id}, added, replace, rename)


@register_pass
class FormRegions(RulePass):
    name = "form_regions"
    doc = "Flatten each residual block (conv/norm/act/elementwise chain + skip add) into one fused region."
    rules = (_FlattenRegion(),)


# -- the runtime emitted into fused modules ------------------------------------------------------

RUNTIME_SOURCE = '''
from typing import Optional

_ONEDNN = bool(torch.backends.mkldnn.is_available())


def fused_post(y: torch.Tensor, post: str, algorithm: str) -> torch.Tensor:
    """The activation a fused conv/linear applies after its output, as plain PyTorch ops (oneDNN's post-op names)."""
    if post == "none":
        return y
    if post == "relu":
        return F.relu(y)
    if post == "swish":
        return F.silu(y)
    if post == "gelu":
        if algorithm == "tanh":
            return F.gelu(y, approximate="tanh")
        return F.gelu(y)
    if post == "sigmoid":
        return torch.sigmoid(y)
    if post == "tanh":
        return torch.tanh(y)
    if post == "hardswish":
        return F.hardswish(y)
    if post == "hardsigmoid":
        return F.hardsigmoid(y)
    raise RuntimeError("fused conv/linear: unknown post-op " + post)


class FusedConv2d(nn.Conv2d):
    """nn.Conv2d with a fused epilogue: post(conv(x) [+ other]).

    On CPU in float32 (eval mode) this is one oneDNN convolution with the residual add and the
    activation as post-ops, its weight reordered once (on the first call, for that input shape)
    into the layout oneDNN picks; anywhere else (CUDA, float64, training, an input that does not
    fit) — or where ``onednn`` was switched off because the plain ops measured faster — it runs the
    same plain PyTorch ops the unfused module runs. Parameters and state_dict keys are nn.Conv2d's.
    """

    def __init__(self, *args, post: str = "none", post_algorithm: str = "", binary: str = "none", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        self.post_algorithm = post_algorithm
        self.binary = binary
        if isinstance(self.padding, str) or self.padding_mode != "zeros":
            raise ValueError("FusedConv2d needs explicit zero padding")
        self.onednn = _ONEDNN
        self.pad = [int(p) for p in self.padding]
        self.strides = [int(s) for s in self.stride]
        self.dilations = [int(d) for d in self.dilation]
        self.kernel = [int(k) for k in self.kernel_size]
        # the oneDNN-layout weight, made on the first call (an empty tensor until then; never in the state dict)
        self.packed = [torch.empty(0)]

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - .to(), .float(), ...: drop the reordered weight
        self.packed = [torch.empty(0)]
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.packed = [torch.empty(0)]
        super()._load_from_state_dict(*args, **kwargs)

    def _fits(self, x: torch.Tensor, other: Optional[torch.Tensor]) -> bool:
        if not self.onednn or self.training or x.dim() != 4 or x.dtype != torch.float32 or x.device.type != "cpu":
            return False
        if self.weight.dtype != torch.float32 or self.weight.device.type != "cpu" or x.requires_grad:
            return False
        if other is None:
            return True
        h = (x.size(2) + 2 * self.pad[0] - self.dilations[0] * (self.kernel[0] - 1) - 1) // self.strides[0] + 1
        w = (x.size(3) + 2 * self.pad[1] - self.dilations[1] * (self.kernel[1] - 1) - 1) // self.strides[1] + 1
        return (other.dim() == 4 and other.dtype == torch.float32 and other.device.type == "cpu"
                and other.size(0) == x.size(0) and other.size(1) == self.out_channels
                and other.size(2) == h and other.size(3) == w and not other.requires_grad)

    def forward(self, x: torch.Tensor, other: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self._fits(x, other):
            if self.packed[0].numel() == 0:  # the layout oneDNN picks for this input shape, made once
                self.packed[0] = torch.ops.mkldnn._reorder_convolution_weight(
                    self.weight.detach(), self.pad, self.strides, self.dilations, self.groups, list(x.shape))
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.packed[0], self.bias, self.pad, self.strides, self.dilations, self.groups,
                    self.post, [], self.post_algorithm)
            unary: Optional[str] = None
            if self.post != "none":
                unary = self.post
            return torch.ops.mkldnn._convolution_pointwise(
                x, other, self.packed[0], self.bias, self.pad, self.strides, self.dilations, self.groups,
                "add", None, unary, [], self.post_algorithm)
        # aten::convolution (not conv2d): optimize_for_inference leaves it alone, so the module stays serializable
        y = torch.convolution(x, self.weight, self.bias, self.strides, self.pad, self.dilations, False, [0, 0], self.groups)
        if other is not None:
            y = other + y
        return fused_post(y, self.post, self.post_algorithm)


class FusedLinear(nn.Linear):
    """nn.Linear with a fused activation: post(x @ Wᵀ + b) as one oneDNN matmul on CPU in float32
    (weight reordered once, on the first call, for that row count), else the plain PyTorch ops.
    Parameters and state_dict keys are nn.Linear's."""

    def __init__(self, *args, post: str = "none", post_algorithm: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.post = post
        self.post_algorithm = post_algorithm
        self.onednn = _ONEDNN
        self.packed = [torch.empty(0)]

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202
        self.packed = [torch.empty(0)]
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.packed = [torch.empty(0)]
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.onednn and not self.training and x.dtype == torch.float32 and x.device.type == "cpu" and x.dim() >= 2
                and not x.requires_grad and self.weight.dtype == torch.float32 and self.weight.device.type == "cpu"):
            if self.packed[0].numel() == 0:
                self.packed[0] = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), x.numel() // x.size(-1))
            return torch.ops.mkldnn._linear_pointwise(x, self.packed[0], self.bias, self.post, [], self.post_algorithm)
        return fused_post(F.linear(x, self.weight, self.bias), self.post, self.post_algorithm)
'''

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

_RUNTIME_CACHE: dict[str, Any] = {}


def runtime_module() -> Any:
    """The runtime (FusedConv2d, ...) as an importable module (TorchScript can read its source)."""
    if "mod" not in _RUNTIME_CACHE:
        from archc.passes.equivalence import module_from_source

        prelude = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
        _RUNTIME_CACHE["mod"] = module_from_source(prelude + RUNTIME_SOURCE, "archc_fused_runtime")
    return _RUNTIME_CACHE["mod"]


def pack_convs(model: torch.nn.Module) -> int:
    """Replace every plain ``nn.Conv2d`` / ``nn.Linear`` of ``model`` (in place) by FusedConv2d / FusedLinear without post-ops.

    Same weights, same state dict; on CPU the weight is reordered once into oneDNN's layout — what
    ``optimize_for_inference`` does with MKLDNN constants, in a form TorchScript can serialize.
    Returns the number of modules replaced.
    """
    rt = runtime_module()
    count = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Conv2d and not isinstance(child.padding, str) and child.padding_mode == "zeros":
                new = rt.FusedConv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                                     padding=child.padding, dilation=child.dilation, groups=child.groups,
                                     bias=child.bias is not None)
            elif type(child) is torch.nn.Linear:
                new = rt.FusedLinear(child.in_features, child.out_features, bias=child.bias is not None)
            else:
                continue
            new.to(device=child.weight.device, dtype=child.weight.dtype)
            if child.weight.dim() == 4 and child.weight.is_contiguous(memory_format=torch.channels_last):
                new.to(memory_format=torch.channels_last)  # keep the layout (and dtype) the model was given
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(parent, name, new)
            count += 1
    return count


def _fused_convs(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The FusedConv2d and FusedLinear modules of ``model``."""
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in ("FusedConv2d", "FusedLinear") and hasattr(m, "onednn")]


def set_onednn(model: torch.nn.Module, enabled: bool, only: set[str] | None = None) -> torch.nn.Module:
    """Switch the oneDNN path of the FusedConv2d modules of ``model`` (all, or those named in ``only``).

    Off means plain PyTorch ops (portable: export, ONNX, CUDA). Drops every reordered weight.
    """
    for name, m in _fused_convs(model):
        if only is None or name in only:
            m.onednn = bool(enabled and torch.backends.mkldnn.is_available())
        m.packed = [torch.empty(0)]
    return model


def reset_packed(model: torch.nn.Module) -> torch.nn.Module:
    """Empty every FusedConv2d's reordered-weight cache (before scripting and saving)."""
    for _, m in _fused_convs(model):
        m.packed = [torch.empty(0)]
    return model


def autotune(model: torch.nn.Module, inputs: list[torch.Tensor], repeats: int = 7, warmup: int = 2) -> list[str]:
    """Time each FusedConv2d's oneDNN path against its plain-PyTorch path on the inputs it sees; keep the faster.

    Interleaved medians per conv, on the shapes ``model(*inputs)`` gives it (float32, CPU, eval mode).
    Switches off oneDNN where the plain ops were faster and returns those module names. Both paths
    compute the same function (the plain one is what the float64 check runs), so this only ever
    changes speed. A shared machine makes the choice noisy, never wrong.
    """
    import time

    convs = [(n, m) for n, m in _fused_convs(model) if m.onednn]
    if not convs:
        return []
    seen: dict[str, tuple] = {}
    def grab(name: str):  # noqa: ANN202 - a pre-hook that records the first call's inputs and returns None
        def hook(mod: torch.nn.Module, args: tuple) -> None:
            seen.setdefault(name, args)
        return hook

    hooks = [m.register_forward_pre_hook(grab(n)) for n, m in convs]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    plain: list[str] = []
    with torch.no_grad():
        for name, m in convs:
            if name not in seen:
                continue
            args = seen[name]
            times: dict[bool, list[float]] = {True: [], False: []}
            for mode in (True, False):
                m.onednn = mode
                for _ in range(warmup):
                    m(*args)
            for r in range(repeats):
                for mode in ((True, False) if r % 2 == 0 else (False, True)):
                    m.onednn = mode
                    t0 = time.perf_counter()
                    m(*args)
                    times[mode].append(time.perf_counter() - t0)
            fast = sorted(times[True])[repeats // 2] <= sorted(times[False])[repeats // 2]
            m.onednn = fast
            if not fast:
                plain.append(name)
    reset_packed(model)
    return plain


# -- the source-level lowering of regions ---------------------------------------------------------


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


def _simple_assign(stmt: ast.stmt) -> tuple[str, ast.expr] | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
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
