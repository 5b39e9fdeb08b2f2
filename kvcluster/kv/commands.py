"""Commands of a shard group's Raft log: what a client write becomes, and how it is checked.

Contract:
- Three commands: ``KvCommand`` (one client request, stamped with the leader's ``now_ms``),
  ``ExpireSweep`` (the leader asks to delete keys it saw expired) and ``Noop``; and the
  slot-migration commands of ``slot_moves`` (tags 110..117), decoded here too.
- Wire form (msgpack, positional, one array; this is the hot path, so no maps, no names):
      KvCommand    [op, key, value, expected, ttl_ms, delta, flags, client_id, seq, now_ms]
      ExpireSweep  [EXPIRE_SWEEP_TAG, now_ms, [key, ...]]
      Noop         [NOOP_TAG, now_ms]
  ``expected`` is nil when the CAS expects the key to be absent. An empty entry (``b""``, the
  one a new Raft leader appends) decodes as ``Noop(0)``.
- Three layers of checking, each with its own job:
  * ``decode_command`` checks *structure* only (shape, types, integer ranges, known op) and
    raises ``MalformedCommand``. It never checks policy limits, so raising a limit later can
    never make an old log entry undecodable.
  * ``command_error`` checks *meaning* (flag combinations, TTL ranges, sessions, the hard key
    size limit of the storage); the state machine answers INVALID, deterministically, when a
    command in the log breaks one of these rules.
  * ``validate_request`` is for the edge (before proposing): meaning plus the policy limits
    on sizes, raising ``InvalidArgument`` with a message meant for the client.
- ``now_ms`` is read from the wall clock by the runtime *on the leader* when it proposes; this
  module and the state machine never read a clock.
- Pure: stdlib and msgpack only; no I/O, no clock, no global random.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, NoReturn, TypeAlias

from kvcluster.errors import InvalidArgument
from kvcluster.kv._msgpack import UnpackError, pack, unpack
from kvcluster.kv.slot_moves import MOVE_TAGS, MoveCommand, decode_move, encode_move

__all__ = [
    "EXPIRE_SWEEP_TAG",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_KEY_BYTES",
    "MAX_NOW_MS",
    "MAX_SWEEP_KEYS",
    "MAX_TTL_MS",
    "MAX_VALUE_BYTES",
    "NOOP_TAG",
    "READ_OPS",
    "UINT64_MAX",
    "WRITE_OPS",
    "Command",
    "ExpireSweep",
    "KvCommand",
    "MalformedCommand",
    "Noop",
    "Op",
    "SetFlag",
    "command_error",
    "decode_command",
    "encode_command",
    "validate_request",
]

# -- limits ---------------------------------------------------------------------------------
MAX_KEY_BYTES = 500
"""Longest key, in bytes. LMDB (as py-lmdb builds it) refuses keys over 511 bytes and the
storage layer puts 6 bytes (group id, slot) in front of every user key, so 505 is the hard
ceiling; 500 leaves room for a layout change. Redis allows far longer keys; memcached allows
250 bytes, DynamoDB 2048. Checked at the edge and, being a hard limit, also by the state
machine."""

MAX_VALUE_BYTES = 1024 * 1024
"""Longest value (and CAS ``expected``), 1 MiB: one value is one Raft entry, and every entry
is copied to every replica and kept in the log until compaction. Checked at the edge only."""

MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000
"""Longest time to live, 100 years in ms; keeps ``now_ms + ttl_ms`` far inside int64."""

MAX_NOW_MS = 2**62
"""Largest ``now_ms`` a command may carry (about 146 million years after the epoch)."""

MAX_SWEEP_KEYS = 1000
"""Most keys one ``ExpireSweep`` may name (bounds the work of applying one entry); checked by
``encode_command``, not by ``decode_command``."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

NOOP_TAG = 100
EXPIRE_SWEEP_TAG = 101


class Op(enum.IntEnum):
    """Client operations; the numbers are those of ``kvcluster.v1.Op`` in kv.proto."""

    GET = 1
    SET = 2
    DELETE = 3
    EXISTS = 4
    INCRBY = 5
    EXPIRE = 6
    TTL = 7
    CAS = 8
    PERSIST = 9


class SetFlag(enum.IntFlag):
    """Bits of ``KvCommand.flags``; the numbers are those of ``kvcluster.v1.SetFlag``."""

    NONE = 0
    NX = 1  # SET only if absent
    XX = 2  # SET only if present
    KEEPTTL = 4  # SET/CAS: keep the existing expiry


