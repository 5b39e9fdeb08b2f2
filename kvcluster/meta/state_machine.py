"""The meta group's state machine: every change of the cluster layout goes through its log.

Contract:
- Pure and deterministic, like the kv state machine: the state lives in the view, commands
  arrive as log entry bytes, answers are ``MetaResult`` values.
- Storage: the layout (everything but the migrations) is one meta record; each migration
  is a record of its own (data slot 0 of the meta group's view: id u64 BE -> JSON), with
  an index by slot (slot 1: slot u16 BE -> id), so a migration step reads and writes only
  its own record, however many migrations are planned.
- ``Bootstrap`` installs the first layout and is idempotent: the same layout again is a
  no-op answered OK; a different one is refused (the cluster already exists).
- The epoch is the routing version: it moves (by one) exactly when the layout changes —
  bootstrap, a slot's ownership flip, a group added or removed. A migration step that
  changes no owner leaves it. A replayed command (its effect already there) is answered
  OK and changes nothing, so every step of a migration can be retried.
- The commands (JSON ``{"op": ...}``): bootstrap, plan_moves, advance, advance_many, abort, forget,
  add_group, remove_group; ``change`` is the whole rule, a pure function of state and
  command. A refused command is answered with ok=False and the reason.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from typing import Protocol

from kvcluster.errors import InvalidArgument
from kvcluster.meta.state import MetaState
from kvcluster.sharding.migration import FORWARD, Migration, Phase, abort, advance

__all__ = [
    "AbortMove",
    "AddGroup",
    "AdvanceMove",
    "AdvanceMoves",
    "Bootstrap",
    "ForgetMove",
    "MetaCommand",
    "MetaResult",
    "MetaStateMachine",
    "PlanMoves",
    "RemoveGroup",
    "change",
    "decode_meta_command",
]

STATE_KEY = b"meta-state"


_MIGRATIONS = 0  # data slot of the migration records
_BY_SLOT = 1  # data slot of the slot -> migration id index
_ID = struct.Struct(">Q")
_SLOT = struct.Struct(">H")


class MetaReadView(Protocol):
    """Where the meta state lives: the meta group's storage view (the storage layer's
    group view satisfies it)."""

    def get_meta(self, name: bytes) -> bytes | None: ...
    def get(self, slot: int, key: bytes) -> bytes | None: ...
    def scan(
        self, slot: int, start_after: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]: ...


class MetaView(MetaReadView, Protocol):
    def put_meta(self, name: bytes, value: bytes) -> None: ...
    def put(self, slot: int, key: bytes, value: bytes) -> None: ...
    def delete(self, slot: int, key: bytes) -> bool: ...


@dataclass(frozen=True)
class Bootstrap:
    state: MetaState

    def encode(self) -> bytes:
        return _encode({"op": "bootstrap", "state": self.state.to_dict()})


@dataclass(frozen=True)
class PlanMoves:
    """Record migrations: each ``(slot, target)`` moves from its current owner to ``target``.
    All or nothing: refused if any slot is already moving, unowned, or owned by its target."""

    moves: tuple[tuple[int, int], ...]

    def encode(self) -> bytes:
        return _encode({"op": "plan_moves", "moves": [list(m) for m in self.moves]})


@dataclass(frozen=True)
class AdvanceMove:
    """Move migration ``migration_id`` forward to ``phase`` (a replay of a phase already
    reached or passed is answered OK). Entering OWNERSHIP_FLIPPED gives the slot to the
    target; entering DONE forgets the migration."""

    migration_id: int
    phase: Phase

    def encode(self) -> bytes:
        return _encode({"op": "advance", "id": self.migration_id, "phase": self.phase.name})


@dataclass(frozen=True)
class AdvanceMoves:
    """``AdvanceMove`` for many migrations in one entry (a wave of slots flips together,
    one epoch for all of them). All or nothing."""

    migration_ids: tuple[int, ...]
    phase: Phase

    def encode(self) -> bytes:
        return _encode(
            {"op": "advance_many", "ids": list(self.migration_ids), "phase": self.phase.name}
        )


@dataclass(frozen=True)
class AbortMove:
    """Abort migration ``migration_id`` (refused once FROZEN). The record stays, ABORTED,
    until ``ForgetMove`` once the groups have undone their side."""

    migration_id: int

    def encode(self) -> bytes:
        return _encode({"op": "abort", "id": self.migration_id})


@dataclass(frozen=True)
class ForgetMove:
    """Drop an ABORTED migration's record (its groups have cleaned up)."""

    migration_id: int

    def encode(self) -> bytes:
        return _encode({"op": "forget", "id": self.migration_id})


