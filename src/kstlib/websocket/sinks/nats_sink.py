"""Publishing to NATS JetStream: one acknowledged publish per item, a chunk per flush.

Every item of a chunk is published to ``subject`` with JetStream's asynchronous publish
(all of them written, then the acknowledgements awaited together, within ``timeout``):

* messages: payload the raw bytes, headers ``Kst-K: m`` and ``Kst-T`` (receive time);
* markers: empty payload, the record's fields as ``Kst-<field>`` headers
  (:mod:`~kstlib.websocket.sinks.records`);
* ``Nats-Msg-Id``: the message's ``dedupe_key`` when the relay has one (so JetStream's
  duplicate window drops what two redundant relays both sent), else ``<relay>:<seq>``
  (so a chunk retried after a broken connection is not stored twice).

The stream (default ``KSTLIB_<subject>``) is created if missing, with
``duplicate_window`` (s, default 120) and ``max_msgs``. Payloads over the server's
``max_payload`` (less room for the headers) are refused before sending; a publish the
server answers with an error is counted as refused; a missing acknowledgement is a
broken bus (the chunk is retried).

Thread-safety: one publisher thread uses a sink; ``close()`` from any thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import _nats_common as common
from .base import BusUnavailableError, Chunk, PublishResult
from .records import marker_fields
from .urls import server_url

__all__ = ["HEADER_ROOM", "NatsSink"]

#: Bytes of ``max_payload`` kept for the headers of a message.
HEADER_ROOM = 512


class NatsSink:
    """Publishes chunks to ``subject`` on the NATS server at ``url`` (see the module
    docstring); ``stream`` names the JetStream stream."""

    def __init__(
        self,
        url: str,
        subject: str,
        *,
        stream: str | None = None,
        duplicate_window: float = 120.0,
        max_msgs: int | None = 1_000_000,
        max_payload: int = 64 * 1024 * 1024,
        timeout: float = 10.0,
    ) -> None:
        common.nats()  # the extra is there, or a clear error now
        self.url = server_url(url, "nats")
        self.subject = subject
        self.stream = stream or common.stream_name(subject)
        self.display_url = f"{self.url} subject={subject}"
        self.duplicate_window = duplicate_window
        self.max_msgs = max_msgs
        self._limit = max_payload
        self.max_payload = max_payload
        self.timeout = timeout
        self._errors: tuple[type[BaseException], ...] = (*common.nats_errors(), TimeoutError)
        self._loop = common.LoopThread(f"kstlib-ws-nats:{subject}")
        self._nc: Any = None
        self._js: Any = None

    def connect(self) -> None:
        """(Re)connect and make sure the stream exists."""
        self._disconnect()
        try:
            self._loop.run(self._connect(), self.timeout * 3)
        except self._errors as exc:
            self._disconnect()
            raise BusUnavailableError(f"{self.display_url}: {exc!r}") from exc

    async def _connect(self) -> None:
        self._nc = await common.connect(self.url, self.timeout)
        self._js = self._nc.jetstream(timeout=self.timeout)
        await common.ensure_stream(
            self._js, self.stream, self.subject, self.duplicate_window, self.max_msgs
        )
        self.max_payload = min(self._limit, self._nc.max_payload - HEADER_ROOM)

    def publish(self, chunk: Chunk) -> PublishResult:
        if self._js is None:
            raise BusUnavailableError("not connected")
        try:
            return self._loop.run(self._publish(chunk), self.timeout * 2)
        except self._errors as exc:
            self._disconnect()
            raise BusUnavailableError(f"{self.display_url}: {exc!r}") from exc

    async def _publish(self, chunk: Chunk) -> PublishResult:
        js, subject, seq = self._js, self.subject, chunk.first_seq
        source, key_of = chunk.source, chunk.key_of
        futures = []
        for at, items in chunk.parts:
            if not items:
                continue
            if type(items[0]) is not bytes:
                flat = marker_fields(items[0], source)
                pairs = zip(flat[::2], flat[1::2], strict=True)
                headers = {f"Kst-{f.decode()}": v.decode() for f, v in pairs}
                headers["Nats-Msg-Id"] = f"{source}:{seq}"
                futures.append(await js.publish_async(subject, b"", headers=headers))
                seq += 1
                continue
            t = f"{at:.6f}"
            for m in items:
                key = key_of(m) if key_of is not None else None
                msg_id = f"{source}:{seq}" if key is None else str(key)
                headers = {"Kst-k": "m", "Kst-t": t, "Nats-Msg-Id": msg_id}
                futures.append(await js.publish_async(subject, m, headers=headers))
                seq += 1
        acks = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), self.timeout
        )
        return self._result(acks)

    def _result(self, acks: list[Any]) -> PublishResult:
        written = dupes = refused = 0
        error, last = "", ""
        for ack in acks:
            if isinstance(ack, self._errors):
                raise ack
            if isinstance(ack, BaseException):
                refused += 1
                error = error or repr(ack)
            elif ack.duplicate:
                dupes += 1
            else:
                written += 1
                last = str(ack.seq)
        return PublishResult(written, dupes, refused, error, last)

    def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                self._loop.run(common.close(nc), self.timeout)
            except Exception:  # the loop is gone or the close hung: nothing left to do
                pass

    def close(self) -> None:
        self._disconnect()
        self._loop.stop()
