"""A shard group's side of a slot migration: slot records, the move commands, the guard.

Contract:
- Each slot a migration has touched has one record in the group's meta records,
  ``kv/slot/<slot u16 BE>`` = msgpack ``[state, migration_id, peer, attempt, chunk]``::

      (no record)  the group serves the slot if the meta group routes it here
      MIGRATING    leaving for group ``peer``: served, and every key a write touches is
                   marked dirty (shadow slot ``DIRTY_BASE + slot``) for the final pass
      FROZEN       leaving, decided: writes and reads are answered TRYAGAIN (the node sends
                   the client on to ``peer`` with ASK); the data is final
      RELEASED     gone to group ``peer``: answered MOVED; data and dirty marks deleted
      IMPORTING    arriving from ``peer``: copy ``attempt`` has applied chunks 1..``chunk``;
                   answered TRYAGAIN
      ACTIVE       arrived (migration ``migration_id``): served like a slot with no record;
                   the node serves it to ASKING clients even before the meta group's flip
      ABORTED      migration ``migration_id`` was rolled back here: like no record, except
                   that every later step of that migration is refused (a tombstone)

- The commands, each carrying the proposer's ``now_ms`` (it advances the clock like any entry;
  an imported key expired at the source is then expired here too)::

      source: MigrateOut(slot, id, target)  Freeze(slot, id)  Release(slot, id)
              (Freeze answers with the final pass: the dirty keys and the slot's sessions)
              Unfreeze(slot, id)            (abort of a MIGRATING slot: an ABORTED
                                            tombstone; refused once FROZEN: decided)
      target: ImportBegin(slot, id, source, attempt)  (starts copy ``attempt``, clearing the
              slot)  ImportChunk(slot, id, attempt, chunk, puts, sessions)
              Activate(slot, id, attempt)
              DropImport(slot, id)          (abort: data removed, an ABORTED tombstone;
                                            refused once ACTIVE: decided)

- Every command is idempotent, and a command of an *older* migration than the record's is
  stale: answered INVALID and changes nothing. Copy attempts only go up: an ImportBegin of
  a higher attempt supersedes the current one (two executors at once: one wins, the other
  is refused from then on). A chunk applies only as the next chunk of the current attempt
  (a duplicate is a no-op; a chunk of a superseded attempt, out of order or of an attempt
  not yet begun is INVALID), and only the current attempt may Activate: a late copy of an
  old chunk can never overwrite the final pass, nor a partial copy be activated.
- Unfreeze and DropImport leave an ABORTED tombstone: a late step of the aborted migration
  is refused instead of starting it over.
- ``guard_write`` is the apply-time ownership check every client write passes (after its
  session check: a retried write that was applied still gets its remembered answer).
  TRYAGAIN and MOVED answers are not remembered in the session: the write did not happen.
- Pure: stdlib and msgpack only; state only in the view.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, NamedTuple, TypeAlias

from kvcluster.kv import sessions
from kvcluster.kv._msgpack import UnpackError, pack, unpack
from kvcluster.kv.result import KvResult, Status
from kvcluster.kv.sessions import KvState
from kvcluster.kv.values import expire_at_of, is_expired
from kvcluster.kv.view import CorruptKvState, KvReadView, KvView

__all__ = [
    "DIRTY_BASE",
    "MAX_CHUNK_KEYS",
    "MOVE_TAGS",
    "Activate",
    "DropImport",
    "Freeze",
    "ImportBegin",
    "ImportChunk",
    "MigrateOut",
    "MoveCommand",
    "Release",
    "SlotRecord",
    "SlotState",
    "Unfreeze",
    "apply_move",
    "decode_final_pass",
    "decode_move",
    "encode_move",
    "guard_read",
    "guard_write",
    "mark_dirty",
    "read_record",
]

SLOT_PREFIX = b"kv/slot/"
DIRTY_BASE = 16384
"""The dirty marks of slot ``s`` are keys of the shadow slot ``DIRTY_BASE + s``."""
MAX_CHUNK_KEYS = 1000
"""Most keys (and, separately, sessions) one ImportChunk may carry."""
FINAL_PASS_BYTES = 512 * 1024
"""Most bytes of dirty values and session records Freeze's answer carries."""
_SLOT = struct.Struct(">H")
_RECORD_ERRORS: tuple[type[Exception], ...] = (*UnpackError, ValueError)
_NSLOTS = 16384


