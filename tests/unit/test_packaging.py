"""Packaging checks: the native module's stub matches it, and every import is declared.

* ``_speedups.pyi`` must list exactly what ``csrc/bindings.cpp`` exports, with the same
  constant values and the same parameter names, kinds and defaults (read from the
  signatures pybind11 writes into the docstrings).
* Every third-party package imported by ``tests/`` is a dependency or in the ``test``
  extra, and every one imported by ``benchmarks/`` is a dependency or in ``bench``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "src" / "kstlib" / "websocket" / "_speedups.pyi"


def _params(func: ast.FunctionDef) -> list[tuple[str, str, Any]]:
    """``(name, kind, default)`` of each parameter but ``self``; defaults as values."""
    a = func.args
    plain = a.posonlyargs + a.args
    defaults: list[Any] = [None] * (len(plain) - len(a.defaults)) + list(a.defaults)
    out = [
        (p.arg, "positional", ast.literal_eval(d) if d else "<required>")
        for p, d in zip(plain, defaults, strict=True)
    ]
    out += [
        (p.arg, "keyword", ast.literal_eval(d) if d else "<required>")
        for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
    ]
    return [p for p in out if p[0] != "self"]


def _runtime_params(obj: Any) -> list[tuple[str, str, Any]]:
    """The parameters of a pybind11 function, from its docstring's signature line."""
    line = obj.__doc__.splitlines()[0]
    # The annotations are pybind11's own (`typing.SupportsInt | ...`); only names,
    # kinds and defaults are compared.
    func = ast.parse(f"def {line}: ...").body[0]
    assert isinstance(func, ast.FunctionDef)
    return _params(func)


def _stub() -> tuple[dict[str, Any], dict[str, ast.FunctionDef], dict[str, ast.ClassDef]]:
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    constants = {
        n.target.id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value
    }
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    return constants, functions, classes


def test_stub_matches_the_native_module(cppcodec: ModuleType) -> None:
    constants, functions, classes = _stub()
    public = {n for n in vars(cppcodec) if not n.startswith("_")}
    assert public == set(constants) | set(functions) | set(classes)
    for name, value in constants.items():
        assert getattr(cppcodec, name) == value, name
    for name, func in functions.items():
        assert _params(func) == _runtime_params(getattr(cppcodec, name)), name
    for cname, cls in classes.items():
        runtime = getattr(cppcodec, cname)
        members = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
        runtime_names = {n for n in vars(runtime) if not n.startswith("_")} | {"__init__"}
        assert runtime_names == set(members), cname
        for name, func in members.items():
            attr = vars(runtime)[name]
            if isinstance(attr, property):
                assert any(
                    isinstance(d, ast.Name) and d.id == "property" for d in func.decorator_list
                ), f"{cname}.{name} is a property"
            else:
                assert _params(func) == _runtime_params(attr), f"{cname}.{name}"


def _declared(extra: str) -> set[str]:
    """Normalised names of the runtime dependencies plus those of ``extra``."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = project["dependencies"] + project["optional-dependencies"][extra]
    return {_normalise(re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0]) for r in reqs}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_distributions(folder: Path) -> dict[str, set[str]]:
    """Installed distribution -> files of ``folder`` that import one of its modules."""
    providers = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.partition(".")[0] for n in names} - set(sys.stdlib_module_names):
                for dist in providers.get(top, []):
                    if _normalise(dist) != "kstlib-websocket":
                        found.setdefault(_normalise(dist), set()).add(path.name)
    return found


@pytest.mark.parametrize(("folder", "extra"), [("tests", "test"), ("benchmarks", "bench")])
def test_every_imported_package_is_declared(folder: str, extra: str) -> None:
    declared = _declared(extra)
    missing = {
        d: sorted(files)
        for d, files in _imported_distributions(ROOT / folder).items()
        if d not in declared
    }
    assert not missing, f"imported by {folder}/ but not declared for [{extra}]: {missing}"
