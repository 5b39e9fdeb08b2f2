#!/usr/bin/env python3
"""Rolling restart of a kvcluster, one node at a time, so that clients see only redirects.

For each node in turn:

1. **drain**: for every group it leads (the meta group too), ask it to transfer leadership
   (Admin ``TransferLeader``, what ``kvctl transfer-leader`` sends) to the other voter whose
   replication it reports furthest along, among those that answer; wait until it leads
   nothing and another node leads each of those groups (a transfer that did not take, e.g.
   one aborted after an election timeout, is asked again);
2. **stop** it gracefully: SIGTERM for a local cluster, ``docker compose stop nodeN``;
3. **start** it again;
4. wait until it is **healthy** (``/health``: every group it hosts knows a leader) and
   **caught up** (each of its groups' applied index has reached the commit index its leader
   reported once the node was healthy), and the whole cluster is healthy; then the next node.

A cluster that is not healthy to begin with is refused: stopping a node then could cost a
group its quorum. Every wait polls a condition until a deadline (``--timeout``), never a
fixed time. Prints progress, and a JSON summary on its **last line** (per node: the groups it
led and where they went, seconds to drain / stop / become healthy / catch up, the exit code
of the stop). Exit status 0 when every node was restarted, 1 otherwise (the summary says
where it stopped), 2 for bad usage.

    scripts/rolling_restart.py --compose PROJECT [--compose-file docker-compose.yml]
    scripts/rolling_restart.py --local 3      # a throwaway local cluster on 127.0.0.1

From Python (the tests): ``rolling_restart(LocalTarget(cluster))`` for a
``kvcluster.local.LocalCluster``, ``rolling_restart(ComposeTarget(project))``.

What must not: kill anything (stops are graceful; a node that ignores SIGTERM is what the
target's own stop does about it), change the layout or membership, or stop a second node
before the first is back and caught up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from kvcluster.local import LocalCluster
from kvcluster.v1 import admin_pb2, admin_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
LEADER = "LEADER"
POLL = 0.05  # seconds between two looks at a condition
_Admin: Any = admin_pb2_grpc.AdminStub  # generated, untyped


Log = Callable[[str], None]


class RestartError(RuntimeError):
    """The rolling restart cannot go on (the message says at which step, and why)."""


# -- targets -----------------------------------------------------------------------------------


class Target(Protocol):
    """A cluster whose nodes can be stopped gracefully and started again."""

    def describe(self) -> str: ...

    def node_ids(self) -> list[int]: ...

    def grpc(self, node: int) -> str:
        """HOST:PORT of the node's gRPC (admin) service, as this process dials it."""
        ...

    def http(self, node: int) -> str:
        """HOST:PORT of the node's HTTP service (``/health``)."""
        ...

    def stop(self, node: int) -> int | None:
        """Stop the node gracefully; returns once it is down, with its exit code if known."""
        ...

    def start(self, node: int) -> None:
        """Start the node again (returns once it is launched, not once it is healthy)."""
        ...


@dataclass
class LocalTarget:
    """A `kvcluster.local.LocalCluster` of this process: SIGTERM by PID (``stop_node``; it
    sends SIGKILL only if the node is still up after 15 s), then ``start_node``."""

    cluster: LocalCluster

    def describe(self) -> str:
        return f"local cluster in {self.cluster.base_dir}"

    def node_ids(self) -> list[int]:
        return sorted(self.cluster.nodes)

    def grpc(self, node: int) -> str:
        return self.cluster.nodes[node].address

    def http(self, node: int) -> str:
        return self.cluster.nodes[node].http

    def stop(self, node: int) -> int | None:
        self.cluster.stop_node(node)
        proc = self.cluster.nodes[node].proc
        return None if proc is None else proc.returncode

    def start(self, node: int) -> None:
        self.cluster.start_node(node)


def _compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RestartError("neither `docker compose` nor `docker-compose` works here")


def _docker(args: Sequence[str], timeout: float = 120.0) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip()
        raise RestartError(f"{' '.join(args)} failed: {why}")
    return done.stdout


