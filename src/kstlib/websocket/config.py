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

``subscriptions`` (default: none)
    Messages sent, in this order, right after every connect and reconnect: a ``dict``
    (sent as JSON text) or a ``str`` (sent as is, not empty). A list in the file.
``should_disconnect`` (keyword only, default ``None``)
    ``() -> bool`` polled every ``disconnect_check_interval`` while connected; ``True``
    closes the connection with reason ``CALLBACK_TRIGGERED``.
``should_reconnect`` (keyword only, default ``None``)
    ``() -> bool`` polled every ``reconnect_check_interval`` while proactively
    disconnected; ``True`` reconnects.
``disconnect_check_interval`` (default 5.0)
    Seconds between two ``should_disconnect()`` calls. > 0, <= 7 days.
``reconnect_check_interval`` (default 1.0)
    Seconds between two ``should_reconnect()`` calls. > 0, <= 7 days.
``reconnect_strategy`` (default ``exponential_backoff``)
    Wait before reconnect attempt *n* after a reactive loss: ``immediate`` (none),
    ``fixed_delay`` (``reconnect_delay`` each time) or ``exponential_backoff``
    (``reconnect_delay * 2**(n-1)`` capped at ``reconnect_delay_max``, with jitter). A
    :class:`~kstlib.websocket.models.ReconnectStrategy` member, or its name as a string,
    case-insensitive.
``auto_reconnect`` (default ``true``)
    Reconnect by ``reconnect_strategy`` after a reactive loss. A boolean.
``max_reconnect_attempts`` (default 10)
    Consecutive failed attempts after which the consumer gets
    ``WebSocketConnectionError``. An integer from 1 to 1 000 000, or ``null``/``None``
    for no limit.
``reconnect_delay`` (default 1.0)
    Base reconnect delay in seconds. >= 0, <= 7 days.
``reconnect_delay_max`` (default 60.0)
    Cap of the exponential backoff in seconds. >= ``reconnect_delay``, <= 7 days (so
    raising ``reconnect_delay`` above 60 requires raising this too).
``connect_timeout`` (default 10.0)
    Seconds allowed for TCP connect + TLS + opening handshake. > 0, <= 7 days.
``ping_interval`` (default 30.0)
    Seconds between two client pings. > 0, <= 7 days, or ``null``/``None``: no client
    pings (server pings are still answered).
``ping_timeout`` (default 10.0)
    Seconds to wait for the pong before the loss is declared (``PING_TIMEOUT``). > 0,
    <= 7 days.
``close_timeout`` (default 5.0)
    Seconds allowed for the closing handshake before the socket is dropped. > 0,
    <= 7 days.
``queue_size`` (default 1000)
    Capacity of the inbox between the engine and the consumer, in messages. An integer
    from 1 to 10 000 000.
``queue_overflow`` (default ``block``)
    When the inbox is full: ``block`` (back-pressure: the engine stops reading, nothing
    is lost) or ``drop_oldest`` (the oldest queued message is dropped and counted).
``max_message_size`` (default 16 MiB = 16 777 216)
    Largest accepted message in bytes, after decompression; larger closes with 1009.
    An integer from 1 to 2**31.
``max_connection_age`` (default ``None``)
    Seconds after which a connection is rotated proactively (reason
    ``CONNECTION_LIMIT``), before a platform limit such as 24 h. > 0, <= 7 days, or
    ``null``/``None`` (never).
``max_send_rate`` (default ``None``)
    Most outgoing control messages (subscriptions, ``subscribe``) per second. > 0,
    <= 1 000 000, or ``null``/``None`` (no limit).
``decode`` (default ``json``)
    ``json``: text frames are parsed as JSON (a text frame that is not JSON is delivered
    as ``str``); ``bytes``: every message as ``bytes``; ``null``/``None``: ``str`` for
    text, ``bytes`` for binary; or (keyword only) a callable ``(str | bytes) -> Any``.
``headers`` (default: none)
    Extra HTTP headers of the opening handshake: a mapping name -> value, or a list of
    ``[name, value]`` pairs (a list allows a repeated name). Names are HTTP tokens,
    values are strings without CR/LF. Headers the handshake itself manages (``Upgrade``,
    ``Connection``, ``Sec-WebSocket-*``) are refused: use ``subprotocols`` and
    ``compression``. Error messages never print header values (they may be secrets).
