"""The errors training reports: user errors (:class:`TrainError`) and a diverged run (:class:`NonFiniteError`)."""

from __future__ import annotations

from archc.diagnostics import ArchcError

__all__ = ["TrainError", "NonFiniteError"]


class TrainError(ArchcError):
    """A training run cannot start or continue: bad data, an unknown device, a model that does not fit the task."""


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss."""
