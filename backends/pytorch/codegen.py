"""Typed graph → standalone PyTorch source.

One class is emitted per distinct block: instances of a block whose expanded structure is the same
share a class whose constructor takes the block's params. Every value a lowering needs (channels,
kernel sizes, ...) is either the same in all instances — then it is written as a literal — or it is
*explained* symbolically by a constructor argument: a block param, a param expression the spec
author wrote, or a simple multiple of a param; only values nothing explains become extra
constructor arguments. Each candidate is checked against every instance, so the generated classes
are exact by construction.

Every identifier the generator writes — class names, constructor arguments, forward arguments and
locals, the loop variable, attributes holding per-instance values — is allocated so that it never
shadows a name the generated code uses (the imports, the helpers, the other classes, Python's
builtins, ``self``) nor another identifier of the same scope; a spec name that would gets a suffix
(a number for class names, trailing ``_`` otherwise). Module attributes keep their node ids, so
state_dict keys are the node paths. Docs are escaped so docstrings read back exactly.

jinja2 renders only the file and class skeleton; each op emits its own statements. The result is
parsed with :mod:`ast` before it is returned, and is byte-identical for identical input.

This module holds the entry points and the file skeleton; the work is split by job:
:mod:`.names` (identifiers and text), :mod:`.classes` (which instances share a class),
:mod:`.symbols` (how a class's values are written), :mod:`.pyexpr` (rewriting generated
expressions) and :mod:`.emit_class` (the lines of one class).
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from archc.backends.pytorch.classes import _Class, _env, _Gen
from archc.backends.pytorch.emit_class import _ClassEmitter
from archc.backends.pytorch.model_args import reached
from archc.backends.pytorch.names import (
    _DIVISIBLE,
    HELPER_SOURCE,
    _annotation,
    _doc_text,
    _type_name,
    class_name,
    to_python,
)
from archc.backends.pytorch.render import helper_closure, literal
from archc.backends.pytorch.symbolic import plain
from archc.backends.pytorch.timm import ModelArgError

from archc import __version__
from archc.diagnostics import ArchcError
from archc.ir.graph import Graph, Ref
from archc.ops import HELPERS

__all__ = ["generate", "generate_classes", "class_name", "to_python", "HELPER_SOURCE"]


_TEMPLATE_DIR = Path(__file__).parent


@dataclass
class _Emitted:
    name: str
    doc: str
    args: list[str]
    init: list[str]
    forward_args: list[str]
    forward: list[str]
    returns: str
    return_type: str
    methods: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The file skeleton (parsed once per process)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("module.py.j2")


def generate(graph: Graph, spec_label: str, model_name: str | None = None, block_info: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Source of a standalone module for ``graph``.

    ``block_info`` maps block names to ``{"params": {name: type}, "doc": str}`` (declared param
    order and types give constructor signatures and annotations; docs become class docstrings).
    """
    return generate_classes(graph, spec_label, model_name, block_info)[0]


