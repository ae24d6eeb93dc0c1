"""Turn a graphviz ``Digraph`` into the bytes of an output file: dot source, or SVG/PNG drawn by Graphviz."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from archc.diagnostics import ArchcError, first_line

if TYPE_CHECKING:
    import graphviz

__all__ = ["FORMATS", "output_format", "require_graphviz", "render_bytes", "VizError"]

#: output suffix → format; "dot" is the graph source (no Graphviz program needed)
FORMATS: dict[str, str] = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}

_INSTALL = "install Graphviz: apt install graphviz (Debian/Ubuntu) or brew install graphviz (macOS)"


class VizError(ArchcError):
    """A picture cannot be made (an unknown format, Graphviz missing or failing)."""


def output_format(path: Path) -> str:
    """The format of output ``path`` from its suffix; an unknown suffix is refused with the ones there are."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VizError(f"cannot tell the picture format of '{path}' from its suffix '{path.suffix}'",
                       hint="end the output in .svg, .png or .dot (e.g. -o model.svg)")
    return fmt


def require_graphviz(fmt: str) -> None:
    """Fail early, in one line, when the Python package or (for svg/png) the ``dot`` program is missing."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        raise VizError("archc viz needs the Python package 'graphviz': pip install 'archc[viz]'") from None
    if fmt != "dot" and shutil.which("dot") is None:
        raise VizError(f"drawing {fmt.upper()} needs Graphviz's 'dot' program, which is not on PATH: {_INSTALL}; "
                       "or write the graph source with -o FILE.dot")


def render_bytes(dot: graphviz.Digraph, fmt: str) -> bytes:
    """The file contents: the dot source, or the picture Graphviz draws from it."""
    import graphviz

    if fmt == "dot":
        return dot.source.encode()
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise VizError(f"drawing {fmt.upper()} needs Graphviz's 'dot' program, which is not on PATH: {_INSTALL}") from None
    except graphviz.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or exc)
        raise VizError(f"Graphviz failed to draw the picture: {first_line(Exception(err))}",
                       hint="write the graph source with -o FILE.dot to inspect it, or draw fewer levels with --depth") from None
