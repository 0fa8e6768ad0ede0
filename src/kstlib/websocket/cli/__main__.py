"""``python -m kstlib.websocket.cli``: the ``kstlib-ws`` command (same arguments, same exit
status)."""

import sys

from kstlib.websocket.cli import main

sys.exit(main())