def generate_classes(graph: Graph, spec_label: str, model_name: str | None = None,
                     block_info: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[str, list[_Class]]:
    """:func:`generate`, plus the generated block classes (name, block, arguments, instances, input bindings).

    A graph with a ``head`` (see :mod:`archc.spec.head`) gives a model class that takes the spec
    params ``num_classes``, ``in_chans`` and ``drop_path_rate`` (those the spec has) and timm's
    methods; ``drop_path_rate`` is left out when some value it sets could not be derived.
    """
    head = graph.meta.get("head")
    params = graph.meta.get("params") or {}
    args: list[str] = []
    if head is not None:
        from archc.spec.head import MODEL_ARGS, check_head

        rewritten = not {id(n) for n in graph} <= head.get("expanded", frozenset())
        try:
            check_head(graph, head)
            args = [a for a in MODEL_ARGS if a in params]
        except ArchcError:
            if not rewritten:
                raise
            head = None  # passes merged the head away: a plain module, as for a spec without one
    while True:
        try:
            return _generate(graph, spec_label, model_name, block_info, args, fixed=head is not None and not args,
                             use_head=head is not None)
        except ModelArgError as exc:
            if exc.arg == "drop_path_rate" and exc.arg in args:
                args.remove(exc.arg)  # stochastic depth is optional: a model without the argument is still right
                continue
            if args and head is not None and rewritten:
                # passes rewrote the graph (deploy, fused): the rewritten layers no longer carry the spec's
                # expressions, so the model is fixed to the compiled values (still split at the head)
                args = []
                continue
            from archc.backends.pytorch.timm import refuse

            raise refuse(exc, (graph.meta.get("head") or {}).get("loc")) from None


def _generate(graph: Graph, spec_label: str, model_name: str | None, block_info: Mapping[str, Mapping[str, Any]] | None,
              args: list[str], fixed: bool = False, use_head: bool = True) -> tuple[str, list[_Class]]:
    """One generation; ``fixed``: the head's methods without model arguments (no reset_classifier)."""
    head = graph.meta.get("head") if use_head and (args or fixed) else None
    params = graph.meta.get("params") or {}
    gen = _Gen(graph, class_name(model_name or graph.name), block_info or {})
    gen.fixed = fixed
    name = gen.model_name
    if head is not None:
        for cname in head["classifier"]:
            top, _, sub = cname.partition(".")
            if sub:
                gen.classifier_in[id(graph.nodes[top])] = sub
        if "in_chans" in args:
            # a block that reads the input's channels must take them as a size, not match them to a param
            t = next(iter(graph.inputs.values()))
            reached(graph, [t.with_shape((t.shape[0], plain(t.shape[1]) + 1, *t.shape[2:]))], gen.reached)
    gen.visit_children(graph)
    for cls in gen.order:  # every class name is known now: constructor arguments must not shadow one
        cls.assign_arg_names(gen.names | {"i"})
    emitted: list[_Emitted] = []
    for cls in gen.order:  # children come first: a parent reads its children's arguments and output sizes
        bodies = [n.body for n in cls.instances]  # type: ignore[misc]
        envs = [_env(n) for n in cls.instances]
        em = _ClassEmitter(gen, cls, bodies, envs)
        em.emit()
        cls.extra = em.sym.extra
        cls.extra_origin = em.sym.extra_origin
        cls.out_types = em.out_types
        used = [p for p in cls.param_decls if p in em.sym.used]
        cls.args = [(cls.arg_names[p], _annotation(cls.param_decls[p])) for p in used] + [(e, "") for e in em.sym.extra]
        emitted.append(_emit_class(cls.name, _doc_text(cls.doc), cls.args, em, bodies[0]))
    top_cls = _Class(None, name, None, "", param_decls={a: _type_name(params[a]) for a in args})
    top_cls.arg_names = {a: a for a in args}
    top = _ClassEmitter(gen, top_cls, [graph], [dict(params) if args else {}], top_args={a: params[a] for a in args})
    top.emit()
    if top.sym.extra:
        slots = ", ".join(sorted(top.sym.extra))
        raise ModelArgError("drop_path_rate" if "drop_path_rate" in args else args[0],
                            f"the op rules do not state how {slots} follow from it")
    sig = [f"{a}: {_annotation(_type_name(params[a]))} = {literal(params[a])}" for a in args]
    main = _emit_class(name, _doc_text(graph.meta.get("doc", "") or graph.name), [], top, graph)
    main.args = sig
    out_names = graph.meta.get("output_names") or ()
    if out_names:  # named outputs: forward returns {name: value} in the spec's order
        values = [top.locals[r] for r in graph.outputs]
        main.returns = "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(out_names, values)) + "}"
        main.return_type = "Dict[str, torch.Tensor]"
    cfg = ""
    if head is not None:
        from archc.backends.pytorch.timm import timm_parts

        for attr in ("num_features", "head_hidden_size", "default_cfg", "forward_features", "forward_head",
                     "reset_classifier", *args):
            if attr in top.attrs:
                from archc.diagnostics import SpecError

                raise SpecError(f"node '{attr}' has the name of an attribute of timm models", graph.nodes[attr].loc
                                if attr in graph.nodes else None, hint=f"rename the node, e.g. '{attr}_'")
        holders = {id(graph.nodes[c.partition('.')[0]]): gen.classes[gen.key_of(graph.nodes[c.partition('.')[0]])]
                   for c in head["classifier"] if "." in c}
        parts = timm_parts(top, graph, head, args, holders, fixed)
        main.init = parts.init_prefix + top.init
        main.forward, main.returns, main.methods, cfg = parts.forward, parts.returns, parts.methods, parts.cfg
    emitted.append(main)
    emitted = _merge_duplicates(emitted, gen.order)
    helpers = [HELPERS[h] for h in helper_closure(gen.helpers)]
    first = next(iter(graph.inputs.values()))
    # parameters follow the floating dtype of the (first) input; float32 is nn.Module's own default
    param_dtype = first.dtype if first.dtype in ("float64", "float16", "bfloat16") else None
    from archc.backends.pytorch.timm import create_model_source

    src = _template().render(
        title=_doc_text(graph.meta.get("title") or name),
        spec=_doc_text(spec_label),
        variant=_doc_text(graph.meta["variant"]) if graph.meta.get("variant") else None,
        digest=graph.meta.get("digest", ""),
        version=__version__,
        imports=sorted({imp for h in helpers for imp in h.imports}),
        needs_math="math." in "".join("\n".join(c.init) for c in emitted),
        typing_names=["Any", *(["Dict"] if head is not None or graph.meta.get("output_names") else []),
                      *(["Optional"] if head is not None else []),
                      "Tuple", "Union"],
        helpers=[h.source for h in helpers] + ([_DIVISIBLE.strip("\n") + "\n"] if gen.uses_divisible else []),
        classes=emitted,
        model=name,
        input_shape=literal(first.concrete(1)),
        input_shapes=[(k, literal(t.concrete(1))) for k, t in graph.inputs.items()] if len(graph.inputs) > 1 else [],
        cfg=cfg,
        create_model=create_model_source(name, args, param_dtype, head is not None, fixed),
    )
    ast.parse(src)
    return src, list(gen.order)