@dataclass(frozen=True)
class AddGroup:
    """A new shard group with replicas on the named nodes; it owns no slots yet."""

    group_id: int
    replicas: tuple[int, ...]

    def encode(self) -> bytes:
        return _encode({"op": "add_group", "group": self.group_id, "replicas": list(self.replicas)})


@dataclass(frozen=True)
class RemoveGroup:
    """Remove a shard group that owns no slot and takes part in no migration."""

    group_id: int

    def encode(self) -> bytes:
        return _encode({"op": "remove_group", "group": self.group_id})


MetaCommand = (
    Bootstrap
    | PlanMoves
    | AdvanceMove
    | AdvanceMoves
    | AbortMove
    | ForgetMove
    | AddGroup
    | RemoveGroup
)


def _encode(d: dict[str, object]) -> bytes:
    return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def decode_meta_command(data: bytes) -> MetaCommand:
    try:
        d = json.loads(data)
        op = d.get("op")
        if op == "bootstrap":
            return Bootstrap(MetaState.from_dict(d["state"]))
        if op == "plan_moves":
            return PlanMoves(tuple((_int(a), _int(b)) for a, b in d["moves"]))
        if op == "advance":
            phase = d["phase"]
            if phase not in Phase.__members__:
                raise InvalidArgument(f"unknown phase {phase!r}")
            return AdvanceMove(_int(d["id"]), Phase[phase])
        if op == "advance_many":
            phase = d["phase"]
            if phase not in Phase.__members__:
                raise InvalidArgument(f"unknown phase {phase!r}")
            return AdvanceMoves(tuple(_int(i) for i in d["ids"]), Phase[phase])
        if op == "abort":
            return AbortMove(_int(d["id"]))
        if op == "forget":
            return ForgetMove(_int(d["id"]))
        if op == "add_group":
            return AddGroup(_int(d["group"]), tuple(_int(n) for n in d["replicas"]))
        if op == "remove_group":
            return RemoveGroup(_int(d["group"]))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidArgument(f"malformed meta command: {e}") from e
    raise InvalidArgument(f"unknown meta command {op!r}")


def _int(x: object) -> int:
    if type(x) is not int or x < 0:
        raise InvalidArgument(f"expected a non-negative integer, not {x!r}")
    return x


@dataclass(frozen=True)
class MetaResult:
    ok: bool
    epoch: int
    error: str = ""


class MetaStateMachine:
    """Holds nothing but memos keyed by stored bytes (so they are exact): the last layout it
    decoded (decoding and validating a layout of thousands of ranges is the costly part of
    an entry, and consecutive entries mostly see the same layout), and the migration
    records ``migration_phases`` decoded last (read by the event loop, never by apply)."""

    def __init__(self) -> None:
        self._memo: tuple[bytes, MetaState] | None = None
        self._phase_memo: dict[bytes, tuple[int, Phase]] = {}

    def load(self, view: MetaReadView) -> MetaState:
        """The layout without the migrations (what routing needs)."""
        raw = view.get_meta(STATE_KEY)
        if raw is None:
            return MetaState()
        memo = self._memo
        if memo is not None and memo[0] == raw:
            return memo[1]
        state = MetaState.decode(raw)
        self._memo = (raw, state)
        return state

    def load_full(self, view: MetaReadView) -> MetaState:
        """The layout with every recorded migration, in id order."""
        records = view.scan(_MIGRATIONS, None, 1 << 62)
        migrations = tuple(Migration.from_dict(json.loads(v)) for _, v in records)
        return replace(self.load(view), migrations=migrations)

    def migration_phases(self, view: MetaReadView) -> dict[int, Phase]:
        """Every recorded migration's phase. A record decoded by the previous call is not
        decoded again (the caller polls while thousands of migrations may be recorded)."""
        memo = self._phase_memo
        fresh: dict[bytes, tuple[int, Phase]] = {}
        for _, raw in view.scan(_MIGRATIONS, None, 1 << 62):
            known = memo.get(raw)
            if known is None:
                m = Migration.from_dict(json.loads(raw))
                known = (m.migration_id, m.phase)
            fresh[raw] = known
        self._phase_memo = fresh
        return dict(fresh.values())

    def apply(self, view: MetaView, index: int, data: bytes) -> MetaResult:
        current = self.load(view)
        try:
            cmd = decode_meta_command(data)
            before = replace(current, migrations=self._relevant(view, cmd))
            new = change(before, cmd)
        except InvalidArgument as e:
            return MetaResult(False, current.epoch, f"entry {index}: {e}")
        if new is not before:
            self._store(view, before, new)
        return MetaResult(True, new.epoch)

    def _relevant(self, view: MetaReadView, cmd: MetaCommand) -> tuple[Migration, ...]:
        """The migrations ``cmd`` depends on (``change`` looks at no others)."""
        if isinstance(cmd, AdvanceMove | AbortMove | ForgetMove):
            ids = [cmd.migration_id]
        elif isinstance(cmd, AdvanceMoves):
            ids = list(cmd.migration_ids)
        elif isinstance(cmd, PlanMoves):
            ids = []
            for slot, _ in cmd.moves:
                raw = view.get(_BY_SLOT, _SLOT.pack(slot)) if 0 <= slot < 1 << 16 else None
                if raw is not None:
                    ids.append(_ID.unpack(raw)[0])
        else:
            return self.load_full(view).migrations
        found = []
        for mid in ids:
            raw = view.get(_MIGRATIONS, _ID.pack(mid)) if 0 <= mid < 1 << 64 else None
            if raw is not None:
                found.append(Migration.from_dict(json.loads(raw)))
        return tuple(found)

    def _store(self, view: MetaView, before: MetaState, new: MetaState) -> None:
        layout_old = replace(before, migrations=())
        layout_new = replace(new, migrations=())
        if layout_new != layout_old:
            raw = layout_new.encode()
            view.put_meta(STATE_KEY, raw)
            self._memo = (raw, layout_new)
        old = {m.migration_id: m for m in before.migrations}
        kept = {m.migration_id: m for m in new.migrations}
        for mid, m in old.items():
            if mid not in kept:
                view.delete(_MIGRATIONS, _ID.pack(mid))
                view.delete(_BY_SLOT, _SLOT.pack(m.slot))
        for mid, m in kept.items():
            if old.get(mid) != m:
                view.put(_MIGRATIONS, _ID.pack(mid), json.dumps(m.to_dict()).encode())
                if mid not in old:
                    view.put(_BY_SLOT, _SLOT.pack(m.slot), _ID.pack(mid))


