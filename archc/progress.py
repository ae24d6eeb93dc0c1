"""Stage timings and progress on stderr: what a long command is doing, without filling logs.

:class:`Progress` times the named stages of one command (``load``, ``expand``, ``passes``,
``codegen``, ``lower``, ``verify``, ``write`` …) and reports them on one line::

    [archc] compile: load 0.0s · expand 0.1s · passes 0.4s · codegen 0.1s · lower 2.3s

* When the stream is a terminal the line is redrawn in place as each stage starts and ends (the
  running stage is shown with ``…``); a command that ends within :attr:`Progress.quiet_below`
  seconds erases it again, one that fails erases it before the error is printed.
* Otherwise (a log file, a pipe, a test's captured stderr) no carriage return is ever written: once
  the command has run ``quiet_below`` seconds, each stage that finishes prints the line so far as a
  new line, so a 20 s build shows its stages while it runs and a quick one prints nothing.

The reporter is an explicit object passed with the options of a command (``CompileOptions.progress``),
never global state; :data:`QUIET` is the silent default. :func:`progress_bar` is the counterpart for
loops with a known length (search trials): a tqdm bar on a terminal, periodic plain lines elsewhere.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

__all__ = ["Progress", "QUIET", "is_terminal", "progress_bar", "LineBar"]

_CLEAR = "\r\x1b[K"
#: a stage superseded within this many seconds of its start did no work and is not reported
_INSTANT = 1e-3


def is_terminal(stream: Any) -> bool:
    """True when ``stream`` is an interactive terminal (where redrawing a line in place is welcome)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """Times the stages of one command and reports them on ``stream`` (stderr by default).

    >>> import io
    >>> ticks = iter([0.0, 0.5, 2.5])
    >>> out = io.StringIO()
    >>> p = Progress("compile", stream=out, clock=lambda: next(ticks), tty=False, quiet_below=0)
    >>> p.begin("passes"); p.begin("lower"); p.finish()
    >>> print(out.getvalue(), end="")
    [archc] compile: passes 0.5s
    [archc] compile: passes 0.5s · lower 2.0s · total 2.5s
    """

    #: a command that finishes sooner than this (seconds) prints nothing
    quiet_below: float = 1.0

    def __init__(self, command: str, stream: TextIO | None = None, clock: Callable[[], float] = time.perf_counter,
                 enabled: bool = True, tty: bool | None = None, quiet_below: float | None = None) -> None:
        self.command = command
        self.enabled = enabled
        self._stream = stream
        self._clock = clock
        self._tty = tty
        if quiet_below is not None:
            self.quiet_below = quiet_below
        #: finished stages as (name, seconds), in order
        self.stages: list[tuple[str, float]] = []
        self._current: tuple[str, float] | None = None
        self._start: float | None = None
        self._drawn = False  # a live line is on the terminal
        self._printed = False  # a line went to a non-terminal stream

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        return self._tty if self._tty is not None else is_terminal(self.stream)

    def begin(self, name: str) -> None:
        """End the running stage (if any) and start stage ``name``."""
        if not self.enabled:
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        if self._current is not None and now - self._current[1] < _INSTANT:
            self._current = None  # a stage that did nothing before the next began (a target without that step)
        self._close(now)
        self._current = (name, now)
        if self.tty:
            self._draw(running=name)

    def end(self) -> None:
        """End the running stage."""
        if not self.enabled or self._current is None:
            return
        self._close(self._clock())

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """``with progress.stage("passes"): ...`` — the block is one stage; a failure erases the live line."""
        self.begin(name)
        try:
            yield
        except BaseException:
            self.abort()
            raise
        self.end()

    def finish(self) -> None:
        """End the command: the final line with the total (nothing when it was quick or had no stages)."""
        if not self.enabled or self._start is None:
            return
        now = self._clock()
        self._close(now, report=False)
        total = now - self._start
        if total < self.quiet_below:
            self._erase()
        else:
            self._write(self._line() + f" · total {total:.1f}s", final=True)
        self._start = None

    def abort(self) -> None:
        """The command failed: erase the live line so the error starts on a clean line."""
        if not self.enabled:
            return
        self._current = None
        self._erase()

    # -- drawing ---------------------------------------------------------------------------------

    def _close(self, now: float, report: bool = True) -> None:
        if self._current is None:
            return
        name, t0 = self._current
        self._current = None
        self.stages.append((name, now - t0))
        if report and self._start is not None and (self.tty or now - self._start >= self.quiet_below):
            self._write(self._line())

    def _line(self, running: str | None = None) -> str:
        parts = [f"{n} {s:.1f}s" for n, s in self.stages]
        if running is not None:
            parts.append(f"{running} …")
        return f"[archc] {self.command}: " + " · ".join(parts)

    def _draw(self, running: str) -> None:
        self._write(self._line(running))

    def _write(self, line: str, final: bool = False) -> None:
        try:
            if self.tty:
                if not final:
                    line = self._fit(line)
                self.stream.write(_CLEAR + line + ("\n" if final else ""))
                self._drawn = not final
            else:
                self.stream.write(line + "\n")
                self._printed = True
            self.stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: progress is never worth a failure
            self.enabled = False

    def _fit(self, line: str) -> str:
        """The live line cut to the terminal's width (a wrapped line cannot be redrawn in place): the latest stages."""
        import shutil

        width = shutil.get_terminal_size().columns - 1
        if len(line) <= width:
            return line
        head = f"[archc] {self.command}: …"
        return head + line[len(line) - max(width - len(head), 0):]

    def _erase(self) -> None:
        if self._drawn:
            try:
                self.stream.write(_CLEAR)
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._drawn = False