READ_OPS = frozenset({Op.GET, Op.EXISTS, Op.TTL})
"""Ops that change nothing: served by ``KvStateMachine.read`` (they may also be logged)."""
WRITE_OPS = frozenset({Op.SET, Op.DELETE, Op.INCRBY, Op.EXPIRE, Op.CAS, Op.PERSIST})
"""Ops that go through the Raft log and take part in client sessions."""
_CLIENT_OPS = frozenset(int(op) for op in Op)
# Plain ints on the hot path: IntFlag/IntEnum operators run Python code.
_NX, _XX, _KEEPTTL = int(SetFlag.NX), int(SetFlag.XX), int(SetFlag.KEEPTTL)
_SET_FLAGS = _NX | _XX | _KEEPTTL
_CAS_FLAGS = _KEEPTTL
_SET, _CAS, _EXPIRE, _INCRBY = int(Op.SET), int(Op.CAS), int(Op.EXPIRE), int(Op.INCRBY)
_READ_OPS = frozenset(int(op) for op in READ_OPS)


class MalformedCommand(InvalidArgument):
    """Log entry data that does not decode as a command. Applying it changes nothing."""


# -- the commands ---------------------------------------------------------------------------
class KvCommand(NamedTuple):
    """One client request. Field order is the wire order (a NamedTuple packs as an array).

    ``op`` is an ``Op`` value (a plain int after decoding). Fields an op does not use are
    ignored. ``expected`` is None for "CAS: expect the key to be absent". ``client_id`` 0
    means no session (at-least-once); otherwise ``seq`` >= 1 increases per client.
    """

    op: int
    key: bytes
    value: bytes = b""
    expected: bytes | None = None
    ttl_ms: int = 0
    delta: int = 0
    flags: int = 0
    client_id: int = 0
    seq: int = 0
    now_ms: int = 0


class ExpireSweep(NamedTuple):
    """The leader saw ``keys`` expired at ``now_ms``: delete those still expired when applied."""

    now_ms: int
    keys: tuple[bytes, ...]


class Noop(NamedTuple):
    """Does nothing but advance the state machine's clock to ``now_ms`` (0: leave it)."""

    now_ms: int = 0


Command: TypeAlias = KvCommand | ExpireSweep | Noop | MoveCommand
"""Slot-migration commands (``slot_moves``) share the log and the tag space (110..117)."""


def encode_command(cmd: Command) -> bytes:
    """The log entry data of ``cmd``.

    Does not validate a ``KvCommand`` (call ``validate_request`` first); refuses an
    ``ExpireSweep`` of more than ``MAX_SWEEP_KEYS`` keys with ``InvalidArgument``.
    """
    if type(cmd) is KvCommand:
        return pack(cmd)
    if type(cmd) is ExpireSweep:
        if len(cmd.keys) > MAX_SWEEP_KEYS:
            raise InvalidArgument(
                f"an ExpireSweep names {len(cmd.keys)} keys; the limit is {MAX_SWEEP_KEYS}"
            )
        return pack((EXPIRE_SWEEP_TAG, cmd.now_ms, tuple(cmd.keys)))
    if type(cmd) is Noop:
        return pack((NOOP_TAG, cmd.now_ms))
    if type(cmd).__module__ == "kvcluster.kv.slot_moves":
        return encode_move(cmd)  # type: ignore[arg-type]
    raise InvalidArgument(f"not a kv command: {type(cmd).__name__}")


def decode_command(data: bytes) -> Command:
    """The command in log entry ``data``; raises ``MalformedCommand`` unless well formed."""
    if not data:
        return Noop(0)
    try:
        items = unpack(data)
    except UnpackError as e:
        raise MalformedCommand(f"malformed command: not msgpack ({e})") from None
    if type(items) is not tuple or not items:
        raise MalformedCommand(f"malformed command: expected a non-empty array, got {items!r:.60}")
    n = len(items)
    if n == 10:
        op, key, value, expected, ttl_ms, delta, flags, client_id, seq, now_ms = items
        if (
            type(op) is int
            and op in _CLIENT_OPS
            and type(key) is bytes
            and type(value) is bytes
            and (expected is None or type(expected) is bytes)
            and type(ttl_ms) is int
            and ttl_ms <= INT64_MAX
            and type(delta) is int
            and delta <= INT64_MAX
            and type(flags) is int
            and 0 <= flags <= 0xFFFFFFFF
            and type(client_id) is int
            and client_id >= 0
            and type(seq) is int
            and seq >= 0
            and type(now_ms) is int
            and 0 <= now_ms <= MAX_NOW_MS
        ):
            return KvCommand._make(items)
        raise MalformedCommand(f"malformed command: bad client command fields {items!r:.120}")
    tag = items[0]
    if type(tag) is int and tag in MOVE_TAGS and n > 2 and _is_now(items[1]):
        try:
            return decode_move(items)
        except (ValueError, TypeError) as e:
            raise MalformedCommand(f"malformed migration command: {e}") from None
    if tag == NOOP_TAG and type(tag) is int and n == 2 and _is_now(items[1]):
        return Noop(items[1])
    if tag == EXPIRE_SWEEP_TAG and type(tag) is int and n == 3 and _is_now(items[1]):
        keys = items[2]
        if type(keys) is tuple and all(type(k) is bytes for k in keys):
            return ExpireSweep(items[1], keys)
    raise MalformedCommand(f"malformed command: unknown shape {items!r:.120}")


