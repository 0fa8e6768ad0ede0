"""How long to wait between connection attempts, and when an attempt is final."""

from __future__ import annotations

import email.utils
import math
import random
import ssl

from kstlib.websocket.exceptions import WebSocketLoginError
from kstlib.websocket.handshake import RedirectError
from kstlib.websocket.models import ReconnectStrategy

__all__ = [
    "HEALTHY_AFTER",
    "PERMANENT_HTTP_STATUSES",
    "backoff_delay",
    "is_permanent",
    "retry_after",
]

#: Seconds a connection must stay up before the reconnect attempt counter resets, so a
#: server that accepts and then drops at once exhausts the attempts instead of looping.
HEALTHY_AFTER = 5.0

#: HTTP statuses that will not change by retrying: the first attempt's error is final.
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 406, 410, 426})


def backoff_delay(
    strategy: ReconnectStrategy,
    attempt: int,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1-based).

    ``EXPONENTIAL_BACKOFF``: ``min(cap, base * 2**(attempt-1))`` with jitter, drawn in
    ``[d/2, d]`` so simultaneous clients spread out; ``FIXED_DELAY``: ``base``;
    ``IMMEDIATE``: 0.
    """
    if strategy is ReconnectStrategy.IMMEDIATE:
        return 0.0
    if strategy is ReconnectStrategy.FIXED_DELAY:
        return base
    delay = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return (rng or random).uniform(delay / 2.0, delay)


def is_permanent(exc: BaseException) -> bool:
    """True when a failed attempt will fail the same way if retried: an HTTP status in
    :data:`PERMANENT_HTTP_STATUSES`, or a certificate the server presented that does not
    verify (untrusted, expired, wrong host name), a redirect the ``redirects`` policy
    refuses, a login the server refused."""
    if isinstance(exc, WebSocketLoginError):
        return True
    cause = exc.__cause__
    if isinstance(cause, (ssl.SSLCertVerificationError, RedirectError)):
        return True
    return getattr(cause, "status_code", None) in PERMANENT_HTTP_STATUSES


def retry_after(exc: BaseException, now: float) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` of a refused handshake, in
    seconds or as an HTTP date; ``now`` is the wall-clock time), or None."""
    headers = getattr(exc.__cause__, "resp_headers", None) or {}
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - now) if math.isfinite(when) else None
