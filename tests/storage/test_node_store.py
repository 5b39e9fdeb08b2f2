"""NodeStore: many groups in one environment, group commit, atomic apply, recovery, limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvcluster.errors import InvalidArgument, SnapshotOutOfDate, Unavailable
from kvcluster.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Ready,
    Snapshot,
    SnapshotMetadata,
)
from kvcluster.storage import (
    CorruptSnapshot,
    GroupExists,
    IdentityMismatch,
    IncompatibleFormat,
    NodeStore,
    StorageFull,
    StoreLocked,
    UnknownGroup,
    WriteBatch,
    codec,
)

CS = ConfState((1, 2, 3))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    with NodeStore(tmp_path / "node", sync=False) as s:
        yield s


def entries(lo: int, hi: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    return [Entry(term, i, data=tag + b"%d" % i) for i in range(lo, hi)]


def apply_kv(
    store: NodeStore, group: int, index: int, puts: dict[tuple[int, bytes], bytes]
) -> None:
    with store.write() as w:
        for (slot, key), value in puts.items():
            w.kv_put(group, slot, key, value)
        w.set_applied(group, index)


# -- groups --------------------------------------------------------------------------------
def test_groups_are_isolated(store: NodeStore) -> None:
    ids = [0, 1, 2, 2**32 - 1]
    for g in ids:
        store.create_group(g, CS).append(entries(1, 6, term=g % 7 + 1, tag=b"g%d-" % g))
        apply_kv(store, g, 3, {(5, b"k"): b"v%d" % g, (6, b"k"): b"w%d" % g})
    assert store.groups() == ids
    store.group(1).compact(3)
    store.group(2).append([Entry(9, 3)])  # truncates group 2 only
    for g in ids:
        s = store.group(g)
        assert store.kv_get(g, 5, b"k") == b"v%d" % g
        assert store.scan_slot(g, 5) == [(b"k", b"v%d" % g)]
        assert store.count_slot(g, 6) == 1
        if g not in (1, 2):
            assert (s.first_index(), s.last_index()) == (1, 5)
            assert s.entries(1, 6, 10**6) == entries(1, 6, term=g % 7 + 1, tag=b"g%d-" % g)
    assert (store.group(1).first_index(), store.group(2).last_index()) == (4, 3)
    store.drop_group(1)
    assert store.groups() == [0, 2, 2**32 - 1]
    assert store.group(0).entries(1, 6, 10**6)[0].data == b"g0-1"
    assert store.kv_get(2, 5, b"k") == b"v2"


def test_group_errors(store: NodeStore) -> None:
    g = store.create_group(1)
    with pytest.raises(GroupExists):
        store.create_group(1)
    with pytest.raises(UnknownGroup):
        store.group(2)
    with pytest.raises(UnknownGroup):
        store.kv_get(2, 0, b"k")
    with pytest.raises(InvalidArgument):
        store.group(2**32)
    store.drop_group(1)
    with pytest.raises(UnknownGroup):
        g.last_index()  # a handle of a dropped group
    with pytest.raises(UnknownGroup):
        store.drop_group(1)
    store.create_group(1)  # the id can be reused
    assert store.group(1).last_index() == 0


def test_one_write_transaction_at_a_time(store: NodeStore) -> None:
    store.create_group(1)
    with store.write(), pytest.raises(RuntimeError):
        store.group(1).append(entries(1, 2))
    store.group(1).append(entries(1, 2))  # the failed attempt left nothing open


# -- the state machine's data --------------------------------------------------------------
def test_apply_is_atomic_with_applied_index(store: NodeStore) -> None:
    store.create_group(1)
    store.group(1).append(entries(1, 4))
    with pytest.raises(RuntimeError), store.write() as w:
        w.kv_put(1, 7, b"a", b"1")
        w.set_applied(1, 1)
        raise RuntimeError("crash in the middle of applying")
    assert store.kv_get(1, 7, b"a") is None
    assert store.applied_index(1) == 0
    apply_kv(store, 1, 2, {(7, b"a"): b"1", (7, b"b"): b"2"})
    assert store.applied_index(1) == 2
    with store.read() as r:
        assert (r.kv_get(1, 7, b"a"), r.applied_index(1)) == (b"1", 2)
    with pytest.raises(InvalidArgument):
        apply_kv(store, 1, 1, {})  # the applied index never goes back
    assert store.applied_index(1) == 2


def test_scan_count_delete_slot(store: NodeStore) -> None:
    store.create_group(1)
    store.create_group(2)
    keys = [b"", b"a", b"a\x00", b"ab", b"b", b"\xff" * 10]
    with store.write() as w:
        for slot in (4, 5, 6):
            for k in keys:
                w.kv_put(1, slot, k, slot.to_bytes(2, "big") + k)
        w.kv_put(2, 5, b"other", b"x")
    want = [(k, (5).to_bytes(2, "big") + k) for k in keys]
    assert store.scan_slot(1, 5) == want
    assert store.count_slot(1, 5) == len(keys)
    assert store.scan_slot(1, 5, limit=2) == want[:2]
    assert store.scan_slot(1, 5, start_after=b"a", limit=2) == want[2:4]
    assert store.scan_slot(1, 5, start_after=b"a\x01") == want[3:]
    assert store.scan_slot(1, 5, start_after=b"\xff" * 10) == []
    assert store.scan_slot(1, 5, limit=0) == []
    assert store.scan_slot(1, 7) == [] and store.count_slot(1, 7) == 0
    # paging through a slot visits every key exactly once
    seen: list[bytes] = []
    after = None
    while page := store.scan_slot(1, 5, start_after=after, limit=4):
        seen += [k for k, _ in page]
        after = page[-1][0]
    assert seen == keys
    with store.write() as w:
        assert w.kv_delete(1, 5, b"a") is True
        assert w.kv_delete(1, 5, b"a") is False
        assert w.delete_slot(1, 6) == len(keys)
    assert store.count_slot(1, 5) == len(keys) - 1
    assert store.count_slot(1, 6) == 0
    assert store.count_slot(1, 4) == len(keys)
    assert store.scan_slot(2, 5) == [(b"other", b"x")]


def test_kv_argument_checks(store: NodeStore) -> None:
    store.create_group(1)
    big = b"k" * (store.max_user_key_size + 1)
    with store.write() as w:
        w.kv_put(1, 0, b"k" * store.max_user_key_size, b"max-size key")
        with pytest.raises(InvalidArgument):
            w.kv_put(1, 0, big, b"")
        with pytest.raises(InvalidArgument):
            w.kv_put(1, codec.SM_META_SLOT, b"k", b"")  # reserved for meta records
        with pytest.raises(InvalidArgument):
            w.kv_put(1, -1, b"k", b"")
    assert store.max_user_key_size >= 500  # kvcluster.kv.commands.MAX_KEY_BYTES
    assert store.count_slot(1, 0) == 1


# -- group commit --------------------------------------------------------------------------
def test_persist_ready_writes_all_groups(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=True) as store:  # the production setting
        for g in (1, 2, 3):
            store.create_group(g, CS)
        batch = WriteBatch()
        for g in (1, 2, 3):
            batch.add_ready(g, Ready(hard_state=HardState(g, 1, 0), entries=entries(1, 65, g)))
        batch.add_ready(4, Ready())  # nothing to persist: not even looked at
        assert (len(batch), batch.entry_count()) == (3, 192)
        store.persist_ready(batch)
        for g in (1, 2, 3):
            s = store.group(g)
            assert s.initial_state() == (HardState(g, 1, 0), CS)
            assert (s.last_index(), s.term(64)) == (64, g)
        # a follower's next batch: a conflicting suffix and a new hard state
        batch = WriteBatch()
        batch.add(2, entries=entries(60, 62, term=5), hard_state=HardState(5, 3, 40))
        store.persist_ready(batch)
        assert (store.group(2).last_index(), store.group(2).term(61)) == (61, 5)
        assert store.group(2).term(59) == 2


def test_persist_ready_is_all_or_nothing(store: NodeStore) -> None:
    for g in (1, 2):
        store.create_group(g)
    batch = WriteBatch()
    batch.add(1, entries=entries(1, 10), hard_state=HardState(1, 1, 0))
    batch.add(2, entries=entries(5, 10))  # a gap: group 2 is empty
    with pytest.raises(Unavailable):
        store.persist_ready(batch)
    assert store.group(1).last_index() == 0  # group 1's part was rolled back too
    assert store.group(1).initial_state()[0] == HardState()
    store.persist_ready(WriteBatch())  # an empty batch is a no-op


def test_persist_ready_with_snapshot_installs_kv(tmp_path: Path) -> None:
    """A follower persisting a Ready that carries the leader's snapshot."""
    with NodeStore(tmp_path / "leader", sync=False, chunk_size=64) as leader:
        lg = leader.create_group(1, CS)
        lg.append(entries(1, 11, term=2))
        apply_kv(leader, 1, 8, {(s, b"key%d" % s): b"v" * s for s in range(0, 40)})
        with leader.write() as w:
            w.kv_view(1).put_meta(b"kv/clock", b"1234")
        lg.compact(8)
        snap = lg.snapshot()
        assert snap.metadata == SnapshotMetadata(8, 2, CS)
        assert codec.is_kv_snapshot(snap.data)
    with NodeStore(tmp_path / "follower", sync=False) as follower:
        fg = follower.create_group(1)
        fg.append(entries(1, 4, term=1))
        apply_kv(follower, 1, 2, {(3, b"stale"): b"x", (50, b"stale"): b"y"})
        batch = WriteBatch()
        batch.add_ready(
            1,
            Ready(snapshot=snap, entries=entries(9, 12, term=2), hard_state=HardState(2, 0, 8)),
        )
        follower.persist_ready(batch)
        assert (fg.first_index(), fg.last_index(), fg.term(8)) == (9, 11, 2)
        assert fg.applied_index == 8
        assert fg.initial_state() == (HardState(2, 0, 8), CS)
        assert follower.scan_slot(1, 3) == [(b"key3", b"vvv")]
        assert follower.count_slot(1, 50) == 0  # stale data is gone
        with follower.read() as r:
            assert r.kv_read_view(1).get_meta(b"kv/clock") == b"1234"
        assert fg.snapshot() == snap  # it can send the same snapshot on