``subprotocols`` (default: none)
    Subprotocols offered in ``Sec-WebSocket-Protocol``, in order of preference: a list
    of HTTP tokens.
``ssl`` (keyword only, default ``None``)
    An ``ssl.SSLContext`` for ``wss://``; ``None`` uses the system's default trust store.
``proxy`` (default ``None``)
    ``http://[user:pass@]host[:port]``, ``https://...``, ``socks4://``, ``socks4a://``,
    ``socks5://`` or ``socks5h://``; ``None``: direct connection.
``compression`` (default ``deflate``)
    ``deflate``: offer permessage-deflate (RFC 7692); ``null``/``None``: do not offer it.
``on_connect``, ``on_disconnect``, ``on_message``, ``on_error`` (keyword only)
    Callbacks run on the engine thread: ``on_connect()``, ``on_disconnect(reason)``,
    ``on_message(message)``, ``on_error(exception)``.
``handover`` (default ``None``)
    Make-before-break rotation: for a proactive rotation (``max_connection_age``,
    ``schedule_reconnect``, ``should_handover``) the engine opens and subscribes the new
    connection while the old one still streams, switches once the new stream has caught
    up (duplicates of the overlap dropped by ``dedupe_key``) and then closes the old one.
    ``true`` requires ``dedupe_key``; ``null``/``None``: on exactly when ``dedupe_key`` is
    given; ``false``: off.
``dedupe_key`` (keyword only, default ``None``)
    ``(message) -> hashable | None``: the identity of a message (e.g. a trade id) used to
    drop the overlap's duplicates during a handover. ``None`` keys are never dropped.
