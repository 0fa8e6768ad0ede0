"""How ``kstlib-ws`` talks on stderr: the ``kstlib-ws:`` prefix and the library's log.

While a command runs, :func:`library_logging` sends the records of the
``kstlib.websocket`` logger to stderr as single lines (``kstlib-ws: warning: ...``), with
an exception reduced to its message by :func:`one_line`; ``-vv`` keeps tracebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["PROG", "PlainFormatter", "library_logging", "one_line"]

#: The command's name: the prefix of every status and error line on stderr.
PROG = "kstlib-ws"


def one_line(exc: BaseException) -> str:
    """The exception's message with its whitespace (newlines too) collapsed to single
    spaces; the exception's class name when the message is empty."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class PlainFormatter(logging.Formatter):
    """Formats a record as ``kstlib-ws: <level>: <message>[: <exception>]`` on one line.

    With ``tracebacks=True`` the standard layout is kept instead, traceback included.
    """

    def __init__(self, tracebacks: bool) -> None:
        super().__init__(f"{PROG}: %(levelname)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line (or the standard layout with ``tracebacks``)."""
        if self.tracebacks:
            return super().format(record)
        text = f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f": {one_line(record.exc_info[1])}"
        return " ".join(text.split())


@contextmanager
def library_logging(verbosity: int, err: TextIO, default_level: int) -> Iterator[None]:
    """Route the ``kstlib.websocket`` log records to ``err`` for the duration of the block.

    ``default_level`` applies without ``-v`` (``verbosity`` 0); 1 shows info records, 2
    or more debug records and tracebacks. The records do not propagate to the root
    logger meanwhile. On exit the logger's level, propagation and handlers are restored.
    """
    logger = logging.getLogger("kstlib.websocket")
    handler = logging.StreamHandler(err)
    handler.setFormatter(PlainFormatter(tracebacks=verbosity >= 2))
    level = default_level if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
