"""Contracts of the checker's modules, enforced: only the CLI does I/O or imports click; every
module states what lives in it and what must not; the public surface is exactly `__all__`.

(The ``run`` command's modules - runner, nemesis, workloads... - do I/O by design and are not
covered here.)"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path

import jepsen_lite
import pytest

PACKAGE = Path(jepsen_lite.__file__).parent
MODULES = ["checker", "cli", "history", "models", "report", "search", "synth"]
PURE = [m for m in MODULES if m != "cli"]


def tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_only_the_stdlib(module: str) -> None:
    for node in ast.walk(tree(module)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert top == "jepsen_lite" or top in sys.stdlib_module_names, (module, name)
            assert name != "jepsen_lite.cli", module


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in ("open", "print", "input"), (module, node.lineno)
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("write_text", "read_text", "stdout", "stderr"), module


@pytest.mark.parametrize("module", ["__init__", *MODULES])
def test_every_module_states_its_contract(module: str) -> None:
    doc = ast.get_docstring(tree(module)) or ""
    assert "What lives here" in doc and "What must not" in doc, module


def test_public_surface_is_all() -> None:
    assert len(set(jepsen_lite.__all__)) == len(jepsen_lite.__all__)
    public = {
        name
        for name, value in vars(jepsen_lite).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(jepsen_lite.__all__)
    for module in MODULES:
        mod = importlib.import_module(f"jepsen_lite.{module}")
        assert all(hasattr(mod, name) for name in mod.__all__), module