def _merge_duplicates(emitted: list[_Emitted], order: list[_Class]) -> list[_Emitted]:
    """Drop each class whose text is an earlier class's but for its own name, and call the earlier one.

    Instances get separate classes when their signatures differ in ways the emitted text may not show
    (e.g. one reads a size that follows a model argument); a file with two identical classes under two
    names reads as if they differed. Children come before parents, so one pass also merges parents that
    become identical once their children are.
    """
    renamed: dict[str, str] = {}
    calls: re.Pattern[str] | None = None  # the dropped names, rebuilt when one is added
    kept: dict[tuple[Any, ...], str] = {}
    out: list[_Emitted] = []
    for i, cls in enumerate(emitted):
        if calls is not None:
            for attr in ("init", "forward", "methods"):
                setattr(cls, attr, [calls.sub(lambda m: renamed[m.group(1)], line) for line in getattr(cls, attr)])
        own = re.compile(rf"\b{re.escape(cls.name)}\b")
        text = (cls.doc, tuple(cls.args), cls.returns, cls.return_type, tuple(cls.forward_args),
                *(tuple(own.sub("<self>", line) for line in getattr(cls, a)) for a in ("init", "forward", "methods")))
        if text in kept and i < len(emitted) - 1:  # the model class (last) is never merged away
            renamed[cls.name] = kept[text]
            calls = re.compile(r"\b(" + "|".join(map(re.escape, renamed)) + r")\b")
            continue
        kept.setdefault(text, cls.name)
        out.append(cls)
    for c in order:
        c.name = renamed.get(c.name, c.name)
    return out


def _emit_class(name: str, doc: str, args: list[tuple[str, str]], em: _ClassEmitter, body: Graph) -> _Emitted:
    sig = [f"{a}: {t}" if t else a for a, t in args]
    fargs = [f"{em.locals[Ref(k, 0)]}: torch.Tensor" for k in body.inputs]
    if em.cls.classifier:
        fargs.append("pre_logits: bool = False")
    nout = len(body.outputs)
    rtype = "torch.Tensor" if nout == 1 else "Tuple[" + ", ".join(["torch.Tensor"] * nout) + "]"
    return _Emitted(name, doc, sig, em.init, fargs, em.fwd, em.returns, rtype)
