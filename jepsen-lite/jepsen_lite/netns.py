"""Network namespaces for the local backend: one namespace per node, partitions by iptables.

What lives here: `preflight` (root, ``ip``, ``iptables``, working network namespaces: a clear
`NetnsError` otherwise, naming ``scripts/jepsen_setup.sh``), `Network` (create, partition, heal,
tear down) and `cleanup_stale` (remove what a run killed with SIGKILL left behind).

The layout, for a run whose runner has PID ``P`` (``T`` = P in hex):

- one namespace per node, ``jepsen-lite-P-nI``, with ``lo`` and ``eth0`` up and the address
  ``.10+I`` of the run's private /24: the one given, or else the first of `SUBNET_POOL`
  (``10.77.0.0/24``, ``10.77.1.0/24``, ...) that no interface or route of this machine uses,
  so concurrent runs (CI jobs, engineers) each get their own;
- one veth pair per node: ``jlTvI`` in the root namespace, enslaved to the bridge ``jlTbr``,
  whose peer is the node's ``eth0``; the bridge holds ``.1`` so the clients (in the root
  namespace) reach every node;
- one ACCEPT rule for bridge-to-bridge traffic at the top of the root namespace's ``FORWARD``
  chain (comment ``jepsen-lite``). It is needed wherever ``br_netfilter`` makes bridged frames
  cross iptables and the FORWARD policy is DROP (Docker sets both); it touches nothing else.
- partitions: ``INPUT -s PEER -j DROP`` rules inside the nodes' namespaces only (Jepsen's
  ``drop`` grudges). The root namespace (the clients) is never cut off.

Contract:
- Every object is recorded when created and removed by `Network.teardown`, which is idempotent,
  keeps going past errors and returns them; the only traffic sent is to addresses of the run's
  /24, between namespaces the run created.
- A /24 already in use by any interface or route is refused (another run, or someone's network).
- What must not: starting or signalling processes (the runner does that, by PID), any policy of
  which faults to inject (the nemesis decides; this module only applies grudges).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_SUBNET",
    "SUBNET_POOL",
    "Host",
    "NetnsError",
    "Network",
    "cleanup_stale",
    "preflight",
]

DEFAULT_SUBNET = "10.77.0.0/24"
#: The /24s a run picks from when none is given: the first that nothing on this machine uses.
SUBNET_POOL = tuple(f"10.77.{n}.0/24" for n in range(32))
_LOCK_PATH = (
    "/run/lock/jepsen-lite-net.lock" if os.path.isdir("/run/lock") else "/tmp/jepsen-lite-net.lock"
)
SETUP_HINT = "run scripts/jepsen_setup.sh (as root) to install iproute2 and iptables"
_NS_RE = re.compile(r"^jepsen-lite-(\d+)-n(\d+)$")
_BRIDGE_RE = re.compile(r"^jl([0-9a-f]+)br$")
_COMMENT = "jepsen-lite"


class NetnsError(RuntimeError):
    """The local backend cannot run here, or a network command failed (message says why)."""


@dataclass(frozen=True, slots=True)
class Host:
    """A node's place on the test network."""

    node_id: int
    netns: str
    ip: str
    veth: str  # the root-namespace end of its veth pair


def _run(args: list[str], *, check: bool = True, timeout: float = 20.0) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetnsError(f"{' '.join(args)}: {e}") from e
    if check and done.returncode != 0:
        why = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise NetnsError(f"{' '.join(args)}: {why}")
    return done.stdout


def preflight() -> None:
    """Raise `NetnsError` with a clear reason unless this process can run the local backend."""
    if os.geteuid() != 0:
        raise NetnsError(
            "the local backend needs root (it creates network namespaces, veth pairs, a bridge "
            "and iptables rules); run as root, e.g. sudo .venv/bin/jepsen-lite run ..."
        )
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        raise NetnsError(f"missing {' and '.join(missing)}: {SETUP_HINT}")
    probe = f"jepsen-lite-{os.getpid()}-probe"
    try:
        _run(["ip", "netns", "add", probe])
    except NetnsError as e:
        raise NetnsError(f"network namespaces do not work here ({e}); {SETUP_HINT}") from e
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    try:
        _run(["iptables", "-w", "-S", "FORWARD"])
    except NetnsError as e:
        raise NetnsError(f"iptables does not work here ({e}); {SETUP_HINT}") from e


