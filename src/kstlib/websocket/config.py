"""Configuration of a ``WebSocketManager``: one frozen, validated :class:`Settings` object.

This module docstring is the reference for every option. A manager's settings come from
three layers, each overriding the one before, key by key:

1. the built-in defaults listed below;
2. the ``websocket:`` section of the configuration file ``kstlib.conf.yml``;
3. the keyword arguments given to ``WebSocketManager(url, **options)`` (only the ones
   actually passed: an option you do not pass keeps its file or default value).

Configuration file
==================

The file is looked for, first match wins (:func:`find_config_file`):

1. the ``config=`` argument, when it is a path (it must exist: ``FileNotFoundError``);
2. the file named by the environment variable ``KSTLIB_CONFIG``, when it is set and not
   empty (it must exist: ``FileNotFoundError``);
3. ``./kstlib.conf.yml`` in the current working directory;
4. ``~/.config/kstlib/kstlib.conf.yml`` in the user's home directory.

No file at all is fine: the defaults apply. ``config=`` may also be a mapping (for
settings that come from another configuration system): when it has a top-level
``websocket`` key, that entry is the section; otherwise the mapping itself is the
section. A mapping follows exactly the rules of a file.

The file is YAML. Only its ``websocket:`` section is read; other top-level sections (other
kstlib subsystems) are ignored. An empty file, a file without a ``websocket:`` section and
a ``websocket:`` section left empty (every key commented out) all give the defaults. The
guide's example::

    websocket:
      # Connection settings
      connect_timeout: 10.0
      ping_interval: 30.0
      ping_timeout: 10.0
      # Reconnection settings
      reconnect_delay: 1.0
      reconnect_delay_max: 60.0
      max_reconnect_attempts: 10
      # Queue settings
      queue_size: 1000
      # Proactive control
      disconnect_check_interval: 5.0

Errors are never papered over with a default. Each of these raises ``ValueError`` whose
message names the file, the key (``websocket.<key>``) and the offending value:

* YAML that does not parse, or a duplicate key (YAML forbids them; most parsers keep the
  last one silently, this one does not);
* a top level that is not a mapping, or a ``websocket:`` entry that is not a mapping;
* an unknown key, with a suggestion for a likely typo, e.g.
  ``kstlib.conf.yml: websocket.queue_sise: unknown key (did you mean 'queue_size'?)``;
* a value of the wrong type (``true``/``false`` is not a number, ``"10"`` in quotes is a
  string, ``1000.0`` is not an integer; an integer is fine where a number is expected;
  note that YAML reads ``1e3`` without a dot as a string, write ``1.0e3``);
* a value out of range: negative, zero where zero is forbidden, or absurd (limits below);
* a keyword-only option (a callable or an ``ssl.SSLContext``, see below) in the file.

Keyword arguments are validated by the same rules and raise the same ``ValueError`` naming
the keyword. A keyword that is not an option raises ``TypeError``, as Python does for a
bad keyword, with a suggestion for a likely typo.

Options
=======

Durations are in seconds (``int`` or ``float``; stored as ``float``). "7 days" is
604 800 s, the upper limit of every duration; anything above is taken as a mistake.

Each option is declared once, as a field of :class:`Settings` (type, default, check and
the text below); this list is generated from those fields when the module is imported.

@OPTIONS@

The keys ``url`` and ``config`` are arguments of the manager, not file keys.

Thread-safety: :class:`Settings` is immutable and may be shared between threads.
:func:`load_settings` and :func:`find_config_file` keep no state; they read the
environment, the current directory and the file at the moment they are called.
"""

# ruff: noqa: RUF009 -- _option() returns dataclasses.field(); ruff cannot see through it.

from __future__ import annotations

import dataclasses
import difflib
import enum
import logging
import os
import re
import textwrap
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any, TypeVar

import yaml

from kstlib.websocket._http import (
    InvalidValue,
    check_headers,
    check_proxy,
    check_subprotocols,
    check_url,
    redact_url,
)
from kstlib.websocket._http import show as _show
from kstlib.websocket.models import DisconnectReason, ReconnectStrategy

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_FILE_NAME",
    "FILE_OPTIONS",
    "KEYWORD_ONLY_OPTIONS",
    "OPTION_NAMES",
    "Settings",
    "find_config_file",
    "load_settings",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_U = TypeVar("_U")

