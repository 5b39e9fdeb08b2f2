"""The state machine's clock and its client session table, kept in the view's meta records.

Contract:
- Records (all under the ``b"kv/"`` prefix of the group's meta):
      kv/state             clock | count | head | tail | oldest          5 x u64 BE
      kv/lru/<id>          prev | next | last_active | seq | slot + 1    5 x u64 BE
                           (four-field records of an earlier format read as slot 0)
      kv/session/<id>      msgpack [status, value, int_value, error, slot]: the answer to
                           ``seq`` and the slot of the key it wrote (-1: unknown; records
                           written before slot migration existed have four items)
  ``<id>`` is the client id as u64 BE. ``kv/lru`` records form a doubly linked list of all
  sessions ordered by last activity, oldest (``head``) first; ``oldest`` caches the head's
  ``last_active`` so deciding that nothing is due to expire costs no read. A write reads only
  its client's ``kv/lru`` record (which holds ``seq``); the remembered answer is read only
  when the write is a duplicate.
- Invariants (``check_sessions`` verifies them): the list holds exactly ``count`` sessions,
  each with one ``kv/session`` and one ``kv/lru`` record; ``last_active`` never decreases
  from head to tail; ``oldest`` is the head's ``last_active`` (0 when empty).
- ``clock`` is the state machine's clock: the largest ``now_ms`` of any applied entry. It
  never decreases, and it is the only time the state machine knows.
- Expiry is exact and deterministic: a session idle for more than ``ttl_ms`` of the clock is
  gone, whether or not its records have been removed yet (``lookup`` ignores and removes
  it). ``sweep`` removes expired sessions oldest first, at most ``limit`` per call, so one
  entry never does unbounded work. The table holds at most ``max_sessions``: opening one
  more evicts the least recently active.
- Cost per write with a session: 1 read and 3 writes when the client was also the last one
  active (the list tail); up to 4 more reads and writes to move it to the tail otherwise;
  2 more writes when its write is in another slot than its previous one (the slot index).
- The slot index: every session whose last write's slot is known is listed under that slot
  (``SLOT_INDEX_BASE + slot``), exactly once; ``sessions_in_slot`` reads it.
- The record layout is persistent state: changing it needs a format migration.
- Pure: stdlib and msgpack only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kvcluster.kv._msgpack import UnpackError, pack, unpack
from kvcluster.kv.result import KvResult, Status
from kvcluster.kv.view import CorruptKvState, KvReadView, KvView

__all__ = [
    "LRU_PREFIX",
    "SESSION_PREFIX",
    "STATE_NAME",
    "KvState",
    "Link",
    "SessionInfo",
    "check_sessions",
    "install",
    "is_record",
    "iter_sessions",
    "last_result",
    "last_slot",
    "lookup",
    "read_clock",
    "remember",
    "session_record",
    "sessions_in_slot",
    "sweep",
    "touch",
]

STATE_NAME = b"kv/state"
SESSION_PREFIX = b"kv/session/"
LRU_PREFIX = b"kv/lru/"

_STATE = struct.Struct(">QQQQQ")
_LINK = struct.Struct(">QQQQQ")
_OLD_LINK = struct.Struct(">QQQQ")  # before the slot index: read as slot unknown
_ID = struct.Struct(">Q")
_RECORD_ERRORS: tuple[type[Exception], ...] = (*UnpackError, IndexError, ValueError)

Link = tuple[int, int, int, int, int]
"""``(prev, next, last_active, seq, slot + 1)`` of a session; prev/next 0 = no neighbour;
slot + 1 is that of its last write (0: unknown)."""

SLOT_INDEX_BASE = 32768
"""Sessions by the slot of their last write: shadow slot ``SLOT_INDEX_BASE + slot`` holds
the client id (u64 BE) of each, so a migration finds a slot's sessions without a scan of all
of them."""


class KvState:
    """The ``kv/state`` record, loaded at the start of an apply and stored if it changed."""

    __slots__ = ("_loaded", "clock", "count", "head", "oldest", "tail")

    def __init__(self, clock: int, count: int, head: int, tail: int, oldest: int) -> None:
        self.clock = clock
        self.count = count
        self.head = head
        self.tail = tail
        self.oldest = oldest
        self._loaded = (clock, count, head, tail, oldest)

    @classmethod
    def load(cls, view: KvReadView) -> KvState:
        raw = view.get_meta(STATE_NAME)
        if raw is None:
            return cls(0, 0, 0, 0, 0)
        try:
            clock, count, head, tail, oldest = _STATE.unpack(raw)
        except struct.error:
            raise CorruptKvState(f"bad kv/state record: {raw!r:.80}") from None
        return cls(clock, count, head, tail, oldest)

    def store(self, view: KvView) -> None:
        """Write the record if anything in it changed since ``load``."""
        now = (self.clock, self.count, self.head, self.tail, self.oldest)
        if now != self._loaded:
            view.put_meta(STATE_NAME, _STATE.pack(*now))
            self._loaded = now


def read_clock(view: KvReadView) -> int:
    """The state machine's clock: the largest ``now_ms`` applied so far (0 before any)."""
    return KvState.load(view).clock


