"""A run: start a cluster, drive a workload through faults, record, heal, check, report.

What lives here: `RunConfig`, `run` (the whole run; returns a `RunOutcome`), the `Backend`
protocol (a `nemesis.ClusterControl` that can also come up and go down) with `make_backend`,
`NodeProbes` (health, leaders and slot map, asked the same way by every backend), the local
backend (`LocalBackend`: node processes in network namespaces; the docker compose one is
`compose.ComposeBackend`), the history `Recorder`, and `failovers` (write unavailability
after each kill).

A run, in order:

1. Check the environment (the backend's ``preflight``: `netns.preflight` or
   `compose.preflight`), remove what dead runs left (``cleanup_stale``).
2. Create the test network and start the nodes (local: ``python -m kvcluster.server`` inside
   each namespace, started through ``ip netns exec``, killed by PID; compose: a compose
   project of its own, see `compose`); wait until every node is healthy; pick hot keys on
   every shard group from the cluster's slot map.
3. ``concurrency`` client threads in the root namespace run the workload (one
   ``kvcluster.Client`` each, short timeout and retry budget so operations end during
   faults) while the nemesis carries out the schedule drawn from the seed (main thread;
   reshards on a thread of their own, through `resharder.ClusterResharder`, which reaches
   the nodes as the clients do).
4. At ``time`` seconds: stop the reshards (before their next freeze), heal everything, keep
   the workload going through a quiet period (and until the cluster is healthy again, with
   a deadline) while the migrations the heal stopped are resumed, stop the clients, check
   that no migration is left (reshard runs), read every key once more (the final reads,
   retried until they succeed or a deadline passes).
5. Kill the nodes and remove the network, or ``compose down -v`` (also on error and Ctrl-C:
   ``finally``), then check the history (`check_history`, or `check_counter`), write the
   report and the summary.

History recording: every event is written (and timed with ``time.monotonic_ns()``) under one
lock, so line order is real-time order and times never decrease. A write whose outcome the
client cannot know is ``info`` and its process is retired (the thread goes on under a new id);
a read that fails is ``fail``.

Run directory: ``history.jsonl``, ``nemesis.jsonl``, ``nodes/nI.log``, ``run.json`` (the
config and the schedule), ``verdict.json``, ``report.html``, ``summary.txt``.

What must not: checking logic (the checker, `workloads.check_counter`), fault policy
(`nemesis`), network plumbing (`netns`), Docker plumbing (`compose`), or anything that
outlives the run: every process, container, volume and network object it creates is gone
when `run` returns or raises.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any, Protocol

from jepsen_lite import netns
from jepsen_lite.checker import Verdict, check_history
from jepsen_lite.nemesis import RESHARD, ClusterControl, Nemesis, periods, plan
from jepsen_lite.report import render_html
from jepsen_lite.runreport import Span, embed, latency_svg, run_section, standalone_page
from jepsen_lite.workloads import (
    CounterCheck,
    DidNotHappen,
    Op,
    Workload,
    check_counter,
    is_reader,
    make_workload,
    pick_keys,
)

__all__ = [
    "BACKENDS",
    "UNSAFE_STALE_READS_ENV",
    "Backend",
    "Failover",
    "LocalBackend",
    "NodeProbes",
    "Recorder",
    "RunConfig",
    "RunError",
    "RunOutcome",
    "failovers",
    "make_backend",
    "reshard_stats",
    "run",
    "validate",
]

BACKENDS = ("local", "compose")
#: The node's test-only switch: serve linearizable reads from local state without ReadIndex.
UNSAFE_STALE_READS_ENV = "KVCLUSTER_UNSAFE_STALE_READS"
GRPC_PORT, HTTP_PORT = 7000, 8000
META_GROUP = 0


class RunError(RuntimeError):
    """The run could not be carried out (environment, cluster start-up); says why."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    workload: str = "register"
    nemesis: tuple[str, ...] = ("partition", "kill", "pause")
    time: float = 60.0  # seconds of workload under the nemesis
    nodes: int = 3
    concurrency: int = 5
    seed: int = 0
    out: Path | None = None  # default: jepsen-runs/<stamp>-<workload>-seed<seed>
    backend: str = "local"
    groups: int = 3  # shard groups (plus the meta group)
    tick_ms: int = 20
    quiet: float = 5.0  # seconds of fault-free workload after the heal
    recover_timeout: float = 60.0  # longest wait for the cluster to be healthy after the heal
    op_timeout: float = 1.0  # the client's per-attempt timeout
    attempts: int = 4  # the client's retry budget
    think_ms: float = 10.0  # mean pause between a client's operations
    check_timeout: float = 120.0
    subnet: str | None = None  # None: the first free /24 of netns.SUBNET_POOL
    unsafe_stale_reads: bool = False  # TEST ONLY: the self-test's broken node
    snapshot_entries: int | None = None  # the nodes' --snapshot-entries (None: its default)
    keep_data: bool = False
    image: str = "kvcluster:latest"  # compose: the node image (must be present locally)
    compose_file: Path | None = None  # compose: default ./docker-compose.yml


@dataclass(frozen=True, slots=True)
class Failover:
    """Write unavailability after one kill: from the kill until every key of the groups the
    node led had a write answered that was invoked after the kill (None: not within the
    window, which ends at the next fault or at the end of the workload; reshards, which
    overlap the faults, do not end it). Keys count for the group that owned them when the run
    started: under the reshard nemesis they may have moved since."""

    t: float  # seconds since the workload started
    node: int
    groups: tuple[int, ...]
    seconds: float | None
    window: float


