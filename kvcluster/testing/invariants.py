"""Raft's safety properties, checked after every step of a simulation.

Contract:
- ``Checker`` keeps a history over the whole run (all terms, all crashes) and raises
  ``InvariantViolation`` the moment a property fails. It only reads the nodes; it never
  changes them. What it checks (Raft paper, Figure 3, plus what crashes add):

  * election safety: at most one leader per term, over all time;
  * leader append-only: a leader never removes or rewrites an entry of its own log;
  * log matching: two logs holding an entry with the same index and term hold the same entry
    there and agree on everything before it. Persisted entries make up the history;
    unstable (in-memory) entries are compared with it but not added, since they vanish
    with a crash;
  * leader completeness: an entry committed in term t is in the log of every leader of a
    term > t. The commit term of an index is bounded from above by the smallest term at
    which any node was seen knowing it committed, which keeps the check sound;
  * state machine safety: no two nodes apply different entries (or reach different states)
    at the same index; a proposal is applied at one index only;
  * durability: a node's persisted term and commit never go back, it votes once per term,
    it persists a commit index only for entries it persisted, and after a crash its
    persisted log still holds every entry it had persisted as committed;
  * apply order: within one life a node applies index after index with no gap or repeat,
    starting from the snapshot it restored;
  * linearizable reads: a ReadState's index is at least every commit index any node knew
    when the read was requested;
  * clients: every acknowledged proposal (applied by the replica it was proposed to, in
    the same life) is in the history at the index it was acknowledged at;
  * leader bookkeeping: ``match_index < next_index``; the leader counts its own log only
    up to what it persisted; a follower's ``match_index`` is really in its storage; an
    entry of the leader's term is committed only once a quorum of voters has it on disk.
- Cheap enough to run after every step: work is proportional to what changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

from kvcluster.errors import Compacted, Unavailable
from kvcluster.raft import Entry, HardState, ReadState, Snapshot, StateRole
from kvcluster.raft.log import RaftLog

if TYPE_CHECKING:
    from kvcluster.testing.cluster import SimNode

__all__ = ["Checker", "InvariantViolation", "term_or_none"]


class InvariantViolation(AssertionError):
    """A Raft safety property does not hold (or liveness was not reached in time)."""


def term_or_none(log: RaftLog, index: int) -> int | None:
    try:
        return log.term(index)
    except (Compacted, Unavailable):
        return None


class Checker:
    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        # (index, term) -> (type, data); (index, term) -> term of the entry before it.
        self.entries: dict[tuple[int, int], tuple[int, bytes]] = {}
        self.prev_terms: dict[tuple[int, int], int] = {}
        self.committed: dict[int, Entry] = {}  # index -> the entry committed there
        self.commit_term: dict[int, int] = {}  # index -> upper bound of its commit term
        self.digests: dict[int, bytes] = {}  # index -> state machine digest after applying it
        self.applied_at: dict[bytes, int] = {}  # proposal data -> index it was applied at
        self.acked: dict[bytes, int] = {}  # proposal data -> index, acknowledged to the client
        self.read_floor: dict[bytes, int] = {}  # read ctx -> commit index known at request
        self.reads_served = 0
        self._seen_commit: dict[int, int] = {}  # node -> committed index already checked
        self._leaders_checked: set[tuple[int, int]] = set()
        self._leader_tail: dict[int, tuple[int, int, int]] = {}  # node -> (term, last, term)
        self._leader_commit: dict[int, tuple[int, int]] = {}  # node -> (term, committed)
        self._leader_voters: dict[int, frozenset[int]] = {}  # node -> voters at last step

    def fail(self, what: str) -> NoReturn:
        raise InvariantViolation(what)

    # -- log matching ----------------------------------------------------------------------
    def check_entries(
        self, node: int, ents: Iterable[Entry], prev_term: int | None, record: bool = True
    ) -> None:
        """``ents`` are consecutive entries of ``node``'s log; ``prev_term`` is the term of
        the entry before the first (None if unknown). ``record=False`` compares them with the
        persisted history without adding them to it: entries a node holds only in memory
        vanish if it crashes, and a single voter may then legitimately lead the same
        (never persisted) term again with other entries."""
        entries, prev_terms = self.entries, self.prev_terms
        p = prev_term
        for e in ents:
            key = (e.index, e.term)
            seen = entries.setdefault(key, (e.type, e.data)) if record else entries.get(key)
            if seen is not None and seen != (e.type, e.data):
                self.fail(
                    f"log matching: node {node} has {e!r} but another log has "
                    f"type={seen[0]} data={seen[1]!r} at index {e.index} term {e.term}"
                )
            if p is not None:
                sp = prev_terms.setdefault(key, p) if record else prev_terms.get(key, p)
                if sp != p:
                    self.fail(
                        f"log matching: entry ({e.index}, t{e.term}) follows term {p} in node "
                        f"{node}'s log but term {sp} in another log"
                    )
            p = e.term

    # -- durability ------------------------------------------------------------------------
    def on_persist_hard_state(self, node: int, old: HardState, new: HardState, last: int) -> None:
        if new.term < old.term:
            self.fail(f"node {node} persisted term {new.term} after term {old.term}")
        if new.term == old.term and old.vote and new.vote != old.vote:
            self.fail(f"node {node} voted for {old.vote} and then {new.vote} in term {new.term}")
        if new.commit < old.commit:
            self.fail(f"node {node} persisted commit {new.commit} after commit {old.commit}")
        if new.commit > last:
            self.fail(f"node {node} persisted commit {new.commit} beyond its persisted log {last}")

    def on_restart(self, node: SimNode) -> None:
        """``node`` was rebuilt from its storage: re-check its committed prefix from there."""
        self._seen_commit[node.id] = node.storage.snapshot().metadata.index
        self._leader_tail.pop(node.id, None)

    # -- applying --------------------------------------------------------------------------
    def on_apply(self, node: int, prev_index: int, e: Entry, digest: bytes) -> None:
        if e.index != prev_index + 1:
            self.fail(f"node {node} applied index {e.index} right after {prev_index}")
        c = self.committed.setdefault(e.index, e)
        if c != e:
            self.fail(f"state machine safety: node {node} applied {e!r}, another applied {c!r}")
        d = self.digests.setdefault(e.index, digest)
        if d != digest:
            self.fail(f"state machine safety: node {node} diverged at index {e.index}")
        if e.data and e.type == 0:
            at = self.applied_at.setdefault(e.data, e.index)
            if at != e.index:
                self.fail(f"proposal {e.data!r} applied at index {at} and again at {e.index}")

    def on_restore(self, node: int, prev_index: int, snap: Snapshot) -> None:
        meta = snap.metadata
        if meta.index <= prev_index:
            self.fail(f"node {node} restored snapshot {meta.index} after applying {prev_index}")
        d = self.digests.setdefault(meta.index, snap.data)
        if d != snap.data:
            self.fail(f"state machine safety: node {node}'s snapshot at {meta.index} differs")
        c = self.committed.get(meta.index)
        if c is not None and c.term != meta.term:
            self.fail(f"snapshot ({meta.index}, t{meta.term}) but committed entry is {c!r}")

    def on_ack(self, data: bytes, index: int) -> None:
        self.acked[data] = index

    # -- reads -----------------------------------------------------------------------------
    def on_read_request(self, ctx: bytes, floor: int) -> None:
        self.read_floor[ctx] = floor

    def on_read_state(self, node: int, rs: ReadState) -> None:
        floor = self.read_floor.get(rs.request_ctx)
        if floor is None:
            self.fail(f"node {node} got a ReadState for an unknown request {rs.request_ctx!r}")
        elif rs.index < floor:
            self.fail(
                f"linearizability: read {rs.request_ctx!r} on node {node} got index {rs.index} "
                f"but index {floor} was already committed when it was requested"
            )
        self.reads_served += 1

    # -- after every step ------------------------------------------------------------------
    def check_leaders(self, nodes: Iterable[SimNode]) -> None:
        """Election safety only (cheap: called between sub-steps too)."""
        for n in nodes:
            raw = n.raw
            if raw is not None and raw.raft.role == StateRole.LEADER:
                term = raw.raft.term
                other = self.leader_of_term.setdefault(term, n.id)
                if other != n.id:
                    self.fail(f"election safety: nodes {other} and {n.id} both led term {term}")

    def check_step(self, nodes: Iterable[SimNode]) -> None:
        everyone = {n.id: n for n in nodes}
        live = [n for n in everyone.values() if n.raw is not None]
        self.check_leaders(live)
        new_commits: list[int] = []
        for n in live:
            assert n.raw is not None
            r = n.raw.raft
            log = r.log
            # Log matching on what is not persisted yet, against what is (persisted entries
            # were checked and recorded when they were written; see cluster.handle_ready).
            ents = log.unstable.entries
            if ents:
                prev = term_or_none(log, ents[0].index - 1)
                self.check_entries(n.id, ents, prev, record=False)
            # Commits: committed entries agree everywhere and never go back within a life.
            c = log.committed
            seen = self._seen_commit.get(n.id, 0)
            if c > seen:
                self._record_commits(n.id, log, r.term, seen, c, new_commits)
                self._seen_commit[n.id] = c
            elif c < seen:
                self.fail(f"node {n.id}'s commit index went back from {seen} to {c}")
        leaders = [n for n in live if n.raw is not None and n.raw.raft.role == StateRole.LEADER]
        for n in leaders:
            self._check_leader(n, new_commits)
            self._check_commit_durable(n, everyone)

    def _check_commit_durable(self, n: SimNode, everyone: dict[int, SimNode]) -> None:
        """When a leader commits an entry of its own term, a quorum of its voters has it on
        disk (persist before acknowledging; the leader counts itself only once persisted)."""
        assert n.raw is not None
        r = n.raw.raft
        c = r.log.committed
        voters = frozenset(r.tracker.voters)
        # The commit may have happened just before a conf change applied in the same step:
        # then the configuration of the previous step is the one that counted.
        before = self._leader_voters.get(n.id, voters)
        self._leader_voters[n.id] = voters
        if self._leader_commit.get(n.id) == (r.term, c) or term_or_none(r.log, c) != r.term:
            return
        self._leader_commit[n.id] = (r.term, c)
        have = set()
        for v in voters | before:
            peer = everyone.get(v)
            if peer is None:
                continue
            st = peer.storage
            if st.snapshot().metadata.index >= c or (c <= st.last_index() and st.term(c) == r.term):
                have.add(v)
        if all(len(have & cfg) <= len(cfg) // 2 for cfg in (voters, before)):
            self.fail(
                f"leader {n.id} of term {r.term} committed {c} but only {sorted(have)} of "
                f"voters {sorted(voters)} have it on disk"
            )

    def _record_commits(
        self, node: int, log: RaftLog, term: int, lo: int, hi: int, out: list[int]
    ) -> None:
        start = max(lo + 1, log.first_index())
        if start > hi:
            return
        committed, commit_term = self.committed, self.commit_term
        for e in log.slice(start, hi + 1):
            c = committed.setdefault(e.index, e)
            if c != e:
                self.fail(
                    f"state machine safety: node {node} committed {e!r} at {e.index}, "
                    f"but {c!r} was committed there"
                )
            ct = commit_term.get(e.index)
            if ct is None or term < ct:
                commit_term[e.index] = term
                out.append(e.index)

    def _check_leader(self, n: SimNode, new_commits: list[int]) -> None:
        assert n.raw is not None
        r = n.raw.raft
        log, term = r.log, r.term
        # Leader completeness.
        if (n.id, term) not in self._leaders_checked:
            self._leaders_checked.add((n.id, term))
            indices: Iterable[int] = [i for i, ct in self.commit_term.items() if ct < term]
        else:
            indices = [i for i in new_commits if self.commit_term[i] < term]
        first = log.first_index()
        for i in indices:
            if i < first:
                continue  # compacted into the leader's snapshot (its state is digest-checked)
            want = self.committed[i].term
            if term_or_none(log, i) != want:
                self.fail(
                    f"leader completeness: leader {n.id} of term {term} lacks entry "
                    f"({i}, t{want}) committed in term {self.commit_term[i]}"
                )
        # Leader append-only.
        last = log.last_index()
        tail = self._leader_tail.get(n.id)
        if tail is not None and tail[0] == term:
            _, old_last, old_last_term = tail
            t = term_or_none(log, old_last)
            if last < old_last or (t is not None and t != old_last_term):
                self.fail(f"leader {n.id} of term {term} lost or rewrote entry {old_last}")
        self._leader_tail[n.id] = (term, last, log.last_term())
        # Progress bookkeeping.
        persisted = n.storage.last_index()
        for pid, pr in r.tracker.progress.items():
            if pr.match_index >= pr.next_index:
                self.fail(f"leader {n.id}: progress of {pid} has match >= next: {pr!r}")
            if pid == n.id and pr.match_index > persisted:
                self.fail(
                    f"leader {n.id} counts its log up to {pr.match_index} but persisted "
                    f"only up to {persisted}"
                )
        if r.tracker.voters & r.tracker.learners:
            self.fail(f"node {n.id}: voters and learners overlap: {r.tracker.conf_state()}")

    def check_follower_matches(self, leader: SimNode, peers: dict[int, SimNode]) -> None:
        """A leader's ``match_index`` for a follower is in that follower's persisted log
        (when the follower has not persisted a later term since)."""
        assert leader.raw is not None
        r = leader.raw.raft
        for pid, pr in r.tracker.progress.items():
            peer = peers.get(pid)
            if pid == leader.id or peer is None or pr.match_index == 0:
                continue
            st = peer.storage
            if st.hard_state.term != r.term:
                continue
            try:
                t = st.term(pr.match_index)
            except (Compacted, Unavailable):
                if pr.match_index > st.last_index():
                    self.fail(
                        f"leader {leader.id} thinks {pid} has {pr.match_index} but it persisted "
                        f"only up to {st.last_index()}"
                    )
                continue
            want = term_or_none(r.log, pr.match_index)
            if want is not None and t != want:
                self.fail(
                    f"leader {leader.id} thinks {pid} matches at {pr.match_index} but its "
                    f"persisted entry there has term {t}"
                )

    # -- at the end ------------------------------------------------------------------------
    def check_final(self, nodes: Iterable[SimNode]) -> None:
        for n in nodes:
            if n.raw is not None:
                log = n.raw.raft.log
                first = log.first_index()
                self.check_entries(
                    n.id, log.all_entries(), term_or_none(log, first - 1), record=False
                )
            else:
                st = n.storage
                ents = st.entries(st.first_index(), st.last_index() + 1, 1 << 62)
                self.check_entries(n.id, ents, st.term(st.first_index() - 1))
        for data, index in self.acked.items():
            if self.applied_at.get(data) != index:
                self.fail(f"acknowledged proposal {data!r} at {index} is not in the history")
