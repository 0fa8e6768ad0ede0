"""Consumer-group bookkeeping shared by the sync and asyncio Redis readers (sans-I/O).

:class:`GroupCursor` says which command to send next and turns each reply into a
:class:`ReadBatch`; the readers only do the I/O. Its rules:

* after every (re)connect the consumer's own pending entries come first (``XREADGROUP
  ... 0``: entries delivered earlier but not acknowledged, e.g. by a reader that
  crashed), then new ones (``>``, blocking up to ``block`` seconds);
* an entry at or below the last id already handed out is not handed out again (its
  acknowledgement was lost with a connection): it is only acknowledged;
* ids of the items handed out (:meth:`GroupCursor.handed_out`) are acknowledged with
  the next read sent (one pipeline: ``XACK`` then ``XREADGROUP``), markers hidden by
  ``events=False`` and entries that are not records with the next read too; an ``XACK``
  may be in flight while more is handed out: :meth:`GroupCursor.acked` forgets only the
  ids that :meth:`GroupCursor.commands` put in it;
* a reader may send the next read before it decodes and hands out the current batch
  (read ahead): :meth:`GroupCursor.received` moves the cursor on without decoding,
  :meth:`GroupCursor.commands` with ``block=False`` asks for what is there without
  waiting, :meth:`GroupCursor.read_ahead` says whether that is worth it (the last reply
  had entries; after an empty one the reader waits with a blocking read instead), then
  :meth:`GroupCursor.batch` decodes;
* records decode as :mod:`~kstlib.websocket.sinks.records` says; a reply whose entries
  are all plain message records (the stream of a busy feed) is decoded list by list,
  not entry by entry, with the same result.

Thread-safety: none; one reader owns one cursor.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import Any

import orjson

from .reader import ReadBatch
from .records import decode_marker, payload_decoder

__all__ = ["GroupCursor", "ReadBatch", "entry_id"]


#: The decoders :func:`~kstlib.websocket.sinks.records.payload_decoder` hands out for
#: ``"json"`` and ``"bytes"``: a whole reply of messages skips the per-payload call.
_JSON = payload_decoder("json")
_BYTES = payload_decoder("bytes")
_PAYLOAD = itemgetter(5)
_TIME = itemgetter(3)


def entry_id(raw: bytes) -> tuple[int, int]:
    """A stream entry id ``b"ms-seq"`` as a comparable pair."""
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq or 0)


class GroupCursor:
    """See the module docstring."""

    def __init__(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        start: str = "0",
        count: int = 1000,
        block: float = 0.5,
        decode: Any = "json",
        events: bool = True,
    ) -> None:
        self.stream = stream.encode()
        self.group = group.encode()
        self.consumer = consumer.encode()
        self.start = start.encode()
        self.count = b"%d" % count
        self.block = b"%d" % max(1, int(block * 1000))
        self.decode: Callable[[bytes], Any] = payload_decoder(decode)
        self.events = events
        self.to_ack: list[bytes] = []
        self._sent = 0  # how many of to_ack (a prefix) the last commands() acknowledge
        self._entries = 0  # entries in the last reply
        self._cursor = b"0"  # own pending entries first
        self._handed: tuple[int, int] = (-1, -1)

    def reconnected(self) -> None:
        """Begin again with the consumer's own pending entries."""
        self._cursor = b"0"

    def create_group(self) -> list[bytes]:
        return [b"XGROUP", b"CREATE", self.stream, self.group, self.start, b"MKSTREAM"]

    def commands(self, block: bool = True) -> list[list[bytes]]:
        """The next round trip: an ``XACK`` if anything is owed, then the read (of new
        entries: waiting up to ``block`` seconds for one, unless ``block`` is False)."""
        out: list[list[bytes]] = []
        self._sent = len(self.to_ack)
        if self.to_ack:
            out.append([b"XACK", self.stream, self.group, *self.to_ack])
        read = [b"XREADGROUP", b"GROUP", self.group, self.consumer, b"COUNT", self.count]
        if block and self._cursor == b">":
            read += (b"BLOCK", self.block)
        out.append([*read, b"STREAMS", self.stream, self._cursor])
        return out

    def acked(self) -> None:
        """The ``XACK`` of the last :meth:`commands` went through: its ids are no longer
        owed (ids handed out since stay owed)."""
        del self.to_ack[: self._sent]
        self._sent = 0

    def read_ahead(self) -> bool:
        """Whether a read sent before the current batch is handed out is likely to find
        something: the last reply had entries."""
        return self._entries > 0

    def on_reply(self, reply: Any) -> ReadBatch:
        """Decode the ``XREADGROUP`` reply (RESP2, bytes) into a batch: :meth:`received`
        then :meth:`batch`."""
        return self.batch(*self.received(reply))

    def received(self, reply: Any) -> tuple[list[Any], bool]:
        """Take in an ``XREADGROUP`` reply, not decoding it yet: the cursor moves on (so
        :meth:`commands` may send the next read before :meth:`batch` decodes this one).
        Returns the entries and whether they are the consumer's own pending ones."""
        entries: list[Any] = reply[0][1] if reply else []
        self._entries = len(entries)
        pending = self._cursor != b">"
        if pending:
            self._cursor = entries[-1][0] if entries else b">"
        return entries, pending

    def batch(self, entries: list[Any], pending: bool) -> ReadBatch:
        """The batch of what :meth:`received` returned."""
        if entries and not pending:
            fields = [f for _, f in entries]
            if all(len(f) == 6 and f[1] == b"m" and f[4] == b"d" for f in fields):
                return ReadBatch(self._payloads(fields), [e for e, _ in entries],
                                 list(map(_TIME, fields)))  # fmt: skip
        batch = ReadBatch()
        for eid, fields in entries:
            if fields is None or (pending and entry_id(eid) <= self._handed):
                self.to_ack.append(eid)  # deleted by trimming, or handed out already
                continue
            self._add(batch, eid, fields)
        return batch

    def handed_out(self, batch: ReadBatch, n: int) -> None:
        """The first ``n`` items of ``batch`` reached the consumer: acknowledge them with
        the next read; the rest stay pending (read again after a reconnect)."""
        if n:
            self.to_ack += batch.ids[:n]
            self._handed = max(self._handed, entry_id(batch.ids[n - 1]))

    def _payloads(self, fields: list[list[bytes]]) -> list[Any]:
        """The decoded payloads of message records (one list, no call per payload for
        ``"bytes"`` or for ``"json"`` when every payload parses)."""
        payloads = list(map(_PAYLOAD, fields))
        if self.decode is _BYTES:
            return payloads
        if self.decode is _JSON:
            try:
                return list(map(orjson.loads, payloads))
            except orjson.JSONDecodeError:
                pass  # one is not JSON: each payload as _JSON says (text or bytes)
        return list(map(self.decode, payloads))

    def _add(self, batch: ReadBatch, eid: bytes, f: list[bytes]) -> None:
        if len(f) == 6 and f[1] == b"m" and f[4] == b"d":  # the common message record
            batch.items.append(self.decode(f[5]))
            batch.ids.append(eid)
            batch.times.append(f[3])
            return
        fields = dict(zip(f[::2], f[1::2], strict=False))
        kind = fields.get(b"k", b"")
        if kind == b"m" and b"d" in fields:
            batch.items.append(self.decode(fields[b"d"]))
            batch.times.append(fields.get(b"t"))
        elif self.events and kind in (b"c", b"d", b"g"):
            try:
                batch.items.append(decode_marker(kind, fields))
            except ValueError:
                self.to_ack.append(eid)
                return
            batch.times.append(None)
        else:  # a hidden marker, or an entry some other writer put there
            self.to_ack.append(eid)
            return
        batch.ids.append(eid)