def _subnet_in_use(net: ipaddress.IPv4Network) -> str | None:
    """An interface address or route already inside or around `net`, if any."""
    for line in _run(["ip", "-4", "-o", "addr", "show"]).splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if iface.network.overlaps(net):
                return f"address {iface} on {parts[1]}"
    for line in _run(["ip", "-4", "route", "show"]).splitlines():
        dest = line.split()[0] if line.split() else ""
        if dest and dest != "default":
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(dest, strict=False).overlaps(net):
                    return f"route {line.strip()}"
    return None


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Serialises choosing a /24 and claiming it between concurrent runs on this machine."""
    with open(_LOCK_PATH, "a") as f:  # a lock file: nothing is written
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as e:
        raise NetnsError(f"--subnet: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen != 24:
        raise NetnsError(f"--subnet must be an IPv4 /24, not {subnet}")
    if not net.is_private:
        raise NetnsError(f"--subnet must be a private range, not {subnet}")
    return net


@dataclass
class Network:
    """The namespaces, veths, bridge and rules of one run (see the module docstring).

    `subnet` None: the first /24 of `SUBNET_POOL` that no interface or route uses, chosen
    (under a lock file) when the network is created; `hosts` is filled in then."""

    nodes: int
    subnet: str | None = None
    owner_pid: int = field(default_factory=os.getpid)
    hosts: dict[int, Host] = field(init=False, default_factory=dict)
    bridge: str = field(init=False)
    bridge_ip: str = field(init=False, default="")
    _undo: list[tuple[str, list[str]]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 200:
            raise NetnsError("between 1 and 200 nodes")
        self.bridge = f"jl{self.owner_pid:x}br"
        if self.subnet is not None:
            self._layout(_check_subnet(self.subnet))

    def _layout(self, net: ipaddress.IPv4Network) -> None:
        tag = f"{self.owner_pid:x}"
        base = net.network_address
        self.subnet = str(net)
        self.bridge_ip = str(base + 1)
        self.hosts = {
            i: Host(i, f"jepsen-lite-{self.owner_pid}-n{i}", str(base + 10 + i), f"jl{tag}v{i}")
            for i in range(1, self.nodes + 1)
        }

    # -- lifecycle -------------------------------------------------------------------------
    def create(self) -> None:
        """Create everything; on failure, remove what was made and raise `NetnsError`."""
        try:
            with _lock():
                self._claim_subnet()
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment"]
            rule += ["--comment", _COMMENT, "-j", "ACCEPT"]
            self._step(
                "forward rule",
                ["iptables", "-w", "-I", *rule[:1], "1", *rule[1:]],
                ["iptables", "-w", "-D", *rule],
            )
            for h in self.hosts.values():
                self._step(
                    f"namespace {h.netns}",
                    ["ip", "netns", "add", h.netns],
                    ["ip", "netns", "del", h.netns],
                )
                peer = ["peer", "name", "eth0", "netns", h.netns]
                self._step(
                    f"veth {h.veth}",
                    ["ip", "link", "add", h.veth, "type", "veth", *peer],
                    ["ip", "link", "del", h.veth],
                )
                ns = ["ip", "-n", h.netns]
                _run([*ns, "addr", "add", f"{h.ip}/24", "dev", "eth0"])
                _run([*ns, "link", "set", "eth0", "up"])
                _run([*ns, "link", "set", "lo", "up"])
                _run(["ip", "link", "set", h.veth, "master", self.bridge])
                _run(["ip", "link", "set", h.veth, "up"])
        except BaseException:
            self.teardown()
            raise

    def _claim_subnet(self) -> None:
        """Choose the /24 (if not given) and put the bridge on it. Called under `_lock`, so a
        concurrent run sees the bridge's address and chooses another."""
        if self.subnet is not None:
            net = _check_subnet(self.subnet)
            used = _subnet_in_use(net)
            if used is not None:
                raise NetnsError(
                    f"subnet {net} is already in use ({used}): another jepsen-lite run, or a "
                    "network of this machine; pick another private /24 with --subnet"
                )
        else:
            free = (n for n in SUBNET_POOL if _subnet_in_use(ipaddress.IPv4Network(n)) is None)
            chosen = next(free, None)
            if chosen is None:
                raise NetnsError(
                    f"every /24 of {SUBNET_POOL[0]} .. {SUBNET_POOL[-1]} is in use; pick a "
                    "private /24 with --subnet"
                )
            net = ipaddress.IPv4Network(chosen)
        self._layout(net)
        self._step(
            "bridge",
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "link", "del", self.bridge],
        )
        _run(["ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _step(self, what: str, do: list[str], undo: list[str]) -> None:
        _run(do)
        self._undo.append((what, undo))

    def teardown(self) -> list[str]:
        """Remove everything created, newest first; idempotent. Returns the errors (if any):
        each step is tried whatever happened to the ones before it."""
        errors: list[str] = []
        # Newest first: each veth goes before its namespace (deleting one end removes both at
        # once, rather than whenever the kernel gets round to destroying the namespace).
        for what, undo in reversed(self._undo):
            try:
                _run(undo)
            except NetnsError as e:
                errors.append(f"removing {what}: {e}")
        self._undo.clear()
        return errors

    def __enter__(self) -> Network:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- use -------------------------------------------------------------------------------
    def exec_prefix(self, node_id: int) -> list[str]:
        """The command prefix that runs a program inside `node_id`'s namespace. ``ip netns
        exec`` execs the program in place (no fork), so the PID of the process started with
        this prefix is the program's PID."""
        return ["ip", "netns", "exec", self.hosts[node_id].netns]

    def partition(self, grudges: Mapping[int, Collection[int]]) -> None:
        """Make each node drop everything arriving from the nodes it holds a grudge against
        (node -> nodes it stops hearing). Replaces the current partition."""
        self.heal()
        for node, peers in grudges.items():
            h = self.hosts[node]
            for peer in sorted(peers):
                if peer == node:
                    continue
                src = self.hosts[peer].ip
                drop = ["iptables", "-w", "-A", "INPUT", "-s", src, "-j", "DROP"]
                _run(["ip", "netns", "exec", h.netns, *drop])

    def heal(self) -> None:
        """Remove every partition rule (the nodes' namespaces hold no other rules)."""
        for h in self.hosts.values():
            if any(what == f"namespace {h.netns}" for what, _ in self._undo):
                _run(["ip", "netns", "exec", h.netns, "iptables", "-w", "-F", "INPUT"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove what runs that died without cleaning up (SIGKILL) left: their namespaces (and
    any process still inside one, by PID), veths, bridges and FORWARD rules. Only objects named
    by this module's scheme whose owner PID is gone are touched. Returns what was removed."""
    removed: list[str] = []
    dead: set[int] = set()
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        owner, node = int(m.group(1)), int(m.group(2))
        dead.add(owner)
        for pid in _run(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
                removed.append(f"process {pid} in {name}")
        _run(["ip", "link", "del", f"jl{owner:x}v{node}"], check=False)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(f"namespace {name}")
    for line in _run(["ip", "-o", "link", "show", "type", "bridge"], check=False).splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        m = _BRIDGE_RE.match(name)
        if m is None or _pid_alive(int(m.group(1), 16)):
            continue
        _run(["ip", "link", "del", name], check=False)
        removed.append(f"bridge {name}")
    for line in _run(["iptables", "-w", "-S", "FORWARD"], check=False).splitlines():
        if f"--comment {_COMMENT}" not in line or not line.startswith("-A FORWARD"):
            continue
        m = re.search(r"-i (jl([0-9a-f]+)br)\b", line)
        if m is None or _pid_alive(int(m.group(2), 16)):
            continue
        _run(["iptables", "-w", "-D", *line.split()[1:]], check=False)
        removed.append(f"FORWARD rule for {m.group(1)}")
    return removed
