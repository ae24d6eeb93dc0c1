"""Shape and layout ops: concat, split, chunk, reshape, permute, flatten, transpose, mean, amax, pad.

Axis attributes follow PyTorch (negative values count from the end) but may never name the batch
axis 0: every op here keeps the batch dim in place, so per-sample shapes compose. None of these
ops has parameters or MACs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.types import Dim, TensorType
from archc.ops.base import Attr, Lowering, Op, OpCheckError, dim_int, register

__all__ = ["axis", "Concat", "Split", "Chunk", "Reshape", "Permute", "Flatten", "Transpose", "Mean", "Amax", "Pad"]


def axis(op: str, attr: str, d: int, rank: int, allow_batch: bool = False) -> int:
    """Normalize axis ``d`` of a rank-``rank`` tensor to 0..rank−1; reject the batch axis 0."""
    if not -rank <= d < rank:
        raise OpCheckError(f"'{op}': {attr}={d} is out of range for a rank-{rank} input (valid {-rank}..{rank - 1})", attr)
    n = d % rank
    if n == 0 and not allow_batch:
        raise OpCheckError(
            f"'{op}': {attr}={d} names the batch axis 0, which this op must keep in place", attr,
            hint=f"use an axis in 1..{rank - 1} (or {-rank + 1}..-1)",
        )
    return n


def _prod(dims: Sequence[Dim]) -> int:
    n = 1
    for d in dims:
        n *= dim_int(d)
    return n


class Concat(Op):
    """y = cat(x₀, x₁, …) along ``dim``; all other dims must be equal."""

    name = "concat"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Concatenate ≥1 inputs along a non-batch axis (default channels)."
    arity = (1, None)
    attrs = (Attr("dim", "int", 1, "axis to concatenate along (not 0)"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x0 = ins[0]
        d = axis(self.name, "dim", a["dim"], x0.rank)
        total = 0
        for i, x in enumerate(ins):
            if x.rank != x0.rank or x.dtype != x0.dtype:
                raise OpCheckError(f"'concat' inputs must share rank and dtype: input 0 is {x0}, input {i} is {x}")
            for j in range(x0.rank):
                if j != d and x.shape[j] != x0.shape[j]:
                    raise OpCheckError(
                        f"'concat' along dim {d}: inputs must match on every other axis, but axis {j} of input {i} "
                        f"is {x.shape[j]} vs {x0.shape[j]} ({x} vs {x0})", "dim",
                    )
            total += dim_int(x.shape[d])
        shape = list(x0.shape)
        shape[d] = total
        return [x0.with_shape(tuple(shape))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        args = ", ".join(f"{{{i}}}" for i in range(len(ins)))
        return Lowering(None, f"torch.cat([{args}], {{dim}})", {"dim": a["dim"]})


class Split(Op):
    """(y₀, y₁, …) = split(x, sizes, dim): consecutive slices of the given sizes, which must sum to the axis."""

    name = "split"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Split along a non-batch axis into slices of the given sizes (one output per size)."
    attrs = (Attr("sizes", "ints", doc="slice sizes, summing to the axis length", min=1), Attr("dim", "int", 1))

    def check(self, a: dict[str, Any]) -> None:
        if not a["sizes"]:
            raise OpCheckError("'split' needs at least one size", "sizes")

    def num_outputs(self, a: Mapping[str, Any]) -> int:
        return len(a["sizes"])

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        d = axis(self.name, "dim", a["dim"], x.rank)
        n = dim_int(x.shape[d])
        if sum(a["sizes"]) != n:
            raise OpCheckError(
                f"'split' sizes {list(a['sizes'])} sum to {sum(a['sizes'])}, but axis {d} of {x} has length {n}", "sizes"
            )
        outs = []
        for s in a["sizes"]:
            shape = list(x.shape)
            shape[d] = s
            outs.append(x.with_shape(tuple(shape)))
        return outs

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if len(a["sizes"]) == 1:
            return Lowering(None, "{0}")
        return Lowering(None, "torch.split({0}, {sizes}, {dim})", {"sizes": list(a["sizes"]), "dim": a["dim"]})


class Chunk(Op):
    """(y₀, …, y_{n−1}) = chunk(x, n, dim): n equal slices; the axis length must be divisible by n."""

    name = "chunk"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Split along a non-batch axis into n equal chunks (one output per chunk)."
    attrs = (Attr("chunks", "int", doc="number of equal chunks", min=1), Attr("dim", "int", 1))

    def num_outputs(self, a: Mapping[str, Any]) -> int:
        return a["chunks"]

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        d = axis(self.name, "dim", a["dim"], x.rank)
        n, c = dim_int(x.shape[d]), a["chunks"]
        if n % c:
            raise OpCheckError(
                f"'chunk' needs the axis length divisible by chunks: axis {d} of {x} has length {n}, chunks={c}",
                "chunks", hint="use 'split' with explicit sizes for uneven pieces",
            )
        shape = list(x.shape)
        shape[d] = n // c
        return [x.with_shape(tuple(shape))] * c

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        if a["chunks"] == 1:
            return Lowering(None, "{0}")
        return Lowering(None, "torch.chunk({0}, {chunks}, {dim})", {"chunks": a["chunks"], "dim": a["dim"]})


class Reshape(Op):
    """y = x.reshape(B, *shape): ``shape`` lists the non-batch dims; at most one may be −1 (inferred)."""

    name = "reshape"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Reshape the non-batch dims (the batch axis is always kept); one entry may be -1."
    attrs = (Attr("shape", "shape", doc="the new non-batch dims, e.g. [64, -1]"),)

    def check(self, a: dict[str, Any]) -> None:
        shape = a["shape"]
        if sum(1 for s in shape if s == -1) > 1:
            raise OpCheckError(f"'reshape' shape {list(shape)} has more than one -1", "shape")
        for s in shape:
            if s != -1 and s < 1:
                raise OpCheckError(
                    f"'reshape' shape entries must be >= 1 or a single -1, got {list(shape)}", "shape",
                    hint="list only the non-batch dims; the batch axis is kept automatically",
                )

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 1:
            raise OpCheckError(f"'reshape' needs an input with a batch axis, got {x}")
        n = _prod(x.shape[1:])
        shape = list(a["shape"])
        known = _prod([s for s in shape if s != -1])
        if -1 in shape:
            if n % known:
                raise OpCheckError(
                    f"'reshape' cannot infer -1 in {list(a['shape'])}: {n} elements per sample of {x} "
                    f"are not divisible by {known}", "shape",
                )
            shape[shape.index(-1)] = n // known
        elif known != n:
            raise OpCheckError(
                f"'reshape' shape {list(a['shape'])} holds {known} elements per sample, but {x} has {n}", "shape"
            )
        return [x.with_shape((x.shape[0], *shape))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        # the spec's own shape, -1 included: PyTorch infers that entry exactly as infer() did, for any input
        # (a size traced by code generation counts as -1 only when it is the literal -1, whatever its value)
        infer = any(d == -1 if type(d) is int else getattr(d, "expr", None) == "-1" for d in a["shape"])
        shape = list(a["shape"]) if infer else [dim_int(d) for d in outs[0].shape[1:]]
        if not shape:  # an empty list literal would script as List[Tensor]
            return Lowering(None, "{0}.reshape([{0}.shape[0]])")
        return Lowering(None, "{0}.reshape([{0}.shape[0]] + {shape})", {"shape": shape})


class Permute(Op):
    """y = x.permute(dims): a full permutation of the axes with dims[0] = 0 (batch stays first)."""

    name = "permute"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Permute axes; a full permutation that keeps the batch axis 0 first."
    attrs = (Attr("dims", "ints", doc="full permutation, e.g. [0, 2, 3, 1]"),)

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        dims = list(a["dims"])
        if len(dims) != x.rank:
            raise OpCheckError(f"'permute' dims {dims} must list all {x.rank} axes of {x}", "dims")
        norm = [axis(self.name, "dims", d, x.rank, allow_batch=True) for d in dims]
        if sorted(norm) != list(range(x.rank)):
            raise OpCheckError(f"'permute' dims {dims} is not a permutation of 0..{x.rank - 1}", "dims")
        if norm[0] != 0:
            raise OpCheckError(f"'permute' dims {dims} must start with 0: the batch axis stays first", "dims")
        return [x.with_shape(tuple(x.shape[d] for d in norm))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "{0}.permute({dims})", {"dims": list(a["dims"])})


class Flatten(Op):
    """y = flatten(x, start, end): merges axes start..end (inclusive) into one; start >= 1."""

    name = "flatten"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Merge the axes start..end (inclusive) into one; start defaults to 1, end to -1."
    attrs = (Attr("start", "int", 1, "first axis to merge (not 0)"), Attr("end", "int", -1, "last axis to merge"))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        if x.rank < 2:
            raise OpCheckError(f"'flatten' needs a rank >= 2 input, got {x}")
        s = axis(self.name, "start", a["start"], x.rank)
        e = axis(self.name, "end", a["end"], x.rank)
        if s > e:
            raise OpCheckError(f"'flatten' start ({a['start']} -> axis {s}) is after end ({a['end']} -> axis {e})", "start")
        shape = (*x.shape[:s], _prod(x.shape[s : e + 1]), *x.shape[e + 1 :])
        return [x.with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "torch.flatten({0}, {start}, {end})", {"start": a["start"], "end": a["end"]})


class Transpose(Op):
    """y = x.transpose(dim0, dim1): swaps two non-batch axes."""

    name = "transpose"
    nonfloat_inputs = None  # moves elements of any dtype
    doc = "Swap two non-batch axes."
    attrs = (Attr("dim0", "int"), Attr("dim1", "int"))

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        d0 = axis(self.name, "dim0", a["dim0"], x.rank)
        d1 = axis(self.name, "dim1", a["dim1"], x.rank)
        shape = list(x.shape)
        shape[d0], shape[d1] = shape[d1], shape[d0]
        return [x.with_shape(tuple(shape))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "{0}.transpose({dim0}, {dim1})", {"dim0": a["dim0"], "dim1": a["dim1"]})


class Mean(Op):
    """y = mean of x over ``dims`` (non-batch); reduced axes are kept as size 1 iff keepdim."""

    name = "mean"
    doc = "Mean over non-batch axes, e.g. dims [1] for a channel mean (keepdim default true)."
    method = "mean"
    attrs = (Attr("dims", "ints", doc="axes to reduce (not 0)"), Attr("keepdim", "bool", True))

    def check(self, a: dict[str, Any]) -> None:
        if not a["dims"]:
            raise OpCheckError(f"'{self.name}' needs at least one axis in 'dims'", "dims")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        dims = {axis(self.name, "dims", d, x.rank) for d in a["dims"]}
        if len(dims) != len(a["dims"]):
            raise OpCheckError(f"'{self.name}' dims {list(a['dims'])} name an axis twice (rank {x.rank})", "dims")
        if a["keepdim"]:
            shape = tuple(1 if i in dims else s for i, s in enumerate(x.shape))
        else:
            shape = tuple(s for i, s in enumerate(x.shape) if i not in dims)
        return [x.with_shape(shape)]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, f"{{0}}.{self.method}({{dims}}, keepdim={{keepdim}})",
                        {"dims": list(a["dims"]), "keepdim": a["keepdim"]})


class Amax(Mean):
    """y = max of x over ``dims`` (non-batch); reduced axes are kept as size 1 iff keepdim."""

    name = "amax"
    doc = "Max over non-batch axes, e.g. dims [1] for a channel max (keepdim default true)."
    method = "amax"


class Pad(Op):
    """y = F.pad(x, pads, value=value): pads = [left_last, right_last, left_2nd_last, ...]; negatives crop."""

    name = "pad"
    doc = "Constant padding as F.pad: pairs (before, after) from the last axis backwards; never the batch axis."
    attrs = (Attr("pads", "ints", doc="(before, after) pairs, last axis first"), Attr("value", "float", 0.0, allow_inf=True))

    def check(self, a: dict[str, Any]) -> None:
        if not a["pads"] or len(a["pads"]) % 2:
            raise OpCheckError(f"'pad' pads must be a non-empty even-length list of (before, after) pairs, got {list(a['pads'])}",
                               "pads")

    def infer(self, a: Mapping[str, Any], ins: Sequence[TensorType]) -> list[TensorType]:
        x = ins[0]
        pads = a["pads"]
        k = len(pads) // 2
        if k > x.rank - 1:
            raise OpCheckError(
                f"'pad' pads {list(pads)} cover {k} axes, but {x} has only {x.rank - 1} non-batch axes", "pads"
            )
        shape = list(x.shape)
        for i in range(k):
            ax = x.rank - 1 - i
            n = dim_int(shape[ax]) + pads[2 * i] + pads[2 * i + 1]
            if n < 1:
                raise OpCheckError(f"'pad' pads {list(pads)} leave axis {ax} of {x} with length {n}", "pads")
            shape[ax] = n
        return [x.with_shape(tuple(shape))]

    def lower(self, a: Mapping[str, Any], ins: Sequence[TensorType], outs: Sequence[TensorType]) -> Lowering:
        return Lowering(None, "F.pad({0}, {pads}, value={value})", {"pads": list(a["pads"]), "value": a["value"]})


for _cls in (Concat, Split, Chunk, Reshape, Permute, Flatten, Transpose, Mean, Amax, Pad):
    register(_cls)
