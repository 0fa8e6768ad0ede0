"""The value checks of the configuration options, one per kind of value.

A check takes a value as the user gave it (from a file, a mapping or a keyword argument),
returns it normalised (an ``int`` duration becomes a ``float``, a strategy name the enum
member, a list a tuple...) and raises :class:`Invalid` whose message is the reason only:
the caller adds the option name and where the value came from. The factories
(:func:`seconds`, :func:`integer`, :func:`choice`, :func:`or_none`) build a check from
its limits; their ``Expected`` message states those limits.

The limits themselves (7 days for a duration, 10 000 000 queued messages...) are
constants of this module, so that the options reference and the errors agree.

Thread-safety: checks are pure functions; they keep no state and may run on any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ssl import SSLContext
from typing import Any, TypeVar

from kstlib.websocket._http import InvalidValue
from kstlib.websocket._http import show as _show
from kstlib.websocket.models import ReconnectStrategy

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_MESSAGE_SIZE",
    "MAX_QUEUE_BYTES",
    "MAX_QUEUE_SIZE",
    "MAX_SECONDS",
    "MAX_SEND_RATE",
    "Expected",
    "Invalid",
    "check_bool",
    "check_callable",
    "check_decode",
    "check_send_rate",
    "check_ssl_context",
    "check_strategy",
    "check_subscriptions",
    "choice",
    "instance_of",
    "integer",
    "or_factory",
    "or_none",
    "seconds",
]

_T = TypeVar("_T")

#: Longest accepted duration (7 days, in seconds); anything above is taken as a mistake.
MAX_SECONDS = 7 * 24 * 3600.0
MAX_QUEUE_SIZE = 10_000_000
MAX_QUEUE_BYTES = 2**40
MAX_MESSAGE_SIZE = 2**31
MAX_ATTEMPTS = 1_000_000
MAX_SEND_RATE = 1_000_000.0

#: A value failed validation; ``str(self)`` is the reason, without key or origin.
Invalid = InvalidValue


class Expected(InvalidValue):
    """``expected <what>, got <value>``; keeps ``what`` so that :func:`or_none` extends it."""

    def __init__(self, what: str, value: Any) -> None:
        super().__init__(f"expected {what}, got {_show(value)}")
        self.what = what


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------- factories


def or_none(check: Callable[[Any], _T], meaning: str = "") -> Callable[[Any], _T | None]:
    """``check`` that also accepts ``None`` (kept as ``None``; ``meaning`` says what it means)."""
    alternative = "null/None" + (f" ({meaning})" if meaning else "")

    def checked(value: Any) -> _T | None:
        if value is None:
            return None
        try:
            return check(value)
        except Expected as exc:
            raise Expected(f"{exc.what}, or {alternative}", value) from None

    return checked


def or_factory(check: Callable[[Any], _T]) -> Callable[[Any], _T | Callable[[], Any]]:
    """``check`` that also accepts a factory: a callable kept as is, called before every
    connection attempt, whose result the engine checks with ``check`` then."""

    def checked(value: Any) -> _T | Callable[[], Any]:
        if callable(value):
            return value  # type: ignore[no-any-return]
        try:
            return check(value)
        except Expected as exc:
            raise Expected(f"{exc.what}, or a callable returning one", value) from None

    return checked


def seconds(*, zero_ok: bool = False) -> Callable[[Any], float]:
    """A check for a duration in seconds (``int`` or ``float``, not NaN, <= 7 days)."""
    limit = MAX_SECONDS
    what = f"a number of seconds {'>= 0' if zero_ok else '> 0'} and <= {limit:g} (7 days)"

    def check(value: Any) -> float:
        if not _is_number(value) or not (0 <= value <= limit) or (value == 0 and not zero_ok):
            raise Expected(what, value)  # NaN fails the range test
        return float(value)

    return check


def integer(*, minimum: int, maximum: int) -> Callable[[Any], int]:
    """A check for an ``int`` (not ``bool``, not ``float``) in ``[minimum, maximum]``."""
    what = f"an integer from {minimum} to {maximum}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise Expected(what, value)
        return int(value)

    return check


def choice(*choices: str) -> Callable[[Any], str]:
    """A check for one of a few strings (case-insensitive, stored lower case)."""
    what = " or ".join(repr(c) for c in choices)

    def check(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise Expected(what, value)

    return check


# ---------------------------------------------------------------------------- checks


def check_send_rate(value: Any) -> float:
    """A rate in messages per second, > 0 and <= ``MAX_SEND_RATE`` (NaN refused)."""
    if not _is_number(value) or not 0 < value <= MAX_SEND_RATE:  # also refuses NaN
        raise Expected(f"a rate in messages per second > 0 and <= {MAX_SEND_RATE:g}", value)
    return float(value)


def check_callable(value: Any) -> Callable[..., Any]:
    """Any callable, returned as is (its signature is not checked)."""
    if not callable(value):
        raise Expected("a callable", value)
    return value  # type: ignore[no-any-return]


def check_bool(value: Any) -> bool:
    """``True`` or ``False`` only (``0``, ``1`` and ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        raise Expected("true or false", value)
    return value


def check_ssl_context(value: Any) -> SSLContext:
    """An ``ssl.SSLContext``, returned as is."""
    if not isinstance(value, SSLContext):
        raise Expected("an ssl.SSLContext", value)
    return value


def instance_of(cls: type[_T], what: str) -> Callable[[Any], _T]:
    """A check that the value is an instance of ``cls`` (described as ``what``)."""

    def check(value: Any) -> _T:
        if not isinstance(value, cls):
            raise Expected(what, value)
        return value

    return check


def check_strategy(value: Any) -> ReconnectStrategy:
    """A :class:`ReconnectStrategy` member, or its name (case-insensitive) as a string."""
    if isinstance(value, ReconnectStrategy):
        return value
    if isinstance(value, str) and value.strip().upper() in ReconnectStrategy.__members__:
        return ReconnectStrategy[value.strip().upper()]
    names = ", ".join(repr(s.name.lower()) for s in ReconnectStrategy)
    raise Expected(f"a ReconnectStrategy or one of {names}", value)


def check_decode(value: Any) -> str | Callable[[str | bytes], Any] | None:
    """``'json'`` or ``'bytes'`` (case-insensitive, stored lower case), ``None`` or a callable."""
    if value is None:
        return None
    if callable(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and value.strip().lower() in ("json", "bytes"):
        return value.strip().lower()
    raise Expected("'json', 'bytes', null/None or a callable", value)


def _subscription(index: int, entry: Any) -> dict[str, Any] | str:
    """One subscription message: a ``dict`` with ``str`` keys (copied) or a non-empty ``str``."""
    if isinstance(entry, dict):
        bad_keys = [k for k in entry if not isinstance(k, str)]
        if bad_keys:
            raise Invalid(
                f"entry {index}: a dict message needs str keys (it is sent as JSON), "
                f"got key {bad_keys[0]!r} in {_show(entry)}"
            )
        return dict(entry)
    if isinstance(entry, str):
        if not entry:
            raise Invalid(f"entry {index}: a str message must not be empty, got ''")
        return entry
    raise Invalid(f"entry {index}: expected a dict or a str, got {_show(entry)}")


def check_subscriptions(value: Any) -> tuple[dict[str, Any] | str, ...]:
    """A list or tuple of messages (see :func:`_subscription`), returned as a tuple.

    The error names the index of the first bad entry.
    """
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise Expected("a list of dict or str messages", value)
    return tuple(_subscription(index, entry) for index, entry in enumerate(value))
