"""GroupReplica's migration hints (pure: one in-memory replica that leads its group).

A write held for a slot whose copy is still arriving is proposed in the same batch as the
slot's Activate, right behind it; a Freeze proposed here marks its slot until applied.
These are hints only (the state machine's guards decide), but they must never propose a
write twice, or propose one whose caller stopped waiting.
"""

from __future__ import annotations

import asyncio
import random

from kvcluster.node.group import GroupReplica
from kvcluster.raft import Config, ConfState, StateRole
from kvcluster.raft.storage import MemoryStorage


def leader() -> GroupReplica:
    g = GroupReplica(1, Config(id=1), MemoryStorage((1,)), random.Random(1), ConfState((1,), ()))
    g.raw.campaign()
    assert g.is_leader
    return g


def last(g: GroupReplica) -> tuple[int, bytes]:
    log = g.raw.raft.log
    index = log.last_index()
    (entry,) = log.slice(index, index + 1)
    return index, entry.data


def test_a_held_write_is_proposed_right_behind_the_activate() -> None:
    async def run() -> None:
        g = leader()
        hold = g.hold_for_activation(7, b"write")
        other = g.hold_for_activation(8, b"not this slot")
        assert not hold.done()
        (activate,) = g.propose([b"activate 7"])
        index, _ = last(g)
        g.note_moves([(7, index)], [])
        assert hold.done() and not other.done()
        assert last(g) == (index + 1, b"write")
        assert hold.result() is not activate
        assert g._writes[index + 1] == (g.raw.raft.term, hold.result())  # answered when applied

    asyncio.run(run())


def test_a_write_held_while_an_activate_is_pending_is_proposed_at_once() -> None:
    async def run() -> None:
        g = leader()
        g.propose([b"activate 7"])
        index, _ = last(g)
        g.note_moves([(7, index)], [])
        hold = g.hold_for_activation(7, b"write")
        assert hold.done() and last(g) == (index + 1, b"write")
        g.applied = index  # the Activate applied: no longer pending, the write waits again
        later = g.hold_for_activation(7, b"later")
        assert not later.done() and last(g) == (index + 1, b"write")

    asyncio.run(run())


def test_a_hold_given_up_is_never_proposed() -> None:
    async def run() -> None:
        g = leader()
        hold = g.hold_for_activation(7, b"write")
        hold.cancel()
        g.propose([b"activate 7"])
        index, _ = last(g)
        g.note_moves([(7, index)], [])
        assert last(g) == (index, b"activate 7")

    asyncio.run(run())


def test_a_freeze_is_pending_until_applied_or_leadership_is_lost() -> None:
    async def run() -> None:
        g = leader()
        assert not g.freeze_pending(5)
        g.propose([b"freeze 5", b"freeze 6"])
        index, _ = last(g)
        g.note_moves([], [(5, index - 1), (6, index)])
        assert g.freeze_pending(5) and g.freeze_pending(6)
        assert {5, 6} <= g.departed  # answered without a proposal from now on
        g.applied = index - 1
        assert not g.freeze_pending(5) and g.freeze_pending(6)
        g.raw.raft.become_follower(g.raw.raft.term + 1, 0)  # a new term: the entry may be gone
        assert g.raw.raft.role == StateRole.FOLLOWER
        assert not g.freeze_pending(6)

    asyncio.run(run())