class SlotState(enum.IntEnum):
    MIGRATING = 1
    FROZEN = 2
    RELEASED = 3
    IMPORTING = 4
    ACTIVE = 5
    ABORTED = 6


class SlotRecord(NamedTuple):
    state: SlotState
    migration_id: int
    peer: int  # MIGRATING/FROZEN/RELEASED: the target group; IMPORTING/ACTIVE: the source
    attempt: int = 0  # IMPORTING: the copy attempt
    chunk: int = 0  # IMPORTING: chunks of this attempt applied so far


# -- commands ---------------------------------------------------------------------------------
MIGRATE_OUT_TAG, FREEZE_TAG, RELEASE_TAG, UNFREEZE_TAG = 110, 111, 112, 113
IMPORT_BEGIN_TAG, IMPORT_CHUNK_TAG, ACTIVATE_TAG, DROP_IMPORT_TAG = 114, 115, 116, 117
MOVE_TAGS = frozenset(range(110, 118))


class MigrateOut(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int
    target: int


class Freeze(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int


class Release(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int


class Unfreeze(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int


class ImportBegin(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int
    source: int
    attempt: int


class ImportChunk(NamedTuple):
    """``puts``: ``(key, stored value)`` pairs, the stored value (``values`` form, carrying
    its absolute expiry) or None for "delete"; ``sessions``: ``(client_id, seq, record)``
    with the source's session record of that client."""

    now_ms: int
    slot: int
    migration_id: int
    attempt: int
    chunk: int
    puts: tuple[tuple[bytes, bytes | None], ...]
    sessions: tuple[tuple[int, int, bytes], ...] = ()


class Activate(NamedTuple):
    """Serve the slot: only the copy ``attempt`` that is current may activate it."""

    now_ms: int
    slot: int
    migration_id: int
    attempt: int


class DropImport(NamedTuple):
    now_ms: int
    slot: int
    migration_id: int


MoveCommand: TypeAlias = (
    MigrateOut | Freeze | Release | Unfreeze | ImportBegin | ImportChunk | Activate | DropImport
)
_TAG_OF: dict[type, int] = {
    MigrateOut: MIGRATE_OUT_TAG,
    Freeze: FREEZE_TAG,
    Release: RELEASE_TAG,
    Unfreeze: UNFREEZE_TAG,
    ImportBegin: IMPORT_BEGIN_TAG,
    ImportChunk: IMPORT_CHUNK_TAG,
    Activate: ACTIVATE_TAG,
    DropImport: DROP_IMPORT_TAG,
}
_TYPE_OF = {tag: cls for cls, tag in _TAG_OF.items()}


def encode_move(cmd: MoveCommand) -> bytes:
    """The log entry data of a move command: ``[tag, *fields]``."""
    return pack((_TAG_OF[type(cmd)], *cmd))


def decode_move(items: tuple[object, ...]) -> MoveCommand:
    """A move command from an unpacked entry whose first item is a move tag; raises
    ValueError if the fields are malformed."""
    cls: Any = _TYPE_OF[items[0]]  # type: ignore[index]
    fields: Any = items[1:]
    if len(fields) != len(cls._fields) and not (cls is ImportChunk and len(fields) == 6):
        raise ValueError(f"{cls.__name__} takes {len(cls._fields)} fields, got {len(fields)}")
    for name, value in zip(cls._fields, fields, strict=False):
        if name in ("puts", "sessions"):
            continue
        if type(value) is not int or value < 0:
            raise ValueError(f"{cls.__name__}.{name} must be a non-negative int")
    if not 0 <= fields[1] < _NSLOTS:
        raise ValueError(f"slot {fields[1]} out of range")
    if cls is ImportChunk:
        puts = fields[5]
        sess = fields[6] if len(fields) > 6 else ()
        if not (
            type(puts) is tuple
            and len(puts) <= MAX_CHUNK_KEYS
            and all(
                type(p) is tuple
                and len(p) == 2
                and type(p[0]) is bytes
                and (p[1] is None or (type(p[1]) is bytes and _is_stored_value(p[1])))
                for p in puts
            )
        ):
            raise ValueError("ImportChunk.puts must be (key, stored value|None) pairs")
        if not (
            type(sess) is tuple
            and len(sess) <= MAX_CHUNK_KEYS
            and all(
                type(s) is tuple
                and len(s) == 3
                and type(s[0]) is int
                and type(s[1]) is int
                and s[0] > 0
                and s[1] > 0
                and type(s[2]) is bytes
                and sessions.is_record(s[2])
                for s in sess
            )
        ):
            raise ValueError("ImportChunk.sessions must be (client_id, seq, record) triples")
        now_ms, slot, mid, attempt, chunk = fields[:5]
        return ImportChunk(now_ms, slot, mid, attempt, chunk, puts, sess)
    return cls._make(fields)  # type: ignore[no-any-return]


def _is_stored_value(raw: bytes) -> bool:
    try:
        expire_at_of(raw)
    except CorruptKvState:
        return False
    return True


# -- records --------------------------------------------------------------------------------
def _name(slot: int) -> bytes:
    return SLOT_PREFIX + _SLOT.pack(slot)


def read_record(view: KvReadView, slot: int) -> SlotRecord | None:
    raw = view.get_meta(_name(slot))
    if raw is None:
        return None
    try:
        state, mid, peer, attempt, chunk = unpack(raw)
        return SlotRecord(SlotState(state), mid, peer, attempt, chunk)
    except _RECORD_ERRORS as e:
        raise CorruptKvState(f"bad slot record for slot {slot}: {e}") from None


def _write(view: KvView, slot: int, rec: SlotRecord) -> None:
    view.put_meta(_name(slot), pack((int(rec.state), *rec[1:])))


_TRYAGAIN = KvResult(Status.TRYAGAIN, error="slot is being migrated: retry shortly")


def _moved(rec: SlotRecord) -> KvResult:
    return KvResult(Status.MOVED, int_value=rec.peer, error=f"slot moved to group {rec.peer}")


def guard_write(view: KvView, slot: int, key: bytes) -> KvResult | None:
    """None if a client write to ``key`` may apply (marking it dirty while MIGRATING), or
    the TRYAGAIN / MOVED answer if the slot is frozen, arriving or gone."""
    rec = read_record(view, slot)
    if rec is None or rec.state in (SlotState.ACTIVE, SlotState.ABORTED):
        return None
    if rec.state == SlotState.MIGRATING:
        mark_dirty(view, slot, key)
        return None
    if rec.state == SlotState.RELEASED:
        return _moved(rec)
    return _TRYAGAIN


def guard_read(view: KvReadView, slot: int) -> KvResult | None:
    """None if a read of ``slot`` may be served here, else TRYAGAIN / MOVED."""
    rec = read_record(view, slot)
    if rec is None or rec.state in (SlotState.ACTIVE, SlotState.ABORTED, SlotState.MIGRATING):
        return None
    if rec.state == SlotState.RELEASED:
        return _moved(rec)
    return _TRYAGAIN


def mark_dirty(view: KvView, slot: int, key: bytes) -> None:
    view.put(DIRTY_BASE + slot, key, b"")


# -- applying ---------------------------------------------------------------------------------
_OK = KvResult(Status.OK)


def _invalid(msg: str) -> KvResult:
    return KvResult(Status.INVALID, error=msg)


def apply_move(
    view: KvView, st: KvState, cmd: MoveCommand, max_sessions: int, ttl_ms: int
) -> KvResult:
    """Apply one move command (the clock in ``st`` already advanced to its ``now_ms``)."""
    slot, mid = cmd.slot, cmd.migration_id
    rec = read_record(view, slot)
    if rec is not None and mid < rec.migration_id:
        return _invalid(
            f"stale: slot {slot} is at migration {rec.migration_id}, this is migration {mid}"
        )
    same = rec is not None and rec.migration_id == mid
    state = rec.state if rec is not None else None
    t = type(cmd)
    if same and state == SlotState.ABORTED:  # a late step of an aborted migration
        if t is Unfreeze or t is DropImport:
            return _OK
        return _invalid(f"migration {mid} of slot {slot} was aborted")
    if t is MigrateOut:
        if same and state in (SlotState.MIGRATING, SlotState.FROZEN, SlotState.RELEASED):
            return _OK
        if same or (rec is not None and state not in (SlotState.ACTIVE, SlotState.ABORTED)):
            return _invalid(f"slot {slot} is {_show(rec)} here; cannot migrate it out")
        view.delete_slot(DIRTY_BASE + slot)
        _write(view, slot, SlotRecord(SlotState.MIGRATING, mid, cmd.target))  # type: ignore[union-attr]
        return _OK
    if t is Freeze:
        if same and state == SlotState.RELEASED:
            return _OK
        if same and state == SlotState.MIGRATING:
            _write(view, slot, rec._replace(state=SlotState.FROZEN))  # type: ignore[union-attr]
        elif not (same and state == SlotState.FROZEN):
            return _not_in(slot, mid, rec, "MIGRATING")
        return KvResult(Status.OK, value=_final_pass(view, slot, st.clock))
    if t is Release:
        if same and state == SlotState.RELEASED:
            return _OK
        if not (same and state == SlotState.FROZEN):
            return _not_in(slot, mid, rec, "FROZEN")
        deleted = view.delete_slot(slot)
        view.delete_slot(DIRTY_BASE + slot)
        _write(view, slot, rec._replace(state=SlotState.RELEASED))  # type: ignore[union-attr]
        return KvResult(Status.OK, int_value=deleted)
    if t is Unfreeze:
        if same and state in (SlotState.FROZEN, SlotState.RELEASED):
            # Past the freeze the move is decided (the meta group refuses to abort it): the
            # target may already be serving the slot, so the source must never again.
            return _invalid(f"slot {slot} is {state.name.lower()} here: the move is decided")
        if same and state == SlotState.MIGRATING:
            view.delete_slot(DIRTY_BASE + slot)
            _write(view, slot, SlotRecord(SlotState.ABORTED, mid, rec.peer))  # type: ignore[union-attr]
        return _OK  # otherwise nothing of this migration to undo here
    if t is ImportBegin:
        attempt = cmd.attempt  # type: ignore[union-attr]
        if same and state == SlotState.ACTIVE:
            return _OK
        if same and state == SlotState.IMPORTING:
            if attempt <= rec.attempt:  # type: ignore[union-attr]
                if attempt == rec.attempt:  # type: ignore[union-attr]
                    return _OK
                return _invalid(f"copy attempt {attempt} is older than {rec.attempt}")  # type: ignore[union-attr]
        elif same or (
            rec is not None
            and state not in (SlotState.RELEASED, SlotState.IMPORTING, SlotState.ABORTED)
        ):
            return _invalid(f"slot {slot} is {_show(rec)} here; cannot import it")
        view.delete_slot(slot)
        _write(view, slot, SlotRecord(SlotState.IMPORTING, mid, cmd.source, attempt, 0))  # type: ignore[union-attr]
        return _OK
    if t is ImportChunk:
        if same and state == SlotState.ACTIVE:
            return _OK
        if not (same and state == SlotState.IMPORTING):
            return _not_in(slot, mid, rec, "IMPORTING")
        assert rec is not None
        c: ImportChunk = cmd  # type: ignore[assignment]
        if c.attempt < rec.attempt:
            return _invalid(f"copy attempt {c.attempt} was superseded by {rec.attempt}")
        if c.attempt > rec.attempt:
            return _invalid(f"copy attempt {c.attempt} has not begun (at {rec.attempt})")
        if c.chunk <= rec.chunk:
            return _OK  # a duplicate
        if c.chunk != rec.chunk + 1:
            return _invalid(f"chunk {c.chunk} out of order (applied {rec.chunk})")
        for key, value in c.puts:
            if value is None:
                view.delete(slot, key)
            else:
                view.put(slot, key, value)
        for client_id, seq, record in c.sessions:
            sessions.install(view, st, client_id, seq, record, max_sessions, ttl_ms)
        _write(view, slot, rec._replace(chunk=c.chunk))
        return KvResult(Status.OK, int_value=len(c.puts))
    if t is Activate:
        if same and state == SlotState.ACTIVE:
            return _OK
        if not (same and state == SlotState.IMPORTING):
            return _not_in(slot, mid, rec, "IMPORTING")
        if cmd.attempt != rec.attempt:  # type: ignore[union-attr]
            return _invalid(f"copy attempt {cmd.attempt} is not the current one ({rec.attempt})")  # type: ignore[union-attr]
        _write(view, slot, SlotRecord(SlotState.ACTIVE, mid, rec.peer))  # type: ignore[union-attr]
        return _OK
    if t is DropImport:
        if same and state == SlotState.ACTIVE:
            # Activated, so the move was decided (frozen at the source, never aborted) and
            # this copy may have acknowledged writes: it is the slot now.
            return _invalid(f"slot {slot} is active here: the move is decided")
        if not (same and state == SlotState.IMPORTING):
            return _OK
        view.delete_slot(slot)
        _write(view, slot, SlotRecord(SlotState.ABORTED, mid, rec.peer))  # type: ignore[union-attr]
        return _OK
    raise AssertionError(f"not a move command: {cmd!r}")  # pragma: no cover


def _final_pass(view: KvReadView, slot: int, clock: int) -> bytes:
    """What a frozen slot's target still needs, as Freeze's answer (so the cutover needs no
    read of its own): msgpack ``[True, clock, [[key, stored value | nil], ...],
    [[client_id, seq, record], ...]]`` — the dirty keys with their values now (nil: absent
    or expired at ``clock``) and the sessions whose last write was in the slot; or
    ``[False]`` when that is more than one chunk holds (the executor then reads it page by
    page). Deterministic, like every answer: each replica computes the same."""
    dirty = view.scan(DIRTY_BASE + slot, None, MAX_CHUNK_KEYS + 1)
    sess = sessions.sessions_in_slot(view, slot, MAX_CHUNK_KEYS + 1)
    if len(dirty) > MAX_CHUNK_KEYS or len(sess) > MAX_CHUNK_KEYS:
        return pack((False,))
    puts = []
    size = 0
    for key, _ in dirty:
        raw = view.get(slot, key)
        live = raw if raw is not None and not is_expired(raw, clock) else None
        puts.append((key, live))
        size += len(key) + (len(live) if live else 0)
    size += sum(len(r) for _, _, r in sess)
    if size > FINAL_PASS_BYTES:
        return pack((False,))
    return pack((True, clock, puts, sess))


def decode_final_pass(
    value: bytes,
) -> tuple[int, list[tuple[bytes, bytes | None]], list[tuple[int, int, bytes]]] | None:
    """Freeze's answer: ``(clock, puts, sessions)``, or None if it was too big to carry."""
    items = unpack(value)
    if not items or not items[0]:
        return None
    _, clock, puts, sess = items
    return clock, [(k, v) for k, v in puts], [(c, q, r) for c, q, r in sess]


def _show(rec: SlotRecord | None) -> str:
    return "unrecorded" if rec is None else f"{rec.state.name} (migration {rec.migration_id})"


def _not_in(slot: int, mid: int, rec: SlotRecord | None, want: str) -> KvResult:
    have = "no record" if rec is None else f"{rec.state.name} (migration {rec.migration_id})"
    return _invalid(f"slot {slot} is not {want} for migration {mid} here: {have}")
