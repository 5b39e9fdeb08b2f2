"""The LMDB view of ``kvcluster.storage`` plugs in: the same entries give the same answers and
the same records as on a ``MemoryKvView``, and the key limit fits what LMDB accepts.

Skipped while the storage layer is not importable (it is built alongside).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from kvcluster.kv import (
    MAX_KEY_BYTES,
    KvCommand,
    KvStateMachine,
    MemoryKvView,
    Op,
    encode_command,
)

storage: Any = pytest.importorskip("kvcluster.storage")
codec: Any = pytest.importorskip("kvcluster.storage.codec")

try:
    from kvcluster.sharding import key_slot
except ImportError:  # pragma: no cover

    def key_slot(key: bytes | str) -> int:
        return 0


@pytest.fixture
def store(tmp_path: Path) -> Any:
    if not hasattr(storage, "NodeStore"):
        pytest.skip("kvcluster.storage has no NodeStore yet")
    s = storage.NodeStore(tmp_path / "node", sync=False, map_size=64 << 20)
    s.create_group(1)
    yield s
    s.close()


def test_lmdb_and_memory_views_agree(store: Any) -> None:
    seed = 20240611
    rng = random.Random(seed)
    sm = KvStateMachine(key_slot, max_sessions=3, session_ttl_ms=500)
    memory = MemoryKvView()
    for index in range(1, 301):
        op = rng.choice(list(Op))
        cmd = KvCommand(
            op,
            rng.choice([b"a", b"b", b"{a}c", b"k" * MAX_KEY_BYTES]),
            rng.choice([b"1", b"x", b""]),
            ttl_ms=rng.choice([0, 0, 100]) or (5 if op == Op.EXPIRE else 0),
            delta=1,
            client_id=rng.choice([0, 1, 2, 3, 4]),
            seq=index // 3 + 1,
            now_ms=index * 7 - rng.randint(0, 50),
        )
        data = encode_command(cmd)
        with store.write() as w:
            on_disk = sm.apply(w.kv_view(1), index, data)
            w.set_applied(1, index)
        assert on_disk == sm.apply(memory, index, data), f"seed {seed}, entry {index}"
    with store.read() as r:
        records = sorted(r.iter_group_kv(1))
    expected = [(slot, key, value) for (slot, key), value in memory.data.items()]
    expected += [(codec.SM_META_SLOT, name, value) for name, value in memory.meta.items()]
    assert records == sorted(expected)


def test_the_longest_key_is_storable(store: Any) -> None:
    assert store.max_user_key_size >= MAX_KEY_BYTES
