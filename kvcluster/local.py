"""Start and stop an N-node cluster of real node processes on loopback.

Contract:
- Every process is started by this object and stopped by the PID it recorded: SIGTERM, then
  SIGKILL after a deadline. Nothing else is ever signalled.
- Nodes listen on 127.0.0.1 only, on ports picked from the ephemeral range at start-up.
- ``wait_*`` methods wait for a condition with a deadline (polling the admin API), never for a
  fixed time; they raise ``TimeoutError`` naming what did not happen.
- Used by the quick start (``python -m kvcluster.local``), the integration tests and the
  benchmarks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from kvcluster.v1 import admin_pb2, admin_pb2_grpc

__all__ = ["LocalCluster", "free_ports"]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class NodeProc:
    node_id: int
    address: str
    http: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    def __init__(
        self,
        nodes: int = 3,
        base_dir: Path | None = None,
        *,
        fsync: bool = True,
        tick_ms: int = 50,
        extra_args: tuple[str, ...] = (),
        keep_data: bool = False,
        groups: int = 3,
        replicas: int = 3,
    ) -> None:
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="kvcluster-"))
        self.keep_data = keep_data
        ports = free_ports(2 * nodes)
        self.nodes: dict[int, NodeProc] = {}
        for i in range(1, nodes + 1):
            d = self.base_dir / f"node{i}"
            self.nodes[i] = NodeProc(
                i,
                f"127.0.0.1:{ports[2 * i - 2]}",
                f"127.0.0.1:{ports[2 * i - 1]}",
                d / "data",
                d / "node.log",
            )
        self.groups = groups
        self._args = [
            f"--tick-ms={tick_ms}",
            f"--bootstrap-groups={groups}",
            f"--bootstrap-replicas={min(replicas, nodes)}",
            *extra_args,
        ]
        if not fsync:
            self._args.append("--no-fsync")

    # -- processes -------------------------------------------------------------------------
    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes.values()]

    def peers_arg(self) -> str:
        return ",".join(f"{i}={n.address}" for i, n in self.nodes.items())

    def start_node(self, node_id: int) -> None:
        n = self.nodes[node_id]
        if n.alive():
            return
        n.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "kvcluster.server",
            f"--node-id={node_id}",
            f"--listen={n.address}",
            f"--http={n.http}",
            f"--peers={self.peers_arg()}",
            f"--data-dir={n.data_dir}",
            *self._args,
        ]
        log = open(n.log_path, "ab")  # noqa: SIM115 - handed to the child process
        try:
            n.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            log.close()

    def start(self, timeout: float = 60.0) -> None:
        for i in self.nodes:
            self.start_node(i)
        self.wait_healthy(timeout=timeout)

    def kill_node(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        n = self.nodes[node_id]
        if n.proc is not None and n.proc.poll() is None:
            os.kill(n.proc.pid, sig)
            n.proc.wait(timeout=30)

    def stop_node(self, node_id: int, timeout: float = 15.0) -> None:
        n = self.nodes[node_id]
        if n.proc is None or n.proc.poll() is not None:
            return
        n.proc.send_signal(signal.SIGTERM)
        try:
            n.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait(timeout=30)

    def restart_node(self, node_id: int) -> None:
        self.kill_node(node_id)
        self.start_node(node_id)

    def stop(self) -> None:
        for n in self.nodes.values():
            if n.alive():
                assert n.proc is not None
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for n in self.nodes.values():
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(timeout=30)
        if self._own_dir and not self.keep_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------
    def status(self, node_id: int, timeout: float = 1.0) -> admin_pb2.NodeStatus | None:
        n = self.nodes[node_id]
        if not n.alive():
            return None
        with grpc.insecure_channel(n.address) as ch:
            try:
                st: admin_pb2.NodeStatus = admin_pb2_grpc.AdminStub(ch).Status(
                    admin_pb2.NodeStatusRequest(), timeout=timeout
                )
                return st
            except grpc.RpcError:
                return None

    def leader(self, group: int = 1) -> int | None:
        """The node that is leader of ``group`` in the highest term any live node reports."""
        best: tuple[int, int] | None = None
        for i in self.nodes:
            st = self.status(i)
            if st is None:
                continue
            for g in st.groups:
                if (
                    g.group_id == group
                    and g.role == "LEADER"
                    and (best is None or g.term > best[0])
                ):
                    best = (g.term, i)
        return best[1] if best else None

    def wait_until(self, what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.05)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

    def wait_for_leader(self, group: int = 1, timeout: float = 30.0) -> int:
        self.wait_until(
            f"a leader of group {group}", lambda: self.leader(group) is not None, timeout
        )
        leader = self.leader(group)
        assert leader is not None
        return leader

    def health(self, node_id: int) -> dict[str, Any] | None:
        n = self.nodes[node_id]
        if not n.alive():
            return None
        try:
            with urllib.request.urlopen(f"http://{n.http}/health", timeout=2) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except urllib.error.HTTPError as e:  # 503: up, but not every group has a leader
            body = json.loads(e.read())
            return body
        except (OSError, ValueError):
            return None

    def metric(self, node_id: int, name: str) -> float | None:
        """The sum of node ``node_id``'s samples named ``name`` (e.g.
        ``kvcluster_persist_seconds_count``; every label set added up), parsed by
        prometheus_client; None if the node is down or has no such sample."""
        n = self.nodes[node_id]
        if not n.alive():
            return None
        try:
            with urllib.request.urlopen(f"http://{n.http}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]
        return sum(values) if values else None

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every live node is healthy: the layout exists and each group it hosts
        has a leader."""

        def healthy() -> bool:
            live = [i for i, n in self.nodes.items() if n.alive()]
            return bool(live) and all(
                (h := self.health(i)) is not None and h.get("healthy") for i in live
            )

        self.wait_until("every node to be healthy", healthy, timeout)

    def logs(self) -> Iterator[tuple[int, str]]:
        for i, n in self.nodes.items():
            with contextlib.suppress(OSError):
                yield i, n.log_path.read_text(errors="replace")


