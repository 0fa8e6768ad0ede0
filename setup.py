"""Build the C++ codec ``kstlib.websocket._speedups`` (pybind11, zlib), optimised.

Set ``KSTLIB_WS_SANITIZE=1`` to build with AddressSanitizer + UndefinedBehaviorSanitizer
(see ``scripts/sanitize.sh``).
"""

from __future__ import annotations

import os
from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

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
        include_dirs=["csrc"],
        cxx_std=17,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        libraries=["z"],
    )
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
