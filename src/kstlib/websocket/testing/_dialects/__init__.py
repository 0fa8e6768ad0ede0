"""The venues the simulator can play, one module each, on one small interface
(:class:`~kstlib.websocket.testing._dialects.base.Dialect`).

=========  ==========================================================================
name       module
=========  ==========================================================================
binance    :mod:`.binance`: market streams (default), listenKey user-data streams
okx        :mod:`.okx`: text ``ping``/``pong``, 4004 silence cut, ``login``, books seqId
bybit      :mod:`.bybit`: ``{"op":"ping"}``, ``auth`` with ``expires``, orderbook ``u``
coinbase   :mod:`.coinbase`: JWT per subscribe, heartbeats channel, ``sequence_num``
kraken     :mod:`.kraken`: token per connection, heartbeat channel, executions ``sequence``
deribit    :mod:`.deribit`: JSON-RPC, ``test_request`` heartbeats, ``public/auth``, change ids
=========  ==========================================================================

Importing this package imports no server library (the dialects touch ``websockets``
objects only on the simulator's thread).
"""

from __future__ import annotations

from kstlib.websocket.testing._dialects.base import Dialect, VenueDialect
from kstlib.websocket.testing._dialects.binance import BinanceDialect
from kstlib.websocket.testing._dialects.bybit import BybitDialect
from kstlib.websocket.testing._dialects.coinbase import CoinbaseDialect
from kstlib.websocket.testing._dialects.deribit import DeribitDialect
from kstlib.websocket.testing._dialects.kraken import KrakenDialect
from kstlib.websocket.testing._dialects.okx import OkxDialect

__all__ = [
    "DIALECTS",
    "BinanceDialect",
    "BybitDialect",
    "CoinbaseDialect",
    "DeribitDialect",
    "Dialect",
    "KrakenDialect",
    "OkxDialect",
    "VenueDialect",
    "make_dialect",
]

#: Dialect classes by name.
DIALECTS: dict[str, type[Dialect]] = {
    cls.name: cls
    for cls in (
        BinanceDialect,
        OkxDialect,
        BybitDialect,
        CoinbaseDialect,
        KrakenDialect,
        DeribitDialect,
    )
}


def make_dialect(dialect: str | Dialect) -> Dialect:
    """A dialect instance from a name (default options) or an instance (as is)."""
    if isinstance(dialect, Dialect):
        return dialect
    if isinstance(dialect, str) and dialect.lower() in DIALECTS:
        return DIALECTS[dialect.lower()]()
    known = ", ".join(sorted(DIALECTS))
    raise ValueError(f"unknown dialect {dialect!r}; known: {known}")
