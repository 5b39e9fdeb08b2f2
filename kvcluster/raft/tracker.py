"""Membership and per-member progress: who votes, who learns, and what a majority has.

Contract:
- ``voters`` decide elections and commits (a strict majority); ``learners`` receive the log
  but never vote and never count towards a quorum. A node is never both.
- ``committed()`` is the largest index a majority of voters has persisted; the leader counts
  itself only for what it has persisted too (its own ``match_index`` moves on ``advance``).
- Membership changes one voter at a time (the dissertation's single-server rule); the raft
  module enforces that only one change is in flight.
"""

from __future__ import annotations

import enum

from kvcluster.raft.progress import Progress
from kvcluster.raft.types import ConfState

__all__ = ["ProgressTracker", "VoteResult"]


class VoteResult(enum.Enum):
    PENDING = 0
    WON = 1
    LOST = 2


class ProgressTracker:
    __slots__ = ("learners", "max_inflight", "progress", "voters", "votes")

    def __init__(self, max_inflight: int) -> None:
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def set_member(self, node_id: int, learner: bool, next_index: int) -> None:
        """Make ``node_id`` a voter (or a learner), keeping its progress if it has one."""
        if learner:
            self.voters.discard(node_id)
            self.learners.add(node_id)
        else:
            self.learners.discard(node_id)
            self.voters.add(node_id)
        pr = self.progress.get(node_id)
        if pr is None:
            pr = Progress(next_index, self.max_inflight)
            pr.recent_active = True  # a new member gets a grace period before check-quorum
            self.progress[node_id] = pr
        pr.is_learner = learner

    def remove(self, node_id: int) -> None:
        self.voters.discard(node_id)
        self.learners.discard(node_id)
        self.progress.pop(node_id, None)
        self.votes.pop(node_id, None)

    def committed(self) -> int:
        voters = self.voters
        if not voters:
            return 1 << 62  # no voters: nothing constrains (used only transiently)
        matches = sorted((self.progress[v].match_index for v in voters), reverse=True)
        return matches[len(matches) // 2]

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for v in self.voters if self.votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self.votes.get(v) is False)
        q = self.quorum()
        if granted >= q:
            return granted, rejected, VoteResult.WON
        if rejected > len(self.voters) - q:
            return granted, rejected, VoteResult.LOST
        return granted, rejected, VoteResult.PENDING

    def quorum_active(self) -> bool:
        return sum(1 for v in self.voters if self.progress[v].recent_active) >= self.quorum()

    def is_voter(self, node_id: int) -> bool:
        return node_id in self.voters
