"""Shared pytest configuration for the kstlib-websocket test suite.

* Every test runs with ``HOME`` pointing at an empty temporary directory, no
  ``KSTLIB_CONFIG`` and an empty temporary working directory, so a developer's real
  ``kstlib.conf.yml`` can never change what a test sees (and no test writes into the
  checkout).
* The exchange simulator's fixtures (``exchange_simulator``,
  ``exchange_simulator_factory``) come from the package's ``pytest11`` entry point once
  it is installed. From a source checkout the entry point is absent, so the same module
  is loaded as a plugin here; registering it twice would make pytest refuse the
  duplicate.
"""

from __future__ import annotations

import sys

import pytest

if "kstlib.websocket.testing" not in sys.modules:
    pytest_plugins = ["kstlib.websocket.testing"]


@pytest.fixture(autouse=True)
def _isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("KSTLIB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
