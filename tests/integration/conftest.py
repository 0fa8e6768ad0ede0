"""Fixtures of the integration tests (``sim`` is in the suite's root conftest)."""

from __future__ import annotations

from busservers import bus, nats_server, redis_server
from rawserver import cert_files, client_tls, other_cert_files, serve, server_tls

#: The hand-written server and certificate fixtures, and the real message buses, for
#: every integration test.
__all__ = [
    "bus",
    "cert_files",
    "client_tls",
    "nats_server",
    "other_cert_files",
    "redis_server",
    "serve",
    "server_tls",
]
