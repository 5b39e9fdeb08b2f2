"""kvcluster.kv: the key-value state machine of a shard group, pure and deterministic.

- ``commands``: the Raft-log form of a client write (``KvCommand``), ``ExpireSweep`` and
  ``Noop``; ``encode_command``/``decode_command``; the limits and ``validate_request``.
- ``state_machine``: ``KvStateMachine.apply`` (replicated writes, exactly-once sessions,
  deterministic TTL) and ``read`` (GET/EXISTS/TTL answered without writing).
- ``view``: the ``KvView`` storage protocol; ``memory``: ``MemoryKvView`` for tests.
- ``values``: the stored form of a value (bytes + absolute expiry); ``sessions``: the clock
  and the session table in meta records; ``result``: ``Status`` and ``KvResult``.

Choices a user of the cluster sees (details in each module's docstring):

- Limits: key <= 500 bytes (LMDB's 511-byte key limit minus the storage prefix), value and
  CAS ``expected`` <= 1 MiB, ttl_ms <= 100 years; checked at the edge by
  ``validate_request`` (InvalidArgument).
- Time: the state machine's clock is the largest ``now_ms`` the leaders stamped on applied
  entries; expiry is decided by it alone, identically on every replica.
- Sessions: exactly-once writes per (client_id, seq); only the last answer per client is
  kept, so one write in flight per client_id. Sessions expire after 1 hour idle and at
  most 10,000 are kept per group (least recently active evicted); a retry after either is
  applied again.
- CAS (compare-and-set on the whole value; ``expected`` None = "absent") is an extension
  Redis lacks.

Nothing here does I/O, reads a clock, or uses the module-level ``random``;
``tests/kv/test_purity.py`` enforces it.
"""

from kvcluster.kv.commands import (
    MAX_KEY_BYTES,
    MAX_NOW_MS,
    MAX_SWEEP_KEYS,
    MAX_TTL_MS,
    MAX_VALUE_BYTES,
    READ_OPS,
    WRITE_OPS,
    Command,
    ExpireSweep,
    KvCommand,
    MalformedCommand,
    Noop,
    Op,
    SetFlag,
    command_error,
    decode_command,
    encode_command,
    validate_request,
)
from kvcluster.kv.memory import MemoryKvView
from kvcluster.kv.result import KvResult, Status
from kvcluster.kv.sessions import SessionInfo
from kvcluster.kv.state_machine import (
    MAX_SESSIONS,
    SESSION_SWEEP_PER_APPLY,
    SESSION_TTL_MS,
    KvStateMachine,
)
from kvcluster.kv.values import decode_value, encode_value, is_expired
from kvcluster.kv.view import CorruptKvState, KvReadView, KvView

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_NOW_MS",
    "MAX_SESSIONS",
    "MAX_SWEEP_KEYS",
    "MAX_TTL_MS",
    "MAX_VALUE_BYTES",
    "READ_OPS",
    "SESSION_SWEEP_PER_APPLY",
    "SESSION_TTL_MS",
    "WRITE_OPS",
    "Command",
    "CorruptKvState",
    "ExpireSweep",
    "KvCommand",
    "KvReadView",
    "KvResult",
    "KvStateMachine",
    "KvView",
    "MalformedCommand",
    "MemoryKvView",
    "Noop",
    "Op",
    "SessionInfo",
    "SetFlag",
    "Status",
    "command_error",
    "decode_command",
    "decode_value",
    "encode_command",
    "encode_value",
    "is_expired",
    "validate_request",
]
