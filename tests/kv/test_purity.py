"""The kv state machine does no I/O: no clock, asyncio, grpc, lmdb, threads or global random,
and msgpack is imported in one module only (``_msgpack``, which types it).

Checked statically (every import and every ``random.<name>`` use) and dynamically
(importing ``kvcluster.kv`` in a fresh interpreter loads no forbidden module beyond what
msgpack itself loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "kvcluster/kv").glob("**/*.py"))
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
    "random",
    "kvcluster",  # only the allowed parts below
}
ALLOWED_KVCLUSTER = ("kvcluster.errors", "kvcluster.kv")


def test_there_are_sources_to_check() -> None:
    assert any(p.name == "state_machine.py" for p in SOURCES)


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, node.module or ""))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_forbidden_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for line, module in _imports(tree):
        top = module.split(".")[0]
        if module.startswith(ALLOWED_KVCLUSTER):
            continue
        if top in FORBIDDEN:
            problems.append(f"line {line}: import {module}")
        if top == "msgpack" and path.name != "_msgpack.py":
            problems.append(f"line {line}: msgpack outside _msgpack.py")
    assert not problems, f"{path.name} is not pure:\n" + "\n".join(problems)


def test_importing_kv_loads_no_io_module() -> None:
    code = (
        "import sys\n"
        "import msgpack\n"  # the baseline: whatever msgpack needs is not ours
        "before = set(sys.modules)\n"
        "import kvcluster.kv\n"
        "new = set(sys.modules) - before\n"
        f"bad = sorted(m for m in new if m.split('.')[0] in {sorted(FORBIDDEN)!r}\n"
        "             and not m.startswith(('kvcluster.kv', 'kvcluster.errors')))\n"
        "bad = [m for m in bad if m != 'kvcluster']\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "", f"importing kvcluster.kv loaded: {out.stdout.strip()}"
