"""Tensor types of the IR: a shape whose first dimension may be the symbolic batch ``B``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Dim", "TensorType", "BATCH", "numel"]

Dim = Union[int, str]
BATCH = "B"

_DTYPE_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "int64": "i64"}


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape and dtype of one value flowing along an edge."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    @property
    def rank(self) -> int:
        return len(self.shape)

    def concrete(self, batch: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dims bound to ``batch``."""
        return tuple(batch if isinstance(d, str) else d for d in self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        dims = ",".join(str(d) for d in self.shape)
        return f"{_DTYPE_SHORT.get(self.dtype, self.dtype)}[{dims}]"


def numel(t: TensorType, batch: int = 1) -> int:
    """Element count with the batch bound to ``batch``."""
    n = 1
    for d in t.concrete(batch):
        n *= d
    return n