def test_kv_snapshot_is_its_applied_data_captured_when_asked(store: NodeStore) -> None:
    g = store.create_group(1, CS)
    g.append(entries(1, 3, term=1) + entries(3, 6, term=2))
    apply_kv(store, 1, 3, {(1, b"a"): b"b"})
    with pytest.raises(InvalidArgument):
        g.create_snapshot(3, CS)  # nothing is created: it is captured when needed
    with pytest.raises(InvalidArgument):
        g.create_snapshot(3, CS, b"supplied data")
    snap = g.snapshot()
    assert snap.metadata == SnapshotMetadata(3, 2, CS) == g.snapshot_metadata()
    assert list(codec.decode_kv_snapshot([snap.data])) == [(1, b"a", b"b")]
    # later applied entries (and a membership change among them) are in the next capture
    with store.write() as w:
        w.kv_put(1, 0, b"z", b"y")
        w.set_conf_state(1, 4, ConfState((1, 2, 3, 4)))
        w.set_applied(1, 4)
    snap = g.snapshot()
    assert snap.metadata == SnapshotMetadata(4, 2, ConfState((1, 2, 3, 4)))
    assert list(codec.decode_kv_snapshot([snap.data])) == [(0, b"z", b"y"), (1, b"a", b"b")]
    # the log is never cut past what the data holds; at the cut the term comes from there
    with pytest.raises(Unavailable):
        g.compact(5)
    g.compact(4)
    assert g.snapshot() == snap


