"""The docker compose backend of ``jepsen-lite run``: the project's docker-compose.yml, one
compose project per run, faults through the Docker engine.

What lives here: `ComposeBackend` (a `runner.Backend`, so a `nemesis.ClusterControl` too),
`preflight` (Docker, compose, the image, and for partitions root with ``nsenter`` and
``iptables``: a clear `ComposeError` otherwise), `cleanup_stale` (projects of dead runs) and
`compose_command`.

The layout, for a run whose runner has PID ``P``:

- the compose project ``jepsen-lite-P-XXXXXX`` (6 random hex digits) of the compose file
  (``--compose-file``, default ./docker-compose.yml; it must define ``node1`` .. ``node3``
  advertising ``nodeN:7000``) and of an override written next to the node logs,
  ``nodes/compose.override.json``: ``restart: "no"`` (only the nemesis starts nodes), the
  run's tick and number of shard groups, and the test-only unsafe switch for the self-test;
- the image ``cfg.image``, which must be present: nothing is built or pulled here
  (``scripts/docker/build.sh`` builds it);
- six free loopback ports (picked again if another program takes one before ``up``),
  published through the compose file's ``KVCLUSTER_NODE{1,2,3}_GRPC_PORT`` / ``_HTTP_PORT``;
  clients on the host follow redirects through an address map (``nodeN:7000`` ->
  ``127.0.0.1:PORT``), and so does the reshard nemesis (``client_options()["address_map"]``
  is what `resharder.ClusterResharder` dials through).

Faults (each acts at once, and is idempotent as `ClusterControl` requires):

- kill: ``docker kill`` (SIGKILL, also of a paused container), then ``docker wait`` until it
  is down; start: ``docker start`` of the same container (same volume, same ports);
- pause / resume: ``docker pause`` / ``docker unpause`` (the cgroup freezer);
- partition: from the host, ``nsenter -t PID -n iptables -w -A INPUT -s PEER_IP -m comment
  --comment jepsen-lite -j DROP`` in each node container's network namespace; container PIDs
  and IPs are read when the partition starts (both change when a container restarts). Heal
  deletes the rules with that comment. Only the nodes' own namespaces are touched, and the
  clients (the host, through Docker's port proxy) are never cut off.

Contract:
- `ComposeBackend.down` saves each node's ``docker logs`` to ``nodes/nI.log``, runs
  ``compose -p NAME down -v --remove-orphans``, then removes by id whatever is still labelled
  with the project and returns the problems; it never raises and may be called twice. `run`
  calls it in ``finally``, so also on errors, Ctrl-C and SIGTERM. A runner killed with SIGKILL
  leaves its project behind; the next run's `cleanup_stale` removes it.
- Docker commands that fail raise `ComposeError` (a `RunError`), naming the command.

What must not: build or pull images, touch containers, volumes or networks of any other
compose project, change anything in the host's own network namespace, or decide which fault
to inject (the nemesis does).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jepsen_lite.runner import (
    GRPC_PORT,
    UNSAFE_STALE_READS_ENV,
    NodeProbes,
    RunConfig,
    RunError,
)

__all__ = [
    "NODES",
    "ComposeBackend",
    "ComposeError",
    "cleanup_stale",
    "compose_command",
    "preflight",
]

#: The services of docker-compose.yml, by node id. The file fixes the cluster at three nodes.
NODES = (1, 2, 3)
PUBLISH_HOST = "127.0.0.1"
_COMMENT = "jepsen-lite"
_PROJECT_RE = re.compile(r"^jepsen-lite-(\d+)-[0-9a-f]{6}$")
_LABEL_PROJECT = "com.docker.compose.project"
_LABEL_SERVICE = "com.docker.compose.service"
SETUP_HINT = "run scripts/jepsen_setup.sh (as root) to install iptables and util-linux (nsenter)"


class ComposeError(RunError):
    """Docker or compose cannot do what the run needs (the message says which command)."""


def _run(
    args: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComposeError(f"{shlex.join(args)}: {e}") from e


def _check(args: Sequence[str], *, timeout: float = 60.0, **kw: Any) -> str:
    done = _run(args, timeout=timeout, **kw)
    if done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise ComposeError(f"{shlex.join(args)}: {why}")
    return done.stdout


def compose_command() -> list[str] | None:
    """``docker compose`` (the v2 plugin) if it works, else ``docker-compose`` (v1), else None."""
    with contextlib.suppress(ComposeError):
        if _run(["docker", "compose", "version"]).returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        with contextlib.suppress(ComposeError):
            if _run(["docker-compose", "version"]).returncode == 0:
                return ["docker-compose"]
    return None


def _compose_file(cfg: RunConfig) -> Path:
    return (cfg.compose_file or Path("docker-compose.yml")).resolve()


def preflight(cfg: RunConfig) -> list[str]:
    """Raise `ComposeError` with a clear reason unless this machine can run `cfg` on Docker
    Compose; then remove what dead runs left (`cleanup_stale`) and return what was removed."""
    if shutil.which("docker") is None:
        raise ComposeError(
            "--backend compose needs Docker: the docker CLI is not installed here "
            "(use --backend local, or install Docker Engine and Compose)"
        )
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        why = (info.stderr.strip().splitlines() or ["no output"])[-1]
        raise ComposeError(f"--backend compose needs Docker: `docker info` failed: {why}")
    if compose_command() is None:
        raise ComposeError(
            "--backend compose needs Docker Compose: neither `docker compose` nor "
            "`docker-compose` works here"
        )
    path = _compose_file(cfg)
    if not path.is_file():
        raise ComposeError(
            f"no compose file at {path}: run from the kvcluster repository or give --compose-file"
        )
    if _run(["docker", "image", "inspect", cfg.image]).returncode != 0:
        raise ComposeError(
            f"the image {cfg.image} is not present, and a run pulls and builds nothing: build it "
            f"with `KVCLUSTER_IMAGE={cfg.image} scripts/docker/build.sh` (or pass --image)"
        )
    if "partition" in cfg.nemesis:
        if os.geteuid() != 0:
            raise ComposeError(
                "partitions with --backend compose need root: iptables rules go into the "
                "containers' network namespaces with nsenter (or drop partition from --nemesis)"
            )
        missing = [tool for tool in ("nsenter", "iptables") if shutil.which(tool) is None]
        if missing:
            raise ComposeError(f"missing {' and '.join(missing)}: {SETUP_HINT}")
    return cleanup_stale()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _labelled(project: str) -> list[tuple[str, str]]:
    """(kind, id) of every container, volume and network labelled with `project`."""
    found: list[tuple[str, str]] = []
    label = f"label={_LABEL_PROJECT}={project}"
    for kind, cmd in (
        ("container", ["ps", "-aq"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q"]),
    ):
        out = _run(["docker", *cmd, "--filter", label]).stdout.split()
        found += [(kind, ident) for ident in out]
    return found


def _remove(items: Sequence[tuple[str, str]]) -> None:
    """Remove labelled objects by id: containers first (they hold volumes and networks)."""
    order = {"container": 0, "volume": 1, "network": 2}
    cmds = {
        "container": ["rm", "-f", "-v"],
        "volume": ["volume", "rm", "-f"],
        "network": ["network", "rm"],
    }
    for kind, ident in sorted(items, key=lambda item: order[item[0]]):
        _run(["docker", *cmds[kind], ident])


def _show(kind: str, ident: str) -> str:
    return f"{kind} {ident if kind == 'volume' else ident[:12]}"  # volumes are listed by name


def cleanup_stale() -> list[str]:
    """Remove the containers, volumes and networks of compose projects named by this module's
    scheme whose runner is gone (it was killed with SIGKILL). Returns what was removed."""
    names: set[str] = set()
    fmt = f'{{{{.Label "{_LABEL_PROJECT}"}}}}'
    for cmd in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        names.update(_run(["docker", *cmd, "--format", fmt]).stdout.split())
    removed = []
    for name in sorted(names):
        m = _PROJECT_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        items = _labelled(name)
        _remove(items)
        removed += [f"{_show(kind, ident)} of compose project {name}" for kind, ident in items]
    return removed


def _free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on the publish address right now (bound, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((PUBLISH_HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class ComposeBackend(NodeProbes):
    """docker-compose.yml under a compose project of its own; see the module docstring."""

    def __init__(self, cfg: RunConfig, node_dir: Path) -> None:
        self.cfg = cfg
        self.node_dir = node_dir
        self.project = f"jepsen-lite-{os.getpid()}-{secrets.token_hex(3)}"
        self.compose_file = _compose_file(cfg)
        self.grpc_ports: dict[int, int] = {}
        self.http_ports: dict[int, int] = {}
        self._pick_ports()
        self.paused: set[int] = set()
        self.pids: list[int] = []  # containers, not processes: nothing to report here
        self._containers: dict[int, str] = {}
        self._compose: list[str] | None = None
        self._down = False

    def _pick_ports(self) -> None:
        ports = _free_ports(2 * len(NODES))
        self.grpc_ports = {n: ports[2 * i] for i, n in enumerate(NODES)}
        self.http_ports = {n: ports[2 * i + 1] for i, n in enumerate(NODES)}

    @staticmethod
    def validate(cfg: RunConfig) -> None:
        if cfg.nodes != len(NODES):
            raise RunError(
                f"--backend compose runs the {len(NODES)} nodes of docker-compose.yml; "
                f"--nodes {cfg.nodes} is not possible (use --backend local for other sizes)"
            )
        if cfg.subnet is not None:
            raise RunError("--subnet is for --backend local (compose makes its own network)")
        if cfg.keep_data:
            raise RunError(
                "--keep-data is for --backend local: with compose the data volumes go with "
                "`down -v`"
            )

    @staticmethod
    def preflight(cfg: RunConfig) -> list[str]:
        return preflight(cfg)

    # -- addresses -------------------------------------------------------------------------
    @property
    def node_ids(self) -> list[int]:
        return list(NODES)

    def address(self, node: int) -> str:
        return f"{PUBLISH_HOST}:{self.grpc_ports[node]}"

    def http(self, node: int) -> str:
        return f"{PUBLISH_HOST}:{self.http_ports[node]}"

    @property
    def seeds(self) -> list[str]:
        return [self.address(n) for n in NODES]

    @property
    def address_map(self) -> dict[str, str]:
        """What the nodes advertise (service names) -> the ports published on the host."""
        return {f"node{n}:{GRPC_PORT}": self.address(n) for n in NODES}

    def client_options(self) -> dict[str, Any]:
        return {"address_map": self.address_map}

    def describe(self) -> str:
        return f"docker compose project {self.project}"

    def log_path(self, node: int) -> Path:
        return self.node_dir / f"n{node}.log"

    # -- docker ----------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(KVCLUSTER_IMAGE=self.cfg.image, KVCLUSTER_PUBLISH_HOST=PUBLISH_HOST)
        for n in NODES:
            env[f"KVCLUSTER_NODE{n}_GRPC_PORT"] = str(self.grpc_ports[n])
            env[f"KVCLUSTER_NODE{n}_HTTP_PORT"] = str(self.http_ports[n])
        return env

    @property
    def override_path(self) -> Path:
        return self.node_dir / "compose.override.json"

    def _compose_run(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        if self._compose is None:
            self._compose = compose_command()
            if self._compose is None:
                raise ComposeError("docker compose stopped working")
        files = ["-f", str(self.compose_file)]
        if self.override_path.exists():
            files += ["-f", str(self.override_path)]
        cmd = [*self._compose, "-p", self.project, *files, *args]
        return _run(cmd, timeout=timeout, env=self._env(), cwd=self.compose_file.parent)

    def _write_override(self) -> None:
        environment = {
            "KV_TICK_MS": str(self.cfg.tick_ms),
            "KV_BOOTSTRAP_GROUPS": str(self.cfg.groups),
            "KV_BOOTSTRAP_REPLICAS": str(min(3, len(NODES))),
        }
        if self.cfg.unsafe_stale_reads:
            environment[UNSAFE_STALE_READS_ENV] = "1"
        if self.cfg.snapshot_entries is not None:
            environment["KV_SNAPSHOT_ENTRIES"] = str(self.cfg.snapshot_entries)
        service = {"restart": "no", "environment": environment}
        override = {"services": {f"node{n}": service for n in NODES}}
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.override_path.write_text(json.dumps(override, indent=2) + "\n")

    def container(self, node: int) -> str:
        """The node's container id (it survives kill and start)."""
        if node not in self._containers:
            filters = ["--filter", f"label={_LABEL_PROJECT}={self.project}"]
            filters += ["--filter", f"label={_LABEL_SERVICE}=node{node}"]
            ids = _check(["docker", "ps", "-aq", *filters]).split()
            if len(ids) != 1:
                raise ComposeError(f"node{node} of {self.project}: expected 1 container: {ids}")
            self._containers[node] = ids[0]
        return self._containers[node]

    def _inspect(self, nodes: Sequence[int]) -> dict[int, tuple[bool, bool, int, str]]:
        """node -> (running, paused, pid, IP on the compose network), one ``docker inspect``."""
        fmt = (
            "{{.State.Running}} {{.State.Paused}} {{.State.Pid}} "
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
        )
        ids = [self.container(n) for n in nodes]
        lines = _check(["docker", "inspect", "-f", fmt, *ids]).splitlines()
        out = {}
        for n, line in zip(nodes, lines, strict=True):
            running, paused, pid, *ips = line.split()
            out[n] = (running == "true", paused == "true", int(pid), ips[0] if ips else "")
        return out

    # -- lifecycle -------------------------------------------------------------------------
    def up(self, timeout: float = 180.0) -> None:
        """Start the project and wait until every node is healthy."""
        self._write_override()
        for attempt in range(3):
            done = self._compose_run("up", "-d", "--no-build")
            if done.returncode == 0:
                break
            why = (done.stderr or done.stdout).strip()
            taken = "port is already allocated" in why or "address already in use" in why
            if not taken or attempt == 2:
                raise ComposeError(f"docker compose up ({self.project}) failed: {why}")
            # Another program took one of the ports since they were picked: pick again.
            self._compose_run("down", "-v", "--remove-orphans", "--timeout", "10")
            self._pick_ports()
        for n in NODES:
            self.container(n)
        if not self.wait_healthy(timeout):
            tails = "\n".join(f"--- node{n} ---\n{self.log_tail(n)}" for n in NODES)
            raise RunError(f"the cluster did not become healthy within {timeout:.0f} s\n{tails}")

    def down(self) -> list[str]:
        """Save the logs, ``down -v``, remove what is left by id; returns the problems."""
        errors: list[str] = []
        try:
            self.node_dir.mkdir(parents=True, exist_ok=True)
            for n in list(self._containers):
                with contextlib.suppress(OSError, ComposeError):
                    self.log_path(n).write_text(self.log_text(n))
            for n in list(self._containers):  # a paused container cannot stop cleanly
                with contextlib.suppress(ComposeError):
                    _run(["docker", "unpause", self._containers[n]])
            self.paused.clear()
            done = self._compose_run("down", "-v", "--remove-orphans", "--timeout", "10")
            if done.returncode != 0:
                errors.append(f"compose down failed: {(done.stderr or done.stdout).strip()}")
        except ComposeError as e:
            errors.append(str(e))
        try:
            left = _labelled(self.project)
            if left:
                errors.append(f"compose down left {len(left)} objects; removed them by id")
                _remove(left)
        except ComposeError as e:
            errors.append(str(e))
        self._down = True
        return errors

    def leftovers(self) -> list[str]:
        try:
            return [_show(kind, ident) for kind, ident in _labelled(self.project)]
        except ComposeError as e:
            return [f"(cannot tell: {e})"]

    def log_text(self, node: int) -> str:
        if self._down:
            with contextlib.suppress(OSError):
                return self.log_path(node).read_text(errors="replace")
            return ""
        cid = self._containers.get(node)
        if cid is None:
            return ""
        try:
            done = subprocess.run(
                ["docker", "logs", cid],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.decode(errors="replace")

    def answers(self, node: int) -> bool:
        return node in self._containers and node not in self.paused

    # -- ClusterControl --------------------------------------------------------------------
    def running(self, node: int) -> bool:
        """Whether the node's container runs (a paused one does)."""
        return self._inspect([node])[node][0]

    def start(self, node: int) -> None:
        if not self.running(node):
            _check(["docker", "start", self.container(node)])
        self.paused.discard(node)

    def kill(self, node: int) -> None:
        cid = self.container(node)
        if self.running(node):
            _check(["docker", "kill", cid])  # SIGKILL; a paused container dies too
            _check(["docker", "wait", cid])  # so that a `start` right after really starts it
        self.paused.discard(node)

    def pause(self, node: int) -> None:
        if node in self.paused:
            return
        running, paused, _, _ = self._inspect([node])[node]
        if running and not paused:
            _check(["docker", "pause", self.container(node)])
        if running:
            self.paused.add(node)

    def resume(self, node: int) -> None:
        if node not in self.paused:
            return
        _, paused, _, _ = self._inspect([node])[node]
        if paused:
            _check(["docker", "unpause", self.container(node)])
        self.paused.discard(node)

    def partition(self, grudges: Mapping[int, frozenset[int]]) -> None:
        """Each node drops what arrives from the nodes it holds a grudge against; replaces
        the current partition. A node whose container is not running is left out."""
        self.heal_network()
        state = self._inspect(list(NODES))
        for node, peers in grudges.items():
            running, _, pid, _ = state[node]
            if not running or pid <= 0:
                continue
            for peer in sorted(peers):
                ip = state[peer][3]
                if peer == node or not ip:
                    continue
                rule = ["INPUT", "-s", ip, "-m", "comment", "--comment", _COMMENT, "-j", "DROP"]
                _check(["nsenter", "-t", str(pid), "-n", "iptables", "-w", "-A", *rule])

    def heal_network(self) -> None:
        """Delete this module's rules in every running node container."""
        for running, _, pid, _ in self._inspect(list(NODES)).values():
            if not running or pid <= 0:
                continue  # a stopped container's namespace, and its rules, are gone
            ns = ["nsenter", "-t", str(pid), "-n", "iptables", "-w"]
            for line in _check([*ns, "-S", "INPUT"]).splitlines():
                words = shlex.split(line)
                if words[:2] == ["-A", "INPUT"] and _comment_of(words) == _COMMENT:
                    _check([*ns, "-D", *words[1:]])


def _comment_of(rule: Sequence[str]) -> str | None:
    """The ``--comment`` of a rule as ``iptables -S`` prints it, split into words."""
    for i, word in enumerate(rule[:-1]):
        if word == "--comment":
            return rule[i + 1]
    return None