#: Environment variable naming the configuration file.
CONFIG_ENV_VAR = "KSTLIB_CONFIG"
#: File name looked for in the current directory and in ``~/.config/kstlib/``.
CONFIG_FILE_NAME = "kstlib.conf.yml"
#: The section of the file this module reads.
_SECTION = "websocket"

_SECONDS_7_DAYS = 7 * 24 * 3600.0
_MAX_QUEUE_SIZE = 10_000_000
_MAX_MESSAGE_SIZE = 2**31
_MAX_ATTEMPTS = 1_000_000
_MAX_SEND_RATE = 1_000_000.0

#: A value failed validation; ``str(self)`` is the reason, without key or origin.
_Invalid = InvalidValue


class _Expected(InvalidValue):
    """``expected <what>, got <value>``; keeps ``what`` so that :func:`_or_none` extends it."""

    def __init__(self, what: str, value: Any) -> None:
        super().__init__(f"expected {what}, got {_show(value)}")
        self.what = what


# ---------------------------------------------------------------------------- checks
# Each check takes a value as given (file, mapping or keyword), returns it normalised
# and raises _Invalid with the reason.


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _or_none(check: Callable[[Any], _T], meaning: str = "") -> Callable[[Any], _T | None]:
    """``check`` that also accepts ``None`` (kept as ``None``; ``meaning`` says what it means)."""
    alternative = "null/None" + (f" ({meaning})" if meaning else "")

    def checked(value: Any) -> _T | None:
        if value is None:
            return None
        try:
            return check(value)
        except _Expected as exc:
            raise _Expected(f"{exc.what}, or {alternative}", value) from None

    return checked


def _seconds(*, zero_ok: bool = False) -> Callable[[Any], float]:
    """A check for a duration in seconds (``int`` or ``float``, not NaN, <= 7 days)."""
    limit = _SECONDS_7_DAYS
    what = f"a number of seconds {'>= 0' if zero_ok else '> 0'} and <= {limit:g} (7 days)"

    def check(value: Any) -> float:
        if not _is_number(value) or not (0 <= value <= limit) or (value == 0 and not zero_ok):
            raise _Expected(what, value)  # NaN fails the range test
        return float(value)

    return check


