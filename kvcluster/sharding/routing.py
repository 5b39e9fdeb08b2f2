"""What a node answers for a request on a slot: serve it, or which redirect.

Contract:
- ``route_request`` is a pure function from what the node knows to a decision value. Normal
  redirects are data (``Moved``, ``Ask``, ``TryAgain``, ``ClusterDown``, ``NotLeaderRedirect``),
  never exceptions; only malformed input raises ``InvalidArgument``.
- Routing is advisory. It runs when a request arrives, and the slot can be frozen or flipped
  between then and the moment the request is applied. The state machine must repeat the
  ownership/freeze check at apply time, and that check is the one that counts. Routing only
  sends each request to the place where it is most likely to succeed.
- The node's inputs can lag each other: its ``slot_map`` comes from the meta group, and
  ``frozen_slots`` from its own group's log. ``migrations`` may come from either. The decision
  uses whichever knowledge is most advanced (see ``route_request``).
- Every decision value is a small frozen dataclass with the fields a reply on the wire needs,
  named as in Redis Cluster (MOVED, ASK, TRYAGAIN, CLUSTERDOWN).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from kvcluster.errors import InvalidArgument
from kvcluster.sharding._validate import require_group_id, require_slot
from kvcluster.sharding.migration import Migration, Phase
from kvcluster.sharding.slot_map import SlotMap

__all__ = [
    "Ask",
    "ClusterDown",
    "Decision",
    "Moved",
    "NotLeaderRedirect",
    "NotServed",
    "Serve",
    "TryAgain",
    "route_request",
]


@dataclass(frozen=True, slots=True)
class Serve:
    """Execute the request here."""

    slot: int


@dataclass(frozen=True, slots=True)
class Moved:
    """``MOVED slot address epoch``: another group owns the slot for good, according to this
    node's map at ``epoch``. The client should update its map."""

    slot: int
    address: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Ask:
    """``ASK slot address``: send this one request to ``address``, preceded by ASKING. The client
    should not change its map for this: the redirect is for one request only."""

    slot: int
    address: str


@dataclass(frozen=True, slots=True)
class TryAgain:
    """``TRYAGAIN``: the slot is briefly unavailable (cutover). Retry the same request later."""

    slot: int


@dataclass(frozen=True, slots=True)
class ClusterDown:
    """``CLUSTERDOWN``: no group can serve the slot right now (unowned, or no address known)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotLeaderRedirect:
    """This replica is not its group's leader; ``address`` is the leader's, if known."""

    address: str | None


NotServed = Moved | Ask | TryAgain | ClusterDown | NotLeaderRedirect
"""Every answer other than ``Serve``."""

Decision = Serve | NotServed


def route_request(
    slot: int,
    my_group: int,
    slot_map: SlotMap,
    frozen_slots: Set[int],
    migrations: Mapping[int, Migration],
    is_leader: bool,
    leader_address: str | None,
    *,
    asking: bool = False,
    stale_read: bool = False,
) -> Decision:
    """Decide what a replica of ``my_group`` answers to a request on ``slot``.

    ``frozen_slots``: slots this group froze through its own log (it is a migration source in
    cutover). ``migrations``: the migrations this node knows of, by slot. ``asking``: the
    client sent ASKING first. ``stale_read``: the caller accepts a read from a follower.

    Ownership is settled first and leadership last, so a follower can hand out MOVED from the
    map it holds. The checks run in this order; the first that matches decides:

    1. The map says this group owns the slot.
       a. A migration of the slot *from* this group has flipped, so the map here is older
          than that flip: ``Ask`` the target (its address from the map). The next epoch
          is not known here, so a ``Moved`` could not carry it. Answer ``TryAgain`` if the
          map has no address for the target.
       b. The slot is frozen here (``frozen_slots``, or a FROZEN migration from this group):
          ``Ask`` the migration's target (a frozen move is decided: the target serves the
          slot as soon as its copy is active); ``TryAgain`` if the target or its address is
          not known. This covers reads too: the source never serves a frozen slot again.
       c. Otherwise serve (leadership check, step 3).
    2. The map says another group owns the slot, or that nobody does.
       a. A migration *to* this group has flipped while the map still names its source: this
          group owns the slot and the map here is stale, so serve (step 3).
       b. ``asking`` and the slot is not this group's yet: the client was sent here by a
          frozen source, and this group's copy may not be active yet: ``TryAgain``. (The
          node holds such a request until its copy is active and then serves it; this model
          knows only the meta group's migrations, not the copy's state.)
       c. Nobody owns the slot, or the map has no address for its owner: ``ClusterDown``.
       d. Otherwise ``Moved(slot, owner's address, map epoch)``.
    3. Serve if this replica is the leader, or if ``stale_read`` is set. Otherwise
       ``NotLeaderRedirect(leader_address)``.
    """
    require_slot(slot)
    require_group_id(my_group, "my_group")
    migration = migrations.get(slot)
    if migration is not None:
        if migration.slot != slot:
            raise InvalidArgument(f"migrations[{slot}] is for slot {migration.slot}")
        if migration.phase == Phase.ABORTED:
            migration = None
    owner = slot_map.owner(slot)

    if owner == my_group:
        if migration is not None and migration.source == my_group and migration.is_flipped:
            addr = slot_map.address_of(migration.target)
            return TryAgain(slot) if addr is None else Ask(slot, addr)
        if slot in frozen_slots or (
            migration is not None
            and migration.source == my_group
            and migration.phase == Phase.FROZEN
        ):
            target = migration.target if migration is not None else None
            addr = slot_map.address_of(target) if target is not None else None
            return TryAgain(slot) if addr is None else Ask(slot, addr)
        return _serve(slot, is_leader, leader_address, stale_read)

    if (
        migration is not None
        and migration.target == my_group
        and migration.is_flipped
        and owner == migration.source
    ):
        return _serve(slot, is_leader, leader_address, stale_read)
    if asking and (migration is None or migration.target == my_group):
        return TryAgain(slot)
    if owner is None:
        return ClusterDown(f"slot {slot} is not served by any group")
    addr = slot_map.address_of(owner)
    if addr is None:
        return ClusterDown(f"slot {slot} belongs to group {owner}, whose address is unknown")
    return Moved(slot, addr, slot_map.epoch)


def _serve(slot: int, is_leader: bool, leader_address: str | None, stale_read: bool) -> Decision:
    if is_leader or stale_read:
        return Serve(slot)
    return NotLeaderRedirect(leader_address)
