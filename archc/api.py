"""The Python API: build, compile, cost and load models in a few lines.

Every function takes a spec as a path (``"specs/resnet.yaml"``) or as a spec already loaded with
:func:`archc.load_spec_doc`, a variant, and param overrides (a mapping, or ``name=value`` strings
as on the command line). ``num_classes`` and ``in_chans`` are ordinary params of a spec with a
``head:``, so ``params={"num_classes": 10}`` changes the classifier and the cost alike.

Importing :mod:`archc` stays cheap: torch and the compiler are imported when a function runs.
Failures raise :class:`archc.ArchcError` (one line, with a hint), as the command line reports them.

>>> import archc
>>> archc.cost("specs/resnet.yaml", variant="resnet18").params
11689512
>>> archc.cost("specs/resnet.yaml", variant="resnet18", params={"num_classes": 10}).params
11181642
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import torch

    from archc.compiler import CompileOptions, CompileResult
    from archc.cost.model import Cost
    from archc.spec.document import SpecDoc

__all__ = ["build", "compile", "cost", "load", "OnnxModel", "SpecLike"]

#: a spec file's path, or a spec loaded with :func:`archc.load_spec_doc`
SpecLike = Union[str, os.PathLike, "SpecDoc"]
Params = Union[Mapping[str, Any], Sequence[str], None]


def _source(spec: SpecLike) -> tuple[str | Path, str | None]:
    """(path, text) of ``spec``: a loaded spec compiles from the text it was loaded from."""
    from archc.diagnostics import ArchcError
    from archc.spec.document import SpecDoc

    if isinstance(spec, SpecDoc):
        return spec.path, spec.sources.get(spec.path)
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec)
        if not path.is_file():
            raise ArchcError(f"spec not found: '{path}'", hint="pass the path of a spec .yaml file")
        return path, None
    raise ArchcError(f"a spec is a path or a loaded spec, got {type(spec).__name__}",
                     hint="pass e.g. 'specs/resnet.yaml' or archc.load_spec_doc('specs/resnet.yaml')")


def _options(variant: str | None, params: Params, pipeline: str, weights: str | os.PathLike | None,
             target: str = "pytorch", check: bool = True) -> CompileOptions:
    from archc.compiler import CompileOptions

    given: Mapping[str, Any] | Sequence[str] = () if params is None else params
    if isinstance(given, str):  # one "name=value" string, not a sequence of characters
        given = [given]
    return CompileOptions(variant=variant, params=given if isinstance(given, Mapping) else list(given), target=target,
                          pipeline=pipeline, weights=os.fspath(weights) if weights is not None else None, check=check)


def compile(spec: SpecLike, variant: str | None = None, params: Params = None, pipeline: str = "train",
            weights: str | os.PathLike | None = None, target: str = "pytorch", out: str | os.PathLike | None = None,
            check: bool = True) -> CompileResult:
    """Compile ``spec``: the generated source, its cost and (with ``out``) the files written.

    ``pipeline`` is ``train``, ``deploy`` or ``fused``; ``weights`` a train-form checkpoint to convert.
    For the ``pytorch`` target nothing is written unless ``out`` is given (the module, and the
    converted weights beside it as ``.pth``); the other targets (``torchscript``, ``export``,
    ``onnx``, ``cudagraph``) write their artifact to ``out`` (default: beside the spec, as
    ``archc compile`` does) after checking it against the eager module.

    >>> import archc
    >>> res = archc.compile("specs/resnet.yaml", variant="resnet18")
    >>> res.cost.params, res.files
    (11689512, [])
    >>> "def forward_features" in res.source
    True
    """
    path, text = _source(spec)
    options = _options(variant, params, pipeline, weights, target, check)
    if target == "pytorch":
        from archc.compiler import compile_spec, write_artifact

        res = compile_spec(path, options, text)
        if out is not None:
            write_artifact(res, Path(out), options.weights)
        return res
    from archc.targets import compile_target

    return compile_target(path, options, out, text=text).compile


def cost(spec: SpecLike, variant: str | None = None, params: Params = None, pipeline: str = "train") -> Cost:
    """The cost table of ``spec`` (params, MACs, activations, memory; see :mod:`archc.cost.model`).

    With the ``train`` pipeline nothing is built: the costs come from the spec alone.

    >>> import archc
    >>> c = archc.cost("specs/resnet.yaml", variant="resnet18", params={"in_chans": 1})
    >>> c.params
    11683240
    """
    path, text = _source(spec)
    options = _options(variant, params, pipeline, None)
    if pipeline == "train":
        from archc.compiler import build_graph
        from archc.cost.model import graph_cost

        return graph_cost(build_graph(path, options, text)[1])
    from archc.compiler import compile_spec

    return compile_spec(path, options, text).cost


def build(spec: SpecLike, variant: str | None = None, params: Params = None, pipeline: str = "train",
          weights: str | os.PathLike | None = None) -> torch.nn.Module:
    """The model of ``spec`` as an ``nn.Module``, built in memory from the generated source.

    With ``weights`` (a train-form checkpoint) the model holds them, converted for ``pipeline``.
    The module is in training mode, as ``nn.Module`` starts; call ``.eval()`` for inference.

    >>> import archc
    >>> model = archc.build("specs/resnet.yaml", variant="resnet18", params={"num_classes": 10})
    >>> model.fc.out_features, model.default_cfg["input_size"]
    (10, (3, 224, 224))
    """
    from archc.passes.equivalence import module_from_source

    res = compile(spec, variant, params, pipeline, weights)
    model = module_from_source(res.source, "archc_built").create_model()
    if res.state_dict is not None:
        model.load_state_dict(res.state_dict, strict=True)
    return model


def load(path: str | os.PathLike, **kwargs: Any) -> Any:
    """Load a compiled artifact by its suffix.

    ``.py``: a generated module, imported; its ``create_model(**kwargs)`` with the ``.pth``
    beside it loaded when there is one. ``.pt``: TorchScript (``torch.jit.load``). ``.pt2``: a
    ``torch.export`` program, as a module. ``.onnx``: an :class:`OnnxModel` (needs onnxruntime).
    A ``.py`` file runs when imported: load only modules you compiled or trust.

    >>> import archc
    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = archc.compile("specs/resnet.yaml", variant="resnet18", out=f"{tmp}/r18.py")
    ...     model = archc.load(f"{tmp}/r18.py", num_classes=3).eval()
    ...     model(torch.randn(1, 3, 64, 64)).shape
    torch.Size([1, 3])
    """
    from archc.diagnostics import ArchcError

    p = Path(path)
    if not p.is_file():
        raise ArchcError(f"artifact not found: '{p}'", hint="compile one with archc compile SPEC -o PATH")
    suffix = p.suffix.lower()
    if suffix == ".py":
        return _load_module(p, kwargs)
    if kwargs:
        raise ArchcError(f"'{p}': keyword arguments apply to a generated .py module only, got {', '.join(sorted(kwargs))}",
                         hint="a TorchScript, export or ONNX artifact is built for the spec's values")
    if suffix == ".pt":
        import torch

        try:
            return torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure to read the file is the user's file
            raise ArchcError(f"cannot load '{p}' as TorchScript: {_first(exc)}", hint="compile with --target torchscript") from None
    if suffix == ".pt2":
        import torch

        try:
            return torch.export.load(str(p)).module()
        except Exception as exc:  # noqa: BLE001
            raise ArchcError(f"cannot load '{p}' as a torch.export program: {_first(exc)}", hint="compile with --target export") from None
    if suffix == ".onnx":
        return OnnxModel(p)
    if suffix == ".pth":
        raise ArchcError(f"'{p}' holds weights, not a model", hint=f"load the generated module beside it: {p.with_suffix('.py')}")
    raise ArchcError(f"cannot load '{p}': unknown artifact suffix '{p.suffix}'", hint="archc loads .py, .pt, .pt2 and .onnx")


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_module(path: Path, kwargs: Mapping[str, Any]) -> Any:
    """Import a generated module from ``path`` and build its model, with the weights beside it."""
    import importlib.util
    import inspect

    from archc.diagnostics import ArchcError

    name = "archc_loaded_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ArchcError(f"cannot import '{path}'")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:  # noqa: BLE001 - whatever the file raises, it is not a working generated module
        raise ArchcError(f"cannot import '{path}': {type(exc).__name__}: {_first(exc)}",
                         hint="load a module written by archc compile") from None
    factory = getattr(mod, "create_model", None)
    if not callable(factory):
        raise ArchcError(f"'{path}' is not a module generated by archc (it has no create_model)",
                         hint="compile one with archc compile SPEC -o PATH")
    pth = path.with_suffix(".pth")
    takes_pretrained = "pretrained" in inspect.signature(factory).parameters
    try:
        if takes_pretrained:
            return factory(pretrained=str(pth) if pth.is_file() else None, **kwargs)
        model = factory(**kwargs)
    except TypeError as exc:
        raise ArchcError(f"'{path}': {_first(exc)}", hint="the arguments are those of the module's create_model") from None
    if pth.is_file():  # a module generated before create_model took pretrained
        from archc.compiler import load_checkpoint

        model.load_state_dict(load_checkpoint(str(pth)), strict=True)
    return model


class OnnxModel:
    """An ONNX artifact run by onnxruntime, called like a module: tensors in, tensors out (on the CPU)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from archc.backends.onnx import have_onnxruntime
        from archc.diagnostics import ArchcError

        if not have_onnxruntime():
            raise ArchcError(f"loading '{path}' needs onnxruntime", hint="pip install 'archc[onnx]' (or onnxruntime)")
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise ArchcError(f"cannot load '{path}' as ONNX: {_first(exc)}", hint="compile with --target onnx") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, *inputs: torch.Tensor) -> Any:
        """Run the model; one output is returned as a tensor, several as a tuple."""
        import torch

        from archc.diagnostics import ArchcError

        if len(inputs) != len(self.input_names):
            n = len(self.input_names)
            raise ArchcError(f"the model takes {n} input{'s' if n != 1 else ''} ({', '.join(self.input_names)}), got {len(inputs)}")
        feed = {n: x.detach().cpu().numpy() for n, x in zip(self.input_names, inputs)}
        outs = [torch.from_numpy(o) for o in self.session.run(self.output_names, feed)]
        return outs[0] if len(outs) == 1 else tuple(outs)
