"""Model-based test: the state machine against a plain dict model of Redis semantics.

The model is written from the Redis documentation, independently of the implementation: a
dict ``key -> (value, expire_at)``, a clock that is the largest ``now_ms`` seen, and a session
dict ``client -> (seq, answer)``. Hypothesis drives both with the same commands (leaders'
clocks may lag: ``now_ms`` can go backwards) and compares every answer and, after every
step, every key's value and TTL.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from kvcluster.kv import (
    ExpireSweep,
    KvCommand,
    KvResult,
    KvStateMachine,
    MemoryKvView,
    Noop,
    Op,
    SetFlag,
    Status,
    encode_command,
)
from kvcluster.kv.sessions import check_sessions

try:
    from kvcluster.sharding import key_slot
except ImportError:  # pragma: no cover

    def key_slot(key: bytes | str) -> int:
        return 0


KEYS = [b"a", b"b", b"{a}c", b""]
VALUES = [b"", b"x", b"0", b"12", b"-3", b"5", b"007", b"9223372036854775807", b"1.5"]
INT64 = (-(2**63), 2**63 - 1)

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
skews = st.integers(-150, 300)  # the proposing leader's clock relative to the model clock
clients = st.sampled_from([0, 1, 2])
ttls = st.sampled_from([0, 0, 1, 100, 1000, 5000])

OK = KvResult(Status.OK)
NOT_APPLIED = KvResult(Status.NOT_APPLIED)


def Int(n: int) -> KvResult:
    return KvResult(Status.OK, int_value=n)


def redis_int(raw: bytes) -> int | None:
    """Redis string2ll, from its documentation: optional '-', digits, no leading zeros."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    digits = text[1:] if text.startswith("-") else text
    if text == "0":
        return 0
    if not digits or not digits.isdigit() or digits[0] == "0":
        return None
    n = int(text)
    return n if INT64[0] <= n <= INT64[1] else None


class KvModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sm = KvStateMachine(key_slot)
        self.view = MemoryKvView()
        self.index = 0
        self.data: dict[bytes, tuple[bytes, int]] = {}
        self.clock = 0
        self.sessions: dict[int, tuple[int, KvResult]] = {}
        self.last_write: KvCommand | None = None

    @initialize(start=st.integers(0, 10**12))
    def start_clock(self, start: int) -> None:
        self.index += 1
        self.sm.apply(self.view, self.index, encode_command(Noop(start)))
        self.clock = start

    # -- the model ----------------------------------------------------------------------------
    def live(self, key: bytes) -> tuple[bytes, int] | None:
        item = self.data.get(key)
        if item is not None and item[1] and item[1] <= self.clock:
            return None  # expired: absent (the stale entry is simply overwritten later)
        return item

    def apply(self, cmd: KvCommand | ExpireSweep | Noop) -> KvResult:
        self.index += 1
        self.clock = max(self.clock, cmd.now_ms)
        return self.sm.apply(self.view, self.index, encode_command(cmd))

    def write(self, client: int, skew: int, op: Op, key: bytes, **fields: Any) -> None:
        """Apply a write on both sides and compare the answers."""
        seq = self.sessions[client][0] + 1 if client in self.sessions else 1
        now = max(0, self.clock + skew)
        cmd = KvCommand(op, key, now_ms=now, client_id=client, seq=seq if client else 0)
        cmd = cmd._replace(**fields)
        got = self.apply(cmd)
        want = getattr(self, f"model_{op.name.lower()}")(cmd)
        assert got == want, (cmd, got, want)
        if client:
            self.sessions[client] = (seq, want)
            self.last_write = cmd

    def model_set(self, cmd: KvCommand) -> KvResult:
        cur = self.live(cmd.key)
        if cmd.flags & SetFlag.NX and cur is not None:
            return NOT_APPLIED
        if cmd.flags & SetFlag.XX and cur is None:
            return NOT_APPLIED
        keep = cur[1] if cur is not None and cmd.flags & SetFlag.KEEPTTL else 0
        self.data[cmd.key] = (cmd.value, self.clock + cmd.ttl_ms if cmd.ttl_ms else keep)
        return OK

    def model_delete(self, cmd: KvCommand) -> KvResult:
        if self.live(cmd.key) is None:
            return Int(0)
        del self.data[cmd.key]
        return Int(1)

    def model_incrby(self, cmd: KvCommand) -> KvResult:
        cur = self.live(cmd.key)
        n = 0 if cur is None else redis_int(cur[0])
        if n is None:
            return KvResult(Status.WRONGTYPE, error="value is not an integer or out of range")
        new = n + cmd.delta
        if not INT64[0] <= new <= INT64[1]:
            return KvResult(Status.INVALID, error="increment or decrement would overflow")
        self.data[cmd.key] = (str(new).encode(), 0 if cur is None else cur[1])
        return Int(new)

    def model_expire(self, cmd: KvCommand) -> KvResult:
        cur = self.live(cmd.key)
        if cur is None:
            return Int(0)
        self.data[cmd.key] = (cur[0], self.clock + cmd.ttl_ms)
        return Int(1)

    def model_persist(self, cmd: KvCommand) -> KvResult:
        cur = self.live(cmd.key)
        if cur is None or cur[1] == 0:
            return Int(0)
        self.data[cmd.key] = (cur[0], 0)
        return Int(1)

    def model_cas(self, cmd: KvCommand) -> KvResult:
        cur = self.live(cmd.key)
        current = None if cur is None else cur[0]
        if current != cmd.expected:
            return KvResult(Status.NOT_APPLIED, current or b"", int(current is not None))
        keep = cur[1] if cur is not None and cmd.flags & SetFlag.KEEPTTL else 0
        self.data[cmd.key] = (cmd.value, self.clock + cmd.ttl_ms if cmd.ttl_ms else keep)
        return OK

    def model_get(self, key: bytes) -> KvResult:
        cur = self.live(key)
        return KvResult(Status.NOT_FOUND) if cur is None else KvResult(Status.OK, cur[0])

    def model_ttl(self, key: bytes) -> KvResult:
        cur = self.live(key)
        if cur is None:
            return Int(-2)
        return Int(-1) if cur[1] == 0 else Int(cur[1] - self.clock)

    # -- rules --------------------------------------------------------------------------------
    @rule(client=clients, skew=skews, key=keys, value=values, ttl=ttls, flags=st.sampled_from(
        [0, SetFlag.NX, SetFlag.XX, SetFlag.KEEPTTL, SetFlag.NX | SetFlag.KEEPTTL,
         SetFlag.XX | SetFlag.KEEPTTL]))  # fmt: skip
    def set(self, client: int, skew: int, key: bytes, value: bytes, ttl: int, flags: int) -> None:
        if flags & SetFlag.KEEPTTL:
            ttl = 0
        self.write(client, skew, Op.SET, key, value=value, ttl_ms=ttl, flags=int(flags))

    @rule(client=clients, skew=skews, key=keys)
    def delete(self, client: int, skew: int, key: bytes) -> None:
        self.write(client, skew, Op.DELETE, key)

    @rule(client=clients, skew=skews, key=keys, delta=st.sampled_from([1, -1, 5, *INT64]))
    def incrby(self, client: int, skew: int, key: bytes, delta: int) -> None:
        self.write(client, skew, Op.INCRBY, key, delta=delta)

    @rule(client=clients, skew=skews, key=keys, ttl=st.sampled_from([1, 100, 1000]))
    def expire(self, client: int, skew: int, key: bytes, ttl: int) -> None:
        self.write(client, skew, Op.EXPIRE, key, ttl_ms=ttl)

    @rule(client=clients, skew=skews, key=keys)
    def persist(self, client: int, skew: int, key: bytes) -> None:
        self.write(client, skew, Op.PERSIST, key)

    @rule(client=clients, skew=skews, key=keys, value=values, expected=st.none() | values,
          ttl=ttls, keep=st.booleans())  # fmt: skip
    def cas(
        self, client: int, skew: int, key: bytes, value: bytes, expected: bytes | None,
        ttl: int, keep: bool,
    ) -> None:  # fmt: skip
        flags = int(SetFlag.KEEPTTL) if keep and not ttl else 0
        self.write(client, skew, Op.CAS, key, value=value, expected=expected, ttl_ms=ttl,
                   flags=flags)  # fmt: skip

    @rule(skew=skews, key=keys, op=st.sampled_from([Op.GET, Op.EXISTS, Op.TTL]))
    def logged_read(self, skew: int, key: bytes, op: Op) -> None:
        got = self.apply(KvCommand(op, key, now_ms=max(0, self.clock + skew)))
        if op == Op.GET:
            assert got == self.model_get(key)
        elif op == Op.EXISTS:
            assert got == Int(int(self.live(key) is not None))
        else:
            assert got == self.model_ttl(key)

    @rule(skew=skews)
    def noop(self, skew: int) -> None:
        self.apply(Noop(max(0, self.clock + skew)))

    @rule(skew=skews, swept=st.lists(keys, max_size=4))
    def expire_sweep(self, skew: int, swept: list[bytes]) -> None:
        result = self.apply(ExpireSweep(max(0, self.clock + skew), tuple(swept)))
        assert result.status == Status.OK
        assert 0 <= result.int_value <= len(set(swept))
        for key in swept:
            if self.live(key) is None:  # absent or expired: it must be gone for good
                assert self.view.get(key_slot(key), key) is None

    @precondition(lambda self: self.last_write is not None)
    @rule(skew=skews)
    def retry_last_write(self, skew: int) -> None:
        cmd = self.last_write
        assert cmd is not None
        seq, answer = self.sessions[cmd.client_id]
        if cmd.seq != seq:
            return
        assert self.apply(cmd._replace(now_ms=max(0, self.clock + skew))) == answer

    @precondition(lambda self: any(seq > 1 for seq, _ in self.sessions.values()))
    @rule(skew=skews, data=st.data())
    def stale_write(self, skew: int, data: st.DataObject) -> None:
        client = data.draw(st.sampled_from([c for c, (s, _) in self.sessions.items() if s > 1]))
        seq = data.draw(st.integers(1, self.sessions[client][0] - 1))
        cmd = KvCommand(Op.SET, b"a", b"stale", client_id=client, seq=seq)
        result = self.apply(cmd._replace(now_ms=max(0, self.clock + skew)))
        assert result.status == Status.INVALID
        assert "stale sequence" in result.error

    @rule(skew=skews, key=keys)
    def read(self, skew: int, key: bytes) -> None:
        # The caller's clock may be behind the state machine's: the later of the two counts.
        now = max(0, self.clock + skew)
        saved = self.clock
        self.clock = max(self.clock, now)
        assert self.sm.read(self.view, KvCommand(Op.GET, key), now) == self.model_get(key)
        assert self.sm.read(self.view, KvCommand(Op.TTL, key), now) == self.model_ttl(key)
        self.clock = saved

    # -- invariants ---------------------------------------------------------------------------
    @invariant()
    def every_key_agrees(self) -> None:
        assert self.sm.clock(self.view) == self.clock
        for key in KEYS:
            assert self.sm.read(self.view, KvCommand(Op.GET, key), 0) == self.model_get(key)
            assert self.sm.read(self.view, KvCommand(Op.TTL, key), 0) == self.model_ttl(key)

    @invariant()
    def sessions_agree(self) -> None:
        check_sessions(self.view, self.view.meta)
        stored = {s.client_id: (s.seq, s.result) for s in self.sm.sessions(self.view)}
        assert stored == self.sessions


KvModel.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_kv_matches_the_dict_model = KvModel.TestCase