@dataclass
class RunOutcome:
    """What `run` found. `outcome` is ``valid`` / ``invalid`` / ``unknown``."""

    outcome: str
    run_dir: Path
    summary: dict[str, Any]
    text: str  # the one-screen summary
    verdict: Verdict | None = None
    counter: CounterCheck | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what verdict.json holds
    pids: list[int] = field(default_factory=list)  # every node process the run started


def _kv() -> SimpleNamespace:
    """kvcluster's client-side modules, imported when a run needs them.

    Typed ``Any`` on purpose: jepsen-lite is type-checked strictly on its own, and kvcluster
    (a separate package, with untyped generated gRPC code) is not part of that check."""
    return SimpleNamespace(
        Client=importlib.import_module("kvcluster").Client,
        errors=importlib.import_module("kvcluster.errors"),
        sharding=importlib.import_module("kvcluster.sharding"),
        grpc=importlib.import_module("grpc"),
        admin_pb2=importlib.import_module("kvcluster.v1.admin_pb2"),
        admin_pb2_grpc=importlib.import_module("kvcluster.v1.admin_pb2_grpc"),
    )


# -- recording -------------------------------------------------------------------------------


@dataclass(slots=True)
class _OpRecord:
    process: int
    f: str
    key: str
    write: bool
    invoke: int
    complete: int = 0
    type: str = "info"
    answered: bool = False
    error: str | None = None
    final: bool = False