# -- records --------------------------------------------------------------------------------
def _session_name(client_id: int) -> bytes:
    return SESSION_PREFIX + _ID.pack(client_id)


def _lru_name(client_id: int) -> bytes:
    return LRU_PREFIX + _ID.pack(client_id)


def _get_link(view: KvReadView, client_id: int) -> Link | None:
    raw = view.get_meta(_lru_name(client_id))
    if raw is None:
        return None
    try:
        link: Link = _LINK.unpack(raw) if len(raw) == _LINK.size else (*_OLD_LINK.unpack(raw), 0)
    except struct.error:
        raise CorruptKvState(f"bad kv/lru record for client {client_id}: {raw!r:.80}") from None
    return link


def _must_link(view: KvReadView, client_id: int) -> Link:
    link = _get_link(view, client_id)
    if link is None:
        raise CorruptKvState(f"session table corrupt: no kv/lru record for client {client_id}")
    return link


def _put_link(
    view: KvView, client_id: int, prev: int, nxt: int, active: int, seq: int, slot1: int
) -> None:
    view.put_meta(_lru_name(client_id), _LINK.pack(prev, nxt, active, seq, slot1))


def _index(view: KvView, client_id: int, old_slot1: int, new_slot1: int) -> None:
    """Move ``client_id`` in the slot index from slot ``old_slot1 - 1`` to ``new_slot1 - 1``
    (0: none)."""
    if old_slot1 == new_slot1:
        return
    key = _ID.pack(client_id)
    if old_slot1:
        view.delete(SLOT_INDEX_BASE + old_slot1 - 1, key)
    if new_slot1:
        view.put(SLOT_INDEX_BASE + new_slot1 - 1, key, b"")


def _decode_record(raw: bytes) -> tuple[KvResult, int]:
    try:
        items = unpack(raw)
        status, value, int_value, error = items[:4]
        slot = items[4] if len(items) > 4 else -1
        return KvResult(Status(status), value, int_value, error), slot
    except _RECORD_ERRORS as e:
        raise CorruptKvState(f"session table corrupt: bad kv/session record ({e})") from None


def _decode_result(raw: bytes) -> KvResult:
    return _decode_record(raw)[0]


_STATUSES = frozenset(int(s) for s in Status)


def is_record(raw: bytes) -> bool:
    """Whether ``raw`` is a ``kv/session`` record in the form ``remember`` writes it (a
    record from another group is checked with this before it can reach ``install``)."""
    try:
        items = unpack(raw)
    except UnpackError:
        return False
    return (
        type(items) is tuple
        and len(items) in (4, 5)
        and type(items[0]) is int
        and items[0] in _STATUSES
        and type(items[1]) is bytes
        and type(items[2]) is int
        and type(items[3]) is str
        and (len(items) == 4 or type(items[4]) is int)
    )


# -- the activity list ----------------------------------------------------------------------
def _unlink(view: KvView, st: KvState, link: Link) -> None:
    prev, nxt = link[0], link[1]
    next_link = _must_link(view, nxt) if nxt else None
    if prev:
        p = _must_link(view, prev)
        _put_link(view, prev, p[0], nxt, p[2], p[3], p[4])
    else:
        st.head = nxt
        st.oldest = next_link[2] if next_link is not None else 0
    if next_link is not None:
        _put_link(view, nxt, prev, next_link[1], next_link[2], next_link[3], next_link[4])
    else:
        st.tail = prev


