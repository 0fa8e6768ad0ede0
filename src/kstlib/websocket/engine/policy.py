"""The proactive rules of one connection: when to ask ``should_disconnect()`` and when
its age or a schedule calls for a rotation. Pure: no I/O, no clock.

* ``should_disconnect`` is polled every ``disconnect_check_interval`` (never when it is
  not set, so an idle connection does not wake up for nothing);
* ``max_connection_age`` past ``connected_at`` asks for a rotation (``CONNECTION_LIMIT``);
* a ``schedule_reconnect()`` with handover on asks for one at its time (``SCHEDULED``).

Thread-safety: used by the engine thread only.
"""

from __future__ import annotations

import math

from kstlib.websocket.models import DisconnectReason

__all__ = ["ProactivePolicy"]

_INF = math.inf


class ProactivePolicy:
    """Timers of the proactive rules for a connection made at ``connected_at``."""

    def __init__(
        self,
        *,
        check_interval: float | None,
        max_age: float | None,
        connected_at: float,
        now: float,
    ) -> None:
        self.check_interval = check_interval
        self.next_check = now + check_interval if check_interval else _INF
        self.age_deadline = connected_at + max_age if max_age else _INF
        self.rotate_at = _INF

    def check_due(self, now: float) -> bool:
        """True when ``should_disconnect()`` is to be asked now (and re-arms the timer)."""
        if now < self.next_check:
            return False
        assert self.check_interval is not None
        self.next_check = now + self.check_interval
        return True

    def schedule_rotation(self, at: float) -> None:
        self.rotate_at = at

    def rotation_due(self, now: float) -> DisconnectReason | None:
        """The reason of a rotation due now (each timer fires once), else None."""
        if now >= self.age_deadline:
            self.age_deadline = _INF
            return DisconnectReason.CONNECTION_LIMIT
        if now >= self.rotate_at:
            self.rotate_at = _INF
            return DisconnectReason.SCHEDULED
        return None

    def wake_at(self) -> float:
        return min(self.next_check, self.age_deadline, self.rotate_at)
