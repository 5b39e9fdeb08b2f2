"""Active expiry's scan: bounded passes that resume, wrap, skip meta records, cap the sweep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvcluster.kv import MAX_SWEEP_KEYS, ExpireSweep
from kvcluster.kv.values import encode_value
from kvcluster.node.expiry import ExpiryScan
from kvcluster.raft.types import ConfState
from kvcluster.storage import NodeStore

NOW = 1_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    with NodeStore(tmp_path, sync=False) as s:
        s.create_group(1, ConfState((1,)))
        s.create_group(2, ConfState((1,)))
        yield s


def fill(store: NodeStore, group: int, expired: set[int], n: int) -> None:
    """Keys k00000.. over a few slots; those in ``expired`` expired at NOW, the others not
    (no expiry, or one in the future); plus the state machine's meta records."""
    with store.write() as w:
        for i in range(n):
            expire_at = NOW - 1 if i in expired else (0 if i % 2 else NOW + 60_000)
            w.kv_put(group, i % 5, b"k%05d" % i, encode_value(b"v", expire_at))
        w.kv_view(group).put_meta(b"kv/clock", b"123")
        w.kv_put(group, 32768 + 1, b"\x00\x01", b"")  # a session-index record: not a value


def sweeps(store: NodeStore, scan: ExpiryScan, group: int, passes: int) -> list[ExpireSweep | None]:
    out = []
    for _ in range(passes):
        with store.read() as r:
            out.append(scan.next_pass(r, group, NOW))
    return out


def test_passes_cover_the_group_in_bounded_reads_then_start_over(store: NodeStore) -> None:
    expired = {3, 999, 1000, 1500, 2499}
    fill(store, 1, expired, 2500)
    fill(store, 2, {7}, 10)
    scan = ExpiryScan(limit=1000)
    found: list[bytes] = []
    for sweep in sweeps(store, scan, 1, 3):  # 1000 + 1000 + 500 records
        assert sweep is not None and sweep.now_ms == NOW
        found += sweep.keys
    assert sorted(found) == sorted(b"k%05d" % i for i in expired)
    # the group is covered: the next passes go round again, the same keys in the same order
    again = [k for s in sweeps(store, scan, 1, 3) if s is not None for k in s.keys]
    assert again == found
    # groups keep their own place; a group with nothing expired gives no sweep
    assert sweeps(store, scan, 2, 2) == [ExpireSweep(NOW, (b"k00007",))] * 2
    fill(store, 2, set(), 10)  # rewritten without expiry
    assert sweeps(store, scan, 2, 1) == [None]


def test_one_sweep_names_at_most_max_sweep_keys(store: NodeStore) -> None:
    n = MAX_SWEEP_KEYS + 200
    fill(store, 1, set(range(n)), n)
    scan = ExpiryScan(limit=10 * n)
    first, second, third = sweeps(store, scan, 1, 3)
    assert first is not None and len(first.keys) == MAX_SWEEP_KEYS
    assert second is not None and len(second.keys) == 200
    assert set(first.keys).isdisjoint(second.keys)
    assert third == first  # started over


def test_a_forgotten_group_starts_over(store: NodeStore) -> None:
    fill(store, 1, {0, 5}, 10)
    scan = ExpiryScan(limit=3)
    first, second = sweeps(store, scan, 1, 2)
    assert first is not None and second is None  # 0 is among the first 3 records read
    scan.keep(set())  # led nowhere here any more
    assert sweeps(store, scan, 1, 1) == [first]
    sweeps(store, scan, 1, 1)  # group 1 moves on again
    scan.keep({2})  # no longer led here: forgotten too
    assert sweeps(store, scan, 1, 1) == [first]
    with pytest.raises(ValueError):
        ExpiryScan(limit=0)


def test_iter_group_kv_after_a_record(store: NodeStore) -> None:
    fill(store, 1, set(), 6)
    fill(store, 2, set(), 3)
    with store.read() as r:
        every = [(s, k) for s, k, _ in r.iter_group_kv(1)]
        for i, after in enumerate(every):
            assert [(s, k) for s, k, _ in r.iter_group_kv(1, after)] == every[i + 1 :]
        # a position that is not a record: what comes after it
        assert [(s, k) for s, k, _ in r.iter_group_kv(1, (0, b"k00000a"))] == every[1:]
        assert list(r.iter_group_kv(1, every[-1])) == []  # group 2's records follow: not its
        assert len(list(r.iter_group_kv(2, every[0]))) == 4  # 2 keys, the index, the clock
