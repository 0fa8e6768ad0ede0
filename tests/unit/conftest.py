"""Fixtures for the codec tests: each codec test runs against both implementations.

``codec`` is parametrised over ``"python"`` (``kstlib.websocket._pycodec``, the reference)
and ``"cpp"`` (``kstlib.websocket._speedups``). A missing C++ module is a test failure,
not a skip: the C++ codec is part of the product. Only with ``KSTLIB_WS_PURE_PYTHON=1`` in
the environment (any value but empty or ``0``, as ``codec.load`` reads it) are the ``cpp``
cases skipped, with the reason shown.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

CODEC_MODULES = {
    "python": "kstlib.websocket._pycodec",
    "cpp": "kstlib.websocket._speedups",
}


def _pure_python_forced() -> bool:
    # the same reading as kstlib.websocket.codec.load()
    return os.environ.get("KSTLIB_WS_PURE_PYTHON", "") not in ("", "0")


def load_codec(name: str) -> ModuleType:
    """Import the codec ``name`` ("python" or "cpp"), failing or skipping the test."""
    module_name = CODEC_MODULES[name]
    if name == "cpp" and _pure_python_forced():
        pytest.skip("KSTLIB_WS_PURE_PYTHON=1: the C++ codec (_speedups) is not tested")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        pytest.fail(
            f"{module_name} does not import ({exc}); build it with "
            "`python3 setup.py build_ext --inplace` or `pip install .`, or set "
            "KSTLIB_WS_PURE_PYTHON=1 to test the pure-Python codec only",
            pytrace=False,
        )


@pytest.fixture(scope="session", params=["python", "cpp"])
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """The codec module under test (session-scoped: modules are stateless)."""
    return load_codec(request.param)


@pytest.fixture(scope="session")
def pycodec() -> ModuleType:
    """The pure-Python reference codec."""
    return load_codec("python")


@pytest.fixture(scope="session")
def cppcodec() -> ModuleType:
    """The C++ codec (fails when missing, skips under KSTLIB_WS_PURE_PYTHON=1)."""
    return load_codec("cpp")