``should_handover`` (keyword only, default ``None``)
    ``(message) -> bool``, called for every incoming message: True starts a handover now
    (e.g. on a server's announced shutdown). Needs ``handover`` on.
``before_connect`` (keyword only, default ``None``)
    ``() -> None``, called on the engine thread before every connection attempt (may
    sleep briefly, e.g. to pace attempts under an exchange's limit).

The keys ``url`` and ``config`` are arguments of the manager, not file keys.

Thread-safety: :class:`Settings` is immutable and may be shared between threads.
:func:`load_settings` and :func:`find_config_file` keep no state; they read the
environment, the current directory and the file at the moment they are called.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit

import yaml

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

#: Environment variable naming the configuration file.
CONFIG_ENV_VAR = "KSTLIB_CONFIG"
#: File name looked for in the current directory and in ``~/.config/kstlib/``.
CONFIG_FILE_NAME = "kstlib.conf.yml"
#: The section of the file this module reads.
_SECTION = "websocket"

_SECONDS_7_DAYS = 7 * 24 * 3600.0
_MAX_QUEUE_SIZE = 10_000_000
_MAX_MESSAGE_SIZE = 2**31
_MAX_RECONNECT_ATTEMPTS = 1_000_000
_MAX_SEND_RATE = 1_000_000.0
_PROXY_SCHEMES = frozenset({"http", "https", "socks4", "socks4a", "socks5", "socks5h"})
_RESERVED_HEADERS = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Invalid(Exception):
    """A value failed validation; ``str(self)`` is the reason, without key or origin."""


# ----------------------------------------------------------------------------- helpers


def _show(value: Any) -> str:
    """A short ``repr`` of a bad value for an error message."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _seconds(
    *, zero_ok: bool = False, none_ok: bool = False, maximum: float = _SECONDS_7_DAYS
) -> Callable[[Any], float | None]:
    """A validator for a duration in seconds; returns it as ``float``."""
    low = ">= 0" if zero_ok else "> 0"
    expected = f"a number of seconds {low} and <= {maximum:g} (7 days)"
    if none_ok:
        expected += ", or null/None"

    def check(value: Any) -> float | None:
        if value is None and none_ok:
            return None
        if not _is_number(value):
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        if value != value or value < 0 or (value == 0 and not zero_ok) or value > maximum:  # NaN
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        return float(value)

    return check


def _integer(*, minimum: int, maximum: int, none_ok: bool = False) -> Callable[[Any], int | None]:
    """A validator for an integer in ``[minimum, maximum]``."""
    expected = f"an integer from {minimum} to {maximum}"
    if none_ok:
        expected += ", or null/None (no limit)"

    def check(value: Any) -> int | None:
        if value is None and none_ok:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        if not minimum <= value <= maximum:
            raise _Invalid(f"expected {expected}, got {_show(value)}")
        return int(value)

    return check


def _choice(*choices: str, none_ok: bool) -> Callable[[Any], str | None]:
    """A validator for one of a few strings (case-insensitive, stored lower case)."""
    expected = " or ".join(repr(c) for c in choices)
    if none_ok:
        expected += " or null/None"

    def check(value: Any) -> str | None:
        if value is None and none_ok:
            return None
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Invalid(f"expected {expected}, got {_show(value)}")

    return check


def _callable_or_none(value: Any) -> Callable[..., Any] | None:
    if value is None:
        return None
    if not callable(value):
        raise _Invalid(f"expected a callable or None, got {_show(value)}")
    return value  # type: ignore[no-any-return]


def _check_subscriptions(value: Any) -> tuple[dict[str, Any] | str, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _Invalid(f"expected a list of dict or str messages, got {_show(value)}")
    result: list[dict[str, Any] | str] = []
    for index, entry in enumerate(value):
        if isinstance(entry, dict):
            bad_keys = [k for k in entry if not isinstance(k, str)]
            if bad_keys:
                raise _Invalid(
                    f"entry {index}: a dict message needs str keys (it is sent as JSON), "
                    f"got key {bad_keys[0]!r} in {_show(entry)}"
                )
            result.append(dict(entry))
        elif isinstance(entry, str):
            if not entry:
                raise _Invalid(f"entry {index}: a str message must not be empty, got ''")
            result.append(entry)
        else:
            raise _Invalid(f"entry {index}: expected a dict or a str, got {_show(entry)}")
    return tuple(result)


def _check_strategy(value: Any) -> ReconnectStrategy:
    if isinstance(value, ReconnectStrategy):
        return value
    names = ", ".join(repr(s.name.lower()) for s in ReconnectStrategy)
    if isinstance(value, str):
        key = value.strip().upper()
        if key in ReconnectStrategy.__members__:
            return ReconnectStrategy[key]
    raise _Invalid(f"expected a ReconnectStrategy or one of {names}, got {_show(value)}")


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _check_bool_or_none(value: Any) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _Invalid(f"expected true, false or null, got {_show(value)}")
    return value


def _check_decode(value: Any) -> str | Callable[[str | bytes], Any] | None:
    if value is None:
        return None
    if callable(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and value.strip().lower() in ("json", "bytes"):
        return value.strip().lower()
    raise _Invalid(f"expected 'json', 'bytes', null/None or a callable, got {_show(value)}")


def _check_header_pair(name: Any, value: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
        raise _Invalid(f"header name must be an HTTP token (str), got {_show(name)}")
    if name.lower() in _RESERVED_HEADERS:
        raise _Invalid(
            f"header {name!r} is set by the WebSocket handshake itself "
            "(use subprotocols= or compression= instead)"
        )
    # The value is never printed: headers often carry API keys.
    if not isinstance(value, str):
        raise _Invalid(f"header {name!r}: value must be a str, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise _Invalid(f"header {name!r}: value must not contain CR, LF or NUL")
    return (name, value)


def _check_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple(_check_header_pair(k, v) for k, v in value.items())
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _Invalid(
            f"expected a mapping name -> value or a list of [name, value] pairs, "
            f"got {type(value).__name__}"
        )
    pairs: list[tuple[str, str]] = []
    for index, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise _Invalid(
                f"entry {index}: expected a [name, value] pair, got {type(pair).__name__}"
                + (f" of length {len(pair)}" if isinstance(pair, (list, tuple)) else "")
            )
        pairs.append(_check_header_pair(pair[0], pair[1]))
    return tuple(pairs)


def _check_subprotocols(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise _Invalid(f"expected a list of subprotocol names, got {_show(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not _TOKEN_RE.fullmatch(item):
            raise _Invalid(f"entry {index}: expected an HTTP token (str), got {_show(item)}")
    return tuple(value)


def _check_ssl(value: Any) -> SSLContext | None:
    if value is None or isinstance(value, SSLContext):
        return value
    raise _Invalid(f"expected an ssl.SSLContext or None, got {_show(value)}")


def _redact_url(value: str) -> str:
    """``value`` with the password of its userinfo replaced by ``***``."""
    parts = urlsplit(value)
    if parts.password is None:
        return value
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _check_proxy(value: Any) -> str | None:
    if value is None:
        return None
    expected = "a proxy URL such as 'http://host:port' or 'socks5://host:port', or null/None"
    if not isinstance(value, str):
        raise _Invalid(f"expected {expected}, got {_show(value)}")
    shown = repr(_redact_url(value))
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _Invalid(f"expected {expected}, got {shown}: {exc}") from None
    if parts.scheme.lower() not in _PROXY_SCHEMES:
        schemes = ", ".join(sorted(_PROXY_SCHEMES))
        raise _Invalid(f"proxy scheme must be one of {schemes}, got {shown}")
    if not parts.hostname:
        raise _Invalid(f"expected {expected}, got {shown} (no host)")
    if port == 0:
        raise _Invalid(f"proxy port must be from 1 to 65535, got {shown}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _Invalid(f"a proxy URL has no path, query or fragment, got {shown}")
    return value


def _check_url(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a 'ws://' or 'wss://' URL, got {_show(value)}")
    shown = repr(_redact_url(value))
    if any(c.isspace() for c in value):
        raise _Invalid(f"a URL must not contain whitespace, got {shown}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise _Invalid(f"expected a 'ws://' or 'wss://' URL, got {shown}: {exc}") from None
    if parts.scheme.lower() not in ("ws", "wss"):
        raise _Invalid(f"expected a 'ws://' or 'wss://' URL, got {shown}")
    if not parts.hostname:
        raise _Invalid(f"the URL has no host: {shown}")
    if port == 0:
        raise _Invalid(f"the URL port must be from 1 to 65535, got {shown}")
    return value


def _check_send_rate(value: Any) -> float | None:
    if value is None:
        return None
    expected = f"a rate in messages per second > 0 and <= {_MAX_SEND_RATE:g}, or null/None"
    if not _is_number(value) or not 0 < value <= _MAX_SEND_RATE:  # also refuses NaN
        raise _Invalid(f"expected {expected}, got {_show(value)}")
    return float(value)


#: Every option: name -> validator returning the normalised value.
_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "subscriptions": _check_subscriptions,
    "should_disconnect": _callable_or_none,
    "should_reconnect": _callable_or_none,
    "disconnect_check_interval": _seconds(),
    "reconnect_check_interval": _seconds(),
    "reconnect_strategy": _check_strategy,
    "auto_reconnect": _check_bool,
    "max_reconnect_attempts": _integer(minimum=1, maximum=_MAX_RECONNECT_ATTEMPTS, none_ok=True),
    "reconnect_delay": _seconds(zero_ok=True),
    "reconnect_delay_max": _seconds(zero_ok=True),
    "connect_timeout": _seconds(),
    "ping_interval": _seconds(none_ok=True),
    "ping_timeout": _seconds(),
    "close_timeout": _seconds(),
    "queue_size": _integer(minimum=1, maximum=_MAX_QUEUE_SIZE),
    "queue_overflow": _choice("block", "drop_oldest", none_ok=False),
    "max_message_size": _integer(minimum=1, maximum=_MAX_MESSAGE_SIZE),
    "max_connection_age": _seconds(none_ok=True),
    "max_send_rate": _check_send_rate,
    "decode": _check_decode,
    "headers": _check_headers,
    "subprotocols": _check_subprotocols,
    "ssl": _check_ssl,
    "proxy": _check_proxy,
    "compression": _choice("deflate", none_ok=True),
    "on_connect": _callable_or_none,
    "on_disconnect": _callable_or_none,
    "on_message": _callable_or_none,
    "on_error": _callable_or_none,
    "handover": _check_bool_or_none,
    "dedupe_key": _callable_or_none,
    "should_handover": _callable_or_none,
    "before_connect": _callable_or_none,
}


#: Options that hold Python objects: keyword arguments only, never in a file or mapping.
KEYWORD_ONLY_OPTIONS: frozenset[str] = frozenset(
    {
        "should_disconnect",
        "should_reconnect",
        "ssl",
        "on_connect",
        "on_disconnect",
        "on_message",
        "on_error",
        "dedupe_key",
        "should_handover",
        "before_connect",
    }
)
#: Every option name accepted as a keyword argument (``url`` and ``config`` aside).
OPTION_NAMES: frozenset[str] = frozenset(_VALIDATORS)
#: Option names accepted in the ``websocket:`` section of the file.
FILE_OPTIONS: frozenset[str] = OPTION_NAMES - KEYWORD_ONLY_OPTIONS


# ---------------------------------------------------------------------------- Settings


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
    subscriptions: tuple[dict[str, Any] | str, ...] = ()
    should_disconnect: Callable[[], bool] | None = None
    should_reconnect: Callable[[], bool] | None = None
    disconnect_check_interval: float = 5.0
    reconnect_check_interval: float = 1.0
    reconnect_strategy: ReconnectStrategy = ReconnectStrategy.EXPONENTIAL_BACKOFF
    auto_reconnect: bool = True
    max_reconnect_attempts: int | None = 10
    reconnect_delay: float = 1.0
    reconnect_delay_max: float = 60.0
    connect_timeout: float = 10.0
    ping_interval: float | None = 30.0
    ping_timeout: float = 10.0
    close_timeout: float = 5.0
    queue_size: int = 1000
    queue_overflow: str = "block"
    max_message_size: int = 16 * 1024 * 1024
    max_connection_age: float | None = None
    max_send_rate: float | None = None
    decode: str | Callable[[str | bytes], Any] | None = "json"
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    ssl: SSLContext | None = None
    proxy: str | None = None
    compression: str | None = "deflate"
    on_connect: Callable[[], None] | None = None
    on_disconnect: Callable[[DisconnectReason], None] | None = None
    on_message: Callable[[Any], None] | None = None
    on_error: Callable[[BaseException], None] | None = None
    handover: bool | None = None
    dedupe_key: Callable[[Any], Hashable | None] | None = None
    should_handover: Callable[[Any], bool] | None = None
    before_connect: Callable[[], None] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        try:
            _check_url(self.url)
        except _Invalid as exc:
            raise ValueError(f"Settings.url: {exc}") from None
        for name, check in _VALIDATORS.items():
            try:
                normalised = check(getattr(self, name))
            except _Invalid as exc:
                raise ValueError(f"Settings.{name}: {exc}") from None
            object.__setattr__(self, name, normalised)
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

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "headers":
                text = repr(tuple((name, "***") for name, _ in value))
            elif f.name in ("proxy", "url") and isinstance(value, str):
                text = repr(_redact_url(value))
            else:
                text = repr(value)
            parts.append(f"{f.name}={text}")
        return f"Settings({', '.join(parts)})"


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
    for name in overrides:
        if name not in OPTION_NAMES:
            hint = _suggest(name, OPTION_NAMES)
            raise TypeError(
                f"got an unexpected keyword argument {name!r}" + (f"; {hint}" if hint else "")
            )
    try:
        _check_url(url)
    except _Invalid as exc:
        raise ValueError(f"url: {exc}") from None

    source: str | None
    section: Mapping[Any, Any]
    if isinstance(config, Mapping):
        source = "<mapping>"
        inner = config.get(_SECTION, config)
        if inner is None:
            inner = {}
        if not isinstance(inner, Mapping):
            raise ValueError(
                f"{source}: '{_SECTION}' must be a mapping of options, got {_show(inner)}"
            )
        section = inner
    elif config is None or isinstance(config, (str, os.PathLike)):
        path = find_config_file(config)
        if path is None:
            source, section = None, {}
        else:
            source = str(path)
            section = _read_section(path)
            _log.debug("kstlib.websocket configuration read from %s", path)
    else:
        raise TypeError(f"config must be a path, a mapping or None, got {type(config).__name__}")

    values = _validate_section(section, source or "<mapping>")
    for name, value in overrides.items():
        where = f"keyword argument {name}"
        try:
            values[name] = (_VALIDATORS[name](value), where)
        except _Invalid as exc:
            raise ValueError(f"{where}: {exc}") from None

    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
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

    return Settings(url, **{name: value for name, (value, _) in values.items()}, source=source)
