"""The epoch-versioned slot map: which shard group owns each of the 16384 slots.

Contract:
- A ``SlotMap`` is immutable. Every change returns a new map; authoritative changes
  (``with_assignment``, ``with_group``, ``without_group``) return ``epoch + 1``, so a larger
  epoch always means a newer decision of the meta group. ``with_leader_hint`` is the one
  exception: it records what a node or client *observed* about a group's Raft leader, which is
  not a meta decision, and keeps the epoch.
- Owners live in one packed table of ``SLOT_COUNT`` unsigned 16-bit entries (32 KiB, read-only
  ``memoryview``): ``owner(slot)`` is O(1). ``0xFFFF`` marks an unowned slot, so group ids are
  ``0 .. MAX_GROUP_ID``. Derived range lists are computed once per map and cached.
- Groups (id, replica addresses, leader hint) are kept beside the table. A slot may be owned by
  a group the map has no ``GroupInfo`` for (handy while a map is being built); routing answers
  CLUSTERDOWN for such a slot rather than guessing an address.
- Ranges are ``(start, end)`` *inclusive*, as in CLUSTER SLOTS.
- ``to_dict``/``from_dict`` use only str, int, list, dict and None (JSON and msgpack friendly);
  ``from_dict`` rejects anything malformed with ``InvalidArgument`` and never half-builds a map.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType

from kvcluster.errors import InvalidArgument
from kvcluster.sharding._validate import (
    MAX_EPOCH,
    MAX_GROUP_ID,
    require_fields,
    require_group_id,
    require_int,
    require_sequence,
    require_slot,
)
from kvcluster.sharding.groups import GroupInfo
from kvcluster.sharding.slots import SLOT_COUNT

__all__ = ["FORMAT_VERSION", "SlotMap", "SlotRange"]

SlotRange = tuple[int, int]
"""``(start, end)``, both inclusive."""

FORMAT_VERSION = 1
"""The ``format`` field written by ``SlotMap.to_dict``; ``from_dict`` accepts only this one."""

_UNOWNED = 0xFFFF  # > MAX_GROUP_ID, so no group id collides with it
_FIELDS = frozenset({"format", "epoch", "slots", "groups"})


class SlotMap:
    """Slot → owning group, plus the groups' addresses, at one epoch."""

    __slots__ = ("_epoch", "_groups", "_hash", "_owners", "_packed", "_runs")

    _epoch: int
    _packed: bytes
    _owners: memoryview
    _groups: Mapping[int, GroupInfo]
    _runs: list[tuple[int, int, int]] | None
    _hash: int | None

    def __init__(
        self,
        *,
        epoch: int = 0,
        ranges: Iterable[tuple[int, int, int]] = (),
        groups: Iterable[GroupInfo] = (),
    ) -> None:
        """A map at ``epoch`` where each ``(start, end, group)`` of ``ranges`` is owned by
        ``group``; ranges must not overlap; slots in no range are unowned."""
        epoch = require_int(epoch, "epoch", 0, MAX_EPOCH)
        owners = array("H", [_UNOWNED]) * SLOT_COUNT
        previous_end = -1
        for start, end, group in sorted(_check_range(item) for item in _iterate(ranges, "ranges")):
            if start <= previous_end:
                raise InvalidArgument(f"range {start}-{end} overlaps another range")
            owners[start : end + 1] = array("H", [group]) * (end - start + 1)
            previous_end = end
        self._init(epoch, owners.tobytes(), _index_groups(groups))

    def _init(self, epoch: int, packed: bytes, groups: dict[int, GroupInfo]) -> None:
        self._epoch = epoch
        self._packed = packed
        self._owners = memoryview(packed).cast("H")
        self._groups = MappingProxyType(groups)
        self._runs = None
        self._hash = None

    @classmethod
    def _make(cls, epoch: int, packed: bytes, groups: dict[int, GroupInfo]) -> SlotMap:
        new = cls.__new__(cls)
        new._init(epoch, packed, groups)
        return new

    @classmethod
    def even(
        cls, group_ids: Sequence[int], *, epoch: int = 0, groups: Iterable[GroupInfo] = ()
    ) -> SlotMap:
        """All slots spread over ``group_ids`` in order, as contiguous ranges whose sizes differ
        by at most one. Group ``i`` ends at ``round((i + 1) * SLOT_COUNT / n) - 1``, computed
        in exact integers; that is ``redis-cli --cluster create``'s rule, and three groups get
        its 0-5460, 5461-10922, 10923-16383."""
        ids = [require_group_id(g) for g in _iterate(group_ids, "group_ids")]
        n = len(ids)
        if not 1 <= n <= SLOT_COUNT:
            raise InvalidArgument(f"cannot spread {SLOT_COUNT} slots over {n} groups")
        if len(set(ids)) != n:
            raise InvalidArgument(f"group ids must be distinct: {ids}")
        ranges = []
        start = 0
        for i, group in enumerate(ids):
            end = (2 * (i + 1) * SLOT_COUNT + n) // (2 * n) - 1  # round half up, exactly
            ranges.append((start, end, group))
            start = end + 1
        return cls(epoch=epoch, ranges=ranges, groups=groups)

    # --- reading -------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def groups(self) -> Mapping[int, GroupInfo]:
        """Every group the map knows, by id (read-only)."""
        return self._groups

    def group(self, group_id: int) -> GroupInfo | None:
        return self._groups.get(group_id)

    def address_of(self, group_id: int) -> str | None:
        """Where to send a request for ``group_id`` first, or ``None`` if the map has no
        address for it."""
        info = self._groups.get(group_id)
        return None if info is None else info.address

    def owner(self, slot: int) -> int | None:
        """The group owning ``slot``, or ``None`` if it is unowned. O(1)."""
        group: int = self._owners[require_slot(slot)]
        return None if group == _UNOWNED else group

    def ranges(self) -> list[tuple[int, int, int]]:
        """Every owned run as ``(start, end, group)``, by ``start``: the CLUSTER SLOTS view."""
        return [run for run in self._all_runs() if run[2] != _UNOWNED]

    def slots_of(self, group_id: int | None) -> list[SlotRange]:
        """The slots owned by ``group_id`` (``None``: the unowned slots) as inclusive ranges."""
        want = _UNOWNED if group_id is None else require_group_id(group_id)
        return [(start, end) for start, end, group in self._all_runs() if group == want]

    def slot_counts(self) -> dict[int, int]:
        """How many slots each owning group has (groups owning nothing are absent)."""
        counts: dict[int, int] = {}
        for start, end, group in self.ranges():
            counts[group] = counts.get(group, 0) + end - start + 1
        return counts

    def is_complete(self) -> bool:
        """Whether every slot has an owner."""
        return _UNOWNED not in self._owners

    # --- changing ------------------------------------------------------------------------

    def with_assignment(self, slots: Iterable[int], group_id: int | None) -> SlotMap:
        """A map at ``epoch + 1`` where every slot in ``slots`` belongs to ``group_id``
        (``None``: becomes unowned). The epoch moves even if nothing else does: each call is
        one meta decision."""
        value = _UNOWNED if group_id is None else require_group_id(group_id)
        owners = array("H", self._packed)
        for slot in _iterate(slots, "slots"):
            owners[require_slot(slot)] = value
        return self._make(self._next_epoch(), owners.tobytes(), dict(self._groups))

    def with_group(self, info: GroupInfo) -> SlotMap:
        """A map at ``epoch + 1`` that knows ``info`` (added, or replacing the same id)."""
        if not isinstance(info, GroupInfo):
            raise InvalidArgument(f"expected a GroupInfo, not {type(info).__name__}")
        groups = dict(self._groups)
        groups[info.group_id] = info
        return self._make(self._next_epoch(), self._packed, groups)

    def without_group(self, group_id: int) -> SlotMap:
        """A map at ``epoch + 1`` without group ``group_id``, which must own no slot."""
        if group_id not in self._groups:
            raise InvalidArgument(f"unknown group {group_id}")
        if self.slots_of(group_id):
            raise InvalidArgument(f"group {group_id} still owns slots; move them first")
        groups = dict(self._groups)
        del groups[group_id]
        return self._make(self._next_epoch(), self._packed, groups)

    def with_leader_hint(self, group_id: int, leader: str | None) -> SlotMap:
        """The same map, *same epoch*, with ``leader`` recorded as the group's leader hint.

        Leadership is decided by the group's own Raft, not by the meta group, so learning it
        (from a not-leader redirect, say) is an observation, not a new map version."""
        info = self._groups.get(group_id)
        if info is None:
            raise InvalidArgument(f"unknown group {group_id}")
        if info.leader == leader:
            return self
        groups = dict(self._groups)
        groups[group_id] = info.with_leader(leader)
        return self._make(self._epoch, self._packed, groups)

    def _next_epoch(self) -> int:
        if self._epoch >= MAX_EPOCH:
            raise InvalidArgument("epoch would overflow")
        return self._epoch + 1

    # --- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """``{"format": 1, "epoch": e, "slots": [[start, end, group], ...],
        "groups": [{"id": g, "replicas": [...], "leader": addr | None}, ...]}``."""
        return {
            "format": FORMAT_VERSION,
            "epoch": self._epoch,
            "slots": [list(run) for run in self.ranges()],
            "groups": [self._groups[g].to_dict() for g in sorted(self._groups)],
        }

    @classmethod
    def from_dict(cls, data: object) -> SlotMap:
        """The map ``to_dict`` wrote; ``InvalidArgument`` for anything else."""
        fields = require_fields(data, "slot map", _FIELDS)
        if require_int(fields["format"], "format", 0, 2**31) != FORMAT_VERSION:
            raise InvalidArgument(f"unsupported slot map format {fields['format']!r}")
        epoch = require_int(fields["epoch"], "epoch", 0, MAX_EPOCH)
        ranges = [_check_range(item) for item in require_sequence(fields["slots"], "slots")]
        groups = [GroupInfo.from_dict(g) for g in require_sequence(fields["groups"], "groups")]
        return cls(epoch=epoch, ranges=ranges, groups=groups)

    # --- value semantics -----------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotMap):
            return NotImplemented
        return (
            self._epoch == other._epoch
            and self._packed == other._packed
            and self._groups == other._groups
        )

    def __hash__(self) -> int:
        if self._hash is None:
            groups = tuple(sorted(self._groups.items()))
            self._hash = hash((self._epoch, self._packed, groups))
        return self._hash

    def __reduce__(self) -> tuple[object, tuple[dict[str, object]]]:
        # The packed table is a memoryview, which cannot be pickled; go through the dict form.
        return (SlotMap.from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{s}-{e}:{'-' if g == _UNOWNED else g}" for s, e, g in self._all_runs()[:8]
        )
        more = ", ..." if len(self._all_runs()) > 8 else ""
        return f"SlotMap(epoch={self._epoch}, [{shown}{more}], groups={sorted(self._groups)})"

    def _all_runs(self) -> list[tuple[int, int, int]]:
        """Every maximal run of equal owners, unowned runs included, by start."""
        if self._runs is None:
            runs = []
            owners = self._owners
            start = 0
            for slot in range(1, SLOT_COUNT + 1):
                if slot == SLOT_COUNT or owners[slot] != owners[start]:
                    runs.append((start, slot - 1, int(owners[start])))
                    start = slot
            self._runs = runs
        return self._runs


def _iterate(values: object, what: str) -> Iterator[object]:
    if isinstance(values, str | bytes | Mapping):
        raise InvalidArgument(f"{what} must be an iterable of values, not {type(values).__name__}")
    try:
        return iter(values)  # type: ignore[call-overload,no-any-return]
    except TypeError:
        raise InvalidArgument(f"{what} must be iterable, not {type(values).__name__}") from None


def _check_range(item: object) -> tuple[int, int, int]:
    # The common case first, with the same checks (a map of a few thousand ranges is checked
    # on every refresh of every client); anything else takes the path that says what's wrong.
    if (type(item) is list or type(item) is tuple) and len(item) == 3:
        start, end, group = item
        if (
            type(start) is int
            and type(end) is int
            and type(group) is int
            and 0 <= start <= end < SLOT_COUNT
            and 0 <= group <= MAX_GROUP_ID
        ):
            return start, end, group
    entry = require_sequence(item, "range")
    if len(entry) != 3:
        raise InvalidArgument(f"range must be (start, end, group), got {entry!r}")
    start = require_slot(entry[0], "range start")
    end = require_slot(entry[1], "range end")
    if end < start:
        raise InvalidArgument(f"range end {end} is before its start {start}")
    return start, end, require_group_id(entry[2], "range group")


def _index_groups(groups: Iterable[GroupInfo]) -> dict[int, GroupInfo]:
    out: dict[int, GroupInfo] = {}
    for info in _iterate(groups, "groups"):
        if not isinstance(info, GroupInfo):
            raise InvalidArgument(f"groups must hold GroupInfo values, not {type(info).__name__}")
        if info.group_id in out:
            raise InvalidArgument(f"group {info.group_id} is listed twice")
        out[info.group_id] = info
    return out