def test_snapshot_stream_and_install(tmp_path: Path) -> None:
    values = {(s % 7, b"k%05d" % s): bytes([s % 256]) * (s % 50) for s in range(300)}
    with NodeStore(tmp_path / "a", sync=False, chunk_size=100) as a:
        a.create_group(5, CS).append(entries(1, 4, term=3))
        apply_kv(a, 5, 3, values)
        md = a.group(5).snapshot_metadata()
        assert md == SnapshotMetadata(3, 3, CS)
        got_md, chunks = a.snapshot_chunks(5)
        assert got_md == md
        parts = list(chunks)
        assert len(parts) > 10 and all(len(p) >= 100 for p in parts[:-1])
        with NodeStore(tmp_path / "b", sync=False) as b:
            b.create_group(5)
            b.install_snapshot(5, md, iter(parts))
            with b.read() as r:
                assert {(s, k): v for s, k, v in r.iter_group_kv(5)} == values
            assert b.applied_index(5) == 3
            with pytest.raises(SnapshotOutOfDate):
                b.install_snapshot(5, md, iter(parts))
        # a kv group's stream is captured whole: later writes do not reach it
        _, chunks = a.snapshot_chunks(5)
        first = next(chunks)
        a.group(5).append(entries(4, 5, term=3))
        apply_kv(a, 5, 4, {(0, b"new"): b"x"})
        rest = list(chunks)
        assert {(s, k): v for s, k, v in codec.decode_kv_snapshot([first, *rest])} == values


