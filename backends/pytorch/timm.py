"""timm's model interface in generated modules: the parts the ``head:`` declaration adds.

The model class of a spec with a head takes the spec params ``num_classes``, ``in_chans`` (and
``drop_path_rate`` when the spec has it) as constructor arguments; the generator derives every value
they change from the spec's own expressions, so ``Model(num_classes=10)`` is the spec compiled with
``-p num_classes=10``. This module writes what sits around that: ``forward_features`` /
``forward_head`` (the model's forward split at the features node), ``reset_classifier``,
``DEFAULT_CFG`` and a ``create_model(pretrained, num_classes, in_chans, drop_path_rate, **kwargs)``
that loads the weights compiled beside the module.

A classifier is built as ``<constructor> if <width> > 0 else nn.Identity()`` (timm's convention:
zero classes give the pre-logits features), both in ``__init__`` and in ``reset_classifier``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archc.backends.pytorch.render import literal
from archc.backends.pytorch.symbolic import is_sym, names_in, plain, tidy

from archc.diagnostics import SourceLoc, SpecError
from archc.ir.graph import Graph, Ref
from archc.ir.types import TensorType

__all__ = ["TIMM_NAMES", "ModelArgError", "TimmParts", "timm_parts", "wrap_classifier", "create_model_source",
           "first_conv"]

#: module-level names and method arguments of the timm interface (no generated identifier may take one)
TIMM_NAMES = ("Any", "Dict", "Optional", "Union", "os", "DEFAULT_CFG", "pre_logits", "_load_pretrained",
              "_adapt_input_conv", "_weights_path", "forward_features", "forward_head", "reset_classifier")


class ModelArgError(Exception):
    """A model argument the generated class cannot honour (the generator then leaves it out or refuses)."""

    def __init__(self, arg: str, message: str, loc: SourceLoc | None = None) -> None:
        super().__init__(message)
        self.arg = arg
        self.loc = loc


def _cond(t: TensorType, args: set[str]) -> str | None:
    """``<width> > 0`` for the classifier output ``t``: its first size that follows the arguments."""
    for d in t.shape[1:]:
        if is_sym(d) and d.expr is not None and names_in(d.expr) and names_in(d.expr) <= args:
            return f"{d.expr} > 0" if re.fullmatch(r"\w+", d.expr) else f"({d.expr}) > 0"
    return None


def wrap_classifier(init: list[str], fwd_line: str, nid: str, inp: str, lhs: str, out: TensorType,
                    args: set[str]) -> tuple[str, str]:
    """Rewrite the classifier's ``__init__`` line to fall back to nn.Identity; its (constructor, condition)."""
    if fwd_line != f"{lhs} = self.{nid}({inp})":
        raise ModelArgError("num_classes", f"the classifier '{nid}' is not a module applied to one value "
                            "(reset_classifier could not replace it)")
    cond = _cond(out, args)
    if cond is None:
        raise ModelArgError("num_classes", f"the classifier '{nid}' has no output size that follows the class count")
    prefix = f"self.{nid} = "
    for k, line in enumerate(init):
        if line.startswith(prefix):
            ctor = line[len(prefix):]
            init[k] = f"{prefix}{ctor} if {cond} else nn.Identity()"
            return ctor, cond
    raise ModelArgError("num_classes", f"the classifier '{nid}' is not a module")


