"""The configuration file: where it is looked for, and its ``websocket:`` section read strictly.

:func:`find_config_file` applies the search order of the package docstring;
:func:`read_section` parses the file with a YAML loader that refuses duplicate keys and
returns the ``websocket:`` section (empty when the file or the section is empty or
absent). Values are not validated here: :mod:`.loading` does that, key by key.

Errors name the file: ``FileNotFoundError`` for a missing file that was asked for
explicitly, ``ValueError`` for a file that is not UTF-8, not valid YAML or not shaped as
sections of mappings.

Thread-safety: no state is kept; each call reads the environment, the current directory
and the file at the moment it is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kstlib.websocket._http import show as _show

__all__ = ["CONFIG_ENV_VAR", "CONFIG_FILE_NAME", "SECTION", "find_config_file", "read_section"]

#: Environment variable naming the configuration file.
CONFIG_ENV_VAR = "KSTLIB_CONFIG"
#: File name looked for in the current directory and in ``~/.config/kstlib/``.
CONFIG_FILE_NAME = "kstlib.conf.yml"
#: The section of the file this package reads.
SECTION = "websocket"


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate mapping keys instead of keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _missing(path: Path, how: str) -> FileNotFoundError:
    what = "is a directory, not a file" if path.is_dir() else "does not exist"
    return FileNotFoundError(2, f"kstlib configuration file {how} {what}", str(path))


def find_config_file(config: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the configuration file to read, or ``None`` when there is none.

    Looks, first match wins, at ``config`` (must be an existing file), ``$KSTLIB_CONFIG``
    when set and not empty (must be an existing file), ``./kstlib.conf.yml`` and
    ``~/.config/kstlib/kstlib.conf.yml``. A leading ``~`` is expanded in the first two.

    Raises:
        FileNotFoundError: ``config`` or ``$KSTLIB_CONFIG`` names a missing file (or a
            directory); the exception's ``filename`` is that path.
    """
    if config is not None:
        if not os.fspath(config):
            raise FileNotFoundError(2, "kstlib configuration file given as config= is empty", "")
        path = Path(os.fspath(config)).expanduser()
        if not path.is_file():
            raise _missing(path, "given as config=")
        return path
    env = os.environ.get(CONFIG_ENV_VAR, "")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise _missing(path, f"named by ${CONFIG_ENV_VAR}")
        return path
    local = Path.cwd() / CONFIG_FILE_NAME
    if local.is_file():
        return local
    user = Path.home() / ".config" / "kstlib" / CONFIG_FILE_NAME
    if user.is_file():
        return user
    return None


def read_section(path: Path) -> Mapping[Any, Any]:
    """The ``websocket:`` section of the YAML file at ``path`` (empty when absent).

    Raises:
        ValueError: the file is not UTF-8, not valid YAML (a duplicate key included), its
            top level is not a mapping, or its ``websocket:`` entry is not a mapping; the
            message starts with the path.
    """
    try:
        with path.open(encoding="utf-8") as stream:  # the stream's name goes in YAML errors
            document = yaml.load(stream, Loader=_StrictLoader)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ValueError(
            f"{path}: the top level must be a mapping of sections (such as "
            f"'{SECTION}:'), got {type(document).__name__}"
        )
    section = document.get(SECTION)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{path}: '{SECTION}' must be a mapping of options, got {_show(section)}")
    return section
