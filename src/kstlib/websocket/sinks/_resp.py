"""RESP2 command packing, for the hot paths that bypass redis-py's per-argument encoding.

A chunk of 4096 messages is one ``EVALSHA`` of about 8200 arguments; redis-py's
``pack_command`` costs several microseconds per argument, this one join a fraction.

Thread-safety: pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["pack"]


def pack(args: Sequence[bytes]) -> bytes:
    """``args`` (all ``bytes``) as one RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    add = parts.append
    for a in args:
        add(b"$%d\r\n" % len(a))
        add(a)
        add(b"\r\n")
    return b"".join(parts)
