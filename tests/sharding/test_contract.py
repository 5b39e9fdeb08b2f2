"""The sharding package's contract: pure imports, a contract docstring, an explicit ``__all__``.

The purity check is an *allow-list*: a module in ``kvcluster/sharding`` may import only the
stdlib modules below, ``kvcluster.errors`` and its siblings. (``tests/raft/test_purity.py``
holds a deny-list for both pure packages; this is the stricter check for this one.)
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import kvcluster.sharding as sharding

PACKAGE = Path(sharding.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
ALLOWED = {
    "__future__",
    "array",
    "binascii",  # checksums only (crc_hqx is the slots' CRC16); no I/O
    "bisect",
    "collections.abc",
    "dataclasses",
    "enum",
    "types",
    "typing",
    "kvcluster.errors",
}


def _module_name(path: Path) -> str:
    return "kvcluster.sharding" if path.stem == "__init__" else f"kvcluster.sharding.{path.stem}"


def test_package_has_the_expected_modules() -> None:
    names = {p.stem for p in MODULES}
    assert {"slots", "slot_map", "groups", "migration", "routing", "retry"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_allowed_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: use absolute imports"
            module = node.module or ""
            # ``from kvcluster import errors`` imports the module kvcluster.errors.
            names = [module if module in ALLOWED else f"{module}.{a.name}" for a in node.names]
        else:
            continue
        bad += [n for n in names if n not in ALLOWED and not n.startswith("kvcluster.sharding")]
    assert not bad, f"{path.name} imports outside the allow-list: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_opens_with_a_contract_and_declares_all(path: Path) -> None:
    module = importlib.import_module(_module_name(path))
    doc = module.__doc__ or ""
    assert len(doc.strip().splitlines()) >= 3, f"{path.name} needs a contract docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{path.name} has no __all__"
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), f"{path.name}: __all__ names missing {name}"


def test_package_exports_every_public_name_of_its_modules() -> None:
    public = set()
    for path in MODULES:
        if path.stem.startswith("_"):
            continue
        public |= set(importlib.import_module(_module_name(path)).__all__)
    assert set(sharding.__all__) == public
    assert sharding.__all__ == sorted(sharding.__all__, key=lambda n: (not n.isupper(), n))


def test_public_values_are_frozen() -> None:
    from dataclasses import FrozenInstanceError

    m = sharding.Migration(1, 2, 3, 4)
    with pytest.raises(FrozenInstanceError):
        m.phase = sharding.Phase.DONE  # type: ignore[misc]
    with pytest.raises(AttributeError):
        sharding.SlotMap().foo = 1  # type: ignore[attr-defined]
