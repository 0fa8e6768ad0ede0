"""The options reference: the "Options" list of the package docstring, from the fields.

:func:`options_reference` renders one entry per option field of
:class:`~kstlib.websocket.config.settings.Settings`, in declaration order: a head line
(name, "keyword only" when it is, the default spelled as in YAML) and the field's doc
wrapped at 88 columns. The package ``__init__`` puts the result in place of the
``@OPTIONS@`` marker of its docstring at import, so ``help(kstlib.websocket.config)``
always lists the options the code actually has.

Thread-safety: pure functions of the (immutable) field declarations.
"""

from __future__ import annotations

import enum
import re
import textwrap
from typing import Any

from kstlib.websocket.config.settings import OPTION_FIELDS

__all__ = ["options_reference"]

# Spaces a line must not break at: "<= 7 days", "1 000 000", "16 MiB".
_GLUED_SPACE = re.compile(r"(?<=[<>=\d]) (?=\d)|(?<=\d) (?=(?:days|h|s|MiB)\b)")


def _show_default(value: Any) -> str:
    """A default as the options reference spells it (YAML words for YAML values)."""
    if value == ():
        return "none"
    if isinstance(value, bool):
        return "``true``" if value else "``false``"
    if isinstance(value, enum.Enum):
        return f"``{value.name.lower()}``"
    if isinstance(value, str) or value is None:
        return f"``{value}``"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:_}".replace("_", " ")  # 16 777 216
    return repr(value)


def options_reference() -> str:
    """The options reference of the package docstring, one entry per option field."""
    entries = []
    for f in OPTION_FIELDS:
        kind = "keyword only, " if f.metadata["keyword_only"] else ""
        head = f"``{f.name}`` ({kind}default {_show_default(f.default)})"
        body = textwrap.fill(
            _GLUED_SPACE.sub("\0", f.metadata["doc"]),
            width=88,
            initial_indent="    ",
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        entries.append(f"{head}\n{body.replace(chr(0), ' ')}")
    return "\n".join(entries)
