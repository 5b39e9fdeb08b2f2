"""kvcluster.kv: the key-value state machine of a shard group, pure and deterministic.

- ``commands``: the Raft-log form of a client write (``KvCommand``), ``ExpireSweep`` and
  ``Noop``; ``encode_command``/``decode_command``; the limits and ``validate_request``.
- ``state_machine``: ``KvStateMachine.apply`` (replicated writes, exactly-once sessions,
  deterministic TTL) and ``read`` (GET/EXISTS/TTL answered without writing).
- ``view``: the ``KvView`` storage protocol; ``memory``: ``MemoryKvView`` for tests.
- ``values``: the stored form of a value (bytes + absolute expiry); ``sessions``: the clock
  and the session table in meta records; ``result``: ``Status`` and ``KvResult``.

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
from kvcluster.kv.values import CorruptValue, decode_value, encode_value, is_expired
from kvcluster.kv.view import KvReadView, KvView

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
    "CorruptValue",
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
