"""SnapshotMaker: kv snapshots are built off the asking thread, handed out once, never stale."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import pytest

from kvcluster.errors import Unavailable
from kvcluster.raft.types import ConfState, Entry
from kvcluster.storage import NodeStore, NodeStoreError, UnknownGroup, snapshots
from kvcluster.storage.snapshot_maker import SnapshotMaker

CS = ConfState((1, 2, 3))


class ManualExecutor(Executor):
    """Runs what is submitted only when told to (``run_all``), on the test's thread."""

    def __init__(self) -> None:
        self.queue: list[tuple[Future[Any], Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        self.queue.append((fut, lambda: fn(*args, **kwargs)))
        return fut

    def run_all(self, error: BaseException | None = None) -> None:
        queue, self.queue = self.queue, []
        for fut, call in queue:
            if not fut.set_running_or_notify_cancel():
                continue
            if error is not None:
                fut.set_exception(error)
                continue
            try:
                fut.set_result(call())
            except BaseException as e:
                fut.set_exception(e)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    with NodeStore(tmp_path / "node", sync=False) as s:
        g = s.create_group(1, CS)
        g.append([Entry(1, i, data=b"e%d" % i) for i in range(1, 11)])
        apply(s, 3, {b"a": b"1"})
        yield s


def apply(store: NodeStore, index: int, puts: dict[bytes, bytes]) -> None:
    with store.write() as w:
        for key, value in puts.items():
            w.kv_put(1, 7, key, value)
        w.set_applied(1, index)


def test_built_on_the_executor_then_handed_out_once(store: NodeStore) -> None:
    ex = ManualExecutor()
    maker = SnapshotMaker(store, ex)
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    with pytest.raises(Unavailable):
        maker.get(1, 0)  # still being made: no second capture
    assert len(ex.queue) == 1 and maker.running() == [1]
    ex.run_all()
    snap = maker.get(1, 0)
    assert snap == snapshots.capture(store, 1)
    assert snap.metadata.index == 3
    assert maker.running() == []
    with pytest.raises(Unavailable):
        maker.get(1, 0)  # handed out once: the next follower gets a fresh one
    assert len(ex.queue) == 1


def test_a_capture_overtaken_by_compaction_is_dropped(store: NodeStore) -> None:
    ex = ManualExecutor()
    maker = SnapshotMaker(store, ex)
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    ex.run_all()  # captured at 3
    apply(store, 9, {b"b": b"2"})
    store.compact(1, 8)
    with pytest.raises(Unavailable):
        maker.get(1, 8)  # 3 < 8: a follower could not go on from the log after it
    ex.run_all()
    snap = maker.get(1, 8)
    assert snap.metadata.index == 9
    assert snap == snapshots.capture(store, 1)


def test_a_failed_capture_raises_once_then_is_made_again(store: NodeStore) -> None:
    ex = ManualExecutor()
    maker = SnapshotMaker(store, ex)
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    ex.run_all(error=NodeStoreError("disk trouble"))
    with pytest.raises(NodeStoreError, match="disk trouble"):
        maker.get(1, 0)
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    ex.run_all()
    assert maker.get(1, 0).metadata.index == 3


def test_a_dropped_group_capture_is_forgotten(store: NodeStore) -> None:
    ex = ManualExecutor()
    maker = SnapshotMaker(store, ex)
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    ex.run_all(error=UnknownGroup(1))  # dropped (and re-created) while being captured
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    ex.run_all()
    assert maker.get(1, 0).metadata.index == 3
    with pytest.raises(Unavailable):
        maker.get(1, 0)
    fut = ex.queue[0][0]
    maker.forget(1)
    assert fut.cancelled() and maker.running() == []


def test_group_storage_uses_the_maker_when_the_store_has_one(tmp_path: Path) -> None:
    ex = ManualExecutor()
    with NodeStore(tmp_path, sync=False, snapshot_executor=ex) as s:
        g = s.create_group(1, CS)
        g.append([Entry(1, 1)])
        apply(s, 1, {b"k": b"v"})
        with pytest.raises(Unavailable):
            g.snapshot()
        ex.run_all()
        snap = g.snapshot()
        assert snap.metadata.index == 1 and snap == snapshots.capture(s, 1)
        s.drop_group(1)
        assert s.snapshot_maker is not None and s.snapshot_maker.running() == []
