"""Importing the optional client libraries with an error that names the extra.

Thread-safety: import machinery only.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency of a sink is not installed; the message says which extra
    installs it (``pip install 'kstlib-websocket[redis]'``)."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{what} needs the {module.split('.')[0]!r} package: "
            f"pip install 'kstlib-websocket[{extra}]'"
        ) from exc
