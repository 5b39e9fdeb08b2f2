"""A rolling restart under load loses nothing and fails nothing (scripts/rolling_restart.py).

A local 3-node cluster (3 shard groups + the meta group, loopback only). Two client threads
write unique keys continuously, each reading its write back at once, while the script
restarts every node in turn: drain its leaderships, SIGTERM, start, wait until healthy and
caught up. Afterwards:

- zero failed operations: no exception reached the caller (the client retries NOT_LEADER and
  unreachable nodes within its default budget; draining first means it sees redirects, not a
  dead leader), and every read-back returned the value just written;
- the clients kept working during each node's restart;
- every acknowledged write is readable from a fresh client, and all replicas hold the same
  data;
- every node exited cleanly (SIGTERM, exit code 0) and led nothing when it was stopped.

Nothing sleeps to synchronise: the script and the test wait for conditions with deadlines.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from kvcluster.client import Client
from kvcluster.local import LocalCluster

from .conftest import stale_get_all

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rolling_restart", ROOT / "scripts" / "rolling_restart.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


class Traffic(threading.Thread):
    """Writes ``rr:<name>:<i>`` = ``v<i>`` and reads it back, until stopped. Any exception
    from the client is a failure (with the time and the operation); so is a read-back that
    does not return the value just written."""

    def __init__(self, seeds: str, name: str) -> None:
        super().__init__(daemon=True, name=f"traffic-{name}")
        self.client = Client(seeds)  # the default timeout and retry budget
        self.label = name
        self.stop = threading.Event()
        self.acked: dict[bytes, bytes] = {}
        self.reads = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self.progress = threading.Condition()

    def _timed(self, what: str, op: object) -> None:
        began = time.monotonic()
        try:
            op()  # type: ignore[operator]
        except Exception as e:
            self.failures.append(f"{time.strftime('%X')} {what}: {type(e).__name__}: {e}")
        finally:
            self.slowest = max(self.slowest, time.monotonic() - began)

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                key, value = f"rr:{self.label}:{i}".encode(), f"v{i}".encode()

                def write(key: bytes = key, value: bytes = value) -> None:
                    assert self.client.set(key, value) is True
                    self.acked[key] = value

                def read(key: bytes = key, value: bytes = value) -> None:
                    got = self.client.get(key)
                    if got != value:
                        raise AssertionError(f"read {key!r} -> {got!r}, wrote {value!r}")
                    self.reads += 1

                self._timed(f"set {key!r}", write)
                if key in self.acked:
                    self._timed(f"get {key!r}", read)
                with self.progress:
                    self.progress.notify_all()
        finally:
            self.client.close()

    @property
    def ops(self) -> int:
        return len(self.acked) + self.reads

    def wait_ops(self, n: int, timeout: float = 60.0) -> None:
        """Wait until `n` more operations succeeded."""
        target = self.ops + n
        with self.progress:
            ok = self.progress.wait_for(lambda: self.ops >= target or self.failures, timeout)
        assert ok and not self.failures, f"{self.label}: no progress: {self.failures[:5]}"


def test_rolling_restart_under_load_fails_no_operation(cluster_factory: object) -> None:
    script = _script()
    cluster: LocalCluster = cluster_factory(3)  # type: ignore[operator]
    cluster.start()
    seeds = ",".join(cluster.addresses)
    traffic = [Traffic(seeds, name) for name in ("a", "b")]
    for t in traffic:
        t.start()
    for t in traffic:
        t.wait_ops(50)

    ops_at: dict[str, int] = {}

    def log(line: str) -> None:
        print(line)
        if "drained" in line or "caught up" in line:  # progress between the steps
            ops_at[line.split(":")[0] + (" up" if "caught up" in line else " drained")] = sum(
                t.ops for t in traffic
            )

    began = time.monotonic()
    reports = script.rolling_restart(script.LocalTarget(cluster), timeout=60.0, log=log)
    took = time.monotonic() - began
    for t in traffic:
        t.wait_ops(50)  # still working on the restarted cluster
        t.stop.set()
    for t in traffic:
        t.join(timeout=60)
        assert not t.is_alive()

    failures = [f for t in traffic for f in t.failures]
    writes = sum(len(t.acked) for t in traffic)
    reads = sum(t.reads for t in traffic)
    slowest = max(t.slowest for t in traffic)
    print(
        f"[rolling restart] {took:.1f}s for 3 nodes; {writes} writes and {reads} read-backs "
        f"acknowledged, {len(failures)} failed; slowest operation {slowest:.2f}s"
    )
    for r in reports:
        print(f"  {r}")
    assert not failures, f"{len(failures)} operations failed:\n" + "\n".join(failures[:20])

    assert [r.node for r in reports] == [1, 2, 3]
    assert all(r.exit_code == 0 for r in reports), [r.exit_code for r in reports]
    assert sum(len(r.led) for r in reports) >= 1, "no leadership was moved at all"
    for r in reports:
        assert all(to != r.node for to in r.moved.values()), r
    # The clients kept going while each node was away (drained .. caught up).
    for n in (1, 2, 3):
        assert ops_at[f"node {n} up"] > ops_at[f"node {n} drained"], ops_at

    acked = {k: v for t in traffic for k, v in t.acked.items()}
    keys = list(acked)
    with Client(seeds) as kv:
        assert kv.mget(keys) == [acked[k] for k in keys]

    def replicas_agree() -> bool:
        return all(stale_get_all(addr, keys) == list(acked.values()) for addr in cluster.addresses)

    cluster.wait_until("every replica to hold every acknowledged write", replicas_agree, 60)