class Recorder:
    """Writes history events as they happen (see the module docstring), keeps them in memory
    for the checker, and keeps one `_OpRecord` per operation for the plot and statistics."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self.events: list[dict[str, Any]] = []
        self.ops: list[_OpRecord] = []
        self._ids = itertools.count()

    def new_process(self) -> int:
        return next(self._ids)

    def _write(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")

    def invoke(self, process: int, op: Op, *, write: bool, final: bool = False) -> _OpRecord:
        with self._lock:
            now = time.monotonic_ns()
            event = {"process": process, "type": "invoke", "f": op.f, "key": op.key}
            event.update(value=op.value, time=now)
            if final:
                event["final"] = True
            self._write(event)
            record = _OpRecord(process, op.f, op.key, write, now, final=final)
            self.ops.append(record)
            return record

    def complete(
        self,
        record: _OpRecord,
        type: str,
        value: object,
        *,
        answered: bool = False,
        result: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            now = time.monotonic_ns()
            event: dict[str, Any] = {"process": record.process, "type": type, "f": record.f}
            event.update(key=record.key, value=value, time=now)
            if result is not None:
                event["result"] = result
            if error is not None:
                event["error"] = error
            self._write(event)
            record.complete, record.type, record.answered, record.error = now, type, answered, error

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _perform(
    workload: Workload, client: Any, recorder: Recorder, process: int, op: Op, final: bool = False
) -> str:
    """Invoke, execute and complete one operation; returns its completion type."""
    errors = _kv().errors
    write = workload.is_write(op)
    record = recorder.invoke(process, op, write=write, final=final)
    lost = op.value if write else None  # a write's completion repeats its value
    try:
        res = workload.execute(client, op)
    except DidNotHappen as e:
        recorder.complete(record, "fail", lost, error=str(e)[:200])
        return "fail"
    except errors.OutcomeUnknown as e:
        kind = "info" if write else "fail"
        recorder.complete(record, kind, lost, error=f"OutcomeUnknown: {e}"[:200])
        return kind
    except errors.KvClusterError as e:
        recorder.complete(record, "fail", lost, error=f"{type(e).__name__}: {e}"[:200])
        return "fail"
    except Exception as e:  # not the client's typed errors: assume the worst for writes
        kind = "info" if write else "fail"
        recorder.complete(record, kind, lost, error=f"unexpected {type(e).__name__}: {e}"[:200])
        return kind
    answered = res.answered and write
    recorder.complete(record, res.type, res.value, answered=answered, result=res.result)
    return res.type


class _Clients:
    """The workload's client threads (daemon threads; `stop` ends them after their current
    operation)."""

    def __init__(
        self,
        cfg: RunConfig,
        workload: Workload,
        recorder: Recorder,
        make_client: Callable[[], Any],
    ) -> None:
        self.cfg, self.workload, self.recorder = cfg, workload, recorder
        self._make_client = make_client
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.crashed: list[str] = []

    def start(self) -> None:
        for i in range(self.cfg.concurrency):
            t = threading.Thread(target=self._loop, args=(i,), name=f"client-{i}", daemon=True)
            self._threads.append(t)
            t.start()

    def _loop(self, index: int) -> None:
        rng = random.Random(f"{self.cfg.seed}/client/{index}")
        reader = is_reader(index)
        process = self.recorder.new_process()
        try:
            client = self._make_client()
        except Exception as e:
            self.crashed.append(f"client {index}: {e!r}")
            return
        try:
            while not self._stop.is_set():
                op = self.workload.next_op(rng, reader=reader)
                if _perform(self.workload, client, self.recorder, process, op) == "info":
                    process = self.recorder.new_process()
                think = rng.uniform(0, 2 * self.cfg.think_ms) / 1000
                if think:
                    self._stop.wait(think)
        except Exception as e:  # a bug here must not hang the run
            self.crashed.append(f"client {index}: {e!r}")
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))


# -- backends --------------------------------------------------------------------------------


class Backend(ClusterControl, Protocol):
    """What `run` needs of a backend beyond the nemesis's `ClusterControl`: `LocalBackend`
    here, `compose.ComposeBackend`. Built by `make_backend`; `up` then `down` (always, in
    ``finally``)."""

    pids: list[int]  # node processes started (the local backend); empty for containers

    @property
    def seeds(self) -> list[str]: ...

    def describe(self) -> str:
        """Where the cluster runs, for the progress lines."""
        ...

    def client_options(self) -> dict[str, Any]:
        """Extra keyword arguments for ``kvcluster.Client`` (e.g. an address map)."""
        ...

    def up(self, timeout: float = ...) -> None: ...

    def down(self) -> list[str]:
        """Remove everything the backend made; returns the problems (never raises)."""
        ...

    def leftovers(self) -> list[str]:
        """What is still there after `down` (should be nothing)."""
        ...

    def wait_healthy(self, timeout: float) -> bool: ...

    def slot_map(self) -> Any: ...

    def unsafe_nodes(self) -> list[int]: ...


class NodeProbes:
    """What both backends ask the nodes the same way: ``/health`` over HTTP, leaders, the slot
    map over gRPC, the unsafe switch in the node logs. A subclass gives `node_ids`, `http`,
    `seeds`, `answers` (may the node be asked at all) and `log_text`."""

    @property
    def node_ids(self) -> list[int]:
        raise NotImplementedError

    @property
    def seeds(self) -> list[str]:
        raise NotImplementedError

    def http(self, node: int) -> str:
        raise NotImplementedError

    def answers(self, node: int) -> bool:
        """False when the node certainly cannot answer (dead or paused by us): not asked."""
        raise NotImplementedError

    def log_text(self, node: int) -> str:
        """The node's log so far ("" if there is none)."""
        raise NotImplementedError

    def log_tail(self, node: int, lines: int = 30) -> str:
        text = self.log_text(node)
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    def health(self, node: int, timeout: float = 1.0) -> dict[str, Any] | None:
        if not self.answers(node):
            return None
        url = f"http://{self.http(node)}/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except urllib.error.HTTPError as e:  # 503: up, but some group has no leader
            with contextlib.suppress(ValueError, OSError):
                body = json.loads(e.read())
                return body
            return None
        except (OSError, ValueError):
            return None

    def leader_of(self, group: int) -> int | None:
        best: tuple[int, int] | None = None
        for i in self.node_ids:
            h = self.health(i)
            for g in (h or {}).get("groups", []):
                term = int(g.get("term", 0))
                leads = g.get("group") == group and g.get("role") == "LEADER"
                if leads and (best is None or term > best[0]):
                    best = (term, i)
        return None if best is None else best[1]

    def led_groups(self, node: int) -> list[int]:
        h = self.health(node)
        return sorted(
            int(g["group"]) for g in (h or {}).get("groups", []) if g.get("role") == "LEADER"
        )

    def healthy(self) -> bool:
        for i in self.node_ids:
            h = self.health(i)
            if h is None or not h.get("healthy"):
                return False
        return True

    def wait_healthy(self, timeout: float) -> bool:
        """Poll until every node is healthy; False if `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            time.sleep(0.1)
        return False

    def slot_map(self) -> Any:
        """The cluster's slot map (``kvcluster.sharding.SlotMap``), from any node."""
        kv = _kv()
        last: Exception | None = None
        for addr in self.seeds:
            try:
                with kv.grpc.insecure_channel(addr) as ch:
                    r = kv.admin_pb2_grpc.ClusterInfoStub(ch).ClusterSlots(
                        kv.admin_pb2.ClusterSlotsRequest(), timeout=5
                    )
                return kv.sharding.SlotMap.from_dict(json.loads(r.slot_map))
            except Exception as e:
                last = e
        raise RunError(f"no node answered with the slot map: {last!r}")

    def unsafe_nodes(self) -> list[int]:
        """Nodes whose log says the unsafe stale-reads switch is on."""
        return [i for i in self.node_ids if UNSAFE_STALE_READS_ENV in self.log_text(i)]