def _append(view: KvView, st: KvState, client_id: int, seq: int, slot1: int) -> None:
    """Link ``client_id`` in at the tail, active now (``st.clock``)."""
    tail = st.tail
    if tail:
        t = _must_link(view, tail)
        _put_link(view, tail, t[0], client_id, t[2], t[3], t[4])
    else:
        st.head = client_id
        st.oldest = st.clock
    _put_link(view, client_id, tail, 0, st.clock, seq, slot1)
    st.tail = client_id


def _move_to_tail(
    view: KvView, st: KvState, client_id: int, link: Link, seq: int, slot1: int
) -> None:
    now = st.clock
    if st.tail != client_id:
        _unlink(view, st, link)
        _append(view, st, client_id, seq, slot1)
        return
    if link[2] != now or link[3] != seq or link[4] != slot1:
        _put_link(view, client_id, link[0], 0, now, seq, slot1)
        if st.head == client_id:
            st.oldest = now


def _remove(view: KvView, st: KvState, client_id: int, link: Link) -> None:
    _unlink(view, st, link)
    _index(view, client_id, link[4], 0)
    view.delete_meta(_lru_name(client_id))
    view.delete_meta(_session_name(client_id))
    st.count -= 1


# -- the session table ----------------------------------------------------------------------
def lookup(view: KvView, st: KvState, client_id: int, ttl_ms: int) -> Link | None:
    """The link (holding the last ``seq``) of a live session; removes an expired one."""
    link = _get_link(view, client_id)
    if link is not None and st.clock - link[2] > ttl_ms:
        _remove(view, st, client_id, link)
        return None
    return link


def last_result(view: KvReadView, client_id: int) -> KvResult:
    """The answer remembered for the session's last ``seq``."""
    raw = view.get_meta(_session_name(client_id))
    if raw is None:
        raise CorruptKvState(f"session table corrupt: no kv/session record for {client_id}")
    return _decode_result(raw)


def touch(view: KvView, st: KvState, client_id: int, link: Link) -> None:
    """Mark an existing session active now (``st.clock``): it moves to the tail."""
    _move_to_tail(view, st, client_id, link, link[3], link[4])


def remember(
    view: KvView,
    st: KvState,
    client_id: int,
    seq: int,
    result: KvResult,
    link: Link | None,
    max_sessions: int,
    slot: int = -1,
) -> None:
    """Record ``result`` as the answer to ``seq`` (a write to ``slot``) and mark the
    session active.

    ``link`` is what ``lookup`` returned (None: open a new session, evicting the least
    recently active ones while the table is full).
    """
    _remember_record(
        view,
        st,
        client_id,
        seq,
        pack((int(result.status), result.value, result.int_value, result.error, slot)),
        link,
        max_sessions,
        slot,
    )


def _remember_record(
    view: KvView,
    st: KvState,
    client_id: int,
    seq: int,
    record: bytes,
    link: Link | None,
    max_sessions: int,
    slot: int,
) -> None:
    view.put_meta(_session_name(client_id), record)
    slot1 = slot + 1 if slot >= 0 else 0
    if link is not None:
        _index(view, client_id, link[4], slot1)
        _move_to_tail(view, st, client_id, link, seq, slot1)
        return
    while st.count >= max_sessions and st.head:
        head = st.head
        _remove(view, st, head, _must_link(view, head))
    _append(view, st, client_id, seq, slot1)
    _index(view, client_id, 0, slot1)
    st.count += 1


def install(
    view: KvView,
    st: KvState,
    client_id: int,
    seq: int,
    record: bytes,
    max_sessions: int,
    ttl_ms: int,
) -> None:
    """Take over another group's session of ``client_id`` (a slot migration): its answer
    to ``seq`` becomes this group's unless this group has already answered ``seq`` or a
    later one. A client has one write in flight per id, so the larger seq is the only one
    that can still be retried."""
    _, slot = _decode_record(record)  # refuses a malformed record before storing it
    link = lookup(view, st, client_id, ttl_ms)
    if link is not None and link[3] >= seq:
        return
    _remember_record(view, st, client_id, seq, record, link, max_sessions, slot)


