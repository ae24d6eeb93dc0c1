"""The op declaration protocol and the op registry.

An op is declared once, as one :class:`Op` subclass carrying everything about it side by side:
its attribute schema, arity, shape rule, learnable-parameter shapes, cost rule and PyTorch lowering.
Adding an op touches one file; every op is enumerable through :data:`REGISTRY` and swept by the
contract tests.

Cost conventions (stated once, used everywhere):

* **params** — learnable tensor elements (BatchNorm running statistics are buffers, not params);
* **MACs** — multiply-accumulates of conv, linear and matmul/attention only, per sample (batch 1);
  elementwise ops, norms, activations and pooling count 0 MACs (the fvcore/pycls convention);
* **activations** — output elements of conv, linear and pooling layers (pycls convention).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from archc.ir.types import TensorType

__all__ = [
    "REQUIRED",
    "Attr",
    "Call",
    "Lowering",
    "Op",
    "OpCheckError",
    "REGISTRY",
    "register",
    "get_op",
    "all_ops",
    "pair",
    "dim_int",
    "Helper",
    "HELPERS",
    "helper",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_KINDS = {"int", "float", "bool", "str", "ints", "floats", "any", "pair", "shape"}


class OpCheckError(ValueError):
    """Raised by op rules; the caller attaches the YAML position of the offending node."""

    def __init__(self, message: str, attr: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.attr = attr
        self.hint = hint


@dataclass(frozen=True)
class Attr:
    """One attribute of an op.

    ``kind``: int, float, bool, str, ints (list of int), floats, pair (int or [int, int]), shape
    (list of int), any. ``min`` bounds numbers (and every element of lists); ``choices`` restricts
    values.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    doc: str = ""
    min: float | None = None
    choices: tuple[Any, ...] | None = None
    #: a float attribute may be ±inf (a padding value); NaN is never accepted
    allow_inf: bool = False

    def __post_init__(self) -> None:
        assert self.kind in _KINDS, self.kind

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:
        """Check ``value`` against the kind, returning its canonical form (raise OpCheckError)."""
        k = self.kind
        if k == "any":
            return value
        if k == "int":
            v = _as_int(value, self.name)
            self._bound(v)
            return v
        if k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise OpCheckError(f"attribute '{self.name}' must be a number, got {value!r}", self.name)
            v = float(value)
            self._finite(v)
            self._bound(v)
            return v
        if k == "bool":
            if not isinstance(value, bool):
                raise OpCheckError(f"attribute '{self.name}' must be true or false, got {value!r}", self.name)
            return value
        if k == "str":
            if not isinstance(value, str):
                raise OpCheckError(f"attribute '{self.name}' must be a string, got {value!r}", self.name)
            if self.choices and value not in self.choices:
                choices = ", ".join(repr(c) for c in self.choices)
                raise OpCheckError(f"attribute '{self.name}' must be one of {choices}, got {value!r}", self.name)
            return value
        if k == "pair":
            if isinstance(value, (list, tuple)):
                if len(value) != 2:
                    raise OpCheckError(f"attribute '{self.name}' must be an int or a pair [h, w], got {value!r}", self.name)
                v2 = tuple(_as_int(x, self.name) for x in value)
            else:
                x = _as_int(value, self.name)
                v2 = (x, x)
            for x in v2:
                self._bound(x)
            return v2
        if k in ("ints", "shape"):
            if not isinstance(value, (list, tuple)):
                raise OpCheckError(f"attribute '{self.name}' must be a list of ints, got {value!r}", self.name)
            v3 = tuple(_as_int(x, self.name) for x in value)
            if self.min is not None:
                for x in v3:
                    self._bound(x)
            return v3
        if k == "floats":
            if not isinstance(value, (list, tuple)):
                raise OpCheckError(f"attribute '{self.name}' must be a list of numbers, got {value!r}", self.name)
            v4 = []
            for x in value:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise OpCheckError(f"attribute '{self.name}' must be a list of numbers, got {value!r}", self.name)
                v4.append(float(x))
                self._finite(v4[-1])
            return tuple(v4)
        raise AssertionError(k)

    def _finite(self, v: float) -> None:
        """NaN never; ±inf only where the op declares it (a NaN eps or momentum would compile to a broken module)."""
        if math.isnan(v) or (math.isinf(v) and not self.allow_inf):
            allowed = "a number or ±inf" if self.allow_inf else "a finite number"
            raise OpCheckError(f"attribute '{self.name}' must be {allowed}, got {v!r}", self.name,
                               hint=f"write a finite value for '{self.name}'" + (f" (default {self.default!r})" if self.default not in (None, REQUIRED) else ""))

    def _bound(self, v: float) -> None:
        if self.min is not None and v < self.min:
            raise OpCheckError(f"attribute '{self.name}' must be >= {self.min:g}, got {v!r}", self.name)
        if self.choices and v not in self.choices:
            raise OpCheckError(f"attribute '{self.name}' must be one of {list(self.choices)}, got {v!r}", self.name)


#: the largest integer an attribute may hold: PyTorch reads sizes, strides and paddings as 64-bit integers and
#: indexes dimensions with 32-bit ones
MAX_INT_ATTR = 2**31 - 1


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ATTR:
        raise OpCheckError(f"attribute '{name}' is {value:,}, beyond ±{MAX_INT_ATTR:,}" if abs(value) < 10**30
                           else f"attribute '{name}' is a {len(str(abs(value)))}-digit number, beyond ±{MAX_INT_ATTR:,}",
                           name, hint="use a realistic size")
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            raise OpCheckError(
                f"attribute '{name}' must be an integer, got the float {value!r}", name,
                hint="use integer division '//' or int(...) in the expression",
            )
        raise OpCheckError(f"attribute '{name}' must be an integer, got {value!r}", name)
    return value


def pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (dim_int(v[0]), dim_int(v[1]))


def dim_int(v: Any) -> int:
    """``v`` as an int; an int (or int subclass, such as a traced size in code generation) is returned as is."""
    return v if isinstance(v, int) else int(v)


@dataclass(frozen=True)
class Call:
    """A constructor call in generated code: ``fn(*args, **kwargs)``; values may nest Calls."""

    fn: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: keyword values that need not be written (rendering omits a kwarg equal to its default)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: names of the positional parameters (used to name constructor arguments in generated code)
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lowering:
    """How one node becomes PyTorch source.

    ``module`` is what ``__init__`` assigns to ``self.<id>`` (a :class:`Call`), or None for
    functional ops. ``forward`` is a template: ``{m}`` is ``self.<id>``, ``{0}``, ``{1}``... are
    the inputs and ``{name}`` refers to ``values[name]`` (constants inlined, per-instance values
    become attributes). ``helpers`` name shared helper definitions the source needs.
    """

    module: Call | None
    forward: str
    values: Mapping[str, Any] = field(default_factory=dict)
    helpers: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


class Op:
    """Base of every op declaration. Subclasses set the class attributes and override rules."""

    name: ClassVar[str]
    doc: ClassVar[str] = ""
    attrs: ClassVar[tuple[Attr, ...]] = ()
    arity: ClassVar[tuple[int, int | None]] = (1, 1)
    #: pycls counts activations of conv, linear and pool layers only
    counts_activations: ClassVar[bool] = False
    #: eval-mode identity (dropout, drop-path): removable at deploy time
    train_only: ClassVar[bool] = False
    #: compute the MAC convention leaves out (e.g. an FFT); cost reports list such ops instead of a silent 0
    uncounted: ClassVar[str] = ""
    #: input positions that may be bool or int64 (an index, a condition, a mask); None: every input (layout ops,
    #: comparisons); every other input must be floating point
    nonfloat_inputs: ClassVar[tuple[int, ...] | None] = ()

    # -- schema -----------------------------------------------------------------------------
    def attr_map(self) -> dict[str, Attr]:
        return {a.name: a for a in self.attrs}

    def bind(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate attribute values and fill defaults (raises OpCheckError)."""
        amap = self.attr_map()
        out: dict[str, Any] = {}
        for key in raw:
            if key not in amap:
                from archc.spec.suggestions import attr_hint

                hint = attr_hint(key, self.name, amap) or (f"'{self.name}' takes: {', '.join(amap)}" if amap
                                                           else f"'{self.name}' takes no attributes")
                raise OpCheckError(f"unknown attribute '{key}' for op '{self.name}'", key, hint)
        for a in self.attrs:
            if a.name in raw and raw[a.name] is not None:
                out[a.name] = a.coerce(raw[a.name])
            elif a.required:
                raise OpCheckError(f"op '{self.name}' needs attribute '{a.name}'", None, f"add '{a.name}: ...' ({a.doc or a.kind})")
            else:
                out[a.name] = a.coerce(a.default) if a.default is not None else None
        self.check(out)
        return out

    def check(self, a: dict[str, Any]) -> None:
        """Cross-attribute checks; raise OpCheckError."""

    # -- rules --------------------------------------------------------------------------------
    def num_outputs(self, a: Mapping[str, Any]) -> int:
        return 1

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        """Output types from input types; raise OpCheckError on a mismatch."""
        raise NotImplementedError(self.name)

    def params(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        """Learnable tensors by state_dict suffix ('weight', 'bias', ...)."""
        return {}

    def buffers(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> dict[str, tuple[int, ...]]:
        """Non-learnable tensors by attribute suffix (BN running statistics; tables built in ``__init__``)."""
        return {}

    def macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        """Multiply-accumulates per sample (batch 1)."""
        return 0

    def uncounted_macs(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> int:
        """Estimated MACs per sample of the compute named by ``uncounted`` (0: no estimate).

        Reported beside the MAC total, never added to it, so the total keeps its convention.
        """
        return 0

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        raise NotImplementedError(self.name)


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator adding an op to :data:`REGISTRY`; a duplicate name is a loud error."""
    name = cls.name
    if name in REGISTRY:
        raise RuntimeError(f"op '{name}' registered twice ({type(REGISTRY[name]).__name__} and {cls.__name__})")
    REGISTRY[name] = cls()
    return cls


def get_op(name: str) -> Op | None:
    return REGISTRY.get(name)


def all_ops() -> list[Op]:
    """Every registered op, sorted by name."""
    return [REGISTRY[k] for k in sorted(REGISTRY)]


@dataclass(frozen=True)
class Helper:
    """A module-level definition emitted once into generated files that need it."""

    name: str
    source: str
    needs: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()


HELPERS: dict[str, Helper] = {}


def helper(name: str, source: str, needs: tuple[str, ...] = (), imports: tuple[str, ...] = ()) -> None:
    """Register the source of a helper class or function used by op lowerings."""
    if name in HELPERS:
        raise RuntimeError(f"helper '{name}' registered twice")
    HELPERS[name] = Helper(name, source.strip("\n") + "\n", needs, imports)