def test_opaque_snapshot_stream_replaced_part_way_stops(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=False, chunk_size=10) as a:
        g = a.create_group(5, CS, opaque_snapshots=True)
        g.append(entries(1, 4, term=3))
        g.create_snapshot(2, CS, b"x" * 100)
        md, chunks = a.snapshot_chunks(5)
        assert md == SnapshotMetadata(2, 3, CS)
        assert next(chunks) == b"x" * 10
        g.create_snapshot(3, CS, b"y" * 100)
        with pytest.raises(SnapshotOutOfDate):
            next(chunks)


@pytest.mark.parametrize("cut", [1, 7, 8, 20, -1])
def test_corrupt_snapshot_changes_nothing(tmp_path: Path, cut: int) -> None:
    with NodeStore(tmp_path / "a", sync=False) as a:
        a.create_group(1).append(entries(1, 3))
        apply_kv(a, 1, 2, {(1, b"x" * 10): b"y" * 10, (2, b"z"): b"w"})
        data = a.group(1).snapshot().data
    with NodeStore(tmp_path / "b", sync=False) as b:
        g = b.create_group(1)
        g.append(entries(1, 3))
        apply_kv(b, 1, 1, {(9, b"mine"): b"kept"})
        bad = Snapshot(SnapshotMetadata(2, 1, CS), data[:cut])
        with pytest.raises(CorruptSnapshot):
            b.apply_snapshot(1, bad)
        assert (g.first_index(), g.last_index(), g.applied_index) == (1, 2, 1)
        assert g.snapshot().metadata == SnapshotMetadata(1, 1, ConfState())
        assert b.kv_get(1, 9, b"mine") == b"kept"


def test_opaque_group_stores_supplied_snapshot_data(store: NodeStore) -> None:
    g = store.create_group(1, opaque_snapshots=True)
    g.append(entries(1, 4))
    with pytest.raises(InvalidArgument), store.write() as w:
        w.create_snapshot(1, 2, CS)  # no data to capture it from
    assert g.create_snapshot(2, CS, codec.SNAPSHOT_MAGIC + b"not kv").data.endswith(b"not kv")
    g.apply_snapshot(Snapshot(SnapshotMetadata(5, 2, CS), b"anything"))
    assert (g.snapshot().data, g.applied_index) == (b"anything", 5)


# -- recovery ------------------------------------------------------------------------------
def test_reopen_restores_every_group(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=False) as store:
        for g in (3, 1, 2):
            store.create_group(g, ConfState((1, 2, 3), (g + 10,)))
        store.group(1).append(entries(1, 50, term=1) + entries(50, 60, term=4))
        store.group(1).set_hard_state(HardState(4, 2, 55))
        apply_kv(store, 1, 40, {(1, b"a"): b"b"})
        with store.write() as w:
            w.set_conf_state(1, 30, ConfState((1, 2, 3, 4)))
        store.compact(1, 35)
        store.group(2).append([Entry(1, 1, EntryType.CONF_CHANGE, b"cc"), *entries(2, 5, term=1)])
        store.group(2).append(entries(3, 4, term=2))  # truncates 3..4, leaves 1..3
        before = {g: _picture(store, g) for g in (1, 2, 3)}
    with NodeStore(tmp_path, sync=False) as store:
        assert store.groups() == [1, 2, 3]
        assert {g: _picture(store, g) for g in (1, 2, 3)} == before
        s1 = store.group(1)
        assert (s1.first_index(), s1.last_index(), s1.applied_index) == (36, 59, 40)
        assert s1.initial_state() == (HardState(4, 2, 55), ConfState((1, 2, 3, 4)))
        assert store.group(2).entries(1, 2, 100)[0].type == EntryType.CONF_CHANGE
        assert store.group(2).last_index() == 3


