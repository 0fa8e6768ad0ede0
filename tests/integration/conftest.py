"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kstlib.websocket.testing import ExchangeSimulator


@pytest.fixture
def sim() -> Iterator[ExchangeSimulator]:
    """A running simulator with a steady 200 events/s per stream, stopped after the test."""
    with ExchangeSimulator(event_rate=200) as s:
        yield s
