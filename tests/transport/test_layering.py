"""Import contracts: the transport sits on the Raft types and the generated peer API only,
and the in-memory transport touches no sockets (STYLE.md rule 1, DESIGN.md "Layers")."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT = sorted((ROOT / "kvcluster" / "transport").glob("*.py"))
MEMORY = ROOT / "kvcluster" / "testing" / "memory_transport.py"

TRANSPORT_MAY_IMPORT = ("kvcluster.errors", "kvcluster.raft.types", "kvcluster.transport")
TRANSPORT_MAY_IMPORT_V1 = ("kvcluster.v1.raft_pb2", "kvcluster.v1.raft_pb2_grpc")
NO_IO = {"grpc", "socket", "selectors", "time", "threading", "ssl"}


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("path", TRANSPORT, ids=lambda p: p.name)
def test_transport_imports_only_the_layers_below_it(path: Path) -> None:
    for name in imports(path):
        if not name.startswith("kvcluster"):
            continue
        allowed = name.startswith(TRANSPORT_MAY_IMPORT) or name in TRANSPORT_MAY_IMPORT_V1
        allowed = allowed or name == "kvcluster.v1"  # "from kvcluster.v1 import raft_pb2"
        assert allowed, f"{path.name} imports {name}"


def test_memory_transport_does_no_io() -> None:
    names = imports(MEMORY)
    assert not {n.split(".")[0] for n in names} & NO_IO
    assert not any(n.startswith(("kvcluster.v1", "kvcluster.transport.grpc")) for n in names)


@pytest.mark.parametrize("module", ["kvcluster.transport", "kvcluster.testing.memory_transport"])
def test_every_exported_name_exists(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