def _is_now(x: object) -> bool:
    return type(x) is int and 0 <= x <= MAX_NOW_MS


# -- checking -------------------------------------------------------------------------------
def command_error(cmd: KvCommand) -> str | None:
    """Why ``cmd`` is meaningless (a message for the client), or None if it is fine.

    Part of the replicated semantics: the state machine answers INVALID with this message,
    so changing these rules changes what old log entries do on replay.
    """
    op = cmd.op
    if op not in _CLIENT_OPS:
        return f"unknown op {op!r}"
    if len(cmd.key) > MAX_KEY_BYTES:
        return f"key is {len(cmd.key)} bytes; the limit is {MAX_KEY_BYTES}"
    if cmd.client_id and cmd.seq < 1 and op not in _READ_OPS:
        return "seq must be >= 1 when client_id is set"
    if op in (_SET, _CAS):
        flags = cmd.flags
        ttl_ms = cmd.ttl_ms
        if op == _SET and flags & ~_SET_FLAGS:
            return f"unknown SET flags {flags:#x} (allowed: NX=1, XX=2, KEEPTTL=4)"
        if op == _CAS and flags & ~_CAS_FLAGS:
            return f"flags {flags:#x} not allowed with CAS (allowed: KEEPTTL=4)"
        if flags & _NX and flags & _XX:
            return "NX and XX are mutually exclusive"
        if ttl_ms < 0 or ttl_ms > MAX_TTL_MS:
            return f"ttl_ms must be in 0..{MAX_TTL_MS} (0: no expiry), got {ttl_ms}"
        if ttl_ms and flags & _KEEPTTL:
            return "KEEPTTL and ttl_ms are mutually exclusive"
    elif op == _EXPIRE:
        if not 0 < cmd.ttl_ms <= MAX_TTL_MS:
            return f"EXPIRE needs ttl_ms in 1..{MAX_TTL_MS}, got {cmd.ttl_ms}"
    elif op == _INCRBY and not INT64_MIN <= cmd.delta <= INT64_MAX:
        return "delta must fit in a signed 64-bit integer"
    return None


def validate_request(cmd: KvCommand) -> None:
    """Check a request at the edge, before it is proposed or read; raise ``InvalidArgument``.

    Checks types (a request built from untrusted input), the size limits and everything
    ``command_error`` checks. ``now_ms`` is not checked: the runtime sets it afterwards.
    """
    op, key, value, expected, ttl_ms, delta, flags, client_id, seq, _ = cmd
    if not (type(op) is int or _is_int(op)) or op not in _CLIENT_OPS:
        raise InvalidArgument(f"unknown op {op!r}")
    if type(key) is not bytes:
        _fail(op, f"key must be bytes, not {type(key).__name__}")
    if type(value) is not bytes:
        _fail(op, f"value must be bytes, not {type(value).__name__}")
    if expected is not None and type(expected) is not bytes:
        _fail(op, f"expected must be bytes or None, not {type(expected).__name__}")
    if not (type(ttl_ms) is int or _is_int(ttl_ms)) or not INT64_MIN <= ttl_ms <= INT64_MAX:
        _fail(op, f"ttl_ms must be a signed 64-bit integer, got {ttl_ms!r}")
    if not (type(delta) is int or _is_int(delta)):
        _fail(op, f"delta must be an int, not {type(delta).__name__}")
    if not (type(flags) is int or _is_int(flags)) or not 0 <= flags <= 0xFFFFFFFF:
        _fail(op, f"flags must be an unsigned 32-bit integer, got {flags!r}")
    if not (type(client_id) is int or _is_int(client_id)) or not 0 <= client_id <= UINT64_MAX:
        _fail(op, f"client_id must be an unsigned 64-bit integer, got {client_id!r}")
    if not (type(seq) is int or _is_int(seq)) or not 0 <= seq <= UINT64_MAX:
        _fail(op, f"seq must be an unsigned 64-bit integer, got {seq!r}")
    if len(value) > MAX_VALUE_BYTES:
        _fail(op, f"value is {len(value)} bytes; the limit is {MAX_VALUE_BYTES}")
    if expected is not None and len(expected) > MAX_VALUE_BYTES:
        _fail(op, f"expected is {len(expected)} bytes; the limit is {MAX_VALUE_BYTES}")
    error = command_error(cmd)
    if error is not None:
        _fail(op, error)


def _fail(op: int, message: str) -> NoReturn:
    raise InvalidArgument(f"{Op(op).name}: {message}")


def _is_int(x: object) -> bool:
    """An int or an IntEnum/IntFlag member, but not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)