def _integer(*, minimum: int, maximum: int) -> Callable[[Any], int]:
    """A check for an ``int`` (not ``bool``, not ``float``) in ``[minimum, maximum]``."""
    what = f"an integer from {minimum} to {maximum}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise _Expected(what, value)
        return int(value)

    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    """A check for one of a few strings (case-insensitive, stored lower case)."""
    what = " or ".join(repr(c) for c in choices)

    def check(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Expected(what, value)

    return check


def _send_rate(value: Any) -> float:
    if not _is_number(value) or not 0 < value <= _MAX_SEND_RATE:  # also refuses NaN
        raise _Expected(f"a rate in messages per second > 0 and <= {_MAX_SEND_RATE:g}", value)
    return float(value)


def _callable(value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise _Expected("a callable", value)
    return value  # type: ignore[no-any-return]


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Expected("true or false", value)
    return value


def _ssl_context(value: Any) -> SSLContext:
    if not isinstance(value, SSLContext):
        raise _Expected("an ssl.SSLContext", value)
    return value


def _strategy(value: Any) -> ReconnectStrategy:
    if isinstance(value, ReconnectStrategy):
        return value
    if isinstance(value, str) and value.strip().upper() in ReconnectStrategy.__members__:
        return ReconnectStrategy[value.strip().upper()]
    names = ", ".join(repr(s.name.lower()) for s in ReconnectStrategy)
    raise _Expected(f"a ReconnectStrategy or one of {names}", value)


def _decode(value: Any) -> str | Callable[[str | bytes], Any] | None:
    if value is None:
        return None
    if callable(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and value.strip().lower() in ("json", "bytes"):
        return value.strip().lower()
    raise _Expected("'json', 'bytes', null/None or a callable", value)


def _subscription(index: int, entry: Any) -> dict[str, Any] | str:
    """One subscription message: a ``dict`` with ``str`` keys (copied) or a non-empty ``str``."""
    if isinstance(entry, dict):
        bad_keys = [k for k in entry if not isinstance(k, str)]
        if bad_keys:
            raise _Invalid(
                f"entry {index}: a dict message needs str keys (it is sent as JSON), "
                f"got key {bad_keys[0]!r} in {_show(entry)}"
            )
        return dict(entry)
    if isinstance(entry, str):
        if not entry:
            raise _Invalid(f"entry {index}: a str message must not be empty, got ''")
        return entry
    raise _Invalid(f"entry {index}: expected a dict or a str, got {_show(entry)}")


def _subscriptions(value: Any) -> tuple[dict[str, Any] | str, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _Expected("a list of dict or str messages", value)
    return tuple(_subscription(index, entry) for index, entry in enumerate(value))


# ---------------------------------------------------------------------------- Settings


def _option(
    default: _T, check: Callable[[Any], _U], doc: str, *, keyword_only: bool = False
) -> _T | _U:
    """Declare an option: a :class:`Settings` field with its default, check and doc.

    ``check`` validates and normalises a value (raising ``_Invalid``); ``doc`` is the
    option's entry in the module docstring; ``keyword_only`` options (Python objects) are
    refused in a file or mapping. Typed so that the field's annotation must admit both
    the default and what ``check`` returns.
    """
    metadata = {"check": check, "doc": doc, "keyword_only": keyword_only}
    return dataclasses.field(default=default, metadata=metadata)


_SECONDS = _seconds()
_CALLBACK = _or_none(_callable)


@dataclass(frozen=True, repr=False)
class Settings:
    """Every option of a ``WebSocketManager``, validated; immutable and thread-safe.

    The meaning, unit and limits of each field are in this module's docstring. Direct
    construction (and ``dataclasses.replace``) validates and normalises exactly as
    :func:`load_settings` does (a list becomes a tuple, a mapping of headers a tuple of
    pairs, a strategy name the enum member, an ``int`` duration a ``float``), and raises
    ``ValueError`` naming the field. ``source`` is the path of the configuration file used,
    ``"<mapping>"`` for a mapping, or ``None`` when no file was read. ``repr()`` hides header
    values and proxy passwords.
    """

    url: str
    subscriptions: tuple[dict[str, Any] | str, ...] = _option(
        (),
        _subscriptions,
        "Messages sent, in this order, right after every connect and reconnect: a ``dict`` "
        "(sent as JSON text) or a ``str`` (sent as is, not empty). A list in the file.",
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
        _strategy,
        "Wait before reconnect attempt *n* after a reactive loss: ``immediate`` (none), "
        "``fixed_delay`` (``reconnect_delay`` each time) or ``exponential_backoff`` "
        "(``reconnect_delay * 2**(n-1)`` capped at ``reconnect_delay_max``, with jitter). "
        "A :class:`~kstlib.websocket.models.ReconnectStrategy` member, or its name as a "
        "string, case-insensitive.",
    )
    auto_reconnect: bool = _option(
        True, _bool, "Reconnect by ``reconnect_strategy`` after a reactive loss. A boolean."
    )
    max_reconnect_attempts: int | None = _option(
        10,
        _or_none(_integer(minimum=1, maximum=_MAX_ATTEMPTS), "no limit"),
        "Consecutive failed attempts after which the consumer gets "
        "``WebSocketConnectionError``. An integer from 1 to 1 000 000, or ``null``/``None`` "
        "for no limit.",
    )
    connect_attempts: int | None = _option(
        3,
        _or_none(_integer(minimum=1, maximum=_MAX_ATTEMPTS), "same as max_reconnect_attempts"),
        "Attempts a ``connect()`` makes (the first connection after a start, before any "
        "succeeded) before it raises ``WebSocketConnectionError``, never more than "
        "``max_reconnect_attempts``; reconnects after a loss use "
        "``max_reconnect_attempts``. The default gives up on a refused port within about "
        "3 s; each retry's log line says when it will give up. An integer from 1 to "
        "1 000 000, or ``null``/``None``: as many as ``max_reconnect_attempts``.",
    )
    reconnect_delay: float = _option(
        1.0, _seconds(zero_ok=True), "Base reconnect delay in seconds. >= 0, <= 7 days."
    )
    reconnect_delay_max: float = _option(
        60.0,
        _seconds(zero_ok=True),
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
        _or_none(_SECONDS),
        "Seconds between two client pings. > 0, <= 7 days, or ``null``/``None``: no client "
        "pings (server pings are still answered).",
    )
    ping_timeout: float = _option(
        10.0,
        _SECONDS,
        "Seconds to wait for the pong before the loss is declared (``PING_TIMEOUT``). > 0, "
        "<= 7 days.",
    )
    close_timeout: float = _option(
        5.0,
        _SECONDS,
        "Seconds allowed for the closing handshake before the socket is dropped. > 0, <= 7 days.",
    )
    queue_size: int = _option(
        1000,
        _integer(minimum=1, maximum=_MAX_QUEUE_SIZE),
        "Capacity of the inbox between the engine and the consumer, in messages. An "
        "integer from 1 to 10 000 000.",
    )
    queue_overflow: str = _option(
        "block",
        _choice("block", "drop_oldest"),
        "When the inbox is full: ``block`` (back-pressure: the engine stops reading, "
        "nothing is lost) or ``drop_oldest`` (the oldest queued message is dropped and "
        "counted).",
    )
    max_message_size: int = _option(
        16 * 1024 * 1024,
        _integer(minimum=1, maximum=_MAX_MESSAGE_SIZE),
        "Largest accepted message in bytes (default 16 MiB), after decompression; larger "
        "closes with 1009. An integer from 1 to 2**31.",
    )
    max_connection_age: float | None = _option(
        None,
        _or_none(_SECONDS),
        "Seconds after which a connection is rotated proactively (reason "
        "``CONNECTION_LIMIT``), before a platform limit such as 24 h. > 0, <= 7 days, or "
        "``null``/``None`` (never).",
    )
    max_send_rate: float | None = _option(
        None,
        _or_none(_send_rate, "no limit"),
        "Most outgoing control messages (subscriptions, ``subscribe``) per second. > 0, "
        "<= 1 000 000, or ``null``/``None`` (no limit).",
    )
    decode: str | Callable[[str | bytes], Any] | None = _option(
        "json",
        _decode,
        "``json``: text frames are parsed as JSON (a text frame that is not JSON is "
        "delivered as ``str``); ``bytes``: every message as ``bytes``; ``null``/``None``: "
        "``str`` for text, ``bytes`` for binary; or (keyword only) a callable "
        "``(str | bytes) -> Any``.",
    )
    headers: tuple[tuple[str, str], ...] = _option(
        (),
        check_headers,
        "Extra HTTP headers of the opening handshake: a mapping name -> value, or a list "
        "of ``[name, value]`` pairs (a list allows a repeated name, except ``Host``, "
        "``Origin`` and ``Cookie``). Names are HTTP tokens, values are strings without "
        "CR/LF. Headers the handshake itself manages (``Upgrade``, ``Connection``, "
        "``Sec-WebSocket-*``) are refused: use ``subprotocols`` and ``compression``. Error "
        "messages never print header values (they may be secrets).",
    )
    subprotocols: tuple[str, ...] = _option(
        (),
        check_subprotocols,
        "Subprotocols offered in ``Sec-WebSocket-Protocol``, in order of preference: a "
        "list of HTTP tokens.",
    )
    ssl: SSLContext | None = _option(
        None,
        _or_none(_ssl_context),
        "An ``ssl.SSLContext`` for ``wss://``; ``None`` uses the system's default trust store.",
        keyword_only=True,
    )
    proxy: str | None = _option(
        None,
        check_proxy,
        "``http://[user:pass@]host[:port]`` (an HTTP CONNECT tunnel), ``socks4://``, "
        "``socks4a://``, ``socks5://`` or ``socks5h://`` (need the ``python-socks`` "
        "package); ``None``: direct connection. ``https://`` (TLS to the proxy) is "
        "refused: the handshake library only opens plain CONNECT tunnels; a ``wss://`` "
        "connection through an ``http://`` proxy is still encrypted end to end.",
    )
    compression: str | None = _option(
        "deflate",
        _or_none(_choice("deflate")),
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
        _or_none(_bool),
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
    before_connect: Callable[[], None] | None = _option(
        None,
        _CALLBACK,
        "``() -> None``, called on the engine thread before every connection attempt (may "
        "sleep briefly, e.g. to pace attempts under an exchange's limit).",
        keyword_only=True,
    )
    source: str | None = None

    def __post_init__(self) -> None:
        self._check_field("url", check_url)
        for name, check in _VALIDATORS.items():
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
        except _Invalid as exc:
            raise ValueError(f"Settings.{name}: {exc}") from None
        object.__setattr__(self, name, normalised)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "headers":
                text = repr(tuple((name, "***") for name, _ in value))
            elif f.name in ("proxy", "url") and isinstance(value, str):
                text = repr(redact_url(value))
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"Settings({', '.join(parts)})"


#: The option fields of :class:`Settings`, in declaration order (``url`` and ``source``
#: are not options).
_OPTION_FIELDS = tuple(f for f in dataclasses.fields(Settings) if "check" in f.metadata)
#: Every option: name -> check returning the normalised value.
_VALIDATORS: dict[str, Callable[[Any], Any]] = {f.name: f.metadata["check"] for f in _OPTION_FIELDS}
#: Options that hold Python objects: keyword arguments only, never in a file or mapping.
KEYWORD_ONLY_OPTIONS: frozenset[str] = frozenset(
    f.name for f in _OPTION_FIELDS if f.metadata["keyword_only"]
)
#: Every option name accepted as a keyword argument (``url`` and ``config`` aside).
OPTION_NAMES: frozenset[str] = frozenset(_VALIDATORS)
#: Option names accepted in the ``websocket:`` section of the file.
FILE_OPTIONS: frozenset[str] = OPTION_NAMES - KEYWORD_ONLY_OPTIONS


def _show_default(value: Any) -> str:
    """A default as the options reference spells it (YAML words for YAML values)."""
    if value == ():
        return "none"
    if isinstance(value, bool):
        return "``true``" if value else "``false``"
    if isinstance(value, enum.Enum):
        return f"``{value.name.lower()}``"
    if isinstance(value, str) or value is None:
        return f"``{value}``"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}".replace("_", " ")  # 16 777 216
    return repr(value)


# Spaces a line must not break at: "<= 7 days", "1 000 000", "16 MiB".
_GLUED_SPACE = re.compile(r"(?<=[<>=\d]) (?=\d)|(?<=\d) (?=(?:days|h|s|MiB)\b)")


def _options_reference() -> str:
    """The options reference of the module docstring, one entry per option field."""
    entries = []
    for f in _OPTION_FIELDS:
        kind = "keyword only, " if f.metadata["keyword_only"] else ""
        head = f"``{f.name}`` ({kind}default {_show_default(f.default)})"
        body = textwrap.fill(
            _GLUED_SPACE.sub("\0", f.metadata["doc"]),
            width=88,
            initial_indent="    ",
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        entries.append(f"{head}\n{body.replace(chr(0), ' ')}")
    return "\n".join(entries)


if __doc__ is not None:  # None under python -OO
    __doc__ = __doc__.replace("@OPTIONS@", _options_reference())


# ------------------------------------------------------------------------ file loading


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate mapping keys instead of keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _missing(path: Path, how: str) -> FileNotFoundError:
    what = "is a directory, not a file" if path.is_dir() else "does not exist"
    return FileNotFoundError(2, f"kstlib configuration file {how} {what}", str(path))


def find_config_file(config: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the configuration file to read, or ``None`` when there is none.

    Looks, first match wins, at ``config`` (must be an existing file), ``$KSTLIB_CONFIG``
    when set and not empty (must be an existing file), ``./kstlib.conf.yml`` and
    ``~/.config/kstlib/kstlib.conf.yml``. A leading ``~`` is expanded in the first two.

    Raises:
        FileNotFoundError: ``config`` or ``$KSTLIB_CONFIG`` names a missing file (or a
            directory); the exception's ``filename`` is that path.
    """
    if config is not None:
        if not os.fspath(config):
            raise FileNotFoundError(2, "kstlib configuration file given as config= is empty", "")
        path = Path(os.fspath(config)).expanduser()
        if not path.is_file():
            raise _missing(path, "given as config=")
        return path
    env = os.environ.get(CONFIG_ENV_VAR, "")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise _missing(path, f"named by ${CONFIG_ENV_VAR}")
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    if local.is_file():
        return local
    user = Path.home() / ".config" / "kstlib" / CONFIG_FILE_NAME
    if user.is_file():
        return user
    return None


def _read_section(path: Path) -> Mapping[Any, Any]:
    """The ``websocket:`` section of the YAML file at ``path`` (empty when absent)."""
    try:
        with path.open(encoding="utf-8") as stream:  # the stream's name goes in YAML errors
            document = yaml.load(stream, Loader=_StrictLoader)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ValueError(
            f"{path}: the top level must be a mapping of sections (such as "
            f"'{_SECTION}:'), got {type(document).__name__}"
        )
    section = document.get(_SECTION)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{path}: '{_SECTION}' must be a mapping of options, got {_show(section)}")
    return section


def _suggest(name: str, candidates: frozenset[str]) -> str:
    match = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


def _validate_section(section: Mapping[Any, Any], source: str) -> dict[str, tuple[Any, str]]:
    """Validate a file (or mapping) section; return name -> (value, origin)."""
    result: dict[str, tuple[Any, str]] = {}
    for key, value in section.items():
        where = f"{source}: {_SECTION}.{key}"
        if not isinstance(key, str):
            raise ValueError(f"{where}: unknown key {_show(key)} (option names are strings)")
        if key in KEYWORD_ONLY_OPTIONS or (key == "decode" and callable(value)):
            raise ValueError(
                f"{where}: can only be passed as a keyword argument to WebSocketManager "
                f"(it is a Python object), not set in a configuration file; got {_show(value)}"
            )
        if key in ("url", "config"):
            raise ValueError(
                f"{where}: not a configuration-file option; pass {key}= to WebSocketManager"
            )
        if key not in FILE_OPTIONS:
            hint = _suggest(key, OPTION_NAMES)
            raise ValueError(f"{where}: unknown key" + (f" ({hint})" if hint else ""))
        try:
            result[key] = (_VALIDATORS[key](value), where)
        except _Invalid as exc:
            raise ValueError(f"{where}: {exc}") from None
    return result


def _check_keywords(overrides: Mapping[str, Any]) -> None:
    """``TypeError`` for a keyword that is not an option, with a typo suggestion."""
    for name in overrides:
        if name not in OPTION_NAMES:
            hint = _suggest(name, OPTION_NAMES)
            raise TypeError(
                f"got an unexpected keyword argument {name!r}" + (f"; {hint}" if hint else "")
            )


def _config_section(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[str | None, Mapping[Any, Any]]:
    """``(source, section)`` of ``config``: a mapping, a path, or ``None`` (search)."""
    if isinstance(config, Mapping):
        inner = config.get(_SECTION, config)
        if inner is None:
            return "<mapping>", {}
        if not isinstance(inner, Mapping):
            raise ValueError(
                f"<mapping>: '{_SECTION}' must be a mapping of options, got {_show(inner)}"
            )
        return "<mapping>", inner
    if config is None or isinstance(config, (str, os.PathLike)):
        path = find_config_file(config)
        if path is None:
            return None, {}
        section = _read_section(path)
        _log.debug("kstlib.websocket configuration read from %s", path)
        return str(path), section
    raise TypeError(f"config must be a path, a mapping or None, got {type(config).__name__}")


def _check_delay_order(values: Mapping[str, tuple[Any, str]]) -> None:
    """``reconnect_delay_max >= reconnect_delay`` across layers; the error names both origins."""
    defaults = {f.name: f.default for f in _OPTION_FIELDS}
    delay, delay_from = values.get(
        "reconnect_delay", (defaults["reconnect_delay"], "built-in default")
    )
    cap, cap_from = values.get(
        "reconnect_delay_max", (defaults["reconnect_delay_max"], "built-in default")
    )
    if cap < delay:
        raise ValueError(
            f"reconnect_delay_max ({cap!r}, from {cap_from}) must be >= "
            f"reconnect_delay ({delay!r}, from {delay_from}); raise reconnect_delay_max too"
        )


def load_settings(
    url: str,
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the :class:`Settings` of a manager: defaults < file section < ``overrides``.

    ``config`` is a path, a mapping (its ``websocket`` entry if it has one, else itself),
    or ``None`` to search the usual places (:func:`find_config_file`). ``overrides`` are
    the keyword arguments the user passed explicitly; each replaces the file's value.

    Raises:
        FileNotFoundError: ``config`` or ``$KSTLIB_CONFIG`` names a missing file.
        ValueError: invalid YAML, a bad section, an unknown key, a value of the wrong type
            or out of range, in the file or in ``overrides``; the message names the file
            (or the keyword), the key and the value.
        TypeError: an override that is not an option (like Python's own error for an
            unexpected keyword argument), or a ``config`` of an unsupported type.
    """
    _check_keywords(overrides)
    try:
        check_url(url)
    except _Invalid as exc:
        raise ValueError(f"url: {exc}") from None
    source, section = _config_section(config)
    values = _validate_section(section, source or "<mapping>")
    for name, value in overrides.items():
        where = f"keyword argument {name}"
        try:
            values[name] = (_VALIDATORS[name](value), where)
        except _Invalid as exc:
            raise ValueError(f"{where}: {exc}") from None
    _check_delay_order(values)
    return Settings(url, **{name: value for name, (value, _) in values.items()}, source=source)
