"""Build the C++ codec ``kstlib.websocket._speedups`` (pybind11, zlib), optimised.

The extension is optional: when it cannot be built (no C++ compiler, no zlib headers...)
the package installs anyway and ``kstlib.websocket.codec`` falls back to the pure-Python
codec with one warning at import. Set ``KSTLIB_WS_REQUIRE_EXTENSION=1`` to make a failed
build fail the install instead (CI does, so a broken build cannot pass unnoticed).

Set ``KSTLIB_WS_SANITIZE=1`` to build with AddressSanitizer + UndefinedBehaviorSanitizer
(see ``scripts/sanitize.sh``).
"""

from __future__ import annotations

import os
import sys
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup
from setuptools.errors import CCompilerError, ExecError, PlatformError

compile_args = ["-O3", "-Wall", "-Wextra", "-fvisibility=hidden"]
link_args: list[str] = []
if os.environ.get("KSTLIB_WS_SANITIZE") == "1":
    flags = [
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",  # any UBSan report aborts, so it cannot go unnoticed
        "-fno-omit-frame-pointer",
        "-g",
        "-O1",
    ]
    compile_args = ["-Wall", "-Wextra", *flags]
    link_args = list(flags)

ext_modules = [
    Pybind11Extension(
        "kstlib.websocket._speedups",
        sorted(glob("csrc/*.cpp")),
        depends=sorted(glob("csrc/*.hpp")),  # a changed header rebuilds the extension
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=["z"],
    )
]

# What a missing or broken compiler / linker raises while building an extension.
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError)


class OptionalBuildExt(build_ext):
    """``build_ext`` that skips the C++ codec, with a message, when it cannot be built.

    With ``KSTLIB_WS_REQUIRE_EXTENSION=1`` a build error propagates and the install fails.
    """

    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as exc:
            if os.environ.get("KSTLIB_WS_REQUIRE_EXTENSION") == "1":
                raise
            print(
                f"\n*** kstlib-websocket: the C++ codec could not be built: {exc}\n"
                "*** Installed without it: the slower pure-Python codec will be used. To build"
                " it, install a C++ compiler and the zlib headers (Debian: g++ zlib1g-dev) and"
                " reinstall; KSTLIB_WS_REQUIRE_EXTENSION=1 makes this an error.\n",
                file=sys.stderr,
            )


setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
