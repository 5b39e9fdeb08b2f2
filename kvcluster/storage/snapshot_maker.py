"""``SnapshotMaker``: captures kv-group snapshots on a worker thread, off the Raft loop.

Contract:
- A kv group's snapshot is its whole applied data (``snapshots.capture``): building one takes
  time proportional to the group's size. Asked for one on the thread that runs Raft, the
  maker never builds it there: ``get`` hands out a finished capture, or starts one on the
  executor and raises ``Unavailable`` (Raft's "snapshot temporarily unavailable": the leader
  tries again at the follower's next heartbeat answer, and keeps heartbeating meanwhile).
- A capture is handed out once, and only if its index is at least ``offset`` (the group's
  compaction point at the time of ``get``), so the follower that installs it can go on from
  the log. One that the log's compaction overtook while it was being built is dropped and a
  new one started. At most one capture per group runs at a time.
- A capture that failed raises its error from the next ``get`` (once); an ``UnknownGroup``
  (the group was dropped meanwhile) is forgotten like a stale capture.
- A capture holds a copy of the group's data until it is handed out or forgotten: the node
  forgets it when its replica stops leading or leaves (``forget``).
- ``get`` runs on the Raft thread, ``forget`` wherever a group is dropped (the store's
  writer), ``close`` before the store closes (it waits for a capture that is running); a
  lock keeps their bookkeeping consistent. The executor's threads only read the store (one
  read transaction per capture).
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future, wait
from typing import TYPE_CHECKING

from kvcluster.errors import Unavailable
from kvcluster.raft.types import Snapshot
from kvcluster.storage import snapshots
from kvcluster.storage.errors import UnknownGroup

if TYPE_CHECKING:
    from kvcluster.storage.node_store import NodeStore

__all__ = ["SnapshotMaker"]


class SnapshotMaker:
    """Background captures of the kv groups of ``store``, run on ``executor``."""

    def __init__(self, store: NodeStore, executor: Executor) -> None:
        self._store = store
        self._executor = executor
        self._captures: dict[int, Future[Snapshot]] = {}
        self._lock = threading.Lock()

    def get(self, group: int, offset: int) -> Snapshot:
        """A finished capture of ``group`` at index >= ``offset``; else Unavailable, with a
        capture under way."""
        with self._lock:
            return self._get(group, offset)

    def _get(self, group: int, offset: int) -> Snapshot:
        fut = self._captures.get(group)
        if fut is not None and fut.done():
            del self._captures[group]
            if not fut.cancelled():
                error = fut.exception()
                if error is None:
                    snap = fut.result()
                    if snap.metadata.index >= offset:
                        return snap
                elif not isinstance(error, UnknownGroup):
                    raise error  # once: the next get starts a new capture
            fut = None  # overtaken by compaction, or of a dropped group: build a new one
        if fut is None:
            self._captures[group] = self._executor.submit(snapshots.capture, self._store, group)
        raise Unavailable(f"a snapshot of group {group} is being made")

    def forget(self, group: int) -> None:
        """Drop ``group``'s capture (finished or not): its replica left this node."""
        with self._lock:
            fut = self._captures.pop(group, None)
        if fut is not None:
            fut.cancel()

    def running(self) -> list[int]:
        """Groups with a capture under way or waiting to be handed out."""
        with self._lock:
            return sorted(self._captures)

    def close(self) -> None:
        """Cancel the captures not started, wait for the running ones, forget them all."""
        with self._lock:
            futs, self._captures = list(self._captures.values()), {}
        for fut in futs:
            fut.cancel()
        wait(futs)