def change(st: MetaState, cmd: MetaCommand) -> MetaState:
    """The state after ``cmd``: ``st`` itself for a no-op (a replay), a new state for a
    change (at ``epoch + 1`` if the layout changed); raises ``InvalidArgument`` for a refused
    command (nothing changes)."""
    if isinstance(cmd, Bootstrap):
        new = cmd.state
        if not st.bootstrapped:
            return new
        same = (st.cluster_id, st.groups, st.owners) == (new.cluster_id, new.groups, new.owners)
        if same and not st.migrations:
            return st
        raise InvalidArgument("the cluster already exists with a different layout")
    if not st.bootstrapped:
        raise InvalidArgument("the cluster has no layout yet")
    if isinstance(cmd, PlanMoves):
        return _plan(st, cmd.moves)
    if isinstance(cmd, AdvanceMove):
        return _advance(st, cmd.migration_id, cmd.phase)
    if isinstance(cmd, AdvanceMoves):
        return _advance_many(st, cmd.migration_ids, cmd.phase)
    if isinstance(cmd, AbortMove):
        m = _find(st, cmd.migration_id)
        if m is None:
            raise InvalidArgument(f"no migration {cmd.migration_id}")
        aborted = abort(m)  # raises once FROZEN: the move is decided
        if aborted is m:
            return st
        return _with(st, _replace_migration(st, aborted))
    if isinstance(cmd, ForgetMove):
        m = _find(st, cmd.migration_id)
        if m is None:
            return st
        if m.phase != Phase.ABORTED:
            raise InvalidArgument(f"migration {m.migration_id} is {m.phase.name}, not ABORTED")
        return _with(st, migrations=tuple(x for x in st.migrations if x is not m))
    if isinstance(cmd, AddGroup):
        return _add_group(st, cmd)
    if isinstance(cmd, RemoveGroup):
        return _remove_group(st, cmd.group_id)
    raise InvalidArgument(f"unsupported command {cmd!r}")  # pragma: no cover


def _with(
    st: MetaState, migrations: tuple[Migration, ...] | None = None, **kw: object
) -> MetaState:
    """``st`` changed; the epoch moves by one if the layout (owners, groups, nodes) did."""
    if migrations is not None:
        kw["migrations"] = migrations
    layout = bool({"owners", "groups", "nodes"} & kw.keys())
    return replace(st, epoch=st.epoch + layout, **kw)  # type: ignore[arg-type]


def _find(st: MetaState, mid: int) -> Migration | None:
    return next((m for m in st.migrations if m.migration_id == mid), None)


def _replace_migration(st: MetaState, m: Migration) -> tuple[Migration, ...]:
    return tuple(m if x.migration_id == m.migration_id else x for x in st.migrations)


