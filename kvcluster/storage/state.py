"""The in-memory picture of one group's durable Raft state, kept beside LMDB.

Contract:
- Pure: no lmdb, no I/O. ``GroupState`` mirrors what is committed in LMDB for one group;
  a write transaction works on a ``copy()`` and the store installs it only after the LMDB
  commit succeeded, so a rolled-back write never leaves the cache ahead of the disk.
- ``TermRuns`` answers ``term(i)`` for every index from the compaction point to the last
  index without touching LMDB: it keeps one ``(first index, term)`` pair per run of equal
  terms, and terms change rarely, so it stays a few pairs long however long the log is.
- ``EntryCache`` holds the most recent entries (the ones a leader sends to followers right
  after persisting them), bounded by count and bytes; it is always a suffix of the log.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from kvcluster.raft.types import ConfState, Entry, HardState

__all__ = ["EntryCache", "GroupState", "TermRuns"]


class TermRuns:
    """Terms of the log indices ``offset .. last``, run-length encoded.

    Invariant: ``starts[0] == offset``; ``starts`` strictly increases; neighbouring runs have
    different terms; every start is <= the last index of the log.
    """

    __slots__ = ("starts", "terms")

    def __init__(self, offset: int, offset_term: int) -> None:
        self.starts: list[int] = [offset]
        self.terms: list[int] = [offset_term]

    def copy(self) -> TermRuns:
        c = TermRuns.__new__(TermRuns)
        c.starts = self.starts.copy()
        c.terms = self.terms.copy()
        return c

    def term(self, index: int) -> int:
        """The term at ``index``; the caller has checked offset <= index <= last."""
        return self.terms[bisect_right(self.starts, index) - 1]

    def truncate_after(self, index: int) -> None:
        """Forget the terms of indices > ``index`` (>= offset)."""
        k = bisect_right(self.starts, index)
        del self.starts[k:]
        del self.terms[k:]

    def push(self, index: int, term: int) -> None:
        """Record ``term`` for ``index`` = the next index after the current last one."""
        if term != self.terms[-1]:
            self.starts.append(index)
            self.terms.append(term)

    def compact(self, index: int) -> None:
        """Make ``index`` (offset <= index <= last) the new offset."""
        k = bisect_right(self.starts, index) - 1
        self.starts = [index, *self.starts[k + 1 :]]
        self.terms = self.terms[k:]


class EntryCache:
    """The last few entries of the log: ``entries`` ends at the log's last index."""

    __slots__ = ("bytes", "entries", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.entries: list[Entry] = []
        self.bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def copy(self) -> EntryCache:
        c = EntryCache.__new__(EntryCache)
        c.entries = self.entries.copy()
        c.bytes = self.bytes
        c.max_entries = self.max_entries
        c.max_bytes = self.max_bytes
        return c

    def first_index(self) -> int:
        """The first cached index, or 0 if the cache is empty."""
        return self.entries[0].index if self.entries else 0

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``; they start at most one past the cached suffix (which they
        truncate where they overlap)."""
        if self.max_entries == 0 or not entries:
            return
        ents = self.entries
        if ents:
            start = entries[0].index
            if start > ents[-1].index + 1 or start < ents[0].index:
                self.clear()
            elif start <= ents[-1].index:
                cut = start - ents[0].index
                self.bytes -= sum(e.size() for e in ents[cut:])
                del ents[cut:]
        if len(entries) > self.max_entries:
            entries = entries[-self.max_entries :]
        ents.extend(entries)
        self.bytes += sum(e.size() for e in entries)
        drop = 0
        size = self.bytes
        while drop < len(ents) and (len(ents) - drop > self.max_entries or size > self.max_bytes):
            size -= ents[drop].size()
            drop += 1
        if drop:
            del ents[:drop]
            self.bytes = size

    def compact(self, index: int) -> None:
        """Drop cached entries at or below ``index``."""
        ents = self.entries
        if ents and ents[0].index <= index:
            cut = min(index - ents[0].index + 1, len(ents))
            self.bytes -= sum(e.size() for e in ents[:cut])
            del ents[:cut]

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi); the caller has checked first_index() <= lo and hi <= last+1."""
        base = self.entries[0].index
        return self.entries[lo - base : hi - base]


@dataclass(slots=True)
class GroupState:
    """Everything about one group that the hot path reads, as committed in LMDB.

    Invariants: ``offset <= applied`` is *not* required (compaction is the caller's choice);
    ``offset <= last_index``; ``runs`` covers ``offset .. last_index``; ``cache`` is a suffix
    of ``offset+1 .. last_index``; ``snapshot_index <= offset`` unless a compaction happened
    without a snapshot (allowed, as in MemoryStorage). The ``snapshot_*`` fields describe an
    opaque group's stored snapshot; a kv group stores none (its snapshot is captured from its
    data when needed), and for it ``offset <= applied``.
    """

    hard_state: HardState
    conf_index: int
    conf_state: ConfState
    snapshot_index: int
    snapshot_term: int
    snapshot_conf: ConfState
    snapshot_chunks: int
    snapshot_size: int
    offset: int
    runs: TermRuns
    last_index: int
    applied: int
    opaque: bool = False  # snapshots are caller-supplied bytes, not the group's kv data
    cache: EntryCache = field(default_factory=lambda: EntryCache(0, 0))

    def copy(self) -> GroupState:
        hs = self.hard_state
        return GroupState(
            HardState(hs.term, hs.vote, hs.commit),
            self.conf_index,
            self.conf_state,
            self.snapshot_index,
            self.snapshot_term,
            self.snapshot_conf,
            self.snapshot_chunks,
            self.snapshot_size,
            self.offset,
            self.runs.copy(),
            self.last_index,
            self.applied,
            self.opaque,
            self.cache.copy(),
        )
