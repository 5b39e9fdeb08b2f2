"""The state machine's side of the store: KvView conformance, and apply / snapshot / install /
reopen under random sequences against a plain dict model."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from kvcluster.errors import SnapshotOutOfDate
from kvcluster.kv.memory import MemoryKvView
from kvcluster.raft.types import ConfState, Entry, SnapshotMetadata
from kvcluster.storage import NodeStore, StorageFull, codec

if TYPE_CHECKING:
    from kvcluster.kv.view import KvReadView, KvView

CS = ConfState((1, 2, 3))


def test_kv_view_matches_memory_view(tmp_path: Path) -> None:
    with NodeStore(tmp_path, sync=False) as store:
        store.create_group(1)
        mem = MemoryKvView()
        with store.write() as w:
            view: KvView = w.kv_view(1)  # mypy checks the structural match
            for target in (mem, view):
                target.put(3, b"a", b"1")
                target.put(3, b"a", b"2")
                target.put(9, b"a", b"3")
                target.put_meta(b"kv/clock", b"42")
                target.put_meta(b"kv/s/1", b"session")
                assert target.delete(9, b"a") is True
                assert target.delete(9, b"a") is False
                assert target.delete_meta(b"kv/s/1") is True
                assert target.delete_meta(b"kv/s/1") is False
            assert view.get(3, b"a") == mem.get(3, b"a") == b"2"
        with store.read() as r:
            rv: KvReadView = r.kv_read_view(1)
            assert (rv.get(3, b"a"), rv.get(9, b"a")) == (b"2", None)
            assert rv.get_meta(b"kv/clock") == b"42"
            items = list(r.iter_group_kv(1))
        assert items == [(3, b"a", b"2"), (codec.SM_META_SLOT, b"kv/clock", b"42")]
        assert store.scan_slot(1, 3) == [(b"a", b"2")]  # meta records are not data


slots = st.integers(0, 3)
keys = st.sampled_from([b"", b"a", b"b", b"c\x00", b"\xff"])
writes = st.lists(
    st.tuples(st.booleans(), slots, keys, st.binary(max_size=20)), min_size=0, max_size=8
)
_dirs = itertools.count()


class ApplyMachine(RuleBasedStateMachine):
    """Group 1 is applied to; group 2 installs group 1's snapshots. A dict is the model."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.path = root / f"a{next(_dirs)}"
        self.store = NodeStore(self.path, sync=False, chunk_size=16)
        self.store.create_group(1, CS)
        self.store.create_group(2, CS)
        self.model: dict[tuple[int, bytes], bytes] = {}
        self.meta: dict[bytes, bytes] = {}
        self.applied = 0
        self.follower: dict[tuple[int, bytes], bytes] = {}
        self.follower_applied = 0

    def teardown(self) -> None:
        self.store.close()

    @rule(ops=writes, clock=st.binary(max_size=4), fail=st.booleans())
    def apply_entry(
        self, ops: list[tuple[bool, int, bytes, bytes]], clock: bytes, fail: bool
    ) -> None:
        """One committed entry: appended to the log, then applied with its applied index."""
        index = self.applied + 1
        self.store.group(1).append([Entry(1, index)])
        try:
            with self.store.write() as w:
                view = w.kv_view(1)
                for put, slot, key, value in ops:
                    if put:
                        view.put(slot, key, value)
                    else:
                        view.delete(slot, key)
                view.put_meta(b"kv/clock", clock)
                w.set_applied(1, index)
                if fail:
                    raise RuntimeError("crash before commit")
        except RuntimeError:
            return  # nothing of it happened: the model stays as it was
        for put, slot, key, value in ops:
            if put:
                self.model[(slot, key)] = value
            else:
                self.model.pop((slot, key), None)
        self.meta[b"kv/clock"] = clock
        self.applied = index

    @rule()
    def snapshot_and_install(self) -> None:
        """Group 1 captures a snapshot (at its applied index), compacts, group 2 installs it."""
        g1 = self.store.group(1)
        snap = g1.snapshot()
        assert snap.metadata == SnapshotMetadata(self.applied, 1 if self.applied else 0, CS)
        if self.applied >= g1.first_index():
            g1.compact(self.applied)
        if snap.metadata.index <= self.follower_applied:
            with pytest.raises(SnapshotOutOfDate):
                self.store.group(2).apply_snapshot(snap)
            return
        self.store.group(2).apply_snapshot(snap)
        self.follower = dict(self.model)
        self.follower_applied = self.applied

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = NodeStore(self.path, sync=False, chunk_size=16)

    @invariant()
    def matches_model(self) -> None:
        with self.store.read() as r:
            got = {(s, k): v for s, k, v in r.iter_group_kv(1) if s != codec.SM_META_SLOT}
            assert got == self.model
            assert r.kv_read_view(1).get_meta(b"kv/clock") == self.meta.get(b"kv/clock")
            assert r.applied_index(1) == self.applied
            follower = {(s, k): v for s, k, v in r.iter_group_kv(2) if s != codec.SM_META_SLOT}
            assert follower == self.follower
        assert self.store.group(1).applied_index == self.applied
        assert self.store.group(2).applied_index == self.follower_applied
        for slot in range(4):
            want = sorted((k, v) for (s, k), v in self.model.items() if s == slot)
            assert self.store.scan_slot(1, slot) == want
            assert self.store.count_slot(1, slot) == len(want)


def test_apply_snapshot_install_match_a_dict(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("apply")
    run_state_machine_as_test(
        lambda: ApplyMachine(root),
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_apply_that_fills_the_map_is_not_applied(tmp_path: Path) -> None:
    with NodeStore(tmp_path, map_size=256 << 10, sync=False) as store:
        store.create_group(1).append([Entry(1, 1), Entry(1, 2)])
        with store.write() as w:
            w.kv_view(1).put(0, b"small", b"v")
            w.set_applied(1, 1)
        with pytest.raises(StorageFull), store.write() as w:
            view = w.kv_view(1)
            for i in range(100):
                view.put(1, b"%d" % i, b"x" * 5000)
            w.set_applied(1, 2)
        assert store.applied_index(1) == 1
        assert store.count_slot(1, 1) == 0
        assert store.kv_get(1, 0, b"small") == b"v"
