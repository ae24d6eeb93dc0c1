"""The bundled spec library, importable from any spec as ``archc:<path>``.

``imports: [archc:lib/common.yaml]`` names a file of the specs folder shipped with archc (inside the
installed package as ``archc/specs``, or the repository's ``specs/`` in a source checkout), so a spec
written anywhere can use the shared blocks without copying them. The path after ``archc:`` is
relative to that folder and must stay inside it (``archc:../x.yaml`` and absolute paths are
refused), and the bundled files' own relative imports are confined to it the same way.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import archc
from archc.diagnostics import SourceLoc, SpecError

__all__ = ["PREFIX", "bundled_root", "is_bundled", "resolve_bundled"]

#: the scheme of an import that names a file of the bundled library
PREFIX = "archc:"


def bundled_root() -> Path | None:
    """The folder of the bundled specs: ``archc/specs`` when installed, ``specs/`` beside the package in a checkout."""
    here = Path(archc.__file__).resolve().parent
    for cand in (here / "specs", here.parent / "specs"):
        if (cand / "lib").is_dir():
            return cand
    return None


def is_bundled(ref: str) -> bool:
    """Whether an import entry names the bundled library."""
    return ref.startswith(PREFIX)


def resolve_bundled(ref: str, loc: SourceLoc) -> tuple[Path, Path]:
    """(the file, the bundled root) for ``archc:<path>``; a path leaving the library is an error at ``loc``."""
    rel = ref[len(PREFIX):]
    root = bundled_root()
    if root is None:
        raise SpecError(f"import '{ref}': the bundled spec library is not installed", loc,
                        hint="reinstall archc (the wheel ships archc/specs), or import the file by a relative path")
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel or ":" in rel:
        raise SpecError(f"import '{ref}' must name a file inside the bundled library, as a relative path without '..'",
                        loc, hint="e.g. 'archc:lib/common.yaml'")
    target = (root / rel).resolve()
    try:
        target.relative_to(root.resolve())
    except ValueError:  # a symlink inside the library that points out of it
        raise SpecError(f"import '{ref}' resolves outside the bundled library ({root})", loc) from None
    if not target.is_file():
        shipped = sorted(p.relative_to(root).as_posix() for p in (root / "lib").glob("*.y*ml"))
        raise SpecError(f"the bundled library has no file '{rel}'", loc,
                        hint=f"bundled libraries: {', '.join('archc:' + s for s in shipped)}" if shipped else None)
    return target, root