def _picture(store: NodeStore, g: int) -> object:
    s = store.group(g)
    first, last = s.first_index(), s.last_index()
    with store.read() as r:
        kv = list(r.iter_group_kv(g))
    return (
        s.initial_state(),
        first,
        last,
        [s.term(i) for i in range(first - 1, last + 1)],
        s.entries(first, last + 1, 10**9) if last >= first else [],
        s.snapshot(),
        s.applied_index,
        kv,
    )


# -- limits --------------------------------------------------------------------------------
def test_full_map_rolls_back_and_stays_usable(tmp_path: Path) -> None:
    with NodeStore(tmp_path, map_size=256 << 10, sync=False) as store:
        g = store.create_group(1)
        g.append(entries(1, 11))
        apply_kv(store, 1, 10, {(1, b"a"): b"b"})
        big = [Entry(1, i, data=b"x" * 8000) for i in range(11, 100)]
        with pytest.raises(StorageFull) as info:
            g.append(big)
        assert info.value.map_size == 256 << 10
        assert "map" in str(info.value)
        # nothing of the failed write, in LMDB or in the caches; reads still work
        assert g.last_index() == 10
        assert g.entries(1, 11, 10**6) == entries(1, 11)
        assert store.kv_get(1, 1, b"a") == b"b"
        # a kv write that overflows inside a WriteTxn is typed and rolled back too
        with pytest.raises(StorageFull), store.write() as w:
            for i in range(200):
                w.kv_put(1, 2, b"%d" % i, b"v" * 4000)
        assert store.count_slot(1, 2) == 0
        # small writes still fit; a bigger map takes the big one
        g.append(entries(11, 12))
        store.resize(16 << 20)
        g.append(big[1:])
        assert g.last_index() == 99


def test_full_map_at_reopen(tmp_path: Path) -> None:
    with NodeStore(tmp_path, map_size=256 << 10, sync=False) as store:
        store.create_group(1)
        with pytest.raises(StorageFull):
            store.group(1).append([Entry(1, i, data=b"x" * 9000) for i in range(1, 100)])
    with NodeStore(tmp_path, map_size=256 << 10, sync=False) as store:
        assert store.group(1).last_index() == 0


def test_identity(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=False) as store:
        assert store.identity() is None
        store.check_identity("cluster-a", 2)
        store.check_identity("cluster-a", 2)
        with pytest.raises(IdentityMismatch) as info:
            store.check_identity("cluster-b", 2)
        assert (info.value.found_cluster_id, info.value.found_node_id) == ("cluster-a", 2)
        assert "cluster-a" in str(info.value) and "cluster-b" in str(info.value)
        with pytest.raises(IdentityMismatch):
            store.check_identity("cluster-a", 3)
        with pytest.raises(InvalidArgument):
            store.check_identity("", 1)
        with pytest.raises(InvalidArgument):
            store.check_identity("cluster-a", 0)
    with NodeStore(tmp_path, sync=False) as store:
        assert store.identity() == ("cluster-a", 2)
        with pytest.raises(IdentityMismatch):
            store.check_identity("cluster-a", 1)


def test_directory_is_locked(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, sync=False)
    with pytest.raises(StoreLocked):
        NodeStore(tmp_path, sync=False)
    store.close()
    store.close()  # idempotent
    NodeStore(tmp_path, sync=False).close()


def test_incompatible_format(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=False) as store, store.write() as w:
        w._txn.put(b"format", codec.encode_format(99), db=store._node)
    with pytest.raises(IncompatibleFormat):
        NodeStore(tmp_path, sync=False)
    with pytest.raises(IncompatibleFormat):  # the failed open released the directory
        NodeStore(tmp_path, sync=False)
