"""A simulated network for the Raft simulation: it drops, duplicates, reorders and partitions.

Contract:
- Deterministic: every choice comes from the ``random.Random`` handed in; no clock, no globals.
- Messages are copied when sent and a duplicate is a copy of its own, so the core may mutate
  what it sent or received without affecting anything still in flight.
- Links are directed. ``cut(a, b)`` blocks a -> b only, so any topology can be built,
  including one-way (asymmetric) partitions. A message on a cut link is dropped when sent and,
  if the cut appears while it is in flight, when it would have been delivered.
- The network knows nothing about nodes being up or down, nor about Raft: the cluster decides
  what a delivery to a crashed node means and what a dropped message is reported as.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import combinations

from kvcluster.raft import Message

__all__ = ["Envelope", "SimNetwork", "copy_message"]


def copy_message(m: Message) -> Message:
    """A copy that shares nothing mutable with ``m`` (entries are immutable tuples, snapshots
    are never mutated after they are made)."""
    return replace(m, entries=list(m.entries))


@dataclass(slots=True)
class Envelope:
    """One message in flight. ``src`` is the node that sent it (a forwarded TRANSFER_LEADER
    names the transferee in ``msg.from_``), ``src_life`` the life of the sender at send time."""

    seq: int
    src: int
    src_life: int
    dst: int
    msg: Message


class SimNetwork:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.inflight: list[Envelope] = []
        self.cuts: set[tuple[int, int]] = set()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.sent = 0
        self.delivered = 0
        self.dropped = 0
        self._seq = 0

    # -- links -----------------------------------------------------------------------------
    def blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self.cuts

    def cut(self, src: int, dst: int) -> None:
        """Block the directed link src -> dst."""
        if src != dst:
            self.cuts.add((src, dst))

    def isolate(self, node: int, others: list[int]) -> None:
        for o in others:
            self.cut(node, o)
            self.cut(o, node)

    def split(self, groups: list[list[int]]) -> None:
        """Partition into ``groups``: no link between two nodes of different groups."""
        for ga, gb in combinations(groups, 2):
            for a in ga:
                for b in gb:
                    self.cut(a, b)
                    self.cut(b, a)

    def heal(self) -> None:
        self.cuts.clear()

    def describe_cuts(self) -> str:
        return " ".join(f"{a}-x>{b}" for a, b in sorted(self.cuts)) or "none"

    # -- traffic ---------------------------------------------------------------------------
    def send(self, src: int, src_life: int, m: Message) -> Envelope | None:
        """Queue ``m``; returns None if it was dropped on the way out (the caller reports it)."""
        self.sent += 1
        if self.blocked(src, m.to) or (self.drop_rate and self.rng.random() < self.drop_rate):
            self.dropped += 1
            return None
        self._seq += 1
        env = Envelope(self._seq, src, src_life, m.to, copy_message(m))
        self.inflight.append(env)
        return env

    def pick(self) -> tuple[Envelope, bool] | None:
        """Take one message out of flight for delivery: usually one of the oldest (so traffic
        flows), sometimes any (reordering, long delays). Returns (envelope, lost): ``lost``
        means the message is dropped now (cut link or random loss). With ``dup_rate`` the
        message also stays in flight to be delivered again later."""
        q = self.inflight
        if not q:
            return None
        rng = self.rng
        i = rng.randrange(min(len(q), 3)) if rng.random() < 0.75 else rng.randrange(len(q))
        env = q[i]
        if self.dup_rate and rng.random() < self.dup_rate:
            self._seq += 1
            q.append(Envelope(self._seq, env.src, env.src_life, env.dst, copy_message(env.msg)))
        del q[i]
        lost = self.blocked(env.src, env.dst) or bool(
            self.drop_rate and rng.random() < self.drop_rate
        )
        if lost:
            self.dropped += 1
        else:
            self.delivered += 1
        return env, lost

    def take_to(self, dst: int, limit: int) -> list[Envelope]:
        """The oldest ``limit`` messages in flight to ``dst``, taken out of flight."""
        out = [e for e in self.inflight if e.dst == dst][:limit]
        taken = {e.seq for e in out}
        self.inflight = [e for e in self.inflight if e.seq not in taken]
        return out

    def take_all(self) -> list[Envelope]:
        """Everything in flight, oldest first, leaving the network empty (a calm round)."""
        out, self.inflight = self.inflight, []
        return out
