"""Tests of kstlib.websocket._http: the one copy of the handshake's rules and redaction.

Besides each check on its own, these tests pin the point of the module: the settings
(``load_settings``) and the handshake (``transport``) accept and refuse the same values,
so nothing the settings accept can fail at ``connect()`` with a ``ValueError``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kstlib.websocket import handshake, transport
from kstlib.websocket._http import (
    RESERVED_HEADERS,
    InvalidValue,
    check_header,
    check_headers,
    check_proxy,
    check_subprotocols,
    check_url,
    is_token,
    redact_url,
)
from kstlib.websocket.config import load_settings

URL = "ws://127.0.0.1:9/ws"


# --------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("text", ["X-Api-Key", "chat.v1", "a", "!#$%&'*+-.^_`|~09AZaz"])
def test_tokens(text: str) -> None:
    assert is_token(text)


@pytest.mark.parametrize("text", ["", "has space", "X-A\n", "X-A\r", "a:b", "é", "a\0", "(x)"])
def test_not_tokens(text: str) -> None:
    # "X-A\n" passed the handshake's old check (re "$" matches before a final newline).
    assert not is_token(text)


@pytest.mark.parametrize("value", [None, 5, b"X-A", ["X-A"]])
def test_only_str_is_a_token(value: Any) -> None:
    assert not is_token(value)


# -------------------------------------------------------------------------------- headers


def test_reserved_headers_include_every_handshake_header() -> None:
    assert {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    } == RESERVED_HEADERS


@pytest.mark.parametrize("name", sorted(RESERVED_HEADERS))
def test_reserved_header_is_refused_in_any_case(name: str) -> None:
    for spelling in (name, name.upper(), name.title()):
        with pytest.raises(InvalidValue, match="set by the WebSocket handshake"):
            check_header(spelling, "x")


def test_headers_mapping_and_pairs() -> None:
    assert check_headers({"X-A": "1", "Host": "h"}) == (("X-A", "1"), ("Host", "h"))
    assert check_headers([["X-A", "1"], ("X-A", "2")]) == (("X-A", "1"), ("X-A", "2"))
    assert check_headers(()) == ()


@pytest.mark.parametrize("name", ["Host", "origin", "COOKIE"])
def test_single_headers_may_not_repeat(name: str) -> None:
    with pytest.raises(InvalidValue, match="given twice"):
        check_headers([(name, "a"), (name.lower(), "b")])


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b"])
def test_header_value_control_characters_are_refused_without_showing_it(bad: str) -> None:
    secret = "sk-live-" + bad
    with pytest.raises(InvalidValue) as info:
        check_header("X-Key", secret)
    assert "sk-live" not in str(info.value)
    assert "'X-Key'" in str(info.value)


@pytest.mark.parametrize(
    "value", ["X-A: 1", b"x", 5, [["X-A"]], [("X-A", "1", "2")], {"X-A": 5}, {5: "x"}]
)
def test_bad_headers_shapes(value: Any) -> None:
    with pytest.raises(InvalidValue):
        check_headers(value)


# --------------------------------------------------------------------------- subprotocols


def test_subprotocols() -> None:
    assert check_subprotocols(["v2", "v1"]) == ("v2", "v1")
    assert check_subprotocols(()) == ()


@pytest.mark.parametrize("value", ["chat", b"chat", {"a": 1}, ["a b"], [""], [5], None])
def test_bad_subprotocols(value: Any) -> None:
    with pytest.raises(InvalidValue):
        check_subprotocols(value)


# ------------------------------------------------------------------------------------ url


@pytest.mark.parametrize("url", ["ws://h", "wss://h:443/x?y=1", "WS://[::1]:9/"])
def test_good_urls(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://h/", "h:80", "ws://", "ws://h:0/", "ws://h:99999/", "ws://a b/", "ws://[::1"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(InvalidValue):
        check_url(url)


# ---------------------------------------------------------------------------------- proxy


@pytest.mark.parametrize(
    "proxy",
    [
        "http://p:3128",
        "HTTP://p",
        "http://u:pw@p:3128/",
        "socks4://p",
        "socks4a://p:1",
        "socks5://[::1]:1080",
        "socks5h://u:pw@p:1080",
        None,
    ],
)
def test_good_proxies(proxy: str | None) -> None:
    assert check_proxy(proxy) == proxy


@pytest.mark.parametrize(
    "proxy",
    [
        "ftp://p:21",
        "socks6://p:1",
        "http://:8080",
        "http://p:0",
        "http://p:99999",
        "p:3128",
        "http://p/path",
        "http://p?q=1",
        "http://p#f",
        "http://p q",
        "http://[::1",
        8080,
    ],
)
def test_bad_proxies(proxy: Any) -> None:
    with pytest.raises(InvalidValue):
        check_proxy(proxy)


def test_https_proxy_is_refused_with_the_way_out() -> None:
    with pytest.raises(InvalidValue) as info:
        check_proxy("https://user:hunter2@proxy:443")
    message = str(info.value)
    assert "https:// proxy" in message and "not supported" in message
    assert "http://host:port" in message  # what to write instead
    assert "hunter2" not in message and "user:***@proxy:443" in message


# ------------------------------------------------------------------------------ redaction


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@h:1/x?y#z", "http://u:***@h:1/x?y#z"),
        ("http://u@h", "http://u@h"),
        ("http://h:80", "http://h:80"),
        ("http://u:@h", "http://u:***@h"),
        ("HTTP://u:pw@h", "HTTP://u:***@h"),
        ("//u:pw@h/", "//u:***@h/"),
        ("http://u:a@b:c@h/p@q", "http://u:***@h/p@q"),  # "@" in the password
        ("http://bob:s%40cret@h", "http://bob:***@h"),
        ("http://u:pw@[::1", "http://u:***@[::1"),  # urlsplit refuses it: still hidden
        ("ws://h/a//b:c@d", "ws://h/a//b:c@d"),  # no userinfo: "@" in the path
        ("ht\ttp://u:pw@h", "<URL with a password>"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


_user = st.text(alphabet=st.characters(blacklist_characters=":/?#@[]"), max_size=8)
_password = st.text(alphabet=st.characters(blacklist_characters="/?#[]"), max_size=8)


@given(
    scheme=st.sampled_from(["http", "socks5h", "ws", "WSS", ""]),
    user=_user,
    password=_password,
    host=st.sampled_from(["h", "proxy.test", "[::1]", "127.0.0.1"]),
    port=st.sampled_from(["", ":1", ":3128"]),
    rest=st.sampled_from(["", "/", "/p@x?q=a:b@c#f"]),
)
def test_redaction_hides_exactly_the_password(
    scheme: str, user: str, password: str, host: str, port: str, rest: str
) -> None:
    url = f"{scheme}{':' if scheme else ''}//{user}:{password}@{host}{port}{rest}"
    try:
        before = urlsplit(url)
        before.port  # noqa: B018 - urlsplit checks the port lazily
    except ValueError:
        return
    redacted = redact_url(url)
    if redacted == "<URL with a password>":
        return
    after = urlsplit(redacted)
    assert after.password == "***"
    assert (after.username, after.hostname, after.port) == (
        before.username,
        before.hostname,
        before.port,
    )
    assert (after.path, after.query, after.fragment) == (before.path, before.query, before.fragment)


@given(st.text(max_size=40))
def test_redaction_never_raises_and_never_leaves_a_password(text: str) -> None:
    redacted = redact_url(text)
    try:
        password = urlsplit(text).password
    except ValueError:
        return
    if password is not None and redacted != "<URL with a password>":
        assert urlsplit(redacted).password == "***"


# ------------------------------------------------------ settings and handshake agree


_BAD_HEADERS: list[Any] = [
    {"Sec-WebSocket-Accept": "x"},  # the settings refused it, the handshake did not
    {"X-A\n": "v"},  # the handshake's old token check let it through
    [("Host", "a"), ("host", "b")],  # the settings accepted it, the handshake refused it
    {"X-A": "a\r\nInjected: 1"},
    {"Upgrade": "h2c"},
    {"Bad Name": "x"},
    {"X-A": 5},
]


@pytest.mark.parametrize("headers", _BAD_HEADERS)
def test_bad_headers_fail_in_settings_and_handshake(headers: Any) -> None:
    with pytest.raises(ValueError, match=r"^keyword argument headers: "):
        load_settings(URL, headers=headers)
    with pytest.raises(ValueError):
        transport.open_connection(URL, timeout=1.0, headers=headers)


@pytest.mark.parametrize("proxy", ["https://proxy:3128", "ftp://p:21", "http://p:0", "http://p/x"])
def test_bad_proxies_fail_in_settings_and_handshake(proxy: str) -> None:
    with pytest.raises(ValueError, match=r"^keyword argument proxy: "):
        load_settings(URL, proxy=proxy)
    with pytest.raises(ValueError):
        transport.open_connection(URL, timeout=1.0, proxy=proxy)


@pytest.mark.parametrize("protocols", [["a b"], [""], ["x\n"]])
def test_bad_subprotocols_fail_in_settings_and_handshake(protocols: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^keyword argument subprotocols: "):
        load_settings(URL, subprotocols=protocols)
    with pytest.raises(ValueError):
        transport.open_connection(URL, timeout=1.0, subprotocols=protocols)


@pytest.mark.parametrize(
    "proxy", ["http://p:3128", "HTTP://u:pw@p", "socks4://p", "socks4a://p", "socks5h://p:1"]
)
def test_every_proxy_the_settings_accept_the_handshake_accepts(proxy: str) -> None:
    settings = load_settings(URL, proxy=proxy)
    assert settings.proxy is not None
    spec = transport._proxy_spec(settings.proxy)
    assert spec.scheme == urlsplit(proxy).scheme.lower()


def test_headers_the_settings_accept_reach_the_request() -> None:
    settings = load_settings(URL, headers=[("X-A", "1 "), ("X-A", "2"), ("Origin", "https://o")])
    lines, single = handshake.split_headers(settings.headers)
    assert lines == ["X-A: 1", "X-A: 2"]
    assert single == {"origin": "https://o"}
