"""Failures of the opening handshake as the engine sees them: which are final, how long
it waits before the next attempt, and what each attempt costs."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import FAST, no_leaks, wait_for
from rawserver import RawServer, drain_until_eof, response_101

from kstlib.websocket import WebSocketConnectionError, WebSocketManager
from kstlib.websocket.testing import ExchangeSimulator

pytestmark = pytest.mark.timeout(60)


def greet_then_wait(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
    conn.sendall(response_101(headers))
    drain_until_eof(conn)


def test_an_untrusted_certificate_is_final_at_once(
    serve: Callable[..., RawServer], server_tls: ssl.SSLContext
) -> None:
    srv = serve(greet_then_wait, server_tls)  # a self-signed certificate nobody trusts
    with no_leaks():
        ws = WebSocketManager(srv.url, connect_attempts=None, max_reconnect_attempts=None)
        with pytest.raises(WebSocketConnectionError) as exc:
            ws.connect()
    assert exc.value.attempts == 1  # not retried as if it were a network blip
    assert isinstance(exc.value.__cause__.__cause__, ssl.SSLCertVerificationError)
    assert "certificate" in str(exc.value).lower()


def test_a_hostname_mismatch_is_final_at_once(
    serve: Callable[..., RawServer], other_cert_files: tuple[Path, Path]
) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*other_cert_files)  # valid for other.test only
    srv = serve(greet_then_wait, server_ctx)
    trusting = ssl.create_default_context(cafile=str(other_cert_files[0]))
    with no_leaks():
        ws = WebSocketManager(srv.url, ssl=trusting, max_reconnect_attempts=None)
        with pytest.raises(WebSocketConnectionError) as exc:
            ws.connect()
    assert exc.value.attempts == 1
    assert "mismatch" in str(exc.value).lower() or "match" in str(exc.value).lower()


def test_retry_after_is_honoured_within_the_cap(
    sim: ExchangeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kstlib.websocket")
    sim.refuse_handshake(503, times=1, headers={"Retry-After": "30"})
    with no_leaks():
        ws = WebSocketManager(
            sim.stream_url("btcusdt@trade"),
            reconnect_delay=0.01,
            reconnect_delay_max=0.3,  # caps the server's 30 s
        )
        ws.connect()  # the second attempt, after the capped wait, succeeds
        assert ws.is_connected and sim.handshake_attempts == 2
        ws.close()
    (line,) = [r.getMessage() for r in caplog.records if "connection attempt" in r.getMessage()]
    assert "retrying in 0.3 s (the server asked Retry-After 30 s)" in line


def test_one_tls_context_per_manager_and_none_for_plain_ws(
    sim: ExchangeSimulator,
    serve: Callable[..., RawServer],
    server_tls: ssl.SSLContext,
    cert_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[ssl.SSLContext] = []
    original = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        ctx = original(*args, **kwargs)  # type: ignore[arg-type]
        built.append(ctx)
        return ctx

    monkeypatch.setattr(ssl, "create_default_context", counting)
    with no_leaks(), WebSocketManager(sim.stream_url("btcusdt@trade"), **FAST) as ws:
        for n in (2, 3, 4):
            ws.kill()
            assert wait_for(lambda n=n: ws.stats.connects == n)
    assert built == []  # plain ws:// needs no TLS context at all

    monkeypatch.setenv("SSL_CERT_FILE", str(cert_files[0]))  # the default context trusts it
    srv = serve(greet_then_wait, server_tls)
    with no_leaks(), WebSocketManager(srv.url.replace("127.0.0.1", "localhost"), **FAST) as ws:
        for n in (2, 3):
            ws.kill()
            assert wait_for(lambda n=n: ws.stats.connects == n)
    assert len(built) == 1  # three connections, one context


def test_a_redirect_to_another_origin_is_final_and_never_followed(
    serve: Callable[..., RawServer],
) -> None:
    other = serve(greet_then_wait)  # must never be contacted

    def redirect(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        location = other.url.replace("127.0.0.1", "localhost")
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\n\r\n".encode())

    srv = serve(redirect)
    with no_leaks(), pytest.raises(WebSocketConnectionError) as exc:
        WebSocketManager(
            srv.url, headers={"Authorization": "Bearer secret"}, connect_attempts=None, **FAST
        ).connect()
    assert exc.value.attempts == 1 and "302" in str(exc.value)
    assert other.requests == []


def test_redirects_off_refuses_even_the_same_origin(serve: Callable[..., RawServer]) -> None:
    def redirect(conn: socket.socket, headers: dict[str, str], _raw: bytes) -> None:
        conn.sendall(b"HTTP/1.1 301 Moved\r\nLocation: /elsewhere\r\n\r\n")

    srv = serve(redirect)
    with no_leaks(), pytest.raises(WebSocketConnectionError):
        WebSocketManager(srv.url, redirects="off", **FAST).connect()
    assert len(srv.requests) == 1