@dataclass
class ComposeTarget:
    """A running compose project of docker-compose.yml: ``compose stop nodeN`` (SIGTERM, then
    the service's stop_grace_period) and ``compose start nodeN``. Node ids come from each
    container's ``KV_NODE_ID``; addresses from the ports published on the host."""

    project: str
    compose_file: Path = ROOT / "docker-compose.yml"
    _services: dict[int, str] = field(default_factory=dict)
    _containers: dict[int, str] = field(default_factory=dict)
    _ports: dict[tuple[int, str], str] = field(default_factory=dict)
    _compose: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._compose = _compose_command()
        label = f"label=com.docker.compose.project={self.project}"
        ids = _docker(["docker", "ps", "-aq", "--filter", label]).split()
        if not ids:
            raise RestartError(f"compose project {self.project!r} has no containers")
        for info in json.loads(_docker(["docker", "inspect", *ids])):
            env = dict(e.split("=", 1) for e in info["Config"]["Env"] if "=" in e)
            if not env.get("KV_NODE_ID", "").isdigit():
                continue  # not a node (e.g. a one-shot bootstrap service)
            n = int(env["KV_NODE_ID"])
            self._services[n] = info["Config"]["Labels"]["com.docker.compose.service"]
            self._containers[n] = info["Id"]
            # The ports bound now (a running container), else the configured ones.
            published = info["NetworkSettings"].get("Ports") or info["HostConfig"]["PortBindings"]
            for port, bindings in (published or {}).items():
                for b in bindings or []:
                    host = b.get("HostIp") or "0.0.0.0"
                    if b.get("HostPort") and ":" not in host:  # IPv4 only
                        dial = "127.0.0.1" if host == "0.0.0.0" else host
                        self._ports[(n, port)] = f"{dial}:{b['HostPort']}"
        for n in self._services:
            for port in ("7000/tcp", "8000/tcp"):
                if (n, port) not in self._ports:
                    raise RestartError(f"node {n} of {self.project} does not publish {port}")

    def describe(self) -> str:
        return f"docker compose project {self.project}"

    def node_ids(self) -> list[int]:
        return sorted(self._services)

    def grpc(self, node: int) -> str:
        return self._ports[(node, "7000/tcp")]

    def http(self, node: int) -> str:
        return self._ports[(node, "8000/tcp")]

    def _run(self, *args: str) -> str:
        cmd = [*self._compose, "-p", self.project, "-f", str(self.compose_file), *args]
        return _docker(cmd, timeout=180.0)

    def stop(self, node: int) -> int | None:
        self._run("stop", self._services[node])
        code = _docker(["docker", "inspect", "-f", "{{.State.ExitCode}}", self._containers[node]])
        return int(code.strip())

    def start(self, node: int) -> None:
        self._run("start", self._services[node])


# -- looking at the nodes ---------------------------------------------------------------------


@dataclass(frozen=True)
class GroupView:
    group: int
    role: str
    leader: int
    term: int
    commit: int
    applied: int
    voters: tuple[int, ...]
    match: dict[int, int]  # leader only: replication progress per peer


def status(target: Target, node: int, timeout: float = 2.0) -> dict[int, GroupView] | None:
    """The node's groups (Admin ``Status``), None if it does not answer."""
    with grpc.insecure_channel(target.grpc(node)) as ch:
        try:
            st = _Admin(ch).Status(admin_pb2.NodeStatusRequest(), timeout=timeout)
        except grpc.RpcError:
            return None
    return {
        g.group_id: GroupView(
            g.group_id,
            g.role,
            g.leader_id,
            g.term,
            g.commit_index,
            g.applied_index,
            tuple(g.voters),
            dict(g.match_index),
        )
        for g in st.groups
    }


