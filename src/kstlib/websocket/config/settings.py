"""The :class:`Settings` dataclass: every option declared once, with its check and doc.

Each option is a field made by :func:`_option`, which stores in the field's metadata the
check that validates and normalises a value (from :mod:`.checks`), the option's entry of
the options reference (rendered by :mod:`.reference` into the package docstring) and
whether it is keyword-only (a Python object, refused in a file). Every table the rest of
the package needs (:data:`OPTION_NAMES`, :data:`FILE_OPTIONS`,
:data:`KEYWORD_ONLY_OPTIONS`, the validators) is derived from these fields, so adding an
option is adding one field.

Thread-safety: a :class:`Settings` is immutable and may be shared between threads; the
module-level tables are built at import and never change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, TypeVar

from kstlib.websocket._http import (
    check_headers,
    check_proxy,
    check_subprotocols,
    check_url,
    redact_url,
)
from kstlib.websocket._http import show as _show
from kstlib.websocket.config.checks import (
    MAX_ATTEMPTS,
    MAX_MESSAGE_SIZE,
    MAX_QUEUE_BYTES,
    MAX_QUEUE_SIZE,
    Invalid,
    check_bool,
    check_callable,
    check_decode,
    check_send_rate,
    check_ssl_context,
    check_strategy,
    check_subscriptions,
    choice,
    instance_of,
    integer,
    or_factory,
    or_none,
    seconds,
)
from kstlib.websocket.models import DisconnectReason, Gap, Heartbeat, Login, ReconnectStrategy

__all__ = [
    "FILE_OPTIONS",
    "KEYWORD_ONLY_OPTIONS",
    "OPTION_FIELDS",
    "OPTION_NAMES",
    "VALIDATORS",
    "Settings",
]

_T = TypeVar("_T")
_U = TypeVar("_U")


def _option(
    default: _T, check: Callable[[Any], _U], doc: str, *, keyword_only: bool = False
) -> _T | _U:
    """Declare an option: a :class:`Settings` field with its default, check and doc.

    ``check`` validates and normalises a value (raising :class:`~.checks.Invalid`);
    ``doc`` is the option's entry in the options reference (the package docstring);
    ``keyword_only`` options (Python objects) are refused in a file or mapping. Typed so
    that the field's annotation must admit both the default and what ``check`` returns.
    """
    metadata = {"check": check, "doc": doc, "keyword_only": keyword_only}
    return dataclasses.field(default=default, metadata=metadata)


_SECONDS = seconds()
_CALLBACK = or_none(check_callable)


@dataclass(frozen=True, repr=False)
class Settings:
    """Every option of a ``WebSocketManager``, validated; immutable and thread-safe.

    The meaning, unit and limits of each field are in the docstring of
    :mod:`kstlib.websocket.config` (generated from the fields). Direct construction (and
    ``dataclasses.replace``) validates and normalises exactly as
    :func:`~kstlib.websocket.config.load_settings` does (a list becomes a tuple, a mapping
    of headers a tuple of pairs, a strategy name the enum member, an ``int`` duration a
    ``float``), and raises ``ValueError`` naming the field. ``source`` is the path of the
    configuration file used, ``"<mapping>"`` for a mapping, or ``None`` when no file was
    read. ``repr()`` hides header values and proxy passwords.
    """

    url: str | Callable[[], str]
    subscriptions: tuple[dict[str, Any] | str, ...] | Callable[[], Any] = _option(
        (),
        or_factory(check_subscriptions),
        "Messages sent, in this order, right after every connect and reconnect: a ``dict`` "
        "(sent as JSON text) or a ``str`` (sent as is, not empty). A list in the file; as a "
        "keyword also a callable returning the list, called before every connection "
        "attempt (a token that expires, a listenKey renewed), as ``url`` and ``headers`` "
        "may be.",
    )
    should_disconnect: Callable[[], bool] | None = _option(
        None,
        _CALLBACK,
        "``() -> bool`` polled every ``disconnect_check_interval`` while connected; "
        "``True`` closes the connection with reason ``CALLBACK_TRIGGERED``.",
        keyword_only=True,
    )
    should_reconnect: Callable[[], bool] | None = _option(
        None,
        _CALLBACK,
        "``() -> bool`` polled every ``reconnect_check_interval`` while proactively "
        "disconnected; ``True`` reconnects.",
        keyword_only=True,
    )
    disconnect_check_interval: float = _option(
        5.0, _SECONDS, "Seconds between two ``should_disconnect()`` calls. > 0, <= 7 days."
    )
    reconnect_check_interval: float = _option(
        1.0, _SECONDS, "Seconds between two ``should_reconnect()`` calls. > 0, <= 7 days."
    )
    reconnect_strategy: ReconnectStrategy = _option(
        ReconnectStrategy.EXPONENTIAL_BACKOFF,
        check_strategy,
        "Wait before reconnect attempt *n* after a reactive loss: ``immediate`` (none), "
        "``fixed_delay`` (``reconnect_delay`` each time) or ``exponential_backoff`` "
        "(``reconnect_delay * 2**(n-1)`` capped at ``reconnect_delay_max``, with jitter). "
        "A :class:`~kstlib.websocket.models.ReconnectStrategy` member, or its name as a "
        "string, case-insensitive.",
    )
    auto_reconnect: bool = _option(
        True, check_bool, "Reconnect by ``reconnect_strategy`` after a reactive loss. A boolean."
    )
    max_reconnect_attempts: int | None = _option(
        10,
        or_none(integer(minimum=1, maximum=MAX_ATTEMPTS), "no limit"),
        "Consecutive failed attempts after which the consumer gets "
        "``WebSocketConnectionError``. An integer from 1 to 1 000 000, or ``null``/``None`` "
        "for no limit.",
    )
    connect_attempts: int | None = _option(
        3,
        or_none(integer(minimum=1, maximum=MAX_ATTEMPTS), "same as max_reconnect_attempts"),
        "Attempts a ``connect()`` makes (the first connection after a start, before any "
        "succeeded) before it raises ``WebSocketConnectionError``, never more than "
        "``max_reconnect_attempts``; reconnects after a loss use "
        "``max_reconnect_attempts``. The default gives up on a refused port within about "
        "3 s; each retry's log line says when it will give up. An integer from 1 to "
        "1 000 000, or ``null``/``None``: as many as ``max_reconnect_attempts``.",
    )
    reconnect_delay: float = _option(
        1.0, seconds(zero_ok=True), "Base reconnect delay in seconds. >= 0, <= 7 days."
    )
    reconnect_delay_max: float = _option(
        60.0,
        seconds(zero_ok=True),
        "Cap of the exponential backoff in seconds. >= ``reconnect_delay``, <= 7 days (so "
        "raising ``reconnect_delay`` above 60 requires raising this too).",
    )
    connect_timeout: float = _option(
        10.0,
        _SECONDS,
        "Seconds allowed for TCP connect + TLS + opening handshake. > 0, <= 7 days.",
    )
    ping_interval: float | None = _option(
        30.0,
        or_none(_SECONDS),
        "Seconds between two client pings. > 0, <= 7 days, or ``null``/``None``: no client "
        "pings (server pings are still answered).",
    )
    ping_timeout: float = _option(
        10.0,
        _SECONDS,
        "Seconds to wait for the pong before the loss is declared (``PING_TIMEOUT``). > 0, "
        "<= 7 days.",
    )
    receive_timeout: float | None = _option(
        None,
        or_none(_SECONDS),
        "Seconds without a data message, while connected, after which the feed is taken "
        "for silent although the connection still answers pings: the connection ends with "
        "``DATA_TIMEOUT`` (reactive) and the reconnect policy applies, or, with handover "
        "on, a make-before-break rotation replaces it. Time the consumer held the engine "
        "back does not count. > 0, <= 7 days, or ``null``/``None`` (never).",
    )
    close_timeout: float = _option(
        5.0,
        _SECONDS,
        "Seconds allowed for the closing handshake before the socket is dropped. > 0, <= 7 days.",
    )
    queue_size: int = _option(
        1000,
        integer(minimum=1, maximum=MAX_QUEUE_SIZE),
        "Capacity of the inbox between the engine and the consumer, in messages. An "
        "integer from 1 to 10 000 000.",
    )
    queue_max_bytes: int | None = _option(
        16 * 1024 * 1024,
        or_none(integer(minimum=1, maximum=MAX_QUEUE_BYTES), "no byte limit"),
        "Byte budget of the inbox (default 16 MiB): the payload bytes of the queued "
        "messages, counted after decompression, so a server cannot fill memory through "
        "permessage-deflate. Both overflow policies honour it beside ``queue_size``; an "
        "empty inbox always takes one message (``max_message_size`` bounds it). With "
        '``decode="json"`` the decoded objects take more memory than their text: about '
        "5x for exchange events and up to 24x for hostile JSON such as ``[{},{},...]`` "
        "(measured with tracemalloc), so the inbox holds at most about 24 times this "
        "budget, plus one message; lower it, or ``max_message_size``, for a tighter bound. "
        "Queued bytes are in ``stats.queued_bytes``. An integer from 1 to 2**40, or "
        "``null``/``None``: messages only.",
    )
    queue_overflow: str = _option(
        "block",
        choice("block", "drop_oldest"),
        "When the inbox is full: ``block`` (back-pressure: the engine stops reading, "
        "nothing is lost) or ``drop_oldest`` (the oldest queued message is dropped and "
        "counted).",
    )
    max_message_size: int = _option(
        16 * 1024 * 1024,
        integer(minimum=1, maximum=MAX_MESSAGE_SIZE),
        "Largest accepted message in bytes (default 16 MiB), after decompression; larger "
        "closes with 1009. An integer from 1 to 2**31.",
    )
    max_connection_age: float | None = _option(
        None,
        or_none(_SECONDS),
        "Seconds after which a connection is rotated proactively (reason "
        "``CONNECTION_LIMIT``), before a platform limit such as 24 h. > 0, <= 7 days, or "
        "``null``/``None`` (never).",
    )
    max_send_rate: float | None = _option(
        None,
        or_none(check_send_rate, "no limit"),
        "Most outgoing control messages (subscriptions, ``subscribe``) per second. > 0, "
        "<= 1 000 000, or ``null``/``None`` (no limit).",
    )
    decode: str | Callable[[str | bytes], Any] | None = _option(
        "json",
        check_decode,
        "``json``: text frames are parsed as JSON (a text frame that is not JSON is "
        "delivered as ``str``); ``bytes``: every message as ``bytes``; ``null``/``None``: "
        "``str`` for text, ``bytes`` for binary; or (keyword only) a callable "
        "``(str | bytes) -> Any``.",
    )
    headers: tuple[tuple[str, str], ...] | Callable[[], Any] = _option(
        (),
        or_factory(check_headers),
        "Extra HTTP headers of the opening handshake: a mapping name -> value, or a list "
        "of ``[name, value]`` pairs (a list allows a repeated name, except ``Host``, "
        "``Origin`` and ``Cookie``). Names are HTTP tokens, values are strings without "
        "CR/LF. Headers the handshake itself manages (``Upgrade``, ``Connection``, "
        "``Sec-WebSocket-*``) are refused: use ``subprotocols`` and ``compression``. Error "
        "messages never print header values (they may be secrets). As a keyword also a "
        "callable returning them, called before every connection attempt (e.g. a JWT that "
        "lives 2 minutes); after a 401/403 it is called once more before the refusal counts "
        "as final.",
    )
    subprotocols: tuple[str, ...] = _option(
        (),
        check_subprotocols,
        "Subprotocols offered in ``Sec-WebSocket-Protocol``, in order of preference: a "
        "list of HTTP tokens.",
    )
    ssl: SSLContext | None = _option(
        None,
        or_none(check_ssl_context),
        "An ``ssl.SSLContext`` for ``wss://``; ``None`` uses the system's default trust store.",
        keyword_only=True,
    )
    proxy: str | None = _option(
        None,
        check_proxy,
        "``http://[user:pass@]host[:port]`` (an HTTP CONNECT tunnel), ``socks4://``, "
        "``socks4a://``, ``socks5://`` or ``socks5h://`` (need the ``python-socks`` "
        "package); ``None``: the ``http_proxy`` / ``https_proxy`` / ``no_proxy`` "
        "environment variables decide (no proxy when they are unset). ``https://`` (TLS "
        "to the proxy) is refused: the tunnel is a plain CONNECT; a ``wss://`` connection "
        "through an ``http://`` proxy is still encrypted end to end.",
    )
    redirects: str = _option(
        "same_origin",
        choice("same_origin", "off"),
        "HTTP redirects of the opening handshake: ``same_origin`` follows at most 3 to the "
        "same scheme, host and port (each one logged; the headers, credentials included, "
        "never go to another origin and ``wss://`` never becomes ``ws://``), refusing "
        "others as final; ``off`` refuses every redirect.",
    )
    compression: str | None = _option(
        "deflate",
        or_none(choice("deflate")),
        "``deflate``: offer permessage-deflate (RFC 7692); ``null``/``None``: do not offer it.",
    )
    on_connect: Callable[[], None] | None = _option(
        None, _CALLBACK, "``on_connect()``, run on the engine thread.", keyword_only=True
    )
    on_disconnect: Callable[[DisconnectReason], None] | None = _option(
        None,
        _CALLBACK,
        "``on_disconnect(reason)``, run on the engine thread.",
        keyword_only=True,
    )
    on_message: Callable[[Any], None] | None = _option(
        None, _CALLBACK, "``on_message(message)``, run on the engine thread.", keyword_only=True
    )
    on_batch: Callable[[list[Any]], list[Any]] | None = _option(
        None,
        _CALLBACK,
        "``on_batch(batch) -> batch``, run on the engine thread with each batch of "
        "messages (one per socket read, after ``decode`` and the handover's de-duplication) "
        "and with each gap marker (as a batch of one), in order, before they are queued or "
        "passed to ``on_message``; what it returns is queued (it may drop, replace or "
        "forward items). It may block to apply back-pressure: that time is credited to the "
        "ping deadlines. If it raises, the batch is queued unchanged and the error counted.",
        keyword_only=True,
    )
    on_error: Callable[[BaseException], None] | None = _option(
        None,
        _CALLBACK,
        "``on_error(exception)``, run on the engine thread for each error the engine "
        "handles (a failed attempt, a protocol violation, a callback that raised). When "
        "the engine gives up, the error that ``connect()`` / ``stream()`` raise is passed "
        "last, once ``is_dead`` is True.",
        keyword_only=True,
    )
    handover: bool | None = _option(
        None,
        or_none(check_bool),
        "Make-before-break rotation: for a proactive rotation (``max_connection_age``, "
        "``schedule_reconnect``, ``should_handover``) the engine opens and subscribes the "
        "new connection while the old one still streams, switches once the new stream has "
        "caught up (duplicates of the overlap dropped by ``dedupe_key``) and then closes "
        "the old one. ``true`` requires ``dedupe_key``; ``null``/``None``: on exactly when "
        "``dedupe_key`` is given; ``false``: off.",
    )
    dedupe_key: Callable[[Any], Hashable | None] | None = _option(
        None,
        _CALLBACK,
        "``(message) -> hashable | None``: the identity of a message (e.g. a trade id) "
        "used to drop the overlap's duplicates during a handover. ``None`` keys are never "
        "dropped.",
        keyword_only=True,
    )
    should_handover: Callable[[Any], bool] | None = _option(
        None,
        _CALLBACK,
        "``(message) -> bool``, called for every incoming message: True starts a handover "
        "now (e.g. on a server's announced shutdown). Needs ``handover`` on.",
        keyword_only=True,
    )
    heartbeat: Heartbeat | None = _option(
        None,
        or_none(instance_of(Heartbeat, "a kstlib.websocket.Heartbeat")),
        "Application-level keepalive for venues that want their own ping messages (OKX's "
        'text ``ping``, Bybit\'s ``{"op": "ping"}``, Deribit\'s ``test_request``): what '
        "to send and how often, how to recognise the answer, and what to answer to the "
        "server's own pings; see :class:`kstlib.websocket.Heartbeat`. A missed answer ends "
        "the connection with ``PING_TIMEOUT``; none of this traffic reaches ``stream()``.",
        keyword_only=True,
    )
    login: Login | None = _option(
        None,
        or_none(instance_of(Login, "a kstlib.websocket.Login")),
        "A message every connection sends first and whose acknowledgement it waits for "
        "before the subscriptions (OKX ``login``, Bybit ``auth``, Deribit ``public/auth``); "
        "see :class:`kstlib.websocket.Login`.",
        keyword_only=True,
    )
    sequence: Callable[[Any], tuple[Any, ...] | None] | None = _option(
        None,
        _CALLBACK,
        "``(message) -> (stream, seq) | (stream, prev, last) | None``: the sequence numbers "
        "a message carries (Coinbase ``sequence_num``: ``(channel, n)``; Binance depth: "
        "``(symbol, U - 1, u)``; OKX books: ``(channel, prevSeqId, seqId)``). A message "
        "whose ``prev`` is not the last number seen on its stream is preceded in "
        "``stream(events=True)`` by a :class:`kstlib.websocket.Gap` marker, counted in "
        "``stats.sequence_gaps`` and passed to ``on_gap``; older numbers (replays) are "
        "not gaps. Numbers restart with each new connection (its ``Connected`` marker "
        "already says data may be missing). A callable that raises or returns something "
        "else is counted and ignored for that message.",
        keyword_only=True,
    )
    on_gap: Callable[[Gap], None] | None = _option(
        None,
        _CALLBACK,
        "``on_gap(gap)``, called for each sequence gap (e.g. to resynchronise an order "
        "book from a snapshot), on the thread that reads: the engine thread, or a "
        "consumer waiting in ``stream()`` / ``recv()`` (see ``engine/direct.py``).",
        keyword_only=True,
    )
    timestamps: bool = _option(
        False,
        check_bool,
        "``true``: each message reaches ``stream()`` as a :class:`kstlib.websocket.Stamped` "
        "``(message, received_ns)``, stamped with :func:`time.monotonic_ns` when its socket "
        "read returned (one stamp per read). A boolean.",
    )
    is_permanent_failure: Callable[[BaseException], bool | None] | None = _option(
        None,
        _CALLBACK,
        "``(error) -> bool | None``: whether a failed connection attempt is final (no "
        "retry) rather than transient. ``None`` (or the callable answering ``None``) keeps "
        "the built-in rule: HTTP 400, 401, 403, 404, 405, 406, 410 and 426 and a "
        "certificate that does not verify are final, everything else is retried. The "
        "HTTP status is ``error.__cause__.status_code`` where there is one.",
        keyword_only=True,
    )
    before_connect: Callable[[], None] | None = _option(
        None,
        _CALLBACK,
        "``() -> None``, called on the engine thread before every connection attempt (may "
        "sleep briefly, e.g. to pace attempts under an exchange's limit).",
        keyword_only=True,
    )
    source: str | None = None

    def __post_init__(self) -> None:
        self._check_field("url", or_factory(check_url))
        for name, check in VALIDATORS.items():
            self._check_field(name, check)
        if self.source is not None and not isinstance(self.source, str):
            raise ValueError(f"Settings.source: expected a str or None, got {_show(self.source)}")
        if self.handover and self.dedupe_key is None:
            raise ValueError(
                "Settings.handover: true needs dedupe_key (to drop the overlap's duplicates)"
            )
        if self.should_handover is not None and self.handover is False:
            raise ValueError("Settings.should_handover: given while handover is false")
        if self.reconnect_delay_max < self.reconnect_delay:
            raise ValueError(
                f"Settings.reconnect_delay_max: {self.reconnect_delay_max!r} is less than "
                f"reconnect_delay ({self.reconnect_delay!r})"
            )

    def _check_field(self, name: str, check: Callable[[Any], Any]) -> None:
        """Replace field ``name`` by ``check(value)``; ``ValueError`` naming the field."""
        try:
            normalised = check(getattr(self, name))
        except Invalid as exc:
            raise ValueError(f"Settings.{name}: {exc}") from None
        object.__setattr__(self, name, normalised)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "headers" and not callable(value):
                text = repr(tuple((name, "***") for name, _ in value))
            elif f.name in ("proxy", "url") and isinstance(value, str):
                text = repr(redact_url(value))
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"Settings({', '.join(parts)})"


#: The option fields of :class:`Settings`, in declaration order (``url`` and ``source``
#: are not options).
OPTION_FIELDS = tuple(f for f in dataclasses.fields(Settings) if "check" in f.metadata)
#: Every option: name -> check returning the normalised value.
VALIDATORS: dict[str, Callable[[Any], Any]] = {f.name: f.metadata["check"] for f in OPTION_FIELDS}
#: Options that hold Python objects: keyword arguments only, never in a file or mapping.
KEYWORD_ONLY_OPTIONS: frozenset[str] = frozenset(
    f.name for f in OPTION_FIELDS if f.metadata["keyword_only"]
)
#: Every option name accepted as a keyword argument (``url`` and ``config`` aside).
OPTION_NAMES: frozenset[str] = frozenset(VALIDATORS)
#: Option names accepted in the ``websocket:`` section of the file.
FILE_OPTIONS: frozenset[str] = OPTION_NAMES - KEYWORD_ONLY_OPTIONS