def session_record(view: KvReadView, client_id: int) -> tuple[int, bytes] | None:
    """``(seq, raw record)`` of a stored session, for handing it to another group."""
    link = _get_link(view, client_id)
    raw = view.get_meta(_session_name(client_id))
    if link is None or raw is None:
        return None
    return link[3], raw


def sessions_in_slot(view: KvReadView, slot: int, limit: int) -> list[tuple[int, int, bytes]]:
    """``(client_id, seq, record)`` of up to ``limit`` sessions whose last write was in
    ``slot`` (the slot index; expired ones included until they are swept)."""
    out = []
    for key, _ in view.scan(SLOT_INDEX_BASE + slot, None, limit):
        client_id = _ID.unpack(key)[0]
        rec = session_record(view, client_id)
        if rec is not None:
            out.append((client_id, rec[0], rec[1]))
    return out


def last_slot(view: KvReadView, client_id: int) -> int:
    """The slot of the session's last remembered write (-1 if unknown)."""
    raw = view.get_meta(_session_name(client_id))
    return -1 if raw is None else _decode_record(raw)[1]


def sweep(view: KvView, st: KvState, ttl_ms: int, limit: int) -> int:
    """Remove up to ``limit`` expired sessions, oldest first; how many were removed."""
    removed = 0
    while removed < limit and st.count and st.clock - st.oldest > ttl_ms:
        head = st.head
        _remove(view, st, head, _must_link(view, head))
        removed += 1
    return removed


# -- inspection -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionInfo:
    client_id: int
    seq: int
    last_active: int
    result: KvResult


def iter_sessions(view: KvReadView) -> Iterator[SessionInfo]:
    """Every stored session, least recently active first (expired ones included until they
    are swept)."""
    st = KvState.load(view)
    client_id = st.head
    while client_id:
        link = _must_link(view, client_id)
        yield SessionInfo(client_id, link[3], link[2], last_result(view, client_id))
        client_id = link[1]


def check_sessions(view: KvReadView, meta_names: Iterable[bytes] | None = None) -> None:
    """Raise AssertionError unless the session table keeps its invariants.

    ``meta_names`` (optional, an iterable of every meta name in the view) also checks that
    no ``kv/session`` or ``kv/lru`` record is orphaned.
    """
    st = KvState.load(view)
    seen: list[int] = []
    prev = 0
    last = 0
    client_id = st.head
    while client_id:
        if client_id in seen or len(seen) > st.count:
            raise AssertionError("session list has a cycle or is longer than count")
        link = _must_link(view, client_id)
        if link[0] != prev:
            raise AssertionError(f"session {client_id}: prev is {link[0]}, expected {prev}")
        if link[2] < last:
            raise AssertionError(f"session {client_id}: last_active goes backwards")
        if view.get_meta(_session_name(client_id)) is None:
            raise AssertionError(f"session {client_id}: no kv/session record")
        if link[4] and view.get(SLOT_INDEX_BASE + link[4] - 1, _ID.pack(client_id)) is None:
            raise AssertionError(f"session {client_id}: missing from the index of its slot")
        seen.append(client_id)
        prev, last, client_id = client_id, link[2], link[1]
    if len(seen) != st.count:
        raise AssertionError(f"count is {st.count} but the list holds {len(seen)}")
    if st.tail != prev:
        raise AssertionError(f"tail is {st.tail}, the list ends at {prev}")
    if st.oldest != (_must_link(view, st.head)[2] if st.head else 0):
        raise AssertionError("oldest is not the head's last_active")
    if meta_names is not None:
        names = set(meta_names)
        expected = {_session_name(c) for c in seen} | {_lru_name(c) for c in seen}
        stored = {n for n in names if n.startswith((SESSION_PREFIX, LRU_PREFIX))}
        if stored != expected:
            raise AssertionError(f"orphaned session records: {sorted(stored ^ expected)!r:.200}")