#: the silent reporter (the default of every API call; the CLI passes a real one)
QUIET = Progress("", enabled=False)


class LineBar:
    """The plain-text stand-in of a tqdm bar for logs: one line every ``interval`` seconds, and at the end.

    It has the small part of tqdm's interface the search loops use (``n``, ``set_postfix_str``,
    ``refresh``, ``update``, ``close``) and never writes a carriage return.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 interval: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.n = initial
        self.desc = desc
        self.unit = unit
        self.interval = interval
        self._stream = stream
        self._clock = clock
        self._postfix = ""
        self._t0 = clock()
        self._last_time: float | None = None
        self._last_shown: tuple[int, str] | None = (initial, "")

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self._postfix = text

    def update(self, k: int = 1) -> None:
        self.n += k
        self.refresh()

    def refresh(self) -> None:
        """Print the state when it changed and ``interval`` seconds passed since the last line."""
        now = self._clock()
        if (self.n, self._postfix) == self._last_shown:
            return
        if self._last_time is not None and now - self._last_time < self.interval:
            return
        self._print(now)

    def close(self) -> None:
        """Print the final state unless the last line already showed it."""
        if (self.n, self._postfix) != self._last_shown:
            self._print(self._clock())

    def _print(self, now: float) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        units = self.unit if self.unit.endswith("s") else self.unit + "s"
        line = f"[archc] {self.desc}: {self.n}/{self.total} {units} ({now - self._t0:.0f}s)"
        if self._postfix:
            line += f" {self._postfix}"
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass
        self._last_time = now
        self._last_shown = (self.n, self._postfix)


def progress_bar(total: int, initial: int = 0, desc: str = "", unit: str = "it", stream: TextIO | None = None,
                 interval: float = 30.0) -> Any:
    """A tqdm bar when ``stream`` (stderr) is a terminal and tqdm is installed, else a :class:`LineBar`.

    Logs of a long search so get one plain line per ``interval`` seconds instead of thousands of
    carriage-return redraws.
    """
    stream = stream if stream is not None else sys.stderr
    if is_terminal(stream):
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, initial=initial, desc=f"archc {desc}", unit=unit, file=stream, dynamic_ncols=True,
                        leave=True)
    return LineBar(total, initial, desc, unit, stream, interval)
