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
* ``sim`` is the one simulator fixture of the suite (integration tests and the guide's
  examples): see its docstring for how a test chooses its options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # importing it here would hide the plugin check below
    from kstlib.websocket.testing import ExchangeSimulator

if "kstlib.websocket.testing" not in sys.modules:
    pytest_plugins = ["kstlib.websocket.testing"]

#: What ``sim`` runs with when a test says nothing: a steady 200 events/s per stream.
SIM_DEFAULTS: dict[str, Any] = {"event_rate": 200}


@pytest.fixture(autouse=True)
def _isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("KSTLIB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def sim(
    request: pytest.FixtureRequest, exchange_simulator_factory: Callable[..., ExchangeSimulator]
) -> ExchangeSimulator:
    """A started :class:`ExchangeSimulator`, stopped after the test.

    Options: :data:`SIM_DEFAULTS`, updated with the keywords of the closest
    ``@pytest.mark.exchange_simulator(**kwargs)`` marker (test, class or module: the
    plugin's own marker, with the plugin's rule that the closest one wins whole), e.g.
    ``@pytest.mark.exchange_simulator(event_rate=1000)``. Built by the plugin's
    ``exchange_simulator_factory``, which stops it at teardown.
    """
    marker = request.node.get_closest_marker("exchange_simulator")
    options = {**SIM_DEFAULTS, **(marker.kwargs if marker is not None else {})}
    return exchange_simulator_factory(**options)