def _demo_traffic(seeds: str) -> None:
    from kvcluster.client import Client

    with Client(seeds) as kv:
        for k in range(5):
            kv.set(f"demo:{k}", f"value-{k}")
        print("  mget demo:0..4 ->", kv.mget([f"demo:{k}" for k in range(5)]))
        print("  incr demo:counter ->", kv.incr("demo:counter"))
        print("  cas demo:0 value-0 -> changed:", kv.cas("demo:0", "value-0", "changed"))
        print("  get demo:0 ->", kv.get("demo:0"))


def main() -> int:
    ap = argparse.ArgumentParser(description="run a local kvcluster on loopback")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--groups", type=int, default=3, help="shard groups")
    ap.add_argument("--dir", type=Path, default=None, help="data directory (default: temp)")
    ap.add_argument("--no-wait", action="store_true", help="stop after the demo traffic")
    args = ap.parse_args()
    cluster = LocalCluster(args.nodes, args.dir, keep_data=args.dir is not None, groups=args.groups)
    try:
        cluster.start()
        print(f"kvcluster: {args.nodes} nodes up, {cluster.groups} shard groups + the meta group")
        for i, n in cluster.nodes.items():
            print(f"  node {i}: grpc {n.address}  http://{n.http}/health  pid {n.pid}")
        seeds = ",".join(cluster.addresses)
        print("demo traffic:")
        _demo_traffic(seeds)
        if args.no_wait:
            return 0
        print("connect:")
        print(f"  .venv/bin/kvctl --cluster {seeds} status")
        print(
            f'  .venv/bin/python -c "from kvcluster import Client; '
            f"c = Client('{seeds}'); c.set('k', 'v'); print(c.get('k'))\""
        )
        print("Ctrl-C stops the cluster.")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
