"""Writing outputs safely: plain file stems from user-given names, no output over an input, atomic writes.

Every file archc writes goes through :func:`temp_beside` (a temporary file in the target folder,
renamed into place), so a killed write never leaves half a file. The temporary file's name carries
the writer's process id; the next write to the same path removes temporaries whose writer is gone
(a kill during a 100 MB checkpoint write used to leave it forever). Files get the permissions the
umask allows, like any file a shell command creates (``mkstemp`` alone makes them 0600).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from archc.diagnostics import ArchcError

__all__ = ["safe_stem", "check_distinct", "temp_beside", "publish", "remove_stale_temps"]

_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp\Z")


def safe_stem(name: str, fallback: str = "model") -> str:
    """``name`` as a plain file stem: no folders, no leading dot, only ``[A-Za-z0-9_.-]``.

    A spec or search space names its default outputs; ``name: "../../x"`` must not write outside
    the working folder, nor ``name: ".bashrc"`` a hidden file.

    >>> safe_stem("../../../x"), safe_stem("resnet-50 (a)"), safe_stem("...")
    ('x', 'resnet-50__a_', 'model')
    """
    base = re.split(r"[/\\]", name)[-1]
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", base).lstrip(".")
    clean = clean[:120]
    return clean or fallback


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_distinct(outputs: Iterable[Path], inputs: Iterable[Path | str | None], what: str = "output") -> None:
    """Refuse an output that is one of the inputs (spec, imported spec, checkpoint): it would be overwritten."""
    ins = [Path(p) for p in inputs if p]
    for out in outputs:
        for inp in ins:
            if _same_file(Path(out), inp):
                raise ArchcError(f"the {what} '{out}' is an input of this command ('{inp}'); writing it would destroy it",
                                 hint="choose another output name with -o")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temporaries of earlier writes to ``path`` whose writing process no longer exists."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            m = _TEMP.match(entry.name)
            if m and m.group("name") == path.name and not _alive(int(m.group("pid"))):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def temp_beside(path: Path) -> tuple[int, str]:
    """An open temporary file in ``path``'s folder (stale ones of killed writes removed first)."""
    remove_stale_temps(path)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")


def publish(tmp: str, path: Path) -> None:
    """Give ``tmp`` the permissions the umask allows and rename it to ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
