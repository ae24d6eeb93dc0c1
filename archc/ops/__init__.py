"""The op library. Importing this package registers every op."""

from archc.ops import activation, conv, elementwise, norm  # noqa: F401  (registration)
from archc.ops.base import HELPERS, REGISTRY, Attr, Call, Lowering, Op, OpCheckError, all_ops, get_op, register

__all__ = ["REGISTRY", "HELPERS", "Attr", "Call", "Lowering", "Op", "OpCheckError", "all_ops", "get_op", "register"]
