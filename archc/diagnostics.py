"""Source positions and typed, user-facing errors.

Every error a user can cause carries a :class:`SourceLoc` pointing into their YAML, and renders as::

    specs/x.yaml:42:7: error: unknown op 'conv2' (rule: ops must be registered)
       42 |   - stem: {op: conv2, out: 48}
          |            ^
      help: did you mean 'conv2d'?

A failure that concerns a whole file rather than a position in it (a missing spec, a command-line
override) is located at line 0, which renders as just ``path: error: ...``.

The CLI prints :meth:`ArchcError.render` and exits 1; nothing else ever reaches the user as a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SourceLoc",
    "ArchcError",
    "SpecError",
    "ExprError",
    "ShapeError",
    "PassError",
    "CheckpointError",
    "SearchSpaceError",
    "suggest",
]


@dataclass(frozen=True, slots=True)
class SourceLoc:
    """A 1-based position in a source file; ``line`` 0 means the file as a whole."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        if self.line < 1:
            return self.path
        return f"{self.path}:{self.line}:{self.col}"


class ArchcError(Exception):
    """Base of every error archc reports to a user.

    ``message`` states the broken rule and the offending value; ``hint`` proposes a fix.
    """

    kind = "error"

    def __init__(self, message: str, loc: SourceLoc | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint

    def with_loc(self, loc: SourceLoc | None) -> ArchcError:
        """Return the same error located at ``loc`` unless it already has a position."""
        if self.loc is None and loc is not None:
            self.loc = loc
        return self

    def headline(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        return f"{where}error: {self.message}"

    def render(self) -> str:
        """The full diagnostic: headline, source line with caret, and hint."""
        lines = [self.headline()]
        if self.loc is not None and self.loc.line >= 1:
            src = _source_line(self.loc)
            if src is not None:
                num = str(self.loc.line)
                pad = " " * len(num)
                # keep tabs so the caret lines up under the column however tabs are displayed
                width = max(self.loc.col - 1, 0)
                indent = "".join("\t" if c == "\t" else " " for c in src[:width]).ljust(width)
                lines.append(f" {num} | {src}")
                lines.append(f" {pad} | {indent}^")
        if self.hint:
            lines.append(f"  help: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.headline() + (f" (help: {self.hint})" if self.hint else "")


class SpecError(ArchcError):
    """A spec violates the spec language (syntax, schema, names, references)."""


class ExprError(SpecError):
    """An expression inside a spec is malformed or uses something outside the whitelist."""


class ShapeError(SpecError):
    """Shapes or dtypes of connected nodes do not fit."""


class PassError(ArchcError):
    """A pass failed or broke numerical equivalence."""


class CheckpointError(ArchcError):
    """A weights file does not fit the compiled model."""


class SearchSpaceError(SpecError):
    """A search space file is malformed."""


_SOURCE_CACHE: dict[str, list[str]] = {}


def register_source(path: str, text: str) -> None:
    """Remember the text of ``path`` so diagnostics can quote it even for in-memory specs."""
    _SOURCE_CACHE[path] = text.splitlines()


def _source_line(loc: SourceLoc) -> str | None:
    lines = _SOURCE_CACHE.get(loc.path)
    if lines is None:
        try:
            lines = Path(loc.path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        _SOURCE_CACHE[loc.path] = lines
    if 1 <= loc.line <= len(lines):
        return lines[loc.line - 1]
    if loc.line == len(lines) + 1:  # the end of the file (an empty file, an unexpected end of input)
        return ""
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (third-party errors can run to pages), or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def suggest(name: object, candidates: Iterable[object]) -> str | None:
    """A ``did you mean 'x'?`` hint for a misspelt name, or None (names from YAML may be any scalar)."""
    close = difflib.get_close_matches(str(name), sorted({str(c) for c in candidates}), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
