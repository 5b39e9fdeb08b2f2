"""ReadIndex bookkeeping on the leader: batched leadership confirmation for linearizable reads.

Contract:
- A read request records the leader's commit index when it arrives. Requests that arrived
  since the last heartbeat round are stamped with the next round number ``seq`` by ``flush``,
  and one heartbeat round carrying that ``seq`` confirms leadership for all of them.
- Every heartbeat carries the latest round number; a follower echoes it. Because round ``s``
  was sent after every request of rounds ``<= s`` arrived, a quorum acknowledging ``s``
  (or anything later) releases all of them: the released round is the quorum-th largest of
  the per-voter acknowledged rounds, computed like a commit index.
- Requests are released in arrival order. Nothing here survives a change of role: the
  requests are dropped and the caller retries (it cannot tell a dropped read from a slow one,
  which is why reads carry a deadline at the application layer).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ReadOnly", "ReadRequest"]


@dataclass(slots=True)
class ReadRequest:
    ctx: bytes
    index: int
    from_: int  # the node that asked (the leader itself for local reads)
    seq: int = 0  # 0 until stamped by flush()


class ReadOnly:
    __slots__ = ("acked", "queue", "seq", "unstamped")

    def __init__(self) -> None:
        self.queue: deque[ReadRequest] = deque()
        self.seq = 0  # the latest round sent
        self.unstamped = 0  # how many requests at the tail of the queue await a round
        self.acked: dict[int, int] = {}  # voter -> latest round it acknowledged

    def add(self, ctx: bytes, index: int, from_: int) -> None:
        self.queue.append(ReadRequest(ctx, index, from_))
        self.unstamped += 1

    def flush(self) -> int:
        """Stamp waiting requests with a new round; returns that round, or 0 if none waited."""
        if not self.unstamped:
            return 0
        self.seq += 1
        q = self.queue
        for i in range(len(q) - self.unstamped, len(q)):
            q[i].seq = self.seq
        self.unstamped = 0
        return self.seq

    def ack(self, voter: int, seq: int) -> None:
        if seq > self.acked.get(voter, 0):
            self.acked[voter] = seq

    def release(self, voters: set[int], self_id: int, quorum: int) -> list[ReadRequest]:
        """Pop every request whose round is confirmed by a quorum of ``voters``."""
        if not self.queue or self.queue[0].seq == 0:
            return []
        rounds = sorted(
            (self.seq if v == self_id else self.acked.get(v, 0) for v in voters), reverse=True
        )
        confirmed = rounds[quorum - 1]
        out: list[ReadRequest] = []
        q = self.queue
        while q and q[0].seq and q[0].seq <= confirmed:
            out.append(q.popleft())
        return out

    def reset(self) -> None:
        self.queue.clear()
        self.unstamped = 0
        self.acked.clear()
        # ``seq`` keeps increasing so that stale acknowledgements never match a new round.
