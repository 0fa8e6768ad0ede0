"""Tests of kstlib.websocket.config: defaults, file discovery, precedence, every error."""

from __future__ import annotations

import dataclasses
import math
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from kstlib.websocket.config import (
    CONFIG_ENV_VAR,
    FILE_OPTIONS,
    KEYWORD_ONLY_OPTIONS,
    OPTION_NAMES,
    Settings,
    find_config_file,
    load_settings,
)
from kstlib.websocket.models import DisconnectReason, ReconnectStrategy

URL = "ws://127.0.0.1:9/ws/btcusdt@trade"

# The guide's "Configuration" example, verbatim (indented under websocket:).
GUIDE_EXAMPLE = """\
websocket:
  # Connection settings
  connect_timeout: 10.0
  ping_interval: 30.0
  ping_timeout: 10.0
  # Reconnection settings
  reconnect_delay: 1.0
  reconnect_delay_max: 60.0
  max_reconnect_attempts: 10
  # Queue settings
  queue_size: 1000
  # Proactive control
  disconnect_check_interval: 5.0
"""


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home and an empty working directory; no $KSTLIB_CONFIG. Returns the cwd."""
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    monkeypatch.chdir(cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_section(path: Path, section: dict[str, Any]) -> Path:
    return write(path, yaml.safe_dump({"websocket": section}))


def home_config() -> Path:
    return Path.home() / ".config" / "kstlib" / "kstlib.conf.yml"


# ------------------------------------------------------------------------------ defaults


EXPECTED_DEFAULTS: dict[str, Any] = {
    "subscriptions": (),
    "should_disconnect": None,
    "should_reconnect": None,
    "disconnect_check_interval": 5.0,
    "reconnect_check_interval": 1.0,
    "reconnect_strategy": ReconnectStrategy.EXPONENTIAL_BACKOFF,
    "auto_reconnect": True,
    "max_reconnect_attempts": 10,
    "connect_attempts": 3,
    "reconnect_delay": 1.0,
    "reconnect_delay_max": 60.0,
    "connect_timeout": 10.0,
    "ping_interval": 30.0,
    "ping_timeout": 10.0,
    "close_timeout": 5.0,
    "receive_timeout": None,
    "queue_size": 1000,
    "queue_max_bytes": 16 * 1024 * 1024,
    "queue_overflow": "block",
    "max_message_size": 16 * 1024 * 1024,
    "max_connection_age": None,
    "max_send_rate": None,
    "decode": "json",
    "headers": (),
    "subprotocols": (),
    "ssl": None,
    "proxy": None,
    "compression": "deflate",
    "on_connect": None,
    "on_disconnect": None,
    "on_message": None,
    "on_batch": None,
    "is_permanent_failure": None,
    "heartbeat": None,
    "login": None,
    "sequence": None,
    "on_gap": None,
    "timestamps": False,
    "redirects": "same_origin",
    "on_error": None,
    "handover": None,
    "dedupe_key": None,
    "should_handover": None,
    "before_connect": None,
}


def test_option_names_cover_every_field() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"url", "source"}
    assert fields == OPTION_NAMES == set(EXPECTED_DEFAULTS)
    assert FILE_OPTIONS == OPTION_NAMES - KEYWORD_ONLY_OPTIONS
    assert "decode" in FILE_OPTIONS  # a name in the file, a callable only as a keyword


def test_defaults_without_any_file() -> None:
    settings = load_settings(URL)
    assert settings.url == URL
    assert settings.source is None
    for name, expected in EXPECTED_DEFAULTS.items():
        assert getattr(settings, name) == expected, name
    assert settings == Settings(URL)


def test_settings_is_frozen() -> None:
    settings = load_settings(URL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.queue_size = 5  # type: ignore[misc]


def test_durations_are_stored_as_float() -> None:
    settings = load_settings(URL, connect_timeout=3, reconnect_delay=0, ping_interval=7)
    assert type(settings.connect_timeout) is float and settings.connect_timeout == 3.0
    assert type(settings.reconnect_delay) is float and settings.reconnect_delay == 0.0
    assert type(settings.ping_interval) is float


# ----------------------------------------------------------------------- the guide's file


def test_guide_example_file_loads_with_exactly_its_values(isolated: Path) -> None:
    path = write(isolated / "kstlib.conf.yml", GUIDE_EXAMPLE)
    settings = load_settings(URL)
    assert settings.source == str(path)
    assert settings.connect_timeout == 10.0
    assert settings.ping_interval == 30.0
    assert settings.ping_timeout == 10.0
    assert settings.reconnect_delay == 1.0
    assert settings.reconnect_delay_max == 60.0
    assert settings.max_reconnect_attempts == 10
    assert settings.queue_size == 1000
    assert settings.disconnect_check_interval == 5.0


def test_guide_example_values_are_really_read(isolated: Path) -> None:
    # Same layout, values changed: proves the file is read rather than matching defaults.
    new = {
        "connect_timeout": "12.5",
        "ping_interval": "31.0",
        "ping_timeout": "12.5",
        "reconnect_delay": "2.0",
        "reconnect_delay_max": "61.0",
        "max_reconnect_attempts": "11",
        "queue_size": "1001",
        "disconnect_check_interval": "6.0",
    }
    changed = GUIDE_EXAMPLE
    for key, value in new.items():
        changed, count = re.subn(rf"(?m)^(  {key}): .*$", rf"\1: {value}", changed)
        assert count == 1, key
    write(isolated / "kstlib.conf.yml", changed)
    s = load_settings(URL)
    assert (s.connect_timeout, s.ping_interval, s.ping_timeout) == (12.5, 31.0, 12.5)
    assert (s.reconnect_delay, s.reconnect_delay_max, s.max_reconnect_attempts) == (2.0, 61.0, 11)
    assert (s.queue_size, s.disconnect_check_interval) == (1001, 6.0)


# ---------------------------------------------------------------------------- precedence

# key -> (file value, keyword value, normalised file value, normalised keyword value)
PRECEDENCE: dict[str, tuple[Any, Any, Any, Any]] = {
    "subscriptions": (
        ["a"],
        [{"method": "SUBSCRIBE", "id": 1}],
        ("a",),
        ({"method": "SUBSCRIBE", "id": 1},),
    ),
    "disconnect_check_interval": (2, 3.5, 2.0, 3.5),
    "reconnect_check_interval": (0.25, 4, 0.25, 4.0),
    "reconnect_strategy": (
        "fixed_delay",
        ReconnectStrategy.IMMEDIATE,
        ReconnectStrategy.FIXED_DELAY,
        ReconnectStrategy.IMMEDIATE,
    ),
    "auto_reconnect": (False, True, False, True),
    "max_reconnect_attempts": (None, 3, None, 3),
    "connect_attempts": (None, 5, None, 5),
    "reconnect_delay": (0, 2.5, 0.0, 2.5),
    "reconnect_delay_max": (90, 120.0, 90.0, 120.0),
    "connect_timeout": (1.5, 2, 1.5, 2.0),
    "ping_interval": (None, 15, None, 15.0),
    "ping_timeout": (3, 4, 3.0, 4.0),
    "close_timeout": (1, 0.5, 1.0, 0.5),
    "receive_timeout": (2, None, 2.0, None),
    "queue_size": (5, 7, 5, 7),
    "timestamps": (True, False, True, False),
    "redirects": ("off", "same_origin", "off", "same_origin"),
    "queue_max_bytes": (None, 4096, None, 4096),
    "queue_overflow": ("drop_oldest", "block", "drop_oldest", "block"),
    "max_message_size": (1024, 2**31, 1024, 2**31),
    "max_connection_age": (86_000, None, 86_000.0, None),
    "max_send_rate": (5, 4.5, 5.0, 4.5),
    "decode": (None, "bytes", None, "bytes"),
    "headers": (
        {"X-Api-Key": "k"},
        [("X-A", "1"), ("X-A", "2")],
        (("X-Api-Key", "k"),),
        (("X-A", "1"), ("X-A", "2")),
    ),
    "subprotocols": (["v1.chat"], ("a", "b"), ("v1.chat",), ("a", "b")),
    "proxy": (
        "http://proxy:3128",
        "socks5://127.0.0.1:1080",
        "http://proxy:3128",
        "socks5://127.0.0.1:1080",
    ),
    "compression": (None, "deflate", None, "deflate"),
    "handover": (False, None, False, None),
}


def test_precedence_table_covers_every_file_option() -> None:
    assert set(PRECEDENCE) == FILE_OPTIONS


@pytest.mark.parametrize("key", sorted(PRECEDENCE))
def test_file_beats_default_and_keyword_beats_file(isolated: Path, key: str) -> None:
    file_value, kw_value, file_expected, kw_expected = PRECEDENCE[key]
    assert file_expected != EXPECTED_DEFAULTS[key]
    assert kw_expected != file_expected
    write_section(isolated / "kstlib.conf.yml", {key: file_value})
    from_file = load_settings(URL)
    assert getattr(from_file, key) == file_expected
    from_keyword = load_settings(URL, **{key: kw_value})
    assert getattr(from_keyword, key) == kw_expected
    assert from_keyword.source == from_file.source == str(isolated / "kstlib.conf.yml")


def test_only_passed_keywords_override(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 5, "ping_timeout": 3})
    settings = load_settings(URL, ping_timeout=4)
    assert settings.queue_size == 5  # from the file: not passed as a keyword
    assert settings.ping_timeout == 4.0  # keyword wins
    assert settings.close_timeout == 5.0  # neither: default


def test_keyword_none_overrides_a_file_value(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"ping_interval": 20, "max_reconnect_attempts": 4})
    settings = load_settings(URL, ping_interval=None, max_reconnect_attempts=None)
    assert settings.ping_interval is None
    assert settings.max_reconnect_attempts is None


def test_keyword_only_options_are_kept() -> None:
    context = ssl.create_default_context()

    def on_disconnect(reason: DisconnectReason) -> None:
        del reason

    def decoder(raw: str | bytes) -> int:
        return len(raw)

    settings = load_settings(
        URL,
        should_disconnect=lambda: False,
        should_reconnect=lambda: True,
        on_connect=lambda: None,
        on_disconnect=on_disconnect,
        on_message=print,
        on_error=print,
        ssl=context,
        decode=decoder,
    )
    assert settings.ssl is context
    assert settings.on_disconnect is on_disconnect
    assert settings.decode is decoder
    assert settings.should_reconnect is not None and settings.should_reconnect() is True


# ----------------------------------------------------------------------------- discovery


def test_no_file_anywhere() -> None:
    assert find_config_file() is None
    assert load_settings(URL).source is None


def test_file_in_working_directory(isolated: Path) -> None:
    path = write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    assert find_config_file() == Path.cwd() / "kstlib.conf.yml"
    assert path.samefile(Path.cwd() / "kstlib.conf.yml")
    assert load_settings(URL).queue_size == 11


def test_file_in_home_config() -> None:
    path = write_section(home_config(), {"queue_size": 12})
    assert find_config_file() == path
    settings = load_settings(URL)
    assert settings.queue_size == 12
    assert settings.source == str(path)


def test_working_directory_beats_home(isolated: Path) -> None:
    write_section(home_config(), {"queue_size": 12})
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    assert load_settings(URL).queue_size == 11


def test_env_var_beats_working_directory_and_home(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_section(home_config(), {"queue_size": 12})
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    env_file = write_section(tmp_path / "elsewhere" / "custom.yml", {"queue_size": 13})
    monkeypatch.setenv(CONFIG_ENV_VAR, str(env_file))
    assert find_config_file() == env_file
    settings = load_settings(URL)
    assert settings.queue_size == 13
    assert settings.source == str(env_file)


def test_env_var_expands_tilde(monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_section(Path.home() / "my.yml", {"queue_size": 14})
    monkeypatch.setenv(CONFIG_ENV_VAR, "~/my.yml")
    assert find_config_file() == path
    assert load_settings(URL).queue_size == 14


def test_empty_env_var_is_ignored(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    monkeypatch.setenv(CONFIG_ENV_VAR, "")
    assert load_settings(URL).queue_size == 11


def test_config_path_beats_everything(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_section(home_config(), {"queue_size": 12})
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    monkeypatch.setenv(CONFIG_ENV_VAR, str(write_section(tmp_path / "env.yml", {"queue_size": 13})))
    explicit = write_section(tmp_path / "explicit.yml", {"queue_size": 15})
    assert load_settings(URL, config=explicit).queue_size == 15  # a Path
    assert load_settings(URL, config=str(explicit)).queue_size == 15  # a str
    assert load_settings(URL, config=explicit).source == str(explicit)
    assert find_config_file(explicit) == explicit


def test_missing_config_path_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kstlib.conf.yml"
    with pytest.raises(FileNotFoundError, match="config=") as info:
        load_settings(URL, config=missing)
    assert info.value.filename == str(missing)
    assert str(missing) in str(info.value)


def test_missing_config_path_wins_over_existing_defaults(isolated: Path, tmp_path: Path) -> None:
    # A typo in config= must not silently fall back to ./kstlib.conf.yml.
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})
    with pytest.raises(FileNotFoundError):
        load_settings(URL, config=tmp_path / "typo.yml")


def test_config_path_that_is_a_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="directory"):
        load_settings(URL, config=tmp_path)


def test_empty_config_path_raises(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})  # not a fallback
    with pytest.raises(FileNotFoundError, match="empty"):
        load_settings(URL, config="")


def test_env_var_pointing_at_missing_file_raises(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11})  # not a fallback
    missing = tmp_path / "gone.yml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=CONFIG_ENV_VAR) as info:
        load_settings(URL)
    assert info.value.filename == str(missing)


# ------------------------------------------------------------------- file shape & content


def test_empty_file_gives_defaults(isolated: Path) -> None:
    path = write(isolated / "kstlib.conf.yml", "")
    settings = load_settings(URL)
    assert settings.source == str(path)
    assert settings == dataclasses.replace(Settings(URL), source=str(path))


def test_comments_only_file_and_empty_section_give_defaults(isolated: Path) -> None:
    write(isolated / "kstlib.conf.yml", "# nothing yet\n")
    assert load_settings(URL).queue_size == 1000
    write(isolated / "kstlib.conf.yml", "websocket:\n  # queue_size: 5\n")
    assert load_settings(URL).queue_size == 1000


def test_other_sections_are_ignored(isolated: Path) -> None:
    write(
        isolated / "kstlib.conf.yml",
        "logging:\n  level: debug\n  queue_sise: 3\nresilience:\n  retries: 4\n"
        "websocket:\n  queue_size: 9\n",
    )
    assert load_settings(URL).queue_size == 9
    write(isolated / "kstlib.conf.yml", "logging:\n  level: debug\n")
    assert load_settings(URL).queue_size == 1000


def test_yaml_merge_keys_are_supported(isolated: Path) -> None:
    write(
        isolated / "kstlib.conf.yml",
        "base: &base\n  queue_size: 3\n  ping_timeout: 2\n"
        "websocket:\n  <<: *base\n  queue_size: 4\n",
    )
    settings = load_settings(URL)
    assert (settings.queue_size, settings.ping_timeout) == (4, 2.0)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("websocket: [queue_size: 1\n", "invalid YAML"),
        ("websocket:\n  queue_size: 1\n   ping_timeout: 2\n", "invalid YAML"),
        ("websocket:\n  queue_size: 1\n  queue_size: 2\n", "duplicate key 'queue_size'"),
        ("- websocket\n- queue_size\n", "top level must be a mapping"),
        ("just a string\n", "top level must be a mapping"),
        ("websocket: 5\n", "'websocket' must be a mapping"),
        ("websocket:\n  - queue_size: 5\n", "'websocket' must be a mapping"),
        ("websocket: fast\n", "'websocket' must be a mapping"),
    ],
)
def test_bad_file_shape_raises_value_error_naming_the_file(
    isolated: Path, text: str, fragment: str
) -> None:
    path = write(isolated / "kstlib.conf.yml", text)
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    message = str(info.value)
    assert str(path) in message
    assert fragment in message


def test_non_utf8_file_raises(isolated: Path) -> None:
    path = isolated / "kstlib.conf.yml"
    path.write_bytes(b"websocket:\n  queue_size: \xff\n")
    with pytest.raises(ValueError, match="UTF-8") as info:
        load_settings(URL)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ unknown & forbidden keys


def test_unknown_key_suggests_the_close_option(isolated: Path) -> None:
    write(isolated / "kstlib.conf.yml", "websocket:\n  queue_sise: 5\n")
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    assert str(info.value) == (
        f"{isolated / 'kstlib.conf.yml'}: websocket.queue_sise: unknown key "
        "(did you mean 'queue_size'?)"
    )


def test_unknown_key_without_close_match(isolated: Path) -> None:
    write(isolated / "kstlib.conf.yml", "websocket:\n  colour: blue\n")
    with pytest.raises(ValueError, match=r"websocket\.colour: unknown key$"):
        load_settings(URL)


@pytest.mark.parametrize("key", ["source", "reconnect", "pingInterval"])
def test_other_unknown_keys(isolated: Path, key: str) -> None:
    write_section(isolated / "kstlib.conf.yml", {key: 1})
    with pytest.raises(ValueError, match=rf"kstlib\.conf\.yml: websocket\.{key}: unknown key"):
        load_settings(URL)


def test_non_string_key_is_unknown(isolated: Path) -> None:
    write(isolated / "kstlib.conf.yml", "websocket:\n  10: 5\n")
    with pytest.raises(ValueError, match=r"kstlib\.conf\.yml: websocket\.10: unknown key"):
        load_settings(URL)


@pytest.mark.parametrize("key", ["url", "config"])
def test_manager_arguments_are_not_file_keys(isolated: Path, key: str) -> None:
    write_section(isolated / "kstlib.conf.yml", {key: "ws://example/"})
    with pytest.raises(ValueError, match=rf"kstlib\.conf\.yml: websocket\.{key}: not a config"):
        load_settings(URL)


@pytest.mark.parametrize("key", sorted(KEYWORD_ONLY_OPTIONS))
def test_keyword_only_option_in_file_raises(isolated: Path, key: str) -> None:
    write(isolated / "kstlib.conf.yml", f"websocket:\n  {key}: my_module.my_function\n")
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    message = str(info.value)
    assert f"websocket.{key}" in message
    assert "kstlib.conf.yml" in message
    assert "keyword argument" in message
    assert "'my_module.my_function'" in message


@pytest.mark.parametrize("key", sorted(KEYWORD_ONLY_OPTIONS))
def test_keyword_only_option_in_mapping_raises_even_when_null(key: str) -> None:
    with pytest.raises(ValueError, match=rf"<mapping>: websocket\.{key}: can only be passed"):
        load_settings(URL, config={key: None})


def test_callable_decode_in_mapping_raises() -> None:
    with pytest.raises(ValueError, match=r"websocket\.decode: can only be passed as a keyword"):
        load_settings(URL, config={"websocket": {"decode": bytes.decode}})


def test_unknown_keyword_raises_type_error_with_suggestion() -> None:
    with pytest.raises(TypeError) as info:
        load_settings(URL, queue_sise=5)
    assert str(info.value) == (
        "got an unexpected keyword argument 'queue_sise'; did you mean 'queue_size'?"
    )
    with pytest.raises(TypeError, match="unexpected keyword argument 'source'"):
        load_settings(URL, source="x.yml")
    with pytest.raises(TypeError, match=r"'zzz'$"):
        load_settings(URL, zzz=1)


def test_unknown_keyword_is_reported_before_reading_the_file(isolated: Path) -> None:
    write(isolated / "kstlib.conf.yml", "websocket: [broken\n")
    with pytest.raises(TypeError):
        load_settings(URL, on_conect=print)


def test_config_of_unsupported_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="config must be"):
        load_settings(URL, config=42)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bad values

# (key, bad value): YAML-representable, one case per wrong type and per out-of-range value.
BAD_VALUES: list[tuple[str, Any]] = [
    ("subscriptions", "btcusdt@trade"),  # a bare string, not a list
    ("subscriptions", {"method": "SUBSCRIBE"}),  # a single dict, not a list
    ("subscriptions", [5]),
    ("subscriptions", [["nested"]]),
    ("subscriptions", [""]),
    ("subscriptions", [{1: "int key"}]),
    ("disconnect_check_interval", "5"),
    ("disconnect_check_interval", True),
    ("disconnect_check_interval", 0),
    ("disconnect_check_interval", -1.0),
    ("disconnect_check_interval", 604_801),
    ("reconnect_check_interval", [1]),
    ("reconnect_check_interval", 0.0),
    ("reconnect_check_interval", None),
    ("reconnect_strategy", 3),
    ("reconnect_strategy", "linear"),
    ("reconnect_strategy", None),
    ("auto_reconnect", "yes please"),
    ("auto_reconnect", 1),
    ("auto_reconnect", None),
    ("max_reconnect_attempts", 2.5),
    ("max_reconnect_attempts", "10"),
    ("max_reconnect_attempts", False),
    ("max_reconnect_attempts", 0),
    ("max_reconnect_attempts", -3),
    ("max_reconnect_attempts", 1_000_001),
    ("connect_attempts", 0),
    ("connect_attempts", -1),
    ("connect_attempts", 1_000_001),
    ("connect_attempts", 2.0),
    ("connect_attempts", "3"),
    ("connect_attempts", True),
    ("reconnect_delay", "1s"),
    ("reconnect_delay", -0.5),
    ("reconnect_delay", 10**9),
    ("reconnect_delay_max", [60]),
    ("reconnect_delay_max", -1),
    ("reconnect_delay_max", 604_801.0),
    ("connect_timeout", None),
    ("connect_timeout", "10"),
    ("connect_timeout", 0),
    ("connect_timeout", 1e12),
    ("connect_timeout", 10**400),
    ("ping_interval", "30"),
    ("ping_interval", 0),
    ("ping_interval", -5),
    ("ping_timeout", False),
    ("ping_timeout", 0),
    ("ping_timeout", 700_000),
    ("close_timeout", {}),
    ("close_timeout", -1),
    ("queue_size", 1000.0),
    ("queue_size", "1000"),
    ("queue_size", True),
    ("queue_size", 0),
    ("queue_size", -1),
    ("queue_size", 10_000_001),
    ("queue_overflow", 5),
    ("queue_overflow", "drop_newest"),
    ("queue_overflow", None),
    ("max_message_size", "16MB"),
    ("max_message_size", 1.5),
    ("max_message_size", 0),
    ("max_message_size", 2**31 + 1),
    ("max_connection_age", "24h"),
    ("max_connection_age", 0),
    ("max_connection_age", 604_801),
    ("max_send_rate", "5/s"),
    ("max_send_rate", 0),
    ("max_send_rate", -5),
    ("max_send_rate", 10_000_000),
    ("max_send_rate", 10**400),
    ("decode", 5),
    ("decode", "xml"),
    ("decode", True),
    ("headers", "X-A: b"),
    ("headers", 5),
    ("headers", {"X-A": 5}),
    ("headers", {"Bad Name": "x"}),
    ("headers", {"X-A": "a\r\nInjected: yes"}),
    ("headers", {"Upgrade": "h2c"}),
    ("headers", {"Sec-WebSocket-Protocol": "chat"}),
    ("headers", [["only-name"]]),
    ("headers", [["X-A", "1", "extra"]]),
    ("headers", ["X-A"]),
    ("subprotocols", "chat"),
    ("subprotocols", ["has space"]),
    ("subprotocols", [5]),
    ("subprotocols", [""]),
    ("proxy", 8080),
    ("proxy", "ftp://proxy:21"),
    ("proxy", "http://:8080"),
    ("proxy", "http://proxy:99999"),
    ("proxy", "proxy:3128"),
    ("proxy", "http://proxy:3128/path"),
    ("proxy", "https://proxy:443"),  # TLS to the proxy: refused when built, not at connect()
    ("proxy", "http://[::1"),  # urlsplit refuses it: still a ValueError naming the key
    ("compression", "gzip"),
    ("compression", True),
    ("compression", "permessage-deflate"),
    ("handover", "yes"),
    ("handover", 1),
    ("queue_max_bytes", 0),
    ("queue_max_bytes", 1.5),
    ("queue_max_bytes", "16MiB"),
    ("queue_max_bytes", 2**40 + 1),
    ("receive_timeout", 0),
    ("receive_timeout", "1"),
    ("receive_timeout", 604_801),
    ("timestamps", "yes"),
    ("timestamps", 1),
    ("redirects", "always"),
    ("redirects", None),
]


def _case_id(case: tuple[str, Any]) -> str:
    return f"{case[0]}={case[1]!r}"[:60]


def test_bad_values_cover_every_file_option() -> None:
    assert {key for key, _ in BAD_VALUES} == FILE_OPTIONS


def _assert_names_value(message: str, key: str, value: Any) -> None:
    if key == "headers":
        # Header values may be secrets: the message names the header, never its value.
        assert "Injected" not in message
        return
    if key == "proxy" and isinstance(value, str):
        assert repr(value) in message
        return
    if key in ("subscriptions", "subprotocols") and isinstance(value, list) and value:
        assert repr(value[0]) in message  # the bad entry
        return
    assert repr(value)[:70] in message  # very long values are shortened


@pytest.mark.parametrize("case", BAD_VALUES, ids=_case_id)
def test_bad_value_in_file_raises_naming_key_value_and_file(
    isolated: Path, case: tuple[str, Any]
) -> None:
    key, value = case
    path = write_section(isolated / "kstlib.conf.yml", {key: value})
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    message = str(info.value)
    assert message.startswith(f"{path}: websocket.{key}: "), message
    _assert_names_value(message, key, value)


@pytest.mark.parametrize("case", BAD_VALUES, ids=_case_id)
def test_bad_value_as_keyword_mapping_or_field_raises(case: tuple[str, Any]) -> None:
    key, value = case
    with pytest.raises(ValueError) as info:
        load_settings(URL, **{key: value})
    message = str(info.value)
    assert message.startswith(f"keyword argument {key}: "), message
    _assert_names_value(message, key, value)
    with pytest.raises(ValueError) as info:
        load_settings(URL, config={"websocket": {key: value}})
    assert str(info.value).startswith(f"<mapping>: websocket.{key}: ")
    _assert_names_value(str(info.value), key, value)
    with pytest.raises(ValueError) as info:
        Settings(URL, **{key: value})
    assert str(info.value).startswith(f"Settings.{key}: ")
    _assert_names_value(str(info.value), key, value)


@pytest.mark.parametrize(
    ("yaml_value", "key"),
    [
        (".nan", "ping_timeout"),
        (".inf", "connect_timeout"),
        ("-.inf", "reconnect_delay"),
        (".nan", "max_send_rate"),
        (".inf", "max_connection_age"),
        ("1e3", "queue_size"),
        ("'10'", "queue_size"),
        ("yes", "queue_size"),
        ("~", "close_timeout"),
    ],
)
def test_yaml_special_values_are_rejected(isolated: Path, yaml_value: str, key: str) -> None:
    path = write(isolated / "kstlib.conf.yml", f"websocket:\n  {key}: {yaml_value}\n")
    with pytest.raises(ValueError, match=rf"websocket\.{key}: expected") as info:
        load_settings(URL)
    assert str(path) in str(info.value)


def test_nan_keyword_is_rejected() -> None:
    with pytest.raises(ValueError, match="ping_interval"):
        load_settings(URL, ping_interval=math.nan)


@pytest.mark.parametrize(
    "key",
    [
        "should_disconnect",
        "should_reconnect",
        "on_connect",
        "on_disconnect",
        "on_message",
        "on_batch",
        "on_error",
        "is_permanent_failure",
        "sequence",
        "on_gap",
    ],
)
def test_callbacks_must_be_callable(key: str) -> None:
    with pytest.raises(ValueError, match=rf"keyword argument {key}: expected a callable") as info:
        load_settings(URL, **{key: "print"})
    assert "'print'" in str(info.value)


def test_ssl_must_be_an_ssl_context() -> None:
    with pytest.raises(ValueError, match=r"keyword argument ssl: expected an ssl\.SSLContext"):
        load_settings(URL, ssl=True)


def test_header_value_is_never_printed() -> None:
    secret = "sk-live-0123456789"
    with pytest.raises(ValueError) as info:
        load_settings(URL, headers={"Bad Name": secret})
    assert secret not in str(info.value)
    with pytest.raises(ValueError) as info:
        load_settings(URL, headers={"X-Key": secret + "\n"})
    assert secret not in str(info.value)
    assert "'X-Key'" in str(info.value)


def test_proxy_password_is_never_printed() -> None:
    with pytest.raises(ValueError) as info:
        load_settings(URL, proxy="ftp://user:hunter2@proxy:21")
    assert "hunter2" not in str(info.value)
    assert "user:***@proxy" in str(info.value)


def test_repr_hides_header_values_and_proxy_password() -> None:
    settings = load_settings(URL, headers={"X-Key": "sk-secret"}, proxy="http://u:pw123@p:3128")
    text = repr(settings)
    assert "sk-secret" not in text and "pw123" not in text
    assert "'X-Key'" in text and "u:***@p:3128" in text
    assert settings.proxy == "http://u:pw123@p:3128"  # the value itself is intact


# ------------------------------------------------------------------------ range boundaries


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("queue_size", 1),
        ("queue_size", 10_000_000),
        ("max_message_size", 1),
        ("max_message_size", 2**31),
        ("max_reconnect_attempts", 1),
        ("max_reconnect_attempts", 1_000_000),
        ("connect_attempts", 1),
        ("connect_attempts", 1_000_000),
        ("reconnect_delay", 0),
        ("connect_timeout", 604_800),
        ("ping_interval", 0.001),
        ("max_send_rate", 0.1),
        ("max_send_rate", 1_000_000),
        ("max_connection_age", 604_800),
    ],
)
def test_limits_are_inclusive(key: str, value: Any) -> None:
    extra: dict[str, Any] = {"reconnect_delay_max": 604_800} if key == "reconnect_delay" else {}
    assert getattr(load_settings(URL, **{key: value}, **extra), key) == value


def test_reconnect_delay_max_below_delay_raises_naming_both(isolated: Path) -> None:
    path = write_section(isolated / "kstlib.conf.yml", {"reconnect_delay": 120})
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    message = str(info.value)
    assert "reconnect_delay_max (60.0, from built-in default)" in message
    assert f"reconnect_delay (120.0, from {path}: websocket.reconnect_delay)" in message
    # Fixed by raising the cap in either layer.
    assert load_settings(URL, reconnect_delay_max=120).reconnect_delay_max == 120.0


def test_reconnect_delay_max_keyword_below_file_delay(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"reconnect_delay": 2})
    with pytest.raises(ValueError, match=r"reconnect_delay_max \(0\.5, from keyword argument"):
        load_settings(URL, reconnect_delay_max=0.5)
    with pytest.raises(ValueError, match=r"Settings\.reconnect_delay_max"):
        Settings(URL, reconnect_delay=3.0, reconnect_delay_max=2.0)


# ----------------------------------------------------------------------------- normalising


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("immediate", ReconnectStrategy.IMMEDIATE),
        ("IMMEDIATE", ReconnectStrategy.IMMEDIATE),
        ("fixed_delay", ReconnectStrategy.FIXED_DELAY),
        ("Fixed_Delay", ReconnectStrategy.FIXED_DELAY),
        ("exponential_backoff", ReconnectStrategy.EXPONENTIAL_BACKOFF),
        (" EXPONENTIAL_BACKOFF ", ReconnectStrategy.EXPONENTIAL_BACKOFF),
    ],
)
def test_strategy_names_in_file_and_keyword(
    isolated: Path, name: str, expected: ReconnectStrategy
) -> None:
    write_section(isolated / "kstlib.conf.yml", {"reconnect_strategy": name})
    assert load_settings(URL).reconnect_strategy is expected
    assert load_settings(URL, config={}, reconnect_strategy=name).reconnect_strategy is expected
    assert load_settings(URL, reconnect_strategy=expected).reconnect_strategy is expected


def test_bad_strategy_message_lists_the_names(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"reconnect_strategy": "exponential"})
    with pytest.raises(ValueError) as info:
        load_settings(URL)
    for member in ReconnectStrategy:
        assert repr(member.name.lower()) in str(info.value)


def test_choices_are_case_insensitive_and_stored_lower_case() -> None:
    s = load_settings(URL, queue_overflow="DROP_OLDEST", decode="JSON", compression="Deflate")
    assert (s.queue_overflow, s.decode, s.compression) == ("drop_oldest", "json", "deflate")


def test_subscriptions_and_headers_from_yaml(isolated: Path) -> None:
    write(
        isolated / "kstlib.conf.yml",
        "websocket:\n"
        "  subscriptions:\n"
        "    - {method: SUBSCRIBE, params: [btcusdt@kline_1m], id: 1}\n"
        "    - ping\n"
        "  headers:\n"
        "    - [X-A, '1']\n"
        "    - [X-A, '2']\n"
        "  subprotocols: [v2, v1]\n",
    )
    s = load_settings(URL)
    assert s.subscriptions == (
        {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 1},
        "ping",
    )
    assert s.headers == (("X-A", "1"), ("X-A", "2"))
    assert s.subprotocols == ("v2", "v1")


def test_subscription_dicts_are_copied() -> None:
    message: dict[str, Any] = {"method": "SUBSCRIBE", "id": 1}
    settings = load_settings(URL, subscriptions=[message])
    message["id"] = 2
    assert settings.subscriptions == ({"method": "SUBSCRIBE", "id": 1},)


@pytest.mark.parametrize(
    "proxy",
    [
        "http://proxy:3128",
        "socks4://p:1080",
        "socks4a://p:1080",
        "socks5://p:1080",
        "socks5h://user:pw@p:1080",
        "http://[::1]:3128",
        "HTTP://proxy",
    ],
)
def test_accepted_proxies(proxy: str) -> None:
    assert load_settings(URL, proxy=proxy).proxy == proxy


def test_dataclasses_replace_validates() -> None:
    settings = load_settings(URL)
    assert dataclasses.replace(settings, queue_size=7).queue_size == 7
    with pytest.raises(ValueError, match=r"Settings\.queue_size"):
        dataclasses.replace(settings, queue_size=-1)


# ------------------------------------------------------------------------------- mappings


def test_mapping_with_websocket_section() -> None:
    settings = load_settings(
        URL, config={"websocket": {"queue_size": 21}, "logging": {"level": "info"}}
    )
    assert settings.queue_size == 21
    assert settings.source == "<mapping>"


def test_mapping_that_is_the_section_itself() -> None:
    settings = load_settings(URL, config={"queue_size": 22, "ping_interval": None})
    assert (settings.queue_size, settings.ping_interval) == (22, None)
    assert settings.source == "<mapping>"


def test_mapping_is_used_instead_of_any_file(isolated: Path) -> None:
    write_section(isolated / "kstlib.conf.yml", {"queue_size": 11, "ping_timeout": 3})
    settings = load_settings(URL, config={"queue_size": 23})
    assert (settings.queue_size, settings.ping_timeout) == (23, 10.0)


def test_empty_mapping_gives_defaults() -> None:
    assert load_settings(URL, config={}) == dataclasses.replace(Settings(URL), source="<mapping>")
    assert load_settings(URL, config={"websocket": None}).queue_size == 1000


def test_keyword_beats_mapping() -> None:
    assert load_settings(URL, config={"queue_size": 23}, queue_size=24).queue_size == 24


def test_mapping_section_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="<mapping>: 'websocket' must be a mapping"):
        load_settings(URL, config={"websocket": [1, 2]})


def test_mapping_unknown_key_suggests() -> None:
    with pytest.raises(
        ValueError, match=r"websocket\.ping_intervall: unknown key .*'ping_interval'"
    ):
        load_settings(URL, config={"ping_intervall": 3})


# ------------------------------------------------------------------------------------ url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "example.com:9443",
        "",
        "ws://",
        "ws://host:0/",
        "ws://ho st/",
        "wss://host:70000/",
    ],
)
def test_bad_url_raises(url: str) -> None:
    with pytest.raises(ValueError, match=r"^url: "):
        load_settings(url)
    with pytest.raises(ValueError, match=r"^Settings\.url: "):
        Settings(url)


def test_url_must_be_a_string() -> None:
    with pytest.raises(ValueError, match=r"^url: "):
        load_settings(b"ws://host/")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:8765/ws/btcusdt@trade",
        "wss://stream.binance.com:9443/ws/x",
        "WSS://[::1]/stream?streams=a/b",
    ],
)
def test_good_urls(url: str) -> None:
    assert load_settings(url).url == url


def test_handover_needs_a_dedupe_key() -> None:
    with pytest.raises(ValueError, match=r"handover.*dedupe_key"):
        load_settings(URL, handover=True)
    with pytest.raises(ValueError, match="should_handover"):
        load_settings(URL, handover=False, should_handover=lambda m: True)
    s = load_settings(URL, handover=True, dedupe_key=lambda m: m["t"])
    assert s.handover is True and s.dedupe_key is not None


# ------------------------------------------------------------- declared once, documented


def test_keyword_only_options_are_the_python_objects() -> None:
    assert {
        "should_disconnect",
        "should_reconnect",
        "ssl",
        "on_connect",
        "on_disconnect",
        "on_message",
        "on_batch",
        "on_error",
        "dedupe_key",
        "should_handover",
        "before_connect",
        "is_permanent_failure",
        "heartbeat",
        "login",
        "sequence",
        "on_gap",
    } == KEYWORD_ONLY_OPTIONS


def test_every_option_field_declares_its_check_and_doc() -> None:
    for f in dataclasses.fields(Settings):
        if f.name in ("url", "source"):
            assert not f.metadata
            continue
        assert callable(f.metadata["check"]), f.name
        assert len(f.metadata["doc"]) > 20, f.name
        assert f.metadata["keyword_only"] is (f.name in KEYWORD_ONLY_OPTIONS)


def test_module_docstring_documents_every_option_and_keeps_its_sections() -> None:
    from kstlib.websocket import config

    doc = config.__doc__ or ""
    assert "@OPTIONS@" not in doc
    for section in ("Configuration file", "Errors are never papered over", "Thread-safety"):
        assert section in doc
    for f in dataclasses.fields(Settings):
        if f.name in ("url", "source"):
            continue
        kind = "keyword only, " if f.name in KEYWORD_ONLY_OPTIONS else ""
        assert f"``{f.name}`` ({kind}default " in doc, f.name
        first_words = " ".join(f.metadata["doc"].split()[:4])
        assert first_words in " ".join(doc.split()), f.name
    assert "``max_message_size`` (default 16 777 216)" in doc
    assert "``reconnect_strategy`` (default ``exponential_backoff``)" in doc


# ------------------------------------------------------------------------ connect_attempts


def test_connect_attempts_default_and_none(isolated: Path) -> None:
    assert load_settings(URL).connect_attempts == 3
    assert load_settings(URL, connect_attempts=None).connect_attempts is None
    write_section(isolated / "kstlib.conf.yml", {"connect_attempts": 1})
    assert load_settings(URL).connect_attempts == 1
    assert Settings(URL, connect_attempts=7).connect_attempts == 7


def test_connect_attempts_error_says_what_none_means() -> None:
    with pytest.raises(ValueError) as info:
        load_settings(URL, connect_attempts=0)
    assert str(info.value) == (
        "keyword argument connect_attempts: expected an integer from 1 to 1000000, or "
        "null/None (same as max_reconnect_attempts), got 0 (int)"
    )


# ----------------------------------------------------------------- urls urlsplit refuses


@pytest.mark.parametrize("url", ["ws://[::1/", "ws://u:pw@[::1/"])
def test_url_that_urlsplit_refuses_is_a_value_error_naming_the_key(url: str) -> None:
    with pytest.raises(ValueError, match=r"^url: ") as info:
        load_settings(url)
    assert "pw" not in str(info.value)


def test_https_proxy_is_refused_when_the_settings_are_built() -> None:
    with pytest.raises(ValueError, match=r"^keyword argument proxy: an https:// proxy"):
        load_settings(URL, proxy="https://proxy:3128")
