"""Configuration of a ``WebSocketManager``: one frozen, validated :class:`Settings` object.

This module docstring is the reference for every option. A manager's settings come from
three layers, each overriding the one before, key by key:

1. the built-in defaults listed below;
2. the ``websocket:`` section of the configuration file ``kstlib.conf.yml``;
3. the keyword arguments given to ``WebSocketManager(url, **options)`` (only the ones
   actually passed: an option you do not pass keeps its file or default value).

Configuration file
==================

The file is looked for, first match wins (:func:`find_config_file`):

1. the ``config=`` argument, when it is a path (it must exist: ``FileNotFoundError``);
2. the file named by the environment variable ``KSTLIB_CONFIG``, when it is set and not
   empty (it must exist: ``FileNotFoundError``);
3. ``./kstlib.conf.yml`` in the current working directory;
4. ``~/.config/kstlib/kstlib.conf.yml`` in the user's home directory.

No file at all is fine: the defaults apply. ``config=`` may also be a mapping (for
settings that come from another configuration system): when it has a top-level
``websocket`` key, that entry is the section; otherwise the mapping itself is the
section. A mapping follows exactly the rules of a file.

The file is YAML. Only its ``websocket:`` section is read; other top-level sections (other
kstlib subsystems) are ignored. An empty file, a file without a ``websocket:`` section and
a ``websocket:`` section left empty (every key commented out) all give the defaults. The
guide's example::

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

Errors are never papered over with a default. Each of these raises ``ValueError`` whose
message names the file, the key (``websocket.<key>``) and the offending value:

* YAML that does not parse, or a duplicate key (YAML forbids them; most parsers keep the
  last one silently, this one does not);
* a top level that is not a mapping, or a ``websocket:`` entry that is not a mapping;
* an unknown key, with a suggestion for a likely typo, e.g.
  ``kstlib.conf.yml: websocket.queue_sise: unknown key (did you mean 'queue_size'?)``;
* a value of the wrong type (``true``/``false`` is not a number, ``"10"`` in quotes is a
  string, ``1000.0`` is not an integer; an integer is fine where a number is expected;
  note that YAML reads ``1e3`` without a dot as a string, write ``1.0e3``);
* a value out of range: negative, zero where zero is forbidden, or absurd (limits below);
* a keyword-only option (a callable or an ``ssl.SSLContext``, see below) in the file.

Keyword arguments are validated by the same rules and raise the same ``ValueError`` naming
the keyword. A keyword that is not an option raises ``TypeError``, as Python does for a
bad keyword, with a suggestion for a likely typo.

Options
=======

Durations are in seconds (``int`` or ``float``; stored as ``float``). "7 days" is
604 800 s, the upper limit of every duration; anything above is taken as a mistake.

Each option is declared once, as a field of :class:`Settings` (type, default, check and
the text below); this list is generated from those fields when the module is imported.

@OPTIONS@

The keys ``url`` and ``config`` are arguments of the manager, not file keys.

Thread-safety: :class:`Settings` is immutable and may be shared between threads.
:func:`load_settings` and :func:`find_config_file` keep no state; they read the
environment, the current directory and the file at the moment they are called.

Modules
=======

``checks`` (the value checks and their limits), ``settings`` (the :class:`Settings`
dataclass, one field per option), ``reference`` (this options list, rendered from the
fields), ``files`` (finding and strictly reading the YAML file) and ``loading``
(:func:`load_settings`: the three layers merged and validated). Every public name is
re-exported here; import from ``kstlib.websocket.config``.
"""

from __future__ import annotations

from kstlib.websocket.config.files import CONFIG_ENV_VAR, CONFIG_FILE_NAME, find_config_file
from kstlib.websocket.config.loading import load_settings
from kstlib.websocket.config.reference import options_reference
from kstlib.websocket.config.settings import (
    FILE_OPTIONS,
    KEYWORD_ONLY_OPTIONS,
    OPTION_NAMES,
    Settings,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "CONFIG_FILE_NAME",
    "FILE_OPTIONS",
    "KEYWORD_ONLY_OPTIONS",
    "OPTION_NAMES",
    "Settings",
    "find_config_file",
    "load_settings",
]

if __doc__ is not None:  # None under python -OO
    __doc__ = __doc__.replace("@OPTIONS@", options_reference())
