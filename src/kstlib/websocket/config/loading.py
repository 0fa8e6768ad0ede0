"""Build a manager's :class:`Settings` from the three layers: defaults < file < keywords.

:func:`load_settings` reads the file section (:mod:`.files`) or the mapping given as
``config=``, validates every key with the option's check (:mod:`.settings` declares
them), lays the keyword arguments over it, checks the one rule that spans layers
(``reconnect_delay_max >= reconnect_delay``, naming where each value came from) and
builds the :class:`Settings`. Every error names its origin: the file and
``websocket.<key>``, ``<mapping>``, or the keyword argument.

Thread-safety: no state is kept; a call reads the environment and the file when made.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from kstlib.websocket._http import check_url
from kstlib.websocket._http import show as _show
from kstlib.websocket.config.checks import Invalid, or_factory
from kstlib.websocket.config.files import SECTION, find_config_file, read_section
from kstlib.websocket.config.settings import (
    FILE_OPTIONS,
    KEYWORD_ONLY_OPTIONS,
    OPTION_FIELDS,
    OPTION_NAMES,
    VALIDATORS,
    Settings,
)

__all__ = ["load_settings"]

# The package's name, as before the split: "configuration read from" lines keep their logger.
_log = logging.getLogger("kstlib.websocket.config")


def _suggest(name: str, candidates: frozenset[str]) -> str:
    match = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


def _validate_section(section: Mapping[Any, Any], source: str) -> dict[str, tuple[Any, str]]:
    """Validate a file (or mapping) section; return name -> (value, origin)."""
    result: dict[str, tuple[Any, str]] = {}
    for key, value in section.items():
        where = f"{source}: {SECTION}.{key}"
        if not isinstance(key, str):
            raise ValueError(f"{where}: unknown key {_show(key)} (option names are strings)")
        if key in KEYWORD_ONLY_OPTIONS or (key == "decode" and callable(value)):
            raise ValueError(
                f"{where}: can only be passed as a keyword argument to WebSocketManager "
                f"(it is a Python object), not set in a configuration file; got {_show(value)}"
            )
        if key in ("url", "config"):
            raise ValueError(
                f"{where}: not a configuration-file option; pass {key}= to WebSocketManager"
            )
        if key not in FILE_OPTIONS:
            hint = _suggest(key, OPTION_NAMES)
            raise ValueError(f"{where}: unknown key" + (f" ({hint})" if hint else ""))
        try:
            result[key] = (VALIDATORS[key](value), where)
        except Invalid as exc:
            raise ValueError(f"{where}: {exc}") from None
    return result


def _check_keywords(overrides: Mapping[str, Any]) -> None:
    """``TypeError`` for a keyword that is not an option, with a typo suggestion."""
    for name in overrides:
        if name not in OPTION_NAMES:
            hint = _suggest(name, OPTION_NAMES)
            raise TypeError(
                f"got an unexpected keyword argument {name!r}" + (f"; {hint}" if hint else "")
            )


def _config_section(
    config: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[str | None, Mapping[Any, Any]]:
    """``(source, section)`` of ``config``: a mapping, a path, or ``None`` (search)."""
    if isinstance(config, Mapping):
        inner = config.get(SECTION, config)
        if inner is None:
            return "<mapping>", {}
        if not isinstance(inner, Mapping):
            raise ValueError(
                f"<mapping>: '{SECTION}' must be a mapping of options, got {_show(inner)}"
            )
        return "<mapping>", inner
    if config is None or isinstance(config, (str, os.PathLike)):
        path = find_config_file(config)
        if path is None:
            return None, {}
        section = read_section(path)
        _log.debug("kstlib.websocket configuration read from %s", path)
        return str(path), section
    raise TypeError(f"config must be a path, a mapping or None, got {type(config).__name__}")


def _check_delay_order(values: Mapping[str, tuple[Any, str]]) -> None:
    """``reconnect_delay_max >= reconnect_delay`` across layers; the error names both origins."""
    defaults = {f.name: f.default for f in OPTION_FIELDS}
    delay, delay_from = values.get(
        "reconnect_delay", (defaults["reconnect_delay"], "built-in default")
    )
    cap, cap_from = values.get(
        "reconnect_delay_max", (defaults["reconnect_delay_max"], "built-in default")
    )
    if cap < delay:
        raise ValueError(
            f"reconnect_delay_max ({cap!r}, from {cap_from}) must be >= "
            f"reconnect_delay ({delay!r}, from {delay_from}); raise reconnect_delay_max too"
        )


def load_settings(
    url: str | Callable[[], str],
    *,
    config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the :class:`Settings` of a manager: defaults < file section < ``overrides``.

    ``config`` is a path, a mapping (its ``websocket`` entry if it has one, else itself),
    or ``None`` to search the usual places (:func:`find_config_file`). ``overrides`` are
    the keyword arguments the user passed explicitly; each replaces the file's value.

    Raises:
        FileNotFoundError: ``config`` or ``$KSTLIB_CONFIG`` names a missing file.
        ValueError: invalid YAML, a bad section, an unknown key, a value of the wrong type
            or out of range, in the file or in ``overrides``; the message names the file
            (or the keyword), the key and the value.
        TypeError: an override that is not an option (like Python's own error for an
            unexpected keyword argument), or a ``config`` of an unsupported type.
    """
    _check_keywords(overrides)
    try:
        or_factory(check_url)(url)
    except Invalid as exc:
        raise ValueError(f"url: {exc}") from None
    source, section = _config_section(config)
    values = _validate_section(section, source or "<mapping>")
    for name, value in overrides.items():
        where = f"keyword argument {name}"
        try:
            values[name] = (VALIDATORS[name](value), where)
        except Invalid as exc:
            raise ValueError(f"{where}: {exc}") from None
    _check_delay_order(values)
    return Settings(url, **{name: value for name, (value, _) in values.items()}, source=source)
