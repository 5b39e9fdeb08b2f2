"""The key-value state machine of one shard group: committed commands in, answers out.

Contract:
- Deterministic. ``apply`` depends only on the view's contents and the entry's bytes: the
  same entries applied in the same order give byte-identical views and equal answers on
  every replica. No clock, no I/O, no random, and no state outside the view (the object
  holds only its configuration), so a restart or a snapshot that keeps the view keeps all.
- Time. The state machine's clock is the largest ``now_ms`` of any applied entry (the
  leader's wall clock when it proposed; see ``commands``). A key whose ``expire_at`` is at or
  before the clock is absent, for every command, on every replica alike. Reads take the
  caller's ``now_ms`` but never go below the clock, so a read never sees a key that the
  state machine already considers expired.
- Semantics are Redis's (GET, SET with NX/XX/PX/KEEPTTL, DEL, EXISTS, INCRBY, PEXPIRE,
  PTTL, PERSIST); CAS is an extension Redis lacks. Per command, what a ``KvResult`` holds:
      GET      OK value | NOT_FOUND
      SET      OK | NOT_APPLIED (NX: key present; XX: key absent)
      DELETE   OK int_value 1 (deleted) / 0 (absent)
      EXISTS   OK int_value 1 / 0
      INCRBY   OK int_value = new value; absent counts as 0; keeps the expiry;
               WRONGTYPE if the value is not a base-10 int64; INVALID on overflow
      EXPIRE   OK int_value 1 (expiry set to now + ttl_ms) / 0 (absent)
      TTL      OK int_value = ms left | -1 (no expiry) | -2 (absent)
      PERSIST  OK int_value 1 (expiry removed) / 0 (absent or no expiry)
      CAS      OK if the current value equals ``expected`` (``expected`` None: the key is
               absent) and was replaced by ``value``; else NOT_APPLIED with the current
               value and int_value 1 (present) / 0 (absent). ttl_ms and KEEPTTL as in SET.
  SET and CAS without KEEPTTL or ttl_ms clear an existing expiry, as Redis's SET does.
  GET, EXISTS and TTL may also come through the log (answered at the clock, no session).
  ``ExpireSweep`` deletes each named key that is expired at the clock (after taking the
  sweep's own ``now_ms``) and answers OK with int_value = keys deleted; a key written again
  since the leader saw it expired survives. ``Noop`` answers OK. Writes also delete an
  expired key they touch, so storage holds fewer dead keys between sweeps.
- Exactly-once writes (Raft thesis §6.3). A write with ``client_id`` != 0 is checked against
  that client's session: ``seq`` equal to the last one answered returns the remembered
  result without applying again; a smaller ``seq`` is INVALID "stale sequence" (nothing
  changes); a larger one is applied and its result remembered. Only the last answer is
  remembered, so a client may have at most one write in flight per client_id (a pipelining
  client uses several ids). Sessions idle for more than ``session_ttl_ms`` of the clock
  expire; at most ``max_sessions`` are kept (opening one more evicts the least recently
  active). Expiry is exact (a lookup ignores an expired session); removing expired records
  is bounded: each entry removes at most ``session_sweep_limit`` of them, oldest first. A
  write retried after its session expired or was evicted is applied again: the limit every
  session scheme has, and why the TTL is long (1 hour by default). Reads and ``client_id`` 0
  have no session (at-least-once). Sessions are per group: a client may use one client_id
  for all groups (each group sees a gap-tolerant, increasing subsequence of its seqs).
- Slot migration (``slot_moves``): a client write or read of a slot that is frozen or still
  arriving is answered TRYAGAIN, of a slot that has left MOVED (``int_value`` = its group);
  neither is remembered in the session (the write did not happen), but a retried write
  that *was* applied still gets its remembered answer. A write to a slot that is leaving
  marks its key dirty. Sessions remember the slot of their last write, so the sessions
  whose last write was in a moving slot can follow it (``sessions.install``).
- Malformed entry data is answered INVALID and changes nothing, not even the clock, on
  every replica alike. A command that decodes but is meaningless (``command_error``) is
  answered INVALID and changes no data; it still advances the clock and, if it carries a
  valid session position (client_id and seq >= 1), is remembered like any answer.
- Errors from the view (storage) propagate: the caller aborts the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kvcluster.errors import InvalidArgument
from kvcluster.kv import sessions
from kvcluster.kv.commands import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_BYTES,
    READ_OPS,
    Command,
    ExpireSweep,
    KvCommand,
    MalformedCommand,
    Noop,
    Op,
    SetFlag,
    command_error,
    decode_command,
)
from kvcluster.kv.result import KvResult, Status
from kvcluster.kv.sessions import KvState, SessionInfo
from kvcluster.kv.slot_moves import apply_move, guard_read, guard_write
from kvcluster.kv.values import (
    decode_value,
    encode_value,
    expire_at_of,
    format_int64,
    is_expired,
    parse_int64,
)
from kvcluster.kv.view import KvReadView, KvView

__all__ = [
    "MAX_SESSIONS",
    "SESSION_SWEEP_PER_APPLY",
    "SESSION_TTL_MS",
    "KvStateMachine",
]

SESSION_TTL_MS = 60 * 60 * 1000
"""A session idle for longer than this (state-machine clock) expires: 1 hour."""
MAX_SESSIONS = 10_000
"""Most sessions one group keeps; one more evicts the least recently active. Each session
costs two small meta records plus its last answer (usually tens of bytes; a CAS that was
not applied remembers the current value, up to 1 MiB)."""
SESSION_SWEEP_PER_APPLY = 4
"""Most expired sessions one applied entry removes (bounds the work of one entry)."""

_NX = int(SetFlag.NX)
_XX = int(SetFlag.XX)
_KEEPTTL = int(SetFlag.KEEPTTL)

_OK = KvResult(Status.OK)
_ZERO = KvResult(Status.OK, int_value=0)
_ONE = KvResult(Status.OK, int_value=1)
_NO_TTL = KvResult(Status.OK, int_value=-1)
_NO_KEY = KvResult(Status.OK, int_value=-2)
_NOT_FOUND = KvResult(Status.NOT_FOUND)
_NOT_APPLIED = KvResult(Status.NOT_APPLIED)
_NOT_INTEGER = KvResult(Status.WRONGTYPE, error="value is not an integer or out of range")
_OVERFLOW = KvResult(Status.INVALID, error="increment or decrement would overflow")

Handler = Callable[[KvView, int, KvCommand, int], KvResult]
ReadHandler = Callable[[KvReadView, int, KvCommand, int], KvResult]


def _invalid(error: str) -> KvResult:
    return KvResult(Status.INVALID, error=error)


class KvStateMachine:
    """Applies committed kv commands to a group's view; answers reads from it.

    ``slot_of`` maps a key to its slot (``kvcluster.sharding.key_slot`` in production). It
    and the session settings are part of the replicated semantics: every replica of a group
    must be built with the same values.
    """

    __slots__ = ("_max_sessions", "_session_ttl_ms", "_slot_of", "_sweep_limit")

    def __init__(
        self,
        slot_of: Callable[[bytes], int],
        *,
        session_ttl_ms: int = SESSION_TTL_MS,
        max_sessions: int = MAX_SESSIONS,
        session_sweep_limit: int = SESSION_SWEEP_PER_APPLY,
    ) -> None:
        if session_ttl_ms < 1 or max_sessions < 1 or session_sweep_limit < 1:
            raise InvalidArgument(
                "session_ttl_ms, max_sessions and session_sweep_limit must be >= 1"
            )
        self._slot_of = slot_of
        self._session_ttl_ms = session_ttl_ms
        self._max_sessions = max_sessions
        self._sweep_limit = session_sweep_limit

    # -- the replicated path ----------------------------------------------------------------
    def apply(self, view: KvView, index: int, data: bytes) -> KvResult:
        """Apply the committed entry ``index`` with ``data`` (its command) to ``view``."""
        try:
            cmd = decode_command(data)
        except MalformedCommand as e:
            return _invalid(f"entry {index}: {e}")
        return self.apply_command(view, cmd)

    def apply_command(self, view: KvView, cmd: Command) -> KvResult:
        """Apply an already decoded command (``apply`` without the decoding)."""
        st = KvState.load(view)
        if cmd.now_ms > st.clock:
            st.clock = cmd.now_ms
        sessions.sweep(view, st, self._session_ttl_ms, self._sweep_limit)
        if type(cmd) is KvCommand:
            result = self._apply_client(view, st, cmd)
        elif type(cmd) is ExpireSweep:
            result = self._apply_sweep(view, st.clock, cmd)
        elif type(cmd) is Noop:
            result = _OK
        else:
            result = apply_move(
                view,
                st,
                cmd,  # type: ignore[arg-type]  # the remaining members are the move commands
                self._max_sessions,
                self._session_ttl_ms,
            )
        st.store(view)
        return result

    def _apply_client(self, view: KvView, st: KvState, cmd: KvCommand) -> KvResult:
        op = cmd.op
        error = command_error(cmd)
        if op in READ_OPS:  # a read that went through the log: no session, no change
            if error is not None:
                return _invalid(error)
            slot = self._slot_of(cmd.key)
            return guard_read(view, slot) or _READS[op](view, slot, cmd, st.clock)
        client_id = cmd.client_id
        link = None
        if client_id:
            if cmd.seq < 1:
                return _invalid(error or "seq must be >= 1 when client_id is set")
            link = sessions.lookup(view, st, client_id, self._session_ttl_ms)
            if link is not None:
                last_seq = link[3]
                if cmd.seq == last_seq:
                    sessions.touch(view, st, client_id, link)
                    return sessions.last_result(view, client_id)
                if cmd.seq < last_seq:
                    return _invalid(f"stale sequence {cmd.seq} (already answered; last {last_seq})")
        slot = self._slot_of(cmd.key) if len(cmd.key) <= MAX_KEY_BYTES else -1
        if error is not None:
            result = _invalid(error)
        else:
            refused = guard_write(view, slot, cmd.key)
            if refused is not None:
                return refused  # TRYAGAIN / MOVED: not applied, so not remembered
            result = _WRITES[op](view, slot, cmd, st.clock)
        if client_id:
            sessions.remember(view, st, client_id, cmd.seq, result, link, self._max_sessions, slot)
        return result

    def _apply_sweep(self, view: KvView, now: int, cmd: ExpireSweep) -> KvResult:
        deleted = 0
        for key in cmd.keys:
            if len(key) > MAX_KEY_BYTES:
                continue  # never stored
            slot = self._slot_of(key)
            raw = view.get(slot, key)
            if raw is not None and is_expired(raw, now) and guard_write(view, slot, key) is None:
                view.delete(slot, key)
                deleted += 1
        return KvResult(Status.OK, int_value=deleted)

    # -- the read path ----------------------------------------------------------------------
    def read(self, view: KvReadView, cmd: KvCommand, now_ms: int) -> KvResult:
        """Answer GET, EXISTS or TTL from ``view`` at ``max(now_ms, clock)``; writes nothing.

        The runtime passes ``now_ms`` = max(its wall clock, the state machine's clock) on
        the leader, and may pass 0 for a stale follower read (the clock alone is used).
        """
        if cmd.op not in READ_OPS:
            raise InvalidArgument(f"{cmd.op!r} is not a read; it must go through the log")
        error = command_error(cmd)
        if error is not None:
            return _invalid(error)
        now = max(now_ms, sessions.read_clock(view))
        slot = self._slot_of(cmd.key)
        return guard_read(view, slot) or _READS[cmd.op](view, slot, cmd, now)

    # -- inspection -------------------------------------------------------------------------
    def clock(self, view: KvReadView) -> int:
        """The state machine's clock: the largest ``now_ms`` applied so far."""
        return sessions.read_clock(view)

    def session_count(self, view: KvReadView) -> int:
        """Sessions stored (expired ones count until they are swept)."""
        return KvState.load(view).count

    def sessions(self, view: KvReadView) -> Iterator[SessionInfo]:
        """The stored sessions, least recently active first."""
        return sessions.iter_sessions(view)


# -- commands -------------------------------------------------------------------------------
def _live(view: KvReadView, slot: int, key: bytes, now: int) -> bytes | None:
    """The stored form of ``key`` if it is live at ``now``."""
    raw = view.get(slot, key)
    if raw is None or is_expired(raw, now):
        return None
    return raw


def _load(view: KvView, slot: int, key: bytes, now: int) -> bytes | None:
    """``_live`` for a write: an expired key is deleted on the way (the same on every
    replica, since every replica applies the same entry at the same clock)."""
    raw = view.get(slot, key)
    if raw is not None and is_expired(raw, now):
        view.delete(slot, key)
        return None
    return raw


def _get(view: KvReadView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _live(view, slot, cmd.key, now)
    if raw is None:
        return _NOT_FOUND
    return KvResult(Status.OK, decode_value(raw)[0])


def _exists(view: KvReadView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    return _ZERO if _live(view, slot, cmd.key, now) is None else _ONE


def _ttl(view: KvReadView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _live(view, slot, cmd.key, now)
    if raw is None:
        return _NO_KEY
    expire_at = expire_at_of(raw)
    return _NO_TTL if expire_at == 0 else KvResult(Status.OK, int_value=expire_at - now)


def _set(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    flags = cmd.flags
    keep = 0
    if flags:  # NX, XX and KEEPTTL need the current value; a plain SET does not
        raw = _load(view, slot, cmd.key, now)
        if (flags & _NX and raw is not None) or (flags & _XX and raw is None):
            return _NOT_APPLIED
        if flags & _KEEPTTL and raw is not None:
            keep = expire_at_of(raw)
    expire_at = now + cmd.ttl_ms if cmd.ttl_ms else keep
    view.put(slot, cmd.key, encode_value(cmd.value, expire_at))
    return _OK


def _delete(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    if _load(view, slot, cmd.key, now) is None:
        return _ZERO
    view.delete(slot, cmd.key)
    return _ONE


def _incrby(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _load(view, slot, cmd.key, now)
    if raw is None:
        current, expire_at = 0, 0
    else:
        value, expire_at = decode_value(raw)
        parsed = parse_int64(value)
        if parsed is None:
            return _NOT_INTEGER
        current = parsed
    new = current + cmd.delta
    if not INT64_MIN <= new <= INT64_MAX:
        return _OVERFLOW
    view.put(slot, cmd.key, encode_value(format_int64(new), expire_at))
    return KvResult(Status.OK, int_value=new)


def _expire(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _load(view, slot, cmd.key, now)
    if raw is None:
        return _ZERO
    view.put(slot, cmd.key, encode_value(decode_value(raw)[0], now + cmd.ttl_ms))
    return _ONE


def _persist(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _load(view, slot, cmd.key, now)
    if raw is None:
        return _ZERO
    value, expire_at = decode_value(raw)
    if expire_at == 0:
        return _ZERO
    view.put(slot, cmd.key, encode_value(value, 0))
    return _ONE


def _cas(view: KvView, slot: int, cmd: KvCommand, now: int) -> KvResult:
    raw = _load(view, slot, cmd.key, now)
    current = None if raw is None else decode_value(raw)
    expected = cmd.expected
    if expected is None:
        matches = current is None
    else:
        matches = current is not None and current[0] == expected
    if not matches:
        if current is None:
            return _NOT_APPLIED
        return KvResult(Status.NOT_APPLIED, current[0], 1)
    keep = current[1] if current is not None and cmd.flags & _KEEPTTL else 0
    expire_at = now + cmd.ttl_ms if cmd.ttl_ms else keep
    view.put(slot, cmd.key, encode_value(cmd.value, expire_at))
    return _OK


_READS: dict[int, ReadHandler] = {Op.GET: _get, Op.EXISTS: _exists, Op.TTL: _ttl}
_WRITES: dict[int, Handler] = {
    Op.SET: _set,
    Op.DELETE: _delete,
    Op.INCRBY: _incrby,
    Op.EXPIRE: _expire,
    Op.CAS: _cas,
    Op.PERSIST: _persist,
}
