"""Shared pytest configuration for the kstlib-websocket test suite."""

from __future__ import annotations

import sys

# The exchange simulator's fixtures (exchange_simulator, exchange_simulator_factory)
# come from the package's ``pytest11`` entry point once it is installed. From a source
# checkout the entry point is absent, so load the same module as a plugin here;
# registering it twice would make pytest refuse the duplicate.
if "kstlib.websocket.testing" not in sys.modules:
    pytest_plugins = ["kstlib.websocket.testing"]
