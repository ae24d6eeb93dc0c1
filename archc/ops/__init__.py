"""The op library. Importing this package registers every op."""

from archc.ops import (  # noqa: F401  (registration)
    activation,
    aggregated,
    attention,
    constants,
    conv,
    conv_transpose,
    deform,
    dynamic,
    elementwise,
    fft,
    indexing,
    levels,
    levit_bias,
    linear,
    misc,
    norm,
    param,
    pointwise,
    pool,
    resize,
    shape,
    ska,
    spatial,
)
from archc.ops.base import HELPERS, REGISTRY, Attr, Call, Lowering, Op, OpCheckError, all_ops, get_op, register

__all__ = ["REGISTRY", "HELPERS", "Attr", "Call", "Lowering", "Op", "OpCheckError", "all_ops", "get_op", "register"]
