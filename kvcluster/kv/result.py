"""What the kv state machine answers: a status and, per command, a value or an integer.

Contract:
- ``Status`` numbers are those of ``kvcluster.v1.Status`` in kv.proto, so the runtime maps a
  ``KvResult`` to a protobuf ``Response`` field by field. Only the statuses the state machine
  itself produces are listed: MOVED (``int_value`` = the group the slot went to) and
  TRYAGAIN come from a slot migration's records (``slot_moves``); the other routing
  statuses (NOT_LEADER, CLUSTERDOWN, ...) belong to the runtime.
- ``KvResult`` is immutable and compared by value: a retried write gets a result equal to the
  one its first attempt got (it is remembered in the session table).
- Pure: stdlib only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["KvResult", "Status"]


class Status(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1  # GET of an absent key
    NOT_APPLIED = 2  # SET NX/XX or CAS condition false: nothing changed
    MOVED = 4  # the slot went to group int_value (a finished migration): nothing changed
    ASK = 5  # (the node's, never the state machine's) the slot is frozen here and its move
    #          to group int_value is decided: send this one request there, with ASKING
    TRYAGAIN = 6  # the slot is frozen or still arriving (a migration): nothing changed
    INVALID = 8  # meaningless request or malformed command: nothing changed; error says why
    WRONGTYPE = 9  # INCRBY on a value that is not a base-10 int64


@dataclass(frozen=True, slots=True)
class KvResult:
    """One answer. Which fields carry meaning depends on the command (see state_machine)."""

    status: Status
    value: bytes = b""
    int_value: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == Status.OK
