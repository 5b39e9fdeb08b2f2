"""The life of one slot migration, as data: phases, the legal transitions, who owns the slot.

Contract:
- A ``Migration`` moves one ``slot`` from group ``source`` (the slot is MIGRATING there) to
  group ``target`` (IMPORTING there). It is an immutable value; ``advance`` and ``abort``
  return a new one and raise ``InvalidArgument`` on an illegal transition. The meta group keeps
  these values; the groups' own logs carry their side of the slot, and only those decide what
  a group serves (``kvcluster.kv.slot_moves``; ``state_of`` here is the meta group's view).
- The phases and what holds in each (``TRANSITIONS`` is the whole table)::

      PENDING            recorded by the meta group; nothing has moved; source serves
      COPYING            source tracks the keys written to the slot; target copies the slot
                         in chunks through its own log; source serves
      FROZEN             recorded *before* the source's Freeze: the point of no return. The
                         move is decided: it is never aborted from here, only finished. The
                         source, once it applied its Freeze, refuses the slot (TRYAGAIN,
                         and ASK towards the target); the target takes the changes made
                         since its copy began, activates, and then serves the slot to
                         clients that were sent there with ASK, even before the flip
      OWNERSHIP_FLIPPED  meta group gave the slot to target and bumped the epoch; target serves
                         once its copy is active
      SOURCE_RELEASED    source dropped its copy through its log and answers MOVED
      DONE               the meta group forgot the migration
      ABORTED            given up before the freeze; the slot stays with source (which stops
                         tracking it) and target discards its copy; the meta group keeps the
                         record until both have done so (``ForgetMove``)

- Each phase is entered only from its predecessor; ABORTED only from PENDING or COPYING (once
  FROZEN, the target may activate and acknowledge writes at any moment, so the only way is
  forward: that is what makes serving it before the flip safe).
  DONE and ABORTED are final.
- Every step is idempotent: applying the step to a migration already in that phase returns the
  very same value. Steps are replayed after leader changes and crashes, and a replay must not
  fail. Here a step for a phase already *passed* is an error; the meta group's state machine
  answers such a replay OK without change (its command may have been applied twice).
- ``migration_id`` tells two migrations of the same slot apart (a reshard and a later move
  back): callers that replay steps should compare it before applying one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from kvcluster.errors import InvalidArgument
from kvcluster.sharding._validate import (
    MAX_EPOCH,
    require_fields,
    require_group_id,
    require_int,
    require_slot,
)

__all__ = [
    "DECIDED",
    "FORWARD",
    "TRANSITIONS",
    "Migration",
    "Phase",
    "SlotState",
    "abort",
    "advance",
    "next_phase",
]


class Phase(enum.IntEnum):
    PENDING = 0
    COPYING = 1
    FROZEN = 2
    OWNERSHIP_FLIPPED = 3
    SOURCE_RELEASED = 4
    DONE = 5
    ABORTED = 6


class SlotState(enum.Enum):
    """A slot's state on one group, in the names of Redis's CLUSTER SETSLOT."""

    STABLE = "STABLE"
    MIGRATING = "MIGRATING"
    IMPORTING = "IMPORTING"


FORWARD: tuple[Phase, ...] = (
    Phase.PENDING,
    Phase.COPYING,
    Phase.FROZEN,
    Phase.OWNERSHIP_FLIPPED,
    Phase.SOURCE_RELEASED,
    Phase.DONE,
)
"""The phases of a migration that completes, in order."""

TRANSITIONS: Mapping[Phase, frozenset[Phase]] = MappingProxyType(
    {
        Phase.PENDING: frozenset({Phase.COPYING, Phase.ABORTED}),
        Phase.COPYING: frozenset({Phase.FROZEN, Phase.ABORTED}),
        Phase.FROZEN: frozenset({Phase.OWNERSHIP_FLIPPED}),
        Phase.OWNERSHIP_FLIPPED: frozenset({Phase.SOURCE_RELEASED}),
        Phase.SOURCE_RELEASED: frozenset({Phase.DONE}),
        Phase.DONE: frozenset(),
        Phase.ABORTED: frozenset(),
    }
)
"""Phase → the phases it may move to (besides staying where it is)."""

_FLIPPED = frozenset({Phase.OWNERSHIP_FLIPPED, Phase.SOURCE_RELEASED, Phase.DONE})
DECIDED = _FLIPPED | {Phase.FROZEN}
"""The phases from which a move can only be finished (``Migration.is_decided``)."""
_FIELDS = frozenset({"id", "slot", "source", "target", "phase"})


def next_phase(phase: Phase) -> Phase | None:
    """The phase after ``phase`` on the way to DONE; ``None`` for DONE and ABORTED."""
    if phase in (Phase.DONE, Phase.ABORTED):
        return None
    return FORWARD[FORWARD.index(phase) + 1]


@dataclass(frozen=True, slots=True)
class Migration:
    """Slot ``slot`` moving from group ``source`` to group ``target``."""

    migration_id: int
    slot: int
    source: int
    target: int
    phase: Phase = Phase.PENDING

    def __post_init__(self) -> None:
        require_int(self.migration_id, "migration id", 0, MAX_EPOCH)
        require_slot(self.slot)
        require_group_id(self.source, "source group")
        require_group_id(self.target, "target group")
        if self.source == self.target:
            raise InvalidArgument(
                f"slot {self.slot} cannot migrate from group {self.source} to itself"
            )
        _phase(self.phase)

    @property
    def is_finished(self) -> bool:
        """DONE or ABORTED: nothing more will happen to this migration."""
        return self.phase in (Phase.DONE, Phase.ABORTED)

    @property
    def is_decided(self) -> bool:
        """Whether the move can only be finished now (FROZEN or later, not ABORTED)."""
        return self.phase in DECIDED

    @property
    def is_flipped(self) -> bool:
        """Whether the meta group has given the slot to ``target`` (not undoable)."""
        return self.phase in _FLIPPED

    @property
    def owner(self) -> int:
        """The group that owns the slot in this phase: ``source`` until the flip."""
        return self.target if self.is_flipped else self.source

    def state_of(self, group_id: int) -> SlotState:
        """The slot's state on ``group_id`` while this migration is under way."""
        if self.is_finished:
            return SlotState.STABLE
        if group_id == self.source:
            return SlotState.MIGRATING
        if group_id == self.target:
            return SlotState.IMPORTING
        return SlotState.STABLE

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.migration_id,
            "slot": self.slot,
            "source": self.source,
            "target": self.target,
            "phase": self.phase.name,
        }

    @classmethod
    def from_dict(cls, data: object) -> Migration:
        fields = require_fields(data, "migration", _FIELDS)
        name = fields["phase"]
        if not isinstance(name, str) or name not in Phase.__members__:
            raise InvalidArgument(f"unknown migration phase {name!r}")
        return cls(
            migration_id=require_int(fields["id"], "migration id", 0, MAX_EPOCH),
            slot=require_slot(fields["slot"]),
            source=require_group_id(fields["source"], "source group"),
            target=require_group_id(fields["target"], "target group"),
            phase=Phase[name],
        )


def advance(migration: Migration, to: Phase) -> Migration:
    """``migration`` moved forward to ``to``, which must be its phase's successor.

    ``to == migration.phase`` is a replayed step: the same value comes back. Use ``abort`` to
    abort."""
    to = _phase(to)
    if to == migration.phase:
        return migration
    if to == Phase.ABORTED:
        raise InvalidArgument("use abort() to abort a migration")
    if to not in TRANSITIONS[migration.phase]:
        raise InvalidArgument(
            f"migration of slot {migration.slot} cannot go from {migration.phase.name} to {to.name}"
        )
    return replace(migration, phase=to)


def abort(migration: Migration) -> Migration:
    """``migration`` aborted; legal only before it was FROZEN (again: a no-op)."""
    if migration.phase == Phase.ABORTED:
        return migration
    if Phase.ABORTED not in TRANSITIONS[migration.phase]:
        raise InvalidArgument(
            f"migration of slot {migration.slot} cannot be aborted in {migration.phase.name}"
        )
    return replace(migration, phase=Phase.ABORTED)


def _phase(value: object) -> Phase:
    if isinstance(value, Phase):
        return value
    raise InvalidArgument(f"expected a Phase, not {value!r}")