def _substitute(src: str, values: Mapping[str, str]) -> str:
    """``src`` with the names in ``values`` replaced by their (parenthesized) expressions."""

    class S(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.parse(f"({values[node.id]})", mode="eval").body if node.id in values else node

    return tidy(ast.unparse(S().visit(ast.parse(src, mode="eval"))))


def first_conv(graph: Graph, prefix: str = "") -> str | None:
    """The module path of the first convolution the input meets (timm's ``first_conv``)."""
    for n in graph:
        path = f"{prefix}{n.id}"
        if (n.is_block or n.is_repeat) and n.body is not None:
            inner = first_conv(n.body, f"{path}.")
            if inner is not None:
                return inner
        elif "conv" in n.op:
            return path
    return None


@dataclass
class TimmParts:
    """What the head adds to the model class and the module."""

    init_prefix: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    returns: str = ""
    cfg: str = ""


def _method(head: str, doc: str, body: Sequence[str], returns: str | None) -> str:
    lines = [f"    {head}", f'        """{doc}"""', *(f"        {b}" for b in body)]
    if returns is not None:
        lines.append(f"        return {returns}")
    return "\n".join(lines)


def timm_parts(em: Any, graph: Graph, head: Mapping[str, Any], args: Sequence[str], classes: Mapping[int, Any],
               fixed: bool = False) -> TimmParts:
    """The timm methods of the model class emitted by ``em`` (the generator's emitter of the graph).

    ``classes`` maps id(block-instance node) → its generated class (for a classifier inside a block).
    ``fixed``: the model takes no arguments (its layers are the compiled ones), so there is no
    ``reset_classifier`` and the classifier is not rebuilt.
    """
    parts = TimmParts()
    argset = set(args)
    fwd = list(em.fwd)
    inp = em.locals[Ref(next(iter(graph.inputs)), 0)]
    feat = head["features"]
    feat_local = em.locals[Ref(feat, 0)]
    split = em.spans[feat][1]
    tops = [c.partition(".")[0] for c in head["classifier"]]
    first = min(tops, key=lambda t: em.spans[t][0])
    pre = em.locals[graph.nodes[first].inputs[0]]
    ctors: list[tuple[str, str, str]] = []  # (module path, constructor, condition) over the model's arguments
    for name in head["classifier"] if not fixed else ():
        top, _, sub = name.partition(".")
        node = graph.nodes[top]
        lo, hi = em.spans[top]
        if sub:
            cls = classes[id(node)]
            if cls.classifier_ctor is None:
                raise ModelArgError("num_classes", f"the classifier '{name}' was not generated")
            rendered = em.calls[top]
            ctor, cond = (_substitute(s, rendered) for s in cls.classifier_ctor)
            ctors.append((name, ctor, cond))
        else:
            ins = [em.locals[r] for r in node.inputs]
            lhs = em.locals[Ref(top, 0)]
            ctor, cond = wrap_classifier(em.init, fwd[hi - 1], top, ins[0], lhs, em.types[0][(top, 0)], argset)
            ctors.append((name, ctor, cond))
    # the pre-logits exit: before the first classifier, or out of the head block that holds it
    lo, hi = em.spans[first]
    node = graph.nodes[first]
    sub = head["classifier"][0].partition(".")[2] if len(head["classifier"]) == 1 else ""
    if sub:
        lhs = em.locals[Ref(first, 0)]
        call = fwd[hi - 1]
        if not call.endswith(")"):
            raise ModelArgError("num_classes", f"the classifier block '{first}' is not called with one value")
        fwd[hi - 1] = call[:-1] + ", pre_logits=pre_logits)"
        if hi < len(fwd):  # statements after the head block (a flatten, a second head) are skipped
            fwd.insert(hi, f"if pre_logits:\n            return {lhs}")
    else:
        fwd.insert(lo, f"if pre_logits:\n            return {pre}")
    params = graph.meta.get("params") or {}
    # timm's names: num_features = channels of the features, head_hidden_size = width of the pre-logits
    ftype = graph.nodes[feat].types[0]
    inner = graph.nodes[first].body.nodes[sub] if sub else None
    ptype = inner.meta["in_types"][0] if inner is not None else graph.type_of(node.inputs[0])
    width = 1
    for d in ptype.shape[1:]:
        width *= plain(d)
    fixed_count = [f"self.num_classes = {literal(params.get('num_classes'))}"] if fixed else []
    parts.init_prefix = fixed_count + [f"self.{a} = {a}" for a in args] + [
        f"self.num_features = {_size(_channels(ftype, width))}",
        f"self.head_hidden_size = {width}",
        "self.default_cfg = dict(DEFAULT_CFG)",
    ]
    parts.methods.append(_method(
        f"def forward_features(self, {inp}: torch.Tensor) -> torch.Tensor:",
        f"The features: the model up to and including '{feat}'.", fwd[:split], feat_local))
    parts.methods.append(_method(
        f"def forward_head(self, {feat_local}: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:",
        "The head on the features; with pre_logits=True the classifier's input (the pre-logits features).",
        fwd[split:], em.returns))
    own = {a: f"self.{a}" for a in args if a != "num_classes"}
    reset = ["self.num_classes = num_classes"]
    for path, ctor, cond in ctors:
        reset.append(f"self.{path} = {_substitute(ctor, own)} if {_substitute(cond, own)} else nn.Identity()")
    if not fixed:
        parts.methods.append(_method(
            "def reset_classifier(self, num_classes: int) -> None:",
            "Replace the classifier by a fresh one for ``num_classes`` classes (0: none, the model gives the "
            "pre-logits features).", reset, None))
    parts.forward = []
    parts.returns = f"self.forward_head(self.forward_features({inp}))"
    shape = graph.inputs[next(iter(graph.inputs))].shape
    names = head["classifier"]
    cfg = {
        "num_classes": params.get("num_classes"),
        "input_size": tuple(plain(d) for d in shape[1:]),
        "mean": tuple(head["mean"]),
        "std": tuple(head["std"]),
        "interpolation": head["interpolation"],
        "crop_pct": head["crop_pct"],
        "first_conv": first_conv(graph),
        "classifier": names[0] if len(names) == 1 else tuple(names),
    }
    parts.cfg = "DEFAULT_CFG: Dict[str, Any] = {\n" + "".join(f"    {k!r}: {literal(v)},\n" for k, v in cfg.items()) + "}"
    return parts


def _channels(t: TensorType, width: int) -> Any:
    """The channel size of a feature map: the axis the pre-logits width matches (NCHW or NHWC), else
    the last axis of tokens (B, N, C) and axis 1 of anything else."""
    for d in (t.shape[1], t.shape[-1]):
        if plain(d) == width:
            return d
    return t.shape[-1] if t.rank == 3 else t.shape[1]


def _size(d: Any) -> str:
    if is_sym(d) and d.expr is not None:
        return d.expr
    return literal(plain(d))


_LOAD_PLAIN = '''def _load_pretrained(model: nn.Module, path: str) -> None:
    """Load the state dict saved at ``path`` (tensors only: weights_only=True)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    model.load_state_dict(state)'''

_LOAD_HEAD = '''def _adapt_input_conv(in_chans: int, weight: torch.Tensor) -> torch.Tensor:
    """First-conv weights for ``in_chans`` input channels from weights for another count.

    One channel takes the sum over the trained ones; more are the trained ones tiled and scaled
    so that an input with equal channels gives the same activations.
    """
    trained = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    tiles = -(-in_chans // trained)
    return weight.repeat(1, tiles, 1, 1)[:, :in_chans] * (trained / in_chans)


def _load_pretrained(model: nn.Module, path: str) -> None:
    """Load the state dict saved at ``path`` (tensors only: weights_only=True).

    As timm does, a classifier of another class count is left freshly initialized and a first
    convolution for another channel count is adapted (see _adapt_input_conv).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = dict(state)
    own = model.state_dict()
    conv = str(DEFAULT_CFG["first_conv"]) + ".weight"
    if conv in state and conv in own and state[conv].shape != own[conv].shape:
        state[conv] = _adapt_input_conv(own[conv].shape[1], state[conv])
    heads = DEFAULT_CFG["classifier"]
    prefixes = tuple(p + "." for p in ((heads,) if isinstance(heads, str) else heads))
    fresh = set()
    for key in [k for k in state if k.startswith(prefixes)]:
        if key not in own or own[key].shape != state[key].shape:
            del state[key]
            fresh.update(k for k in own if k.startswith(prefixes))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in fresh]
    if missing or unexpected:
        raise RuntimeError(f"{path} does not fit this model: missing {missing}, unexpected {unexpected}")'''

_WEIGHTS_PATH = '''def _weights_path(pretrained: Union[bool, str]) -> str:
    """The weights file: ``pretrained`` itself, or for True the .pth compiled beside this module."""
    if pretrained is True:
        here = globals().get("__file__")
        if not here or here.startswith("<"):
            raise FileNotFoundError("this module was not loaded from a file: pass pretrained=<path to a .pth>")
        path = os.path.splitext(here)[0] + ".pth"
        if not os.path.exists(path):
            raise FileNotFoundError(f"no weights beside this module ({path}): compile with --weights, "
                                    "or pass pretrained=<path to a .pth>")
        return path
    return str(pretrained)'''


def create_model_source(model: str, args: Sequence[str], param_dtype: str | None, head: bool, fixed: bool = False) -> str:
    """The module's helpers and its ``create_model`` (timm's signature for a model with a head).

    ``fixed``: a model without arguments (rewritten by passes): ``num_classes`` and the others are
    accepted only as None, so timm-style callers get a clear refusal instead of a silent default.
    """
    helpers = (_LOAD_HEAD if head else _LOAD_PLAIN) + "\n\n\n" + _WEIGHTS_PATH
    build = f"{model}(**kwargs)" + (f".to(torch.{param_dtype})" if param_dtype else "")
    like = f", in {param_dtype} like its input" if param_dtype else ""
    if head:
        types = {"num_classes": "Optional[int]", "in_chans": "Optional[int]", "drop_path_rate": "Optional[float]"}
        sig = "".join(f", {a}: {types[a]} = None" for a in ("num_classes", "in_chans", "drop_path_rate"))
        given = ", ".join(f'("{a}", {a})' for a in ("num_classes", "in_chans", "drop_path_rate"))
        takes = ", ".join(args) if args else "no arguments (its layers are fixed to the compiled values)"
        body = [
            f'    """A {model}{like} (timm\'s create_model).',
            "",
            "    ``pretrained``: True loads the .pth compiled beside this module, a path loads that file.",
            f"    The other arguments replace the spec's values when given; this model takes {takes}.",
            '    """',
            f"    for name, value in ({given}):",
            "        if value is not None:",
            "            kwargs[name] = value",
        ]
    else:
        sig = ""
        body = [f'    """A freshly initialized {model}{like}; ``pretrained``: True loads the .pth compiled beside '
                'this module, a path loads that file."""']
    body += [f"    model = {build}", "    if pretrained:", "        _load_pretrained(model, _weights_path(pretrained))",
             "    return model"]
    head_line = f"def create_model(pretrained: Union[bool, str, None] = None{sig}, **kwargs: Any) -> {model}:"
    if len(head_line) > 120:
        lines = ["pretrained: Union[bool, str, None] = None", *sig.lstrip(", ").split(", "), "**kwargs: Any"]
        head_line = "def create_model(\n" + "".join(f"    {a},\n" for a in lines) + f") -> {model}:"
    return helpers + "\n\n\n" + head_line + "\n" + "\n".join(body) + "\n"


def refuse(exc: ModelArgError, spec_loc: SourceLoc | None) -> SpecError:
    """The user-facing error for an argument the model class cannot take."""
    return SpecError(f"the generated model cannot take '{exc.arg}' as an argument: {exc}", exc.loc or spec_loc,
                     hint="write every size that depends on it as an expression of the param (e.g. out: ${num_classes})")
