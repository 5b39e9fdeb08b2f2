"""Configuration of one node process: identity, addresses, peers, timing, storage.

Contract:
- ``NodeConfig`` is immutable and validated on construction; a bad value raises
  ``InvalidArgument`` naming the setting, before anything starts or touches the disk.
- Sources, later ones winning: an optional TOML file, ``KV_*`` environment variables, flags
  (wired in ``kvcluster/server.py`` with click).
- ``peers`` are the voters of the meta group (every node listed at start); the shard groups
  and their replicas come from the meta group's layout, created once by
  ``kvctl cluster create`` or by ``bootstrap_groups``.
- Timing is in ticks of ``tick_ms``: election timeout is randomized in
  [election_ticks, 2 * election_ticks) ticks, heartbeats every ``heartbeat_ticks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kvcluster.errors import InvalidArgument

__all__ = ["NodeConfig", "parse_address", "parse_peers"]


def parse_address(value: str, what: str = "address") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise InvalidArgument(f"{what} must be HOST:PORT, got {value!r}")
    return host, int(port)


def parse_peers(value: str) -> dict[int, str]:
    """``1=127.0.0.1:7001,2=127.0.0.1:7002`` -> {1: "127.0.0.1:7001", ...}."""
    peers: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        node, sep, addr = part.partition("=")
        if not sep or not node.strip().isdigit() or int(node) < 1:
            raise InvalidArgument(f"peer must be ID=HOST:PORT with ID >= 1, got {part!r}")
        parse_address(addr.strip(), f"address of peer {node}")
        if int(node) in peers:
            raise InvalidArgument(f"peer {node} is listed twice")
        peers[int(node)] = addr.strip()
    return peers


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: int
    data_dir: Path
    listen: str  # gRPC: client, peer and admin services
    peers: dict[int, str]  # every node of the cluster (the meta group's voters), this one too
    cluster_id: str = "kvcluster"
    advertise: str = ""  # what other nodes and clients dial ("" = listen)
    http: str = ""  # /health and /metrics ("" = disabled)
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    map_size: int = 1 << 30
    fsync: bool = True
    snapshot_entries: int = 10_000  # compact a group's log at this many applied entries
    request_timeout_ms: int = 5_000
    # Seconds a decided slot move may make no progress before the meta leader finishes it
    # itself (kvcluster.node.stalled_moves); 0 = never.
    finish_stalled_moves_s: float = 30.0
    # Seconds between active-expiry passes (kvcluster.node.expiry); 0 = off.
    expire_keys_s: float = 1.0
    # Create the layout on first start (what ``kvctl cluster create`` does): G shard groups
    # of R replicas. 0 = wait for ``kvctl cluster create``.
    bootstrap_groups: int = 0
    bootstrap_replicas: int = 3

    def __post_init__(self) -> None:
        if self.node_id < 1:
            raise InvalidArgument(f"node_id must be >= 1, got {self.node_id}")
        parse_address(self.listen, "listen")
        if self.advertise:
            parse_address(self.advertise, "advertise")
        if self.http:
            parse_address(self.http, "http")
        if self.node_id not in self.peers:
            raise InvalidArgument(f"peers must include this node ({self.node_id})")
        if not self.cluster_id or len(self.cluster_id) > 64:
            raise InvalidArgument("cluster_id must be 1..64 characters")
        if self.tick_ms < 1 or self.election_ticks <= self.heartbeat_ticks < 1:
            raise InvalidArgument("need tick_ms >= 1 and election_ticks > heartbeat_ticks >= 1")
        if self.map_size < 1 << 20:
            raise InvalidArgument("map_size must be at least 1 MiB")
        if self.finish_stalled_moves_s < 0:
            raise InvalidArgument("finish_stalled_moves_s must be >= 0 (0: never)")
        if self.expire_keys_s < 0:
            raise InvalidArgument("expire_keys_s must be >= 0 (0: off)")
        if self.snapshot_entries < 10:
            raise InvalidArgument("snapshot_entries must be at least 10")
        if self.bootstrap_groups < 0 or not 1 <= self.bootstrap_replicas <= len(self.peers):
            raise InvalidArgument(
                "bootstrap_groups must be >= 0 and bootstrap_replicas between 1 and the "
                f"number of peers ({len(self.peers)})"
            )

    @property
    def address(self) -> str:
        return self.advertise or self.listen
