"""The pure layers do no I/O: no asyncio, grpc, lmdb, clock, threads, sockets or global random.

Checked two ways: statically (every import and every ``random.<name>`` use in the source)
and dynamically (importing the packages in a fresh interpreter loads none of them that
the interpreter had not already loaded at start-up).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ["kvcluster/raft", "kvcluster/sharding", "kvcluster/meta"]
FORBIDDEN = {
    "asyncio",
    "grpc",
    "lmdb",
    "time",
    "datetime",
    "threading",
    "multiprocessing",
    "concurrent",
    "socket",
    "selectors",
    "subprocess",
    "os",
    "secrets",
}


def _sources() -> list[Path]:
    files: list[Path] = []
    for pkg in PURE_PACKAGES:
        files.extend(sorted((ROOT / pkg).glob("**/*.py")))
    return files


def test_there_are_sources_to_check() -> None:
    assert any("raft/raft.py" in str(p) for p in _sources())


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_forbidden_imports_or_global_random(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN:
                    problems.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            top = (node.module or "").split(".")[0]
            if top in FORBIDDEN:
                problems.append(f"line {node.lineno}: from {node.module} import ...")
            if top == "random" and any(a.name != "Random" for a in node.names):
                problems.append(f"line {node.lineno}: from random import (not Random)")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr != "Random"
        ):
            problems.append(f"line {node.lineno}: random.{node.attr} (module-level random)")
    assert not problems, f"{path.name} is not pure:\n" + "\n".join(problems)


def test_importing_the_core_loads_no_io_module() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import kvcluster.raft, kvcluster.sharding, kvcluster.meta\n"
        "new = set(sys.modules) - before\n"
        f"bad = sorted(m for m in {sorted(FORBIDDEN - {'os'})!r} if m in new)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "", f"kvcluster.raft imported: {out.stdout.strip()}"
