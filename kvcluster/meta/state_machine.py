"""The meta group's state machine: every change of the cluster layout goes through its log.

Contract:
- Pure and deterministic, like the kv state machine: the state lives in the view (one
  record), commands arrive as log entry bytes, answers are ``MetaResult`` values.
- ``Bootstrap`` installs the first layout and is idempotent: the same layout again is a
  no-op answered OK; a different one is refused (the cluster already exists).
- Every accepted change bumps the epoch by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from kvcluster.errors import InvalidArgument
from kvcluster.meta.state import MetaState

__all__ = ["Bootstrap", "MetaResult", "MetaStateMachine", "decode_meta_command"]

STATE_KEY = b"meta-state"


class MetaReadView(Protocol):
    """Where the meta state lives: one record of the meta group's storage view (the
    storage layer's group view satisfies it)."""

    def get_meta(self, name: bytes) -> bytes | None: ...


class MetaView(MetaReadView, Protocol):
    def put_meta(self, name: bytes, value: bytes) -> None: ...


@dataclass(frozen=True)
class Bootstrap:
    state: MetaState

    def encode(self) -> bytes:
        return json.dumps({"op": "bootstrap", "state": self.state.to_dict()}).encode()


MetaCommand = Bootstrap


def decode_meta_command(data: bytes) -> MetaCommand:
    try:
        d = json.loads(data)
        if d.get("op") == "bootstrap":
            return Bootstrap(MetaState.from_dict(d["state"]))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise InvalidArgument(f"malformed meta command: {e}") from e
    raise InvalidArgument(f"unknown meta command {d.get('op')!r}")


@dataclass(frozen=True)
class MetaResult:
    ok: bool
    epoch: int
    error: str = ""


class MetaStateMachine:
    def load(self, view: MetaReadView) -> MetaState:
        raw = view.get_meta(STATE_KEY)
        return MetaState() if raw is None else MetaState.decode(raw)

    def apply(self, view: MetaView, index: int, data: bytes) -> MetaResult:
        current = self.load(view)
        try:
            cmd = decode_meta_command(data)
        except InvalidArgument as e:
            return MetaResult(False, current.epoch, f"entry {index}: {e}")
        if isinstance(cmd, Bootstrap):
            new = cmd.state
            if current.bootstrapped:
                same = (
                    current.cluster_id == new.cluster_id
                    and current.groups == new.groups
                    and current.owners == new.owners
                )
                if same:
                    return MetaResult(True, current.epoch)
                return MetaResult(
                    False, current.epoch, "the cluster already exists with a different layout"
                )
            view.put_meta(STATE_KEY, new.encode())
            return MetaResult(True, new.epoch)
        return MetaResult(False, current.epoch, "unsupported command")  # pragma: no cover