def _plan(st: MetaState, moves: tuple[tuple[int, int], ...]) -> MetaState:
    if not moves:
        raise InvalidArgument("no slots to move")
    busy = {m.slot for m in st.migrations}
    seen: set[int] = set()
    new: list[Migration] = []
    mid = st.next_migration_id
    for slot, target in moves:
        if slot in busy or slot in seen:
            raise InvalidArgument(f"slot {slot} is already moving")
        seen.add(slot)
        if target not in st.groups:
            raise InvalidArgument(f"unknown target group {target}")
        owner = st.owner(slot)
        if owner is None:
            raise InvalidArgument(f"slot {slot} has no owner")
        if owner == target:
            raise InvalidArgument(f"slot {slot} already belongs to group {target}")
        new.append(Migration(mid, slot, owner, target))
        mid += 1
    return _with(st, migrations=st.migrations + tuple(new), next_migration_id=mid)


def _advance_many(st: MetaState, ids: tuple[int, ...], phase: Phase) -> MetaState:
    """``_advance`` for each id in turn (all or nothing), the flips applied to the owners in
    one step at the end, so a wave costs one epoch and one pass over the slot map."""
    if len(set(ids)) != len(ids):
        raise InvalidArgument("a migration id appears twice")
    new = st
    flips: dict[int, list[int]] = {}
    for mid in ids:
        before = new
        new = _advance(new, mid, phase, flip=False)
        if phase == Phase.OWNERSHIP_FLIPPED and new is not before:
            m = _find(new, mid)
            assert m is not None
            flips.setdefault(m.target, []).append(m.slot)
    if new is st:
        return st
    if flips:
        smap = st.slot_map()
        for target, slots in sorted(flips.items()):
            smap = smap.with_assignment(slots, target)
        new = replace(new, owners=tuple(smap.ranges()))
    layout = (new.owners, new.groups, new.nodes) != (st.owners, st.groups, st.nodes)
    return replace(new, epoch=st.epoch + layout)


def _advance(st: MetaState, mid: int, phase: Phase, *, flip: bool = True) -> MetaState:
    """Migration ``mid`` moved on to ``phase``; entering OWNERSHIP_FLIPPED also gives the
    slot to the target unless ``flip`` is False (the caller flips a batch at once)."""
    m = _find(st, mid)
    if m is None:
        if mid < st.next_migration_id:
            return st  # finished (or aborted and forgotten) earlier: a replay changes nothing
        raise InvalidArgument(f"no migration {mid}")
    if phase == Phase.ABORTED:
        raise InvalidArgument("use abort to abort a migration")
    if m.phase == Phase.ABORTED:
        raise InvalidArgument(f"migration {mid} was aborted")
    if FORWARD.index(phase) <= FORWARD.index(m.phase):
        return st  # replay of a step already taken
    moved = advance(m, phase)  # raises unless phase is the next one
    if phase == Phase.DONE:
        return _with(st, migrations=tuple(x for x in st.migrations if x.migration_id != mid))
    if phase == Phase.OWNERSHIP_FLIPPED and flip:
        owners = tuple(st.slot_map().with_assignment([m.slot], m.target).ranges())
        return _with(st, _replace_migration(st, moved), owners=owners)
    return _with(st, _replace_migration(st, moved))


def _add_group(st: MetaState, cmd: AddGroup) -> MetaState:
    if cmd.group_id in st.groups:
        if st.groups[cmd.group_id] == tuple(sorted(cmd.replicas)):
            return st
        raise InvalidArgument(f"group {cmd.group_id} exists with other replicas")
    if cmd.group_id == 0:
        raise InvalidArgument("group 0 is the meta group")
    if not cmd.replicas:
        raise InvalidArgument("a group needs at least one replica")
    unknown = [n for n in cmd.replicas if n not in st.nodes]
    if unknown:
        raise InvalidArgument(f"unknown nodes {unknown}")
    groups = dict(st.groups)
    groups[cmd.group_id] = tuple(sorted(cmd.replicas))
    new = _with(st, groups=groups)
    new.validate()
    return new


def _remove_group(st: MetaState, gid: int) -> MetaState:
    if gid not in st.groups:
        return st
    if any(g == gid for _, _, g in st.owners):
        raise InvalidArgument(f"group {gid} still owns slots; move them away first")
    if any(gid in (m.source, m.target) for m in st.migrations):
        raise InvalidArgument(f"group {gid} takes part in a migration")
    groups = {g: r for g, r in st.groups.items() if g != gid}
    return _with(st, groups=groups)
