"""The demo's screen: event lines on stdout, a status line on stderr, 80 columns at most.

Every line the demo prints goes through :class:`Console`, which guarantees the width:
an event line longer than :data:`WIDTH` is wrapped at spaces (:func:`fit`), and the
status line keeps only the fields that fit (:func:`join_fitting`).
"""

from __future__ import annotations

import os
import textwrap
import threading
from collections.abc import Sequence
from typing import TextIO

__all__ = ["WIDTH", "Console", "fit", "join_fitting"]

#: Most columns any printed line takes.
WIDTH = 80


def fit(line: str, width: int = WIDTH, indent: str = "") -> list[str]:
    """``line`` as one or more lines of at most ``width`` columns.

    A line that fits is returned as is. A longer one is wrapped at spaces; the
    continuation lines start with ``indent`` (by default the line's own leading spaces
    plus two); a word longer than a whole line is cut.
    """
    if len(line) <= width:
        return [line]
    if not indent:
        indent = " " * (len(line) - len(line.lstrip(" ")) + 2)
    indent = indent[: width // 2]
    return textwrap.wrap(
        line, width, subsequent_indent=indent, break_long_words=True, break_on_hyphens=False
    )


def join_fitting(fields: Sequence[str], width: int, sep: str = " | ") -> str:
    """The ``fields`` joined by ``sep``: the first one always, each next one only while
    the whole still fits in ``width`` columns (the rest are left out, in order); the
    result is cut to ``width`` if the first field alone is too long."""
    text = fields[0] if fields else ""
    for field in fields[1:]:
        longer = f"{text}{sep}{field}"
        if len(longer) > width:
            break
        text = longer
    return text[:width]


class Console:
    """Event lines on ``out``, a status line on ``err``; safe from any thread.

    On a terminal (``err.isatty()``, or ``live=True``) the status line is redrawn in
    place with a carriage return, at most ``min(80, terminal width) - 1`` columns, and
    erased before each event line; otherwise :meth:`status` prints plain lines of at
    most 80 columns. Writes to a closed pipe are ignored (``broken`` becomes True).
    """

    def __init__(self, out: TextIO, err: TextIO, live: bool | None = None) -> None:
        self.out = out
        self.err = err
        self.live = err.isatty() if live is None else live
        self.broken = False
        self._lock = threading.Lock()
        self._status = ""

    def status_width(self) -> int:
        """Columns available to the live status line (one less than the line, so the
        cursor never wraps), at least 20."""
        try:
            columns = os.get_terminal_size(self.err.fileno()).columns
        except (OSError, ValueError, AttributeError):
            columns = 0
        return max(20, min(WIDTH, columns or WIDTH) - 1)

    def _draw(self) -> None:
        """Redraw the live status line in place (caller holds the lock)."""
        if self.live and self._status:
            self.err.write("\r\x1b[K" + self._status)
            self.err.flush()

    def _erase(self) -> None:
        """Erase the live status line, the cursor at its start (caller holds the lock)."""
        if self.live and self._status:
            self.err.write("\r\x1b[K")
            self.err.flush()

    def event(self, text: str, indent: str = "") -> None:
        """Print ``text`` on ``out``, each of its lines fitted to 80 columns (continuation
        lines start with ``indent``); the live status line is kept below it."""
        lines = [piece for raw in text.split("\n") for piece in fit(raw, WIDTH, indent)]
        with self._lock:
            try:
                self._erase()
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()
                self._draw()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def status(self, fields: Sequence[str], stamp: str) -> None:
        """Show the status ``fields`` (most important first; those that do not fit are
        left out): redrawn in place on a terminal, else a plain ``stamp`` line."""
        with self._lock:
            try:
                if self.live:
                    self._status = join_fitting(fields, self.status_width())
                    self._draw()
                else:
                    line = join_fitting(fields, WIDTH - len(stamp) - 1)
                    self.err.write(f"{stamp} {line}\n")
                    self.err.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def error(self, text: str) -> None:
        """Print ``text`` on ``err``, fitted to 80 columns, below the status line (which is
        erased and not redrawn)."""
        with self._lock:
            try:
                self._erase()
                self._status = ""
                self.err.write("".join(line + "\n" for line in fit(text)))
                self.err.flush()
            except (BrokenPipeError, ValueError):
                self.broken = True

    def end_status(self) -> None:
        """Erase the live status line for good."""
        with self._lock:
            try:
                self._erase()
            except (BrokenPipeError, ValueError):
                self.broken = True
            self._status = ""
