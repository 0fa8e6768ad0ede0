"""Fixtures of the integration tests (``sim`` is in the suite's root conftest)."""

from __future__ import annotations

from rawserver import cert_files, client_tls, other_cert_files, serve, server_tls

#: The hand-written server and certificate fixtures, for every integration test.
__all__ = ["cert_files", "client_tls", "other_cert_files", "serve", "server_tls"]
