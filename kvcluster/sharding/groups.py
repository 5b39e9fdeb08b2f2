"""A shard group as the slot map knows it: its id, its replicas' addresses, a leader hint.

Contract:
- ``GroupInfo`` is an immutable value, validated on construction (``InvalidArgument``): the id
  is in ``[0, MAX_GROUP_ID]``, there is at least one replica, addresses are non-empty strings
  without duplicates, and the leader hint, if any, is one of the replicas.
- The leader is a *hint*: the group's own Raft decides who leads, and any replica answers a
  request it cannot serve with a not-leader redirect. ``address`` is where to send a request
  first: the leader hint if known, else the first replica.
- ``to_dict``/``from_dict`` use only str, int, list and None, so the value survives JSON and
  msgpack unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kvcluster.errors import InvalidArgument
from kvcluster.sharding._validate import (
    MAX_GROUP_ID,
    require_fields,
    require_group_id,
    require_sequence,
    require_str,
)

__all__ = ["MAX_GROUP_ID", "GroupInfo"]

_FIELDS = frozenset({"id", "replicas"})
_OPTIONAL = frozenset({"leader"})


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group_id: int
    replicas: tuple[str, ...]
    leader: str | None = None

    def __post_init__(self) -> None:
        require_group_id(self.group_id)
        replicas = tuple(require_sequence(self.replicas, "replicas"))
        if not replicas:
            raise InvalidArgument(f"group {self.group_id} has no replicas")
        for address in replicas:
            require_str(address, f"replica address of group {self.group_id}")
        if len(set(replicas)) != len(replicas):
            raise InvalidArgument(f"group {self.group_id} lists a replica twice: {replicas}")
        if self.leader is not None and self.leader not in replicas:
            raise InvalidArgument(
                f"leader hint {self.leader!r} of group {self.group_id} is not one of its replicas"
            )
        object.__setattr__(self, "replicas", replicas)

    @property
    def address(self) -> str:
        """Where to send a request for this group first: the leader hint, else replica 0."""
        return self.leader if self.leader is not None else self.replicas[0]

    def with_leader(self, leader: str | None) -> GroupInfo:
        """The same group with another leader hint (``None``: unknown)."""
        return replace(self, leader=leader)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.group_id, "replicas": list(self.replicas), "leader": self.leader}

    @classmethod
    def from_dict(cls, data: object) -> GroupInfo:
        fields = require_fields(data, "group", _FIELDS, _OPTIONAL)
        replicas = require_sequence(fields["replicas"], "replicas")
        leader = fields.get("leader")
        if leader is not None:
            leader = require_str(leader, "leader")
        group_id = require_group_id(fields["id"])
        return cls(group_id, tuple(require_str(a, "replica address") for a in replicas), leader)
