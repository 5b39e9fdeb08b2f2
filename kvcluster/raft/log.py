"""The Raft log as the core sees it: the stable part (Storage) plus the unstable tail.

Contract:
- Invariant: ``applied <= committed <= last_index()``; ``committed`` never decreases.
- A follower truncates only at the first conflicting entry (``find_conflict``); entries that
  match are never rewritten and committed entries are never truncated (that would be a
  safety violation and raises).
- Reads of entries and terms go to the unstable tail first, then to storage.
"""

from __future__ import annotations

from kvcluster.errors import Compacted, Unavailable
from kvcluster.raft.log_unstable import Unstable
from kvcluster.raft.storage import Storage, limit_size
from kvcluster.raft.types import Entry, Snapshot

__all__ = ["RaftLog"]

NO_LIMIT = 1 << 62


class RaftLog:
    __slots__ = ("applied", "committed", "max_apply_size", "storage", "unstable")

    def __init__(self, storage: Storage, max_apply_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1
        self.max_apply_size = max_apply_size

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable={len(self.unstable.entries)})"
        )

    # -- bounds and terms ------------------------------------------------------------------
    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """The term of entry ``i``; raises Compacted or Unavailable when it is not here."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        dummy = self.first_index() - 1
        if i < dummy:
            raise Compacted(f"term of {i}: compacted (first index {dummy + 1})")
        if i > self.last_index():
            raise Unavailable(f"term of {i}: past last index {self.last_index()}")
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        """The term of entry ``i``, or 0 when it is compacted or not yet in the log."""
        try:
            return self.term(i)
        except (Compacted, Unavailable):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (Compacted, Unavailable):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up to date as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    # -- appending -------------------------------------------------------------------------
    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: list[Entry]
    ) -> int | None:
        """Follower side of AppendEntries. Returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise AssertionError(
                    f"entry {ci} conflicts with committed entry (committed {self.committed})"
                )
            self.append(ents[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: list[Entry]) -> int:
        """The index of the first entry that is new or conflicts with ours; 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def conflict_hint(self, index: int) -> tuple[int, int]:
        """For a rejected AppendEntries at ``index``: (first index of the conflicting term,
        that term), or (last_index + 1, 0) when our log is too short (the paper's fast backup).
        """
        last = self.last_index()
        if index > last:
            return last + 1, 0
        term = self.term_or_zero(index)
        first = index
        floor = max(self.committed, self.first_index() - 1)
        while first - 1 > floor and self.term_or_zero(first - 1) == term:
            first -= 1
        return first, term

    def last_index_of_term_at_most(self, index: int, term: int) -> tuple[int, int]:
        """The largest i <= ``index`` whose term is <= ``term``, and that term (leader side of
        the fast backup). Stops at the compaction point, returning its index and term 0."""
        i = min(index, self.last_index())
        while True:
            try:
                t = self.term(i)
            except (Compacted, Unavailable):
                return i, 0
            if t <= term:
                return i, t
            i -= 1

    # -- reading entries -------------------------------------------------------------------
    def slice(self, lo: int, hi: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Entries [lo, hi) limited to ``max_size`` bytes (never empty if any exist)."""
        if lo == hi:
            return []
        first = self.first_index()
        if lo < first:
            raise Compacted(f"entries from {lo}: compacted (first index {first})")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries up to {hi - 1}: past last index {self.last_index()}")
        offset = self.unstable.offset
        ents: list[Entry] = []
        if lo < offset:
            ents = self.storage.entries(lo, min(hi, offset), max_size)
            if len(ents) < min(hi, offset) - lo:
                return ents  # storage hit the size limit
        if hi > offset:
            tail = self.unstable.slice(max(lo, offset), hi)
            ents = ents + tail if ents else tail
        return limit_size(ents, max_size) if max_size != NO_LIMIT else ents

    def entries_from(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries_from(self.first_index())

    def has_next_committed_ents(self) -> bool:
        return self.committed > self.applied and self.applied + 1 >= self.first_index()

    def next_committed_ents(self) -> list[Entry]:
        if not self.has_next_committed_ents():
            return []
        return self.slice(self.applied + 1, self.committed + 1, self.max_apply_size)

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    # -- commit / apply / stable -----------------------------------------------------------
    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is of ``term`` (the current term)."""
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def commit_to(self, to_commit: int) -> None:
        if to_commit > self.committed:
            if to_commit > self.last_index():
                raise AssertionError(
                    f"commit {to_commit} is past the last index {self.last_index()}"
                )
            self.committed = to_commit

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise AssertionError(f"applied {i} outside [{self.applied}, {self.committed}]")
        self.applied = i

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