def healthy(target: Target, node: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{target.http(node)}/health", timeout=2) as r:
            return bool(json.loads(r.read()).get("healthy"))
    except urllib.error.HTTPError:  # 503: up, but some group has no leader yet
        return False
    except (OSError, ValueError):
        return False


def wait_until(what: str, cond: Callable[[], bool], deadline: float) -> float:
    """Poll `cond` until it holds; returns the seconds it took. Raises `RestartError` naming
    `what` once `deadline` (``time.monotonic()``) has passed."""
    began = time.monotonic()
    while not cond():
        if time.monotonic() > deadline:
            raise RestartError(f"timed out waiting for {what}")
        time.sleep(POLL)
    return time.monotonic() - began


# -- the steps ---------------------------------------------------------------------------------


@dataclass
class NodeReport:
    node: int
    led: list[int] = field(default_factory=list)  # groups it led when its turn came
    moved: dict[int, int] = field(default_factory=dict)  # group -> the node that leads it now
    transfers: int = 0  # TransferLeader requests sent (more than len(led): some were repeated)
    drain_s: float = 0.0
    stop_s: float = 0.0
    exit_code: int | None = None
    healthy_s: float = 0.0  # from the start until its /health says healthy
    catch_up_s: float = 0.0  # then until every group applied what its leader had committed
    total_s: float = 0.0


def _transferee(target: Target, node: int, group: GroupView) -> int | None:
    """The other voter of `group` that answers and whose replication `node` (its leader)
    reports furthest along; ties go to the lower id."""
    candidates = [v for v in group.voters if v != node and v in target.node_ids()]
    alive = [v for v in candidates if status(target, v) is not None]
    if not alive:
        return None
    return max(alive, key=lambda v: (group.match.get(v, 0), -v))


def drain(target: Target, node: int, report: NodeReport, deadline: float, log: Log) -> None:
    """Move the leadership of every group `node` leads elsewhere (see the module docstring)."""
    began = time.monotonic()
    while True:
        groups = status(target, node)
        if groups is None:
            if time.monotonic() > deadline:
                raise RestartError(f"node {node} does not answer Status")
            time.sleep(POLL)
            continue
        if not report.led:
            report.led = sorted(g for g, v in groups.items() if v.role == LEADER)
        led = [v for v in groups.values() if v.role == LEADER]
        if not led:
            break
        asked: list[int] = []
        for g in led:
            to = _transferee(target, node, g)
            if to is None:
                raise RestartError(f"group {g.group} has no other voter that answers")
            with grpc.insecure_channel(target.grpc(node)) as ch:
                try:
                    r = _Admin(ch).TransferLeader(
                        admin_pb2.TransferLeaderRequest(group_id=g.group, to_node=to), timeout=5
                    )
                except grpc.RpcError as e:
                    raise RestartError(f"TransferLeader on node {node} failed: {e}") from e
            report.transfers += 1
            if r.ok:
                log(f"node {node}: group {g.group} leadership -> node {r.leader_id}")
                asked.append(g.group)
            else:  # e.g. it stopped leading on its own meanwhile: look again
                log(f"node {node}: group {g.group}: {r.error}")

        def moved(asked: list[int] = asked) -> bool:
            now = status(target, node)
            return now is not None and all(
                now[g].role != LEADER and now[g].leader not in (0, node) for g in asked
            )

        # A transfer takes one round trip once the transferee is caught up; one the leader
        # gave up on (after an election timeout) is asked again by the next turn of the loop.
        try:
            wait_until("the transfers", moved, min(deadline, time.monotonic() + 3.0))
        except RestartError:
            if time.monotonic() > deadline:
                raise RestartError(f"node {node} still leads groups after the deadline") from None
    final = status(target, node) or {}
    report.moved = {g: final[g].leader for g in report.led if g in final}
    report.drain_s = round(time.monotonic() - began, 3)


def catch_up(target: Target, node: int, report: NodeReport, deadline: float) -> None:
    """Wait until `node` is healthy, then until each of its groups has applied the commit
    index the group's leader reports at that moment, then until the whole cluster is healthy."""
    report.healthy_s = round(
        wait_until(f"node {node} to be healthy", lambda: healthy(target, node), deadline), 3
    )
    mine = status(target, node)
    if mine is None:
        raise RestartError(f"node {node} is healthy but does not answer Status")
    want: dict[int, int] = {}
    for g, view in mine.items():
        leader = status(target, view.leader) if view.leader in target.node_ids() else None
        if leader is None or g not in leader or leader[g].role != LEADER:
            # Leadership moved since: take the highest commit any node reports for the group.
            views = [s[g] for n in target.node_ids() if (s := status(target, n)) and g in s]
            want[g] = max(v.commit for v in views)
        else:
            want[g] = leader[g].commit

    def caught_up() -> bool:
        now = status(target, node)
        return now is not None and all(now[g].applied >= want[g] for g in want)

    t = time.monotonic()
    wait_until(f"node {node} to catch up to {want}", caught_up, deadline)
    wait_until(
        "every node to be healthy",
        lambda: all(healthy(target, n) for n in target.node_ids()),
        deadline,
    )
    report.catch_up_s = round(time.monotonic() - t, 3)


def rolling_restart(
    target: Target,
    *,
    timeout: float = 120.0,
    log: Log = print,
    order: Sequence[int] = (),
    reports: list[NodeReport] | None = None,
) -> list[NodeReport]:
    """Restart every node of `target` in turn (`order`, default by id); see the module
    docstring. Each step gets `timeout` seconds. Raises `RestartError` if one cannot finish
    (`reports`, if given, then holds how far each node got); returns the per-node reports."""
    nodes = list(order) or target.node_ids()
    reports = [] if reports is None else reports
    wait_until(
        "a healthy cluster to start from",
        lambda: all(healthy(target, n) for n in target.node_ids()),
        time.monotonic() + timeout,
    )
    for node in nodes:
        report = NodeReport(node)
        reports.append(report)
        t0 = time.monotonic()
        drain(target, node, report, time.monotonic() + timeout, log)
        log(
            f"node {node}: drained in {report.drain_s:.2f}s "
            f"(led {report.led or 'nothing'}, now led by {report.moved or '-'})"
        )
        t = time.monotonic()
        report.exit_code = target.stop(node)
        report.stop_s = round(time.monotonic() - t, 3)
        log(f"node {node}: stopped in {report.stop_s:.2f}s (exit code {report.exit_code})")
        target.start(node)
        catch_up(target, node, report, time.monotonic() + timeout)
        report.total_s = round(time.monotonic() - t0, 3)
        log(
            f"node {node}: healthy {report.healthy_s:.2f}s after the start, caught up "
            f"{report.catch_up_s:.2f}s later; {report.total_s:.2f}s in all"
        )
    return reports


def summary(target: Target, reports: list[NodeReport], seconds: float, error: str | None) -> str:
    return json.dumps(
        {
            "ok": error is None,
            "target": target.describe(),
            "restarted": [r.node for r in reports if r.total_s],
            "seconds": round(seconds, 2),
            "nodes": [asdict(r) for r in reports],
            "error": error,
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--compose", metavar="PROJECT", help="a running compose project")
    where.add_argument(
        "--local", metavar="NODES", type=int, help="a throwaway local cluster of NODES nodes"
    )
    ap.add_argument("--compose-file", type=Path, default=ROOT / "docker-compose.yml")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per step")
    args = ap.parse_args(argv)
    cluster: LocalCluster | None = None
    began = time.monotonic()
    reports: list[NodeReport] = []
    target: Target
    try:
        if args.compose:
            target = ComposeTarget(args.compose, args.compose_file)
        else:
            cluster = LocalCluster(args.local)
            cluster.start()
            target = LocalTarget(cluster)
        print(f"rolling restart of {target.describe()}: nodes {target.node_ids()}", flush=True)

        def log(line: str) -> None:
            print(line, flush=True)

        try:
            rolling_restart(target, timeout=args.timeout, log=log, reports=reports)
        except RestartError as e:
            print(f"rolling restart stopped: {e}", file=sys.stderr)
            print(summary(target, reports, time.monotonic() - began, str(e)))
            return 1
        print(summary(target, reports, time.monotonic() - began, None))
        return 0
    except RestartError as e:
        print(f"rolling restart: {e}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
