"""Fixtures of the integration tests (``sim`` is in the suite's root conftest)."""

from __future__ import annotations

from rawserver import serve

__all__ = ["serve"]  # the hand-written server fixture, for every integration test
