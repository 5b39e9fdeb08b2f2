"""GroupStorage (LMDB) against MemoryStorage: the same Raft-storage behaviour, value for value.

The fixed cases follow etcd-io/raft ``storage_test.go`` (a log whose dummy entry sits at index 3
with entries of terms 4 and 5 after it). They run against MemoryStorage and against three
LMDB set-ups: no entry cache, a tiny cache (reads cross from LMDB into the cache) and the
default cache. The hypothesis state machine then drives both with random append / compact /
snapshot / hard-state sequences, aborted transactions and reopenings, and compares every
answer after every step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from kvcluster.errors import Compacted, SnapshotOutOfDate, Unavailable
from kvcluster.raft.storage import MemoryStorage
from kvcluster.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from kvcluster.storage import NodeStore


class WritableStorage(Protocol):
    """The protocol plus the writes MemoryStorage and GroupStorage share."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...
    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]: ...
    def term(self, index: int) -> int: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def snapshot(self) -> Snapshot: ...
    def set_hard_state(self, hs: HardState) -> None: ...
    def append(self, entries: list[Entry]) -> None: ...
    def apply_snapshot(self, snap: Snapshot) -> None: ...
    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot: ...
    def compact(self, compact_index: int) -> None: ...


Factory = Callable[[tuple[int, ...]], WritableStorage]

LMDB_CONFIGS = {
    "lmdb-nocache": {"entry_cache_entries": 0},
    "lmdb-tinycache": {"entry_cache_entries": 2, "entry_cache_bytes": 1 << 20},
    "lmdb": {},
}


@pytest.fixture(params=["memory", *LMDB_CONFIGS])
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    stores: list[NodeStore] = []

    def make(voters: tuple[int, ...] = ()) -> WritableStorage:
        if request.param == "memory":
            return MemoryStorage(voters)
        store = NodeStore(tmp_path / f"n{len(stores)}", sync=False, **LMDB_CONFIGS[request.param])
        stores.append(store)
        store.create_group(2)  # neighbours on both sides: nothing may leak across groups
        store.group(2).append([Entry(9, i, data=b"other") for i in range(1, 20)])
        store.create_group(4)
        store.group(4).append([Entry(1, 1)])
        return store.create_group(3, ConfState(voters), opaque_snapshots=True)

    yield make
    for store in stores:
        store.close()


def ent(index: int, term: int) -> Entry:
    return Entry(term, index, data=b"d%d" % index * 3)


def storage_with(make: Factory, pairs: list[tuple[int, int]]) -> WritableStorage:
    """A storage whose dummy entry is ``pairs[0]`` (index, term), followed by the rest."""
    s = make(())
    index, term = pairs[0]
    s.apply_snapshot(Snapshot(SnapshotMetadata(index, term, ConfState((1, 2, 3)))))
    s.append([ent(i, t) for i, t in pairs[1:]])
    return s


def terms_of(s: WritableStorage) -> list[tuple[int, int]]:
    lo = s.first_index() - 1
    return [(i, s.term(i)) for i in range(lo, s.last_index() + 1)]


# -- fixed cases --------------------------------------------------------------------------
def test_term(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    with pytest.raises(Compacted):
        s.term(2)
    assert [s.term(i) for i in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(Unavailable):
        s.term(6)


@pytest.mark.parametrize(
    ("lo", "hi", "max_size", "want"),
    [
        (4, 5, 10**9, [4]),
        (4, 6, 10**9, [4, 5]),
        (4, 7, 10**9, [4, 5, 6]),
        (5, 7, 10**9, [5, 6]),
        (6, 7, 10**9, [6]),
        (7, 7, 10**9, []),
        (4, 7, 0, [4]),  # always at least one
        (4, 7, 2 * ent(4, 4).size(), [4, 5]),
        (4, 7, 3 * ent(4, 4).size() - 1, [4, 5]),
        (4, 7, 3 * ent(4, 4).size(), [4, 5, 6]),
        (5, 7, ent(5, 5).size() - 1, [5]),
    ],
)
def test_entries(make_storage: Factory, lo: int, hi: int, max_size: int, want: list[int]) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5), (6, 6)])
    assert s.entries(lo, hi, max_size) == [ent(i, i) for i in want]