class LocalBackend(NodeProbes):
    """Node processes in network namespaces (see `netns`); a `Backend`.

    Processes are started from the thread that calls `start` (the run's main thread) through
    ``setpriv --pdeathsig KILL`` when available, so they die with the runner even if it is
    killed with SIGKILL; they are stopped by PID."""

    def __init__(self, cfg: RunConfig, node_dir: Path) -> None:
        self.cfg = cfg
        self.net = netns.Network(cfg.nodes, cfg.subnet)
        self.node_dir = node_dir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.paused: set[int] = set()
        self.pids: list[int] = []
        self._setpriv = shutil.which("setpriv")

    @staticmethod
    def validate(cfg: RunConfig) -> None:
        try:
            netns.Network(cfg.nodes, cfg.subnet)  # checks the subnet and names; creates nothing
        except netns.NetnsError as e:
            raise RunError(str(e)) from None

    @staticmethod
    def preflight(cfg: RunConfig) -> list[str]:
        """Check the machine; remove what dead runs left. Returns what was removed."""
        try:
            netns.preflight()
        except netns.NetnsError as e:
            raise RunError(str(e)) from None
        return netns.cleanup_stale()

    # -- addresses -------------------------------------------------------------------------
    @property
    def node_ids(self) -> list[int]:
        return sorted(self.net.hosts)

    def address(self, node: int) -> str:
        return f"{self.net.hosts[node].ip}:{GRPC_PORT}"

    def http(self, node: int) -> str:
        return f"{self.net.hosts[node].ip}:{HTTP_PORT}"

    @property
    def seeds(self) -> list[str]:
        return [self.address(i) for i in self.node_ids]

    def log_path(self, node: int) -> Path:
        return self.node_dir / f"n{node}.log"

    def describe(self) -> str:
        return f"network namespaces on {self.net.subnet}"

    def client_options(self) -> dict[str, Any]:
        return {}

    # -- lifecycle -------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> None:
        """Create the network, start every node, wait until all are healthy."""
        self.net.create()
        for i in self.node_ids:
            self.start(i)
        if not self.wait_healthy(timeout):
            tails = "\n".join(f"--- n{i} ---\n{self.log_tail(i)}" for i in self.node_ids)
            raise RunError(f"the cluster did not become healthy within {timeout:.0f} s\n{tails}")

    def down(self) -> list[str]:
        """Kill every node process (by PID) and remove the network; returns any errors."""
        errors: list[str] = []
        for i, proc in self.procs.items():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                errors.append(f"node {i} (pid {proc.pid}) did not die")
        self.paused.clear()
        errors.extend(self.net.teardown())
        if not self.cfg.keep_data:
            for i in self.node_ids:
                shutil.rmtree(self.node_dir / f"n{i}", ignore_errors=True)
        return errors

    def leftovers(self) -> list[str]:
        return [f"namespace {h.netns}" for h in self.net.hosts.values() if _netns_exists(h.netns)]

    def log_text(self, node: int) -> str:
        try:
            return self.log_path(node).read_text(errors="replace")
        except OSError:
            return ""

    def answers(self, node: int) -> bool:
        return self.running(node) and node not in self.paused

    # -- ClusterControl --------------------------------------------------------------------
    def running(self, node: int) -> bool:
        proc = self.procs.get(node)
        return proc is not None and proc.poll() is None

    def start(self, node: int) -> None:
        if self.running(node):
            return
        cfg = self.cfg
        data = self.node_dir / f"n{node}" / "data"
        data.mkdir(parents=True, exist_ok=True)
        peers = ",".join(f"{i}={self.address(i)}" for i in self.node_ids)
        server = [sys.executable, "-m", "kvcluster.server", f"--node-id={node}"]
        server += [f"--listen={self.address(node)}", f"--http={self.http(node)}"]
        server += [f"--peers={peers}", f"--data-dir={data}", f"--tick-ms={cfg.tick_ms}"]
        server += [f"--bootstrap-groups={cfg.groups}"]
        server += [f"--bootstrap-replicas={min(3, cfg.nodes)}"]
        prefix = [self._setpriv, "--pdeathsig", "KILL"] if self._setpriv else []
        env = {k: v for k, v in os.environ.items() if k != UNSAFE_STALE_READS_ENV}
        for proxy in ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(proxy, None)
        if cfg.unsafe_stale_reads:
            env[UNSAFE_STALE_READS_ENV] = "1"
        if cfg.snapshot_entries is not None:
            server += [f"--snapshot-entries={cfg.snapshot_entries}"]
        with self.log_path(node).open("ab") as log:
            self.procs[node] = subprocess.Popen(
                [*prefix, *self.net.exec_prefix(node), *server],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.paused.discard(node)
        self.pids.append(self.procs[node].pid)

    def kill(self, node: int) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # also ends a stopped process
            proc.wait(timeout=30)
        self.paused.discard(node)

    def pause(self, node: int) -> None:
        proc = self.procs.get(node)
        if proc is not None and proc.poll() is None and node not in self.paused:
            os.kill(proc.pid, signal.SIGSTOP)
            self.paused.add(node)

    def resume(self, node: int) -> None:
        proc = self.procs.get(node)
        if node in self.paused:
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
            self.paused.discard(node)

    def partition(self, grudges: Mapping[int, frozenset[int]]) -> None:
        self.net.partition(grudges)

    def heal_network(self) -> None:
        self.net.heal()


# -- analysis --------------------------------------------------------------------------------


def failovers(
    nemesis_events: Sequence[Mapping[str, Any]],
    ops: Sequence[_OpRecord],
    key_groups: Mapping[str, int],
    workload_end: int,
    start: int,
) -> list[Failover]:
    """`Failover` for each kill in the nemesis log (see `Failover`)."""
    starts = [e for e in nemesis_events if e.get("type") == "start" and e.get("fault") != RESHARD]
    out = []
    for n, e in enumerate(starts):
        if e.get("fault") != "kill":
            continue
        t_kill = int(e["time"])
        window_end = int(starts[n + 1]["time"]) if n + 1 < len(starts) else workload_end
        led = tuple(g for g in e.get("led_groups", []) if g != META_GROUP)
        keys = [k for k, g in key_groups.items() if g in led]
        first: dict[str, int] = {}
        for op in ops:
            if (
                op.write
                and op.answered
                and op.key in keys
                and t_kill <= op.invoke
                and op.complete <= window_end
            ):
                first[op.key] = min(first.get(op.key, op.complete), op.complete)
        seconds: float | None = None
        if keys and all(k in first for k in keys):
            seconds = round((max(first.values()) - t_kill) / 1e9, 3)
        out.append(
            Failover(
                round((t_kill - start) / 1e9, 2),
                int(e["target"]),
                led,
                seconds,
                round((window_end - t_kill) / 1e9, 2),
            )
        )
    return out


def reshard_stats(nemesis_events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The reshard nemesis's figures from its log: reshards started, slots planned and moved
    (owned by the target when the reshard ended), hot keys moved, slots per outcome (the
    finishing after the heal included), migrations the heal stopped, errors."""
    starts = {
        e.get("id"): e
        for e in nemesis_events
        if e.get("type") == "start" and e.get("fault") == RESHARD and e.get("id") != "finish"
    }
    stops = [
        e
        for e in nemesis_events
        if e.get("type") == "stop" and e.get("fault") == RESHARD and e.get("id") != "finish"
    ]
    outcomes: Counter[str] = Counter()
    for e in nemesis_events:
        if e.get("type") == "stop" and e.get("fault") == RESHARD:
            outcomes.update(dict(e.get("outcome") or {}))
    errors = [
        str(e["error"]) for e in nemesis_events if e.get("fault") == RESHARD and e.get("error")
    ]
    finish = [e for e in nemesis_events if e.get("type") == "start" and e.get("id") == "finish"]
    return {
        "reshards": len(starts),
        "slots_planned": sum(int(e.get("moves") or 0) for e in starts.values()),
        "slots_moved": sum(int(e.get("moved") or 0) for e in stops),
        "hot_keys_moved": sum(len(e.get("hot_keys_moved") or []) for e in stops),
        "outcomes": dict(outcomes),
        "left_at_heal": int(finish[0].get("moves") or 0) if finish else 0,
        "errors": errors,
        "crashed": [
            str(e.get("error")) for e in nemesis_events if e.get("type") == "reshard-crashed"
        ],
    }


def _reshard_lines(stats: Mapping[str, Any], left: int | None) -> list[str]:
    outcome = ", ".join(f"{k} {v}" for k, v in sorted(stats["outcomes"].items())) or "none"
    if left is None:
        end = "migrations left at the end: UNKNOWN (the meta group did not answer)"
    elif left:
        end = f"MIGRATIONS LEFT AT THE END: {left} (see the nemesis log)"
    else:
        end = "migrations left: 0"
    lines = [
        f"reshards: {stats['reshards']} ({stats['slots_moved']} of {stats['slots_planned']} "
        f"slots moved, hot keys moved {stats['hot_keys_moved']} times; slots by outcome: "
        f"{outcome}; {stats['left_at_heal']} stopped at the heal and resumed); {end}"
    ]
    if stats["errors"]:
        lines.append(f"  reshard errors ({len(stats['errors'])}): {stats['errors'][-1]}")
    if stats["crashed"]:
        lines.append(
            "RESHARD THREAD CRASHED (a bug in jepsen-lite): " + "; ".join(stats["crashed"])
        )
    return lines


def _op_table(ops: Sequence[_OpRecord]) -> tuple[Counter[str], dict[str, Counter[str]]]:
    by_type: Counter[str] = Counter(op.type for op in ops)
    by_f: dict[str, Counter[str]] = {}
    for op in ops:
        by_f.setdefault(op.f, Counter())[op.type] += 1
    return by_type, by_f


# -- the run ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """In the main thread, SIGTERM raises KeyboardInterrupt like Ctrl-C, so `finally` cleans
    up either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleanup must not be cut short by a second Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _run_dir(cfg: RunConfig) -> Path:
    if cfg.out is not None:
        out = cfg.out
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path("jepsen-runs") / f"{stamp}-{cfg.workload}-seed{cfg.seed}"
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise RunError(f"{out} is not empty: give a new --out directory")
    (out / "nodes").mkdir()
    return out


def _backend_class(name: str) -> Any:
    if name == "local":
        return LocalBackend
    if name == "compose":
        from jepsen_lite.compose import ComposeBackend  # it builds on this module

        return ComposeBackend
    raise RunError(f"unknown backend {name!r} (expected one of {', '.join(BACKENDS)})")


def make_backend(cfg: RunConfig, node_dir: Path) -> Backend:
    """The backend `cfg.backend` names, for a run whose node logs go to `node_dir`."""
    backend: Backend = _backend_class(cfg.backend)(cfg, node_dir)
    return backend


def validate(cfg: RunConfig) -> None:
    """Refuse a configuration the run cannot carry out, before anything is created."""
    cls = _backend_class(cfg.backend)
    if cfg.nodes < 1 or cfg.concurrency < 1 or cfg.time <= 0 or cfg.groups < 1:
        raise RunError("--nodes, --concurrency, --groups and --time must be positive")
    if "partition" in cfg.nemesis and cfg.nodes < 2:
        raise RunError("partitions need at least 2 nodes")
    if RESHARD in cfg.nemesis and cfg.groups < 2:
        raise RunError("reshards move slots between shard groups: --groups must be at least 2")
    cls.validate(cfg)
    try:
        make_workload(cfg.workload, ["probe"])
    except ValueError as e:
        raise RunError(str(e)) from None


def run(cfg: RunConfig, echo: Callable[[str], None] = lambda line: None) -> RunOutcome:
    """Carry out one run (see the module docstring). Raises `RunError` when the run cannot
    be carried out, KeyboardInterrupt on Ctrl-C or SIGTERM (after cleaning up)."""
    validate(cfg)
    for what in _backend_class(cfg.backend).preflight(cfg):
        echo(f"removed a dead run's leftover: {what}")
    run_dir = _run_dir(cfg)
    rng = random.Random(cfg.seed)
    backend = make_backend(cfg, run_dir / "nodes")
    recorder = Recorder(run_dir / "history.jsonl")
    nemesis_events: list[dict[str, Any]] = []
    nemesis_file = (run_dir / "nemesis.jsonl").open("w", encoding="utf-8")
    clients: _Clients | None = None
    resharder: Any = None
    reshard_stop = threading.Event()
    info: dict[str, Any] = {"config": {**asdict(cfg), "out": str(run_dir)}}
    cleanup_errors: list[str] = []
    t_start = t_workload_end = 0

    def log_nemesis(event: dict[str, Any]) -> None:
        nemesis_events.append(event)
        with contextlib.suppress(ValueError):  # closed: a reshard thread outliving a Ctrl-C
            nemesis_file.write(json.dumps(event) + "\n")
            nemesis_file.flush()
        echo(f"  nemesis t={event['t']:.1f}s {_describe_event(event)}")

    with _signals_raise():
        try:
            echo(f"starting {cfg.nodes} nodes ({cfg.backend} backend)")
            backend.up()
            info["backend"] = backend.describe()
            smap = backend.slot_map()
            groups = sorted(g for g in smap.groups if g != META_GROUP) or [META_GROUP]
            kv = _kv()
            key_slot = kv.sharding.key_slot
            probe = make_workload(cfg.workload, ["probe"])
            keys = pick_keys(
                probe.key_prefix, groups, probe.keys_per_group, lambda k: smap.owner(key_slot(k))
            )
            key_groups = {k: smap.owner(key_slot(k)) for k in keys}
            workload = make_workload(cfg.workload, keys)
            schedule = plan(rng, cfg.nemesis, cfg.time, groups, cfg.nodes)
            info.update(
                keys=key_groups,
                schedule=[asdict(f) for f in schedule],
                unsafe_nodes=backend.unsafe_nodes(),
            )
            (run_dir / "run.json").write_text(json.dumps(info, indent=2, default=str))
            if cfg.unsafe_stale_reads and not info["unsafe_nodes"]:
                echo(
                    f"WARNING: {UNSAFE_STALE_READS_ENV}=1 was set but no node says it is on "
                    "(is the node patched?): this run cannot be the self-test"
                )
            echo(
                f"cluster healthy ({info['backend']}); {len(keys)} keys on groups {groups}; "
                f"{len(schedule)} faults planned over {cfg.time:g} s"
            )
            seeds, options = backend.seeds, backend.client_options()

            def make_client() -> Any:
                budget = kv.sharding.RetryBudget(max_attempts=cfg.attempts, max_backoff_ticks=16)
                return kv.Client(
                    seeds, timeout=cfg.op_timeout, budget=budget, backoff_tick=0.02, **options
                )

            clients = _Clients(cfg, workload, recorder, make_client)
            stop = threading.Event()
            if RESHARD in cfg.nemesis:
                resharder = _make_resharder(seeds, options)
            hot = {k: key_slot(k) for k in keys}
            nemesis = Nemesis(backend, log_nemesis, resharder=resharder, hot=hot)
            t_start = time.monotonic_ns()
            clients.start()
            reshards = nemesis.start_reshards(schedule, reshard_stop)
            nemesis.run(schedule, stop)
            stop.wait(max(0.0, cfg.time - (time.monotonic_ns() - t_start) / 1e9))
            t_workload_end = time.monotonic_ns()
            reshard_stop.set()  # before any further freeze; frozen slots finish their cutover
            nemesis.heal_all()
            t_heal = time.monotonic()
            if reshards is not None:
                reshards.join(cfg.recover_timeout)
                if reshards.is_alive():
                    echo("the reshard thread is still running after the heal; finishing anyway")
            recovered = backend.wait_healthy(cfg.recover_timeout)
            info["recovered_after_s"] = round(time.monotonic() - t_heal, 2) if recovered else None
            if resharder is not None:
                nemesis.finish_reshards(cfg.recover_timeout)
            stop.wait(max(0.0, t_heal + cfg.quiet - time.monotonic()))
            clients.stop()
            info["client_crashes"] = clients.crashed
            if resharder is not None:
                info["migrations_left"] = nemesis.check_migrations()
            echo("final reads")
            info["final_reads"] = _final_reads(workload, recorder, make_client, deadline=30.0)
        except netns.NetnsError as e:
            raise RunError(f"the test network failed: {e}") from e
        finally:
            with _signals_ignored():
                reshard_stop.set()
                if clients is not None:
                    clients.stop()
                if resharder is not None:
                    resharder.close()
                cleanup_errors = backend.down()
                recorder.close()
                nemesis_file.close()
                cleanup_errors += [f"{what} still exists" for what in backend.leftovers()]
                if cleanup_errors:
                    echo("CLEANUP PROBLEMS:\n  " + "\n  ".join(cleanup_errors))
    info["cleanup_errors"] = cleanup_errors
    outcome = _judge(cfg, run_dir, recorder, nemesis_events, info, t_start, t_workload_end, echo)
    outcome.pids = list(backend.pids)
    return outcome


def _make_resharder(seeds: Sequence[str], options: Mapping[str, Any]) -> Any:
    """The reshard nemesis's `resharder.ClusterResharder`, reaching the nodes the way the
    clients do (the compose backend's address map; nothing to map for the local one)."""
    from jepsen_lite.resharder import ClusterResharder, advertised_seeds

    address_map = options.get("address_map") or {}
    return ClusterResharder(advertised_seeds(seeds, address_map), address_map=address_map)


def _netns_exists(name: str) -> bool:
    return Path("/var/run/netns", name).exists()


def _final_reads(
    workload: Workload, recorder: Recorder, make_client: Callable[[], Any], deadline: float
) -> dict[str, Any]:
    """Read every key once, retrying failed reads until `deadline` seconds have passed."""
    end = time.monotonic() + deadline
    done: dict[str, Any] = {}
    client = make_client()
    try:
        for key in workload.keys:
            process = recorder.new_process()
            while True:
                kind = _perform(workload, client, recorder, process, workload.final_op(key), True)
                if kind == "ok" or time.monotonic() > end:
                    done[key] = kind == "ok"
                    break
                time.sleep(0.2)  # the cluster is recovering: try again shortly
    finally:
        client.close()
    return done


def _describe_event(e: Mapping[str, Any]) -> str:
    kind = e.get("type")
    if kind == "heal-all":
        return "heal everything"
    if kind == "migrations":
        return f"migrations left: {e.get('left')}" + (
            f" {e['migrations']}" if e.get("migrations") else ""
        )
    if kind == "reshard-crashed":
        return f"RESHARD THREAD CRASHED (a bug in jepsen-lite): {e.get('error')}"
    if e.get("fault") == RESHARD:
        return _describe_reshard(e)
    what = f"{kind} {e.get('fault')}"
    if e.get("topology"):
        what += f" {e['topology']}"
    if kind == "start":
        what += f" aimed at n{e.get('target')} ({e.get('why')} of group {e.get('group')})"
        if e.get("grudges"):
            what += f" grudges {e['grudges']}"
    return what


def _describe_reshard(e: Mapping[str, Any]) -> str:
    finish = e.get("id") == "finish"
    what = f"{e.get('type')} reshard" + (" (finish what the heal stopped)" if finish else "")
    if e.get("type") == "start":
        if not finish:
            what += f" g{e.get('from')} -> g{e.get('to')}"
        if e.get("moves") is not None:
            what += f": {e.get('moves')} slots {e.get('slots')}"
        if e.get("hot_keys"):
            what += f" (hot keys {', '.join(e['hot_keys'])})"
        if e.get("phases"):
            what += f" phases {e['phases']}"
    else:
        outcome = ", ".join(f"{k} {v}" for k, v in sorted(dict(e.get("outcome") or {}).items()))
        what += f": {outcome or 'nothing driven'}"
        if e.get("moved") is not None:
            what += f"; {e['moved']} slots now owned by g{e.get('to')}"
        if e.get("hot_keys_moved"):
            what += f" (hot keys {', '.join(e['hot_keys_moved'])})"
        if e.get("cutover_max_ms") is not None:
            what += f"; longest cutover {e['cutover_max_ms']} ms"
        if e.get("left") is not None:
            what += f"; {e['left']} left"
    if e.get("error"):
        what += f"; error: {e['error']}"
    return what


def _judge(
    cfg: RunConfig,
    run_dir: Path,
    recorder: Recorder,
    nemesis_events: list[dict[str, Any]],
    info: dict[str, Any],
    t_start: int,
    t_end: int,
    echo: Callable[[str], None],
) -> RunOutcome:
    workload = make_workload(cfg.workload, ["probe"])
    verdict: Verdict | None = None
    counter: CounterCheck | None = None
    echo("checking the history")
    if workload.model is not None:
        verdict = check_history(recorder.events, workload.model, cfg.check_timeout)
        outcome = verdict.outcome.value
        summary: dict[str, Any] = dict(verdict.summary())
        explanation = verdict.explain()
    else:
        began = time.monotonic()
        counter = check_counter(recorder.events)
        outcome = counter.outcome
        summary = {
            "valid": "unknown" if outcome == "unknown" else outcome == "valid",
            "keys": len(counter.keys),
            "ops": len(recorder.ops),
            "seconds": round(time.monotonic() - began, 3),
            "failed_key": next((k for k, v in counter.keys.items() if v.violations), None),
        }
        explanation = counter.explain()

    ops = recorder.ops
    by_type, by_f = _op_table(ops)
    fo = failovers(nemesis_events, ops, info.get("keys", {}), t_end or time.monotonic_ns(), t_start)
    faults = Counter(
        str(e.get("fault"))
        for e in nemesis_events
        if e.get("type") == "start" and e.get("id") != "finish"
    )
    reshards = reshard_stats(nemesis_events) if RESHARD in cfg.nemesis else None
    final_reads: dict[str, bool] = info.get("final_reads", {})
    unsafe = cfg.unsafe_stale_reads
    summary.update(
        run_dir=str(run_dir),
        workload=cfg.workload,
        seed=cfg.seed,
        info=by_type.get("info", 0),
        failover_s=[f.seconds for f in fo],
        final_reads_ok=sum(final_reads.values()),
        unsafe_stale_reads=unsafe,
    )
    if reshards is not None:
        summary.update(
            slots_moved=reshards["slots_moved"], migrations_left=info.get("migrations_left")
        )
    lines = [
        f"jepsen-lite run: {cfg.workload} on {cfg.nodes} nodes ({cfg.groups} shard groups, "
        f"{cfg.backend} backend), "
        f"nemesis {','.join(cfg.nemesis) or 'none'}, {cfg.time:g} s, concurrency "
        f"{cfg.concurrency}, seed {cfg.seed}"
        + ("  [UNSAFE STALE READS: self-test]" if unsafe else ""),
        f"run directory: {run_dir}",
        f"operations: {len(ops)} (ok {by_type.get('ok', 0)}, fail {by_type.get('fail', 0)}, "
        f"info {by_type.get('info', 0)})",
    ]
    for f, c in sorted(by_f.items()):
        lines.append(
            f"  {f:<7} {sum(c.values()):>7}   ok {c.get('ok', 0):>7}   fail "
            f"{c.get('fail', 0):>6}   info {c.get('info', 0):>5}"
        )
    lines.append(f"unknown outcomes (info): {by_type.get('info', 0)}")
    fault_text = ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"
    rec = info.get("recovered_after_s")
    lines.append(
        f"faults: {sum(faults.values())} ({fault_text}); all healed at the end; cluster healthy "
        + (f"{rec} s after the heal" if rec is not None else "NOT healthy again in time")
    )
    if reshards is not None:
        lines.extend(_reshard_lines(reshards, info.get("migrations_left")))
    if fo:
        lines.append("failover after each kill -9 of a leader (until every key of the groups it")
        lines.append("led had a write answered that was invoked after the kill):")
        for kill in fo:
            if not kill.groups:
                took = "n/a (led no shard group)"
            elif kill.seconds is None:
                took = f"not within {kill.window:.1f} s (the next fault or the end came first)"
            else:
                took = f"{kill.seconds:.2f} s"
            groups = ",".join(map(str, kill.groups)) or "none"
            lines.append(f"  t={kill.t:>6.1f}s  n{kill.node} (led groups {groups}): {took}")
        known = [kill.seconds for kill in fo if kill.seconds is not None]
        if known:
            lines.append(f"  longest: {max(known):.2f} s")
    lines.append(f"final reads: {sum(final_reads.values())}/{len(final_reads)} ok")
    if unsafe:
        nodes = info.get("unsafe_nodes") or []
        lines.append(
            f"unsafe stale reads on nodes {nodes}" if nodes else "unsafe switch NOT on any node"
        )
    if explanation:
        lines.append(explanation)
    if info.get("client_crashes"):
        lines.append(
            "CLIENT THREADS CRASHED (a bug in jepsen-lite): " + "; ".join(info["client_crashes"])
        )
    if info.get("cleanup_errors"):
        lines.append("cleanup problems: " + "; ".join(info["cleanup_errors"]))
    checked = f"{summary['keys']} keys in {summary['seconds']} s"
    lines.append(f"verdict: {outcome.upper()} ({checked})")
    text = "\n".join(lines)

    nem_lines = [f"t={e['t']:>7.2f}s {_describe_event(e)}" for e in nemesis_events]
    spans = [Span(op.invoke, op.complete or op.invoke, op.type, op.f) for op in ops if op.complete]
    end = max([op.complete for op in ops] + [t_end, t_start + 1])
    svg = latency_svg(spans, periods(nemesis_events), t_start, end)
    rows = [
        ("workload", f"{cfg.workload} ({cfg.concurrency} clients, seed {cfg.seed})"),
        ("nodes", f"{cfg.nodes} ({cfg.groups} shard groups + meta)"),
        ("backend", str(info.get("backend", cfg.backend))),
        ("nemesis", ",".join(cfg.nemesis) or "none"),
        ("operations", lines[2].split(": ", 1)[1]),
        ("failover after kills (s)", ", ".join(f"{k.seconds}" for k in fo) or "no kills"),
        *(
            [("reshards", "; ".join(_reshard_lines(reshards, info.get("migrations_left"))))]
            if reshards is not None
            else []
        ),
        ("final reads ok", f"{sum(final_reads.values())}/{len(final_reads)}"),
    ]
    if unsafe:
        rows.append(("UNSAFE", "nodes served reads without ReadIndex (self-test)"))
    section = run_section("The run", rows, svg, nem_lines, [text])
    if verdict is not None:
        page = embed(render_html(verdict), section)
    else:
        cls = outcome
        page = standalone_page(
            f"counter: {outcome}", f'Counter is <span class="{cls}">{outcome}</span>', section
        )
    (run_dir / "report.html").write_text(page, encoding="utf-8")
    if reshards is not None:
        info["reshards"] = reshards
    info.update(
        summary=summary,
        failovers=[asdict(k) for k in fo],
        ops=dict(by_type),
        ops_by_f={f: dict(c) for f, c in by_f.items()},
    )
    if counter is not None:
        info["counter"] = {k: asdict(v) for k, v in counter.keys.items()}
    (run_dir / "verdict.json").write_text(json.dumps(info, indent=2, default=str))
    (run_dir / "summary.txt").write_text(text + "\n", encoding="utf-8")
    return RunOutcome(outcome, run_dir, summary, text, verdict, counter, info)
