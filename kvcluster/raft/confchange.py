"""Membership change requests and their log encoding.

Contract:
- One change at a time (the Raft dissertation's single-server rule, §4.1): add a voter, add a
  learner (or demote a voter to learner), remove a node. Promoting a learner is ``ADD_VOTER``
  on a learner. The leader refuses a new change while an earlier one is not yet applied,
  and a new leader refuses any until it has applied everything from earlier terms, which
  closes the single-server bug the dissertation's errata describe.
- A change takes effect when the application applies its committed entry and calls
  ``RawNode.apply_conf_change``; it is encoded in ``Entry.data`` of a CONF_CHANGE entry.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from kvcluster.errors import InvalidArgument
from kvcluster.raft.types import ConfState

__all__ = ["ConfChange", "ConfChangeType"]

_HEADER = struct.Struct(">BQ")


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    REMOVE_NODE = 1
    ADD_LEARNER = 2


@dataclass(slots=True, frozen=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""  # opaque to Raft (e.g. the new member's address)

    def applied_to(self, cs: ConfState) -> ConfState:
        """The membership after this change: the same set operations the progress tracker
        performs in ``RawNode.apply_conf_change`` (for callers that must compute it elsewhere,
        e.g. to persist it in the transaction that applies the entry)."""
        voters, learners = set(cs.voters), set(cs.learners)
        voters.discard(self.node_id)
        learners.discard(self.node_id)
        if self.type == ConfChangeType.ADD_VOTER:
            voters.add(self.node_id)
        elif self.type == ConfChangeType.ADD_LEARNER:
            learners.add(self.node_id)
        return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))

    def encode(self) -> bytes:
        return _HEADER.pack(self.type, self.node_id) + self.context

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if len(data) < _HEADER.size:
            raise InvalidArgument(f"conf change too short: {len(data)} bytes")
        t, node_id = _HEADER.unpack_from(data)
        try:
            ctype = ConfChangeType(t)
        except ValueError:
            raise InvalidArgument(f"unknown conf change type {t}") from None
        if node_id == 0:
            raise InvalidArgument("conf change names node 0")
        return cls(ctype, node_id, bytes(data[_HEADER.size :]))