def test_entries_errors(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5), (6, 6)])
    for lo in (2, 3):
        with pytest.raises(Compacted):
            s.entries(lo, 6, 10**9)
    with pytest.raises(Unavailable):
        s.entries(4, 8, 10**9)


def test_first_last_index(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    assert (s.first_index(), s.last_index()) == (4, 5)
    s.append([ent(6, 5)])
    assert s.last_index() == 6
    s.compact(4)
    assert (s.first_index(), s.last_index()) == (5, 6)


def test_fresh_storage(make_storage: Factory) -> None:
    s = make_storage((1, 2, 3))
    assert (s.first_index(), s.last_index(), s.term(0)) == (1, 0, 0)
    assert s.entries(1, 1, 10) == []
    assert s.initial_state() == (HardState(), ConfState((1, 2, 3)))
    snap = s.snapshot()
    assert (snap.metadata.index, snap.metadata.term, snap.data) == (0, 0, b"")
    assert snap.metadata.conf_state == ConfState((1, 2, 3))


@pytest.mark.parametrize(
    ("index", "error", "first", "term"),
    [(2, Compacted, 4, 3), (3, Compacted, 4, 3), (4, None, 5, 4), (5, None, 6, 5)],
)
def test_compact(
    make_storage: Factory, index: int, error: type[Exception] | None, first: int, term: int
) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    if error:
        with pytest.raises(error):
            s.compact(index)
    else:
        s.compact(index)
    assert (s.first_index(), s.term(first - 1), s.last_index()) == (first, term, 5)


def test_compact_past_last_is_unavailable(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    with pytest.raises(Unavailable):
        s.compact(6)


def test_create_snapshot(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    cs = ConfState((1, 2, 3), (4,))
    snap = s.create_snapshot(4, cs, b"data-4")
    assert snap == Snapshot(SnapshotMetadata(4, 4, cs), b"data-4")
    assert s.snapshot() == snap
    assert s.initial_state()[1] == cs
    assert s.first_index() == 4  # creating a snapshot does not compact
    with pytest.raises(SnapshotOutOfDate):
        s.create_snapshot(4, cs, b"again")
    with pytest.raises(Unavailable):
        s.create_snapshot(6, cs, b"future")
    assert s.create_snapshot(5, cs, b"").metadata.index == 5


@pytest.mark.parametrize(
    ("new", "want"),
    [
        ([(3, 3), (4, 4), (5, 5)], [(3, 3), (4, 4), (5, 5)]),
        ([(3, 3), (4, 6), (5, 6)], [(3, 3), (4, 6), (5, 6)]),
        ([(3, 3), (4, 4), (5, 5), (6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),
        ([(2, 3), (3, 3), (4, 5)], [(3, 3), (4, 5)]),  # truncate incoming, then conflict
        ([(4, 5)], [(3, 3), (4, 5)]),  # conflict at the first entry
        ([(6, 5)], [(3, 3), (4, 4), (5, 5), (6, 5)]),  # plain append
        ([(1, 1), (2, 2)], [(3, 3), (4, 4), (5, 5)]),  # all compacted: ignored
        ([], [(3, 3), (4, 4), (5, 5)]),
    ],
)
def test_append(
    make_storage: Factory, new: list[tuple[int, int]], want: list[tuple[int, int]]
) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    s.append([ent(i, t) for i, t in new])
    assert terms_of(s) == want
    assert s.entries(4, s.last_index() + 1, 10**9) == [ent(i, t) for i, t in want[1:]]


def test_append_gap_is_unavailable(make_storage: Factory) -> None:
    s = storage_with(make_storage, [(3, 3), (4, 4), (5, 5)])
    with pytest.raises(Unavailable):
        s.append([ent(7, 5)])
    assert terms_of(s) == [(3, 3), (4, 4), (5, 5)]


def test_apply_snapshot(make_storage: Factory) -> None:
    s = make_storage((1, 2, 3))
    cs = ConfState((1, 2, 3))
    s.append([ent(1, 1), ent(2, 1)])
    s.apply_snapshot(Snapshot(SnapshotMetadata(4, 4, cs), b"opaque"))
    assert (s.first_index(), s.last_index(), s.term(4)) == (5, 4, 4)
    assert s.snapshot() == Snapshot(SnapshotMetadata(4, 4, cs), b"opaque")
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMetadata(3, 3, cs)))
    with pytest.raises(SnapshotOutOfDate):
        s.apply_snapshot(Snapshot(SnapshotMetadata(4, 4, cs)))
    s.append([ent(5, 4)])
    assert s.entries(5, 6, 10) == [ent(5, 4)]


def test_hard_state(make_storage: Factory) -> None:
    s = make_storage((1,))
    s.set_hard_state(HardState(term=7, vote=2, commit=5))
    hs, cs = s.initial_state()
    assert (hs, cs) == (HardState(7, 2, 5), ConfState((1,)))
    hs.term = 99  # the caller's copy: storage must not change
    assert s.initial_state()[0] == HardState(7, 2, 5)


# -- comparison under random operations ---------------------------------------------------
def outcome(f: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """``f(*args)``'s value, or the name of the storage error it raised."""
    try:
        return "ok", f(*args)
    except (Compacted, Unavailable, SnapshotOutOfDate) as e:
        return type(e).__name__, None


def assert_same(mem: MemoryStorage, lm: WritableStorage) -> None:
    """Every answer of the Raft Storage protocol agrees."""
    first, last = mem.first_index(), mem.last_index()
    assert (lm.first_index(), lm.last_index()) == (first, last)
    assert lm.initial_state() == mem.initial_state()
    assert lm.snapshot() == mem.snapshot()
    for i in range(first - 2, last + 3):
        assert outcome(lm.term, i) == outcome(mem.term, i), i
    full = mem.entries(first, last + 1, 10**9) if last >= first else []
    sizes = [0, 1, sum(e.size() for e in full) // 2, 10**9]
    for lo in range(first - 1, last + 3):
        for hi in {last + 1, last + 2, lo + 1, lo + 2}:
            for max_size in sizes:
                got = outcome(lm.entries, lo, hi, max_size)
                assert got == outcome(mem.entries, lo, hi, max_size), (lo, hi, max_size)


_machine_dirs = itertools.count()


class StorageComparison(RuleBasedStateMachine):
    """MemoryStorage is the model; GroupStorage over LMDB must give identical answers."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root / f"m{next(_machine_dirs)}"
        self.mem = MemoryStorage((1, 2, 3))
        self._open()
        self.store.create_group(6).append([Entry(1, i, data=b"six") for i in range(1, 9)])
        self.store.create_group(8).append([Entry(2, 1, data=b"eight")])
        self.lm = self.store.create_group(7, ConfState((1, 2, 3)), opaque_snapshots=True)

    def _open(self) -> None:
        # Small cache and chunks so every read path and the chunking are exercised.
        self.store = NodeStore(
            self.path, sync=False, entry_cache_entries=3, entry_cache_bytes=120, chunk_size=5
        )

    def teardown(self) -> None:
        self.store.close()

    def both(self, op: Callable[[WritableStorage], Any]) -> None:
        got = outcome(lambda: op(self.lm))
        want = outcome(lambda: op(self.mem))
        assert got == want

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        first, last = self.mem.first_index(), self.mem.last_index()
        start = data.draw(st.integers(max(1, first - 3), last + 2), label="start")
        terms = data.draw(st.lists(st.integers(0, 2), min_size=0, max_size=6), label="bumps")
        sizes = data.draw(st.lists(st.integers(0, 30), min_size=len(terms), max_size=len(terms)))
        term = data.draw(st.integers(1, 4), label="term")
        entries = []
        for k, (bump, size) in enumerate(zip(terms, sizes, strict=True)):
            term += bump
            entries.append(Entry(term, start + k, data=bytes([k % 256]) * size))
        self.both(lambda s: s.append(entries))

    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        first, last = self.mem.first_index(), self.mem.last_index()
        index = data.draw(st.integers(max(0, first - 2), last + 1))
        self.both(lambda s: s.compact(index))

    @rule(data=st.data(), payload=st.binary(max_size=23))
    def create_snapshot(self, data: st.DataObject, payload: bytes) -> None:
        first, last = self.mem.first_index(), self.mem.last_index()
        snap_index = self.mem.snapshot().metadata.index
        index = data.draw(st.integers(min(snap_index, last + 1), last + 1))
        if snap_index < index < first - 1:
            return  # below the compaction point: MemoryStorage indexes with a negative offset
        cs = ConfState((1, 2, 3), (index % 5,))
        self.both(lambda s: s.create_snapshot(index, cs, payload))

    @rule(data=st.data(), payload=st.binary(max_size=12))
    def apply_snapshot(self, data: st.DataObject, payload: bytes) -> None:
        md = self.mem.snapshot().metadata
        # The log may end below the snapshot (an append truncated it): keep the range valid.
        lo = max(0, md.index - 1)
        index = data.draw(st.integers(lo, max(lo, self.mem.last_index() + 4)))
        term = data.draw(st.integers(1, 9))
        snap = Snapshot(SnapshotMetadata(index, term, ConfState((1, 2, 3, 4))), payload)
        self.both(lambda s: s.apply_snapshot(snap))

    @rule(term=st.integers(0, 9), vote=st.integers(0, 3), commit=st.integers(0, 40))
    def set_hard_state(self, term: int, vote: int, commit: int) -> None:
        self.both(lambda s: s.set_hard_state(HardState(term, vote, commit)))

    @rule(data=st.data())
    def aborted_write(self, data: st.DataObject) -> None:
        """A transaction that fails part-way changes nothing, on disk or in the caches."""
        last = self.mem.last_index()
        with pytest.raises(RuntimeError), self.store.write() as w:
            w.append(7, [Entry(50, last + 1), Entry(50, last + 2)])
            w.set_hard_state(7, HardState(50, 1, 1))
            if data.draw(st.booleans()):
                w.compact(7, last + 1)
            raise RuntimeError("boom")

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self._open()
        assert self.store.groups() == [6, 7, 8]
        self.lm = self.store.group(7)

    @invariant()
    def same_answers(self) -> None:
        assert_same(self.mem, self.lm)
        assert self.store.group(6).last_index() == 8
        assert self.store.group(8).term(1) == 2


def test_group_storage_matches_memory_storage(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("stateful")
    run_state_machine_as_test(
        lambda: StorageComparison(root),
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_reopened_group_matches_memory_storage(tmp_path: Path) -> None:
    """A fixed history, then recovery from disk alone: the same answers as before."""
    mem = MemoryStorage((1, 2, 3))
    with NodeStore(tmp_path, sync=False) as store:
        lm = store.create_group(1, ConfState((1, 2, 3)), opaque_snapshots=True)
        for s in (mem, lm):
            s.append([ent(i, 1 + i // 4) for i in range(1, 30)])
            s.append([ent(i, 9) for i in range(20, 25)])  # conflicting suffix replaced
            s.create_snapshot(10, ConfState((1, 2, 3)), b"snap-10")
            s.compact(8)
            s.set_hard_state(HardState(9, 2, 22))
        assert_same(mem, lm)
    with NodeStore(tmp_path, sync=False) as store:
        assert store.groups() == [1]
        assert_same(mem, store.group(1))
