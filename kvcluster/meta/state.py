"""The cluster's layout as the meta group decides it: nodes, shard groups, slot owners, epoch.

Contract:
- ``MetaState`` is immutable; every change returns a new state with ``epoch + 1`` — the same
  epoch the ``SlotMap`` it derives carries, so clients compare epochs across both.
- Shard groups name their replicas by node id; addresses live in ``nodes`` and are joined in
  only when a ``SlotMap`` for routing is derived (``slot_map()``).
- ``plan_bootstrap`` is the pure placement rule of ``kvctl cluster create``: slots spread
  evenly (contiguous ranges, sizes differing by at most one), group ``g``'s replicas on
  consecutive nodes so no node holds two replicas of one group.
- The epoch is the routing version: it moves when owners, groups or nodes change.
- ``migrations`` are the slot moves the meta group has recorded and not yet forgotten (at
  most one per slot), with ids from ``next_migration_id``; their phases are
  ``kvcluster.sharding.migration``'s. The owner of a slot under migration is ``owners``'
  (the flip to the target happens in the same change that enters OWNERSHIP_FLIPPED).
- Serialisation is plain JSON-friendly data; ``from_dict`` rejects malformed input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kvcluster.errors import InvalidArgument
from kvcluster.sharding import GroupInfo, SlotMap
from kvcluster.sharding.migration import Migration

__all__ = ["META_GROUP", "MetaState", "plan_bootstrap"]

META_GROUP = 0
"""The group id of the meta group (shard groups are 1..)."""


@dataclass(frozen=True)
class MetaState:
    cluster_id: str = ""
    epoch: int = 0
    nodes: dict[int, str] = field(default_factory=dict)  # node id -> address
    groups: dict[int, tuple[int, ...]] = field(default_factory=dict)  # group -> replica ids
    owners: tuple[tuple[int, int, int], ...] = ()  # (first slot, last slot, group)
    migrations: tuple[Migration, ...] = ()
    next_migration_id: int = 1

    @property
    def bootstrapped(self) -> bool:
        return self.epoch > 0

    def slot_map(self, leaders: dict[int, int] | None = None) -> SlotMap:
        """The routing map: slot owners plus each group's replica addresses (and the leader
        hints given, by group id -> node id)."""
        leaders = leaders or {}
        infos = []
        for gid, replicas in sorted(self.groups.items()):
            addrs = tuple(self.nodes[n] for n in replicas)
            lead = leaders.get(gid)
            infos.append(GroupInfo(gid, addrs, self.nodes.get(lead) if lead in replicas else None))
        return SlotMap(epoch=self.epoch, ranges=self.owners, groups=infos)

    def groups_of(self, node_id: int) -> list[int]:
        return sorted(g for g, replicas in self.groups.items() if node_id in replicas)

    def to_dict(self) -> dict[str, object]:
        return {
            "cluster_id": self.cluster_id,
            "epoch": self.epoch,
            "nodes": {str(k): v for k, v in sorted(self.nodes.items())},
            "groups": {str(k): list(v) for k, v in sorted(self.groups.items())},
            "owners": [list(r) for r in self.owners],
            "migrations": [m.to_dict() for m in self.migrations],
            "next_migration_id": self.next_migration_id,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> MetaState:
        try:
            return cls.from_dict(json.loads(data))
        except (ValueError, TypeError, KeyError) as e:
            raise InvalidArgument(f"malformed meta state: {e}") from e

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> MetaState:
        nodes = {int(k): str(v) for k, v in dict(d["nodes"]).items()}  # type: ignore[call-overload]
        groups = {
            int(k): tuple(int(n) for n in v)
            for k, v in dict(d["groups"]).items()  # type: ignore[call-overload]
        }
        owners = tuple(
            (int(a), int(b), int(g))
            for a, b, g in d["owners"]  # type: ignore[attr-defined]
        )
        migrations = tuple(Migration.from_dict(m) for m in d.get("migrations", ()))  # type: ignore[attr-defined]
        st = cls(
            str(d["cluster_id"]),
            int(d["epoch"]),  # type: ignore[call-overload]
            nodes,
            groups,
            owners,
            migrations,
            int(d.get("next_migration_id", 1)),  # type: ignore[call-overload]
        )
        st.validate()
        return st

    def validate(self) -> None:
        for gid, replicas in self.groups.items():
            if gid == META_GROUP:
                raise InvalidArgument("group 0 is the meta group, not a shard group")
            if len(set(replicas)) != len(replicas):
                raise InvalidArgument(f"group {gid} has two replicas on one node")
            for n in replicas:
                if n not in self.nodes:
                    raise InvalidArgument(f"group {gid} names unknown node {n}")
        for _, _, g in self.owners:
            if g not in self.groups:
                raise InvalidArgument(f"slots owned by unknown group {g}")
        self.slot_map()  # checks ranges
        slots = [m.slot for m in self.migrations]
        if len(set(slots)) != len(slots):
            raise InvalidArgument("two migrations of one slot")
        for m in self.migrations:
            if m.source not in self.groups or m.target not in self.groups:
                raise InvalidArgument(f"migration {m.migration_id} names an unknown group")
            if m.migration_id >= self.next_migration_id:
                raise InvalidArgument(f"migration id {m.migration_id} not below the next id")

    def owner(self, slot: int) -> int | None:
        for first, last, g in self.owners:
            if first <= slot <= last:
                return g
        return None

    def migration_of(self, slot: int) -> Migration | None:
        return next((m for m in self.migrations if m.slot == slot), None)


def plan_bootstrap(
    cluster_id: str, nodes: dict[int, str], n_groups: int, replicas: int
) -> MetaState:
    """The initial layout: ``n_groups`` shard groups of ``replicas`` replicas over ``nodes``."""
    if not nodes:
        raise InvalidArgument("no nodes to place groups on")
    if n_groups < 1 or replicas < 1:
        raise InvalidArgument("need at least one group and one replica")
    if replicas > len(nodes):
        raise InvalidArgument(
            f"{replicas} replicas per group need {replicas} nodes; there are {len(nodes)}"
        )
    ids = sorted(nodes)
    groups = {
        g: tuple(sorted(ids[(g - 1 + k) % len(ids)] for k in range(replicas)))
        for g in range(1, n_groups + 1)
    }
    owners = tuple(SlotMap.even(list(groups)).ranges())
    st = MetaState(cluster_id, 1, dict(nodes), groups, owners)
    st.validate()
    return st
