r"""Live progress of a followed export or batch: a bar on a terminal, plain lines elsewhere.

On a terminal the bar is redrawn in place (``\r``); anywhere else one line is written each time
something worth reading changes, with no control characters, so that logs and pipes stay clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 30
"""Characters of a bar."""


def clock_text(seconds: float) -> str:
    """Return ``m:ss`` (or ``h:mm:ss``) of a duration.

    Examples
    --------
    >>> clock_text(75.4), clock_text(3725)
    ('1:15', '1:02:05')
    """
    whole = max(int(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(fraction: float) -> str:
    """Return ``[#####.....]`` filled to ``fraction`` (0 to 1)."""
    filled = round(WIDTH * min(max(fraction, 0.0), 1.0))
    return "[" + "#" * filled + "." * (WIDTH - filled) + "]"


class _Line:
    """One line of progress: redrawn on a terminal, appended elsewhere."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self._stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._last_key: object = None
        self._width = 0

    def show(self, key: object, text: str) -> None:
        """Show ``text``; off a terminal only when ``key`` changed since the last one."""
        if self.tty:
            pad = " " * max(self._width - len(text), 0)
            self._width = len(text)
            self._stream.write("\r" + text + pad)
        elif key != self._last_key:
            self._stream.write(text + "\n")
        else:
            return
        self._last_key = key
        self._stream.flush()

    def end(self) -> None:
        """End a terminal's line (once something was drawn)."""
        if self.tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0


class ExportProgress:
    """Progress of one export: bar, percent, status or AI Studios state, elapsed time and ETA.

    The ETA extrapolates the rate since progress was first seen above zero.

    Parameters
    ----------
    stream
        Where to write (stderr: stdout carries the result).
    tty
        Draw in place; by default when ``stream`` is a terminal.
    clock
        Monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._line = _Line(stream, tty=tty)
        self._clock = clock
        self._started = clock()
        self._first: tuple[float, float] | None = None

    def update(self, status: str, progress: float, state: str | None) -> None:
        """Show the export's execution status, progress (0-100) and AI Studios state."""
        now = self._clock()
        elapsed = now - self._started
        if progress > 0 and self._first is None:
            self._first = (now, progress)
        eta = "--:--"
        if self._first is not None and progress >= 100:
            eta = "0:00"
        elif self._first is not None and progress > self._first[1]:
            rate = (progress - self._first[1]) / max(now - self._first[0], 1e-6)
            eta = clock_text((100 - progress) / rate)
        word = state if status == "RUNNING" and state else status
        text = (
            f"{bar(progress / 100)} {progress:5.1f}%  {word:<12} "
            f"elapsed {clock_text(elapsed)}  ETA {eta}"
        )
        self._line.show((status, state, int(progress)), text)

    def end(self) -> None:
        """End the bar's line."""
        self._line.end()


class RowsProgress:
    """Progress of a batch: rows done of all rows, how many failed, elapsed time.

    Parameters
    ----------
    stream, tty, clock
        As for :class:`ExportProgress`.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._line = _Line(stream, tty=tty)
        self._clock = clock
        self._started = clock()

    def update(self, status: str, done: int, total: int, failed: int) -> None:
        """Show the batch's status and its rows: ``done`` of ``total`` ended, ``failed`` of them."""
        elapsed = clock_text(self._clock() - self._started)
        fraction = done / total if total else 0.0
        rows = f"{done}/{total} rows" if total else "rows: not known yet"
        text = f"{bar(fraction)} {rows}  {failed} failed  {status:<9} elapsed {elapsed}"
        self._line.show((status, done, total, failed), text)

    def end(self) -> None:
        """End the bar's line."""
        self._line.end()
