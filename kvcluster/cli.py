"""``kvctl`` — the operator CLI.

Contract:
- Finds the cluster with ``--cluster ADDR[,ADDR...]`` or ``KVCTL_CLUSTER``.
- Human tables by default, ``--json`` for scripts.
- Exit codes: 0 success; 1 the operation failed (the cluster answered no, or not in time);
  2 usage error (click); 3 the key was not found (``get``); 4 the cluster is unreachable.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
import grpc

from kvcluster.errors import KvClusterError, OutcomeUnknown, RetryBudgetExhausted

__all__ = ["main"]

EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNREACHABLE = 1, 3, 4


def _client(ctx: click.Context) -> Any:
    from kvcluster.client import Client

    cluster = ctx.obj["cluster"]
    if not cluster:
        raise click.UsageError("give --cluster HOST:PORT or set KVCTL_CLUSTER")
    return Client(cluster, timeout=ctx.obj["timeout"], address_map=ctx.obj["address_map"])


def parse_address_map(value: str) -> dict[str, str]:
    """``node1:7000=localhost:7001,...`` -> {"node1:7000": "localhost:7001", ...}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        src, sep, dst = part.partition("=")
        if not sep or not src or not dst:
            raise click.BadParameter(f"expected ADVERTISED=DIALED, got {part!r}")
        out[src] = dst
    return out


def _fail(msg: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"kvctl: {msg}", err=True)
    sys.exit(code)


@click.group()
@click.option("--cluster", envvar="KVCTL_CLUSTER", default="", help="seed address(es)")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="seconds per RPC")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option(
    "--address-map",
    envvar="KVCTL_ADDRESS_MAP",
    default="",
    help="ADVERTISED=DIALED,... for nodes behind NAT (e.g. docker compose)",
)
@click.pass_context
def main(ctx: click.Context, cluster: str, timeout: float, as_json: bool, address_map: str) -> None:
    """Operate a kvcluster."""
    ctx.obj = {
        "cluster": cluster,
        "timeout": timeout,
        "json": as_json,
        "address_map": parse_address_map(address_map),
    }


@main.command("get")
@click.argument("key")
@click.option("--stale", is_flag=True, help="read any replica (may be behind)")
@click.pass_context
def get_cmd(ctx: click.Context, key: str, stale: bool) -> None:
    """Print the value of KEY (exit 3 if absent)."""
    try:
        with _client(ctx) as kv:
            v = kv.get(key, stale=stale)
    except (RetryBudgetExhausted, OutcomeUnknown) as e:
        _fail(str(e), EXIT_UNREACHABLE)
    except KvClusterError as e:
        _fail(str(e))
    if v is None:
        if ctx.obj["json"]:
            click.echo(json.dumps({"key": key, "value": None}))
        sys.exit(EXIT_NOT_FOUND)
    if ctx.obj["json"]:
        click.echo(json.dumps({"key": key, "value": v.decode(errors="replace")}))
    else:
        click.echo(v.decode(errors="replace"))


@main.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--px", type=int, default=None, help="expire after this many ms")
@click.option("--nx", is_flag=True, help="only if absent")
@click.option("--xx", is_flag=True, help="only if present")
@click.pass_context
def set_cmd(ctx: click.Context, key: str, value: str, px: int | None, nx: bool, xx: bool) -> None:
    """Set KEY to VALUE."""
    try:
        with _client(ctx) as kv:
            ok = kv.set(key, value, px=px, nx=nx, xx=xx)
    except (RetryBudgetExhausted, OutcomeUnknown) as e:
        _fail(str(e), EXIT_UNREACHABLE)
    except KvClusterError as e:
        _fail(str(e))
    click.echo(json.dumps({"ok": ok}) if ctx.obj["json"] else ("OK" if ok else "(not set)"))
    if not ok:
        sys.exit(EXIT_FAILED)


@main.command("del")
@click.argument("keys", nargs=-1, required=True)
@click.pass_context
def del_cmd(ctx: click.Context, keys: tuple[str, ...]) -> None:
    """Delete KEYS; print how many existed."""
    try:
        with _client(ctx) as kv:
            n = kv.delete(*keys)
    except KvClusterError as e:
        _fail(str(e))
    click.echo(json.dumps({"deleted": n}) if ctx.obj["json"] else str(n))


def _node_status(addr: str, timeout: float, dial: dict[str, str] | None = None) -> Any:
    from kvcluster.v1 import admin_pb2, admin_pb2_grpc

    with grpc.insecure_channel((dial or {}).get(addr, addr)) as ch:
        try:
            return admin_pb2_grpc.AdminStub(ch).Status(
                admin_pb2.NodeStatusRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return None


def _cluster_nodes(ctx: click.Context) -> tuple[dict[int, str], dict[str, str]]:
    """Every node id -> address, as the first seed that answers knows them; and the dial map.
    Exits with EXIT_UNREACHABLE if no seed answers."""
    seeds = [s for s in ctx.obj["cluster"].split(",") if s]
    if not seeds:
        raise click.UsageError("give --cluster HOST:PORT or set KVCTL_CLUSTER")
    dial: dict[str, str] = ctx.obj["address_map"]
    first = next((s for s in (_node_status(a, ctx.obj["timeout"], dial) for a in seeds) if s), None)
    if first is None:
        _fail("no node answered", EXIT_UNREACHABLE)
    return dict(first.peers) or {first.node_id: first.address}, dial


@main.command("status")
@click.pass_context
def status_cmd(ctx: click.Context) -> None:
    """One table: every node and group replica: role, leader, term, indexes, the group's slot
    ranges, replication lag (on leader rows: entries the slowest replica is behind), health."""
    addrs, dial = _cluster_nodes(ctx)
    smap = _fetch_slot_map(ctx)
    ranges: dict[int, list[str]] = {}
    for start, end, gid in smap["slots"]:
        ranges.setdefault(gid, []).append(f"{start}-{end}" if start != end else str(start))
    rows = []
    for nid in sorted(addrs):
        st = _node_status(addrs[nid], ctx.obj["timeout"], dial)
        if st is None:
            rows.append({"node": nid, "address": addrs[nid], "up": False})
            continue
        for g in st.groups:
            lag = max(g.match_index.values(), default=0) - min(g.match_index.values(), default=0)
            rows.append(
                {
                    "node": nid,
                    "address": addrs[nid],
                    "up": True,
                    "group": g.group_id,
                    "role": g.role,
                    "leader": g.leader_id,
                    "term": g.term,
                    "commit": g.commit_index,
                    "applied": g.applied_index,
                    "replication_lag": lag if g.role == "LEADER" else None,
                    "slots": "meta" if g.group_id == 0 else ",".join(ranges.get(g.group_id, [])),
                    "health": "ok" if g.leader_id else "no-leader",
                }
            )
    migrations = _migrations(ctx)
    if ctx.obj["json"]:
        click.echo(json.dumps({"nodes": rows, "migrations": migrations}))
        return
    click.echo(f"epoch {smap['epoch']}")
    cols = ["node", "address", "group", "role", "leader", "term", "commit", "applied"]
    cols += ["replication_lag", "slots", "health"]
    width = {"address": 22, "replication_lag": 16, "slots": 14}
    head = {"replication_lag": "lag"}
    click.echo("  ".join(f"{head.get(c, c):<{width.get(c, 8)}}" for c in cols))
    for r in rows:
        if not r["up"]:
            click.echo(f"{r['node']:<8}  {r['address']:<22}  DOWN")
            continue
        cells = {c: "" if r[c] is None else str(r[c]) for c in cols}
        click.echo("  ".join(f"{cells[c]:<{width.get(c, 8)}}" for c in cols))
    if migrations is None:
        click.echo("migrations: unknown (no meta leader answered)")
    elif migrations:
        phases: dict[str, int] = {}
        for m in migrations:
            phases[m["phase"]] = phases.get(m["phase"], 0) + 1
        summary = ", ".join(f"{n} {p}" for p, n in sorted(phases.items()))
        click.echo(f"migrations in progress: {len(migrations)} ({summary})")
        for m in migrations[:10]:
            click.echo(f"  slot {m['slot']}: group {m['source']} -> {m['target']}  {m['phase']}")
        if len(migrations) > 10:
            click.echo(f"  ... and {len(migrations) - 10} more")
        click.echo(
            "  (kvctl reshard --resume finishes them; --abort rolls back what has not frozen;"
            " frozen ones left without progress are finished by the meta leader)"
        )
    if any(not r["up"] for r in rows):
        sys.exit(EXIT_FAILED)


def _migrations(ctx: click.Context) -> list[dict[str, Any]] | None:
    """The migrations the meta group has recorded, or None if it could not be read."""
    from kvcluster.reshard.rpc import LeaderCalls

    seeds = [s for s in ctx.obj["cluster"].split(",") if s]
    calls = LeaderCalls(
        seeds, address_map=ctx.obj["address_map"], rpc_timeout=ctx.obj["timeout"], step_deadline=5
    )
    try:
        return [m.to_dict() for m in calls.meta_state().migrations]
    except KvClusterError:
        return None
    finally:
        calls.close()


@main.command("transfer-leader")
@click.option("--group", type=int, default=1, show_default=True)
@click.option("--to", "to_node", type=int, default=0, help="node id (0: most caught up)")
@click.pass_context
def transfer_leader_cmd(ctx: click.Context, group: int, to_node: int) -> None:
    """Ask GROUP's leader to hand leadership to another voter."""
    from kvcluster.v1 import admin_pb2, admin_pb2_grpc

    seeds = [s for s in ctx.obj["cluster"].split(",") if s]
    dial = ctx.obj["address_map"]
    for addr in seeds:
        st = _node_status(addr, ctx.obj["timeout"], dial)
        if st is None:
            continue
        leader = next((g.leader_id for g in st.groups if g.group_id == group), 0)
        target = st.peers.get(leader) if leader else None
        if not target:
            continue
        with grpc.insecure_channel(dial.get(target, target)) as ch:
            r = admin_pb2_grpc.AdminStub(ch).TransferLeader(
                admin_pb2.TransferLeaderRequest(group_id=group, to_node=to_node),
                timeout=ctx.obj["timeout"],
            )
        if r.ok:
            click.echo(f"transferring group {group} leadership to node {r.leader_id}")
            return
        _fail(r.error)
    _fail("no node knew the leader", EXIT_UNREACHABLE)


@main.group("cluster")
def cluster_group() -> None:
    """Create and inspect the cluster layout."""


@cluster_group.command("create")
@click.option("--groups", type=int, default=3, show_default=True, help="shard groups")
@click.option("--replicas", type=int, default=3, show_default=True, help="replicas per group")
@click.argument("addrs", nargs=-1)
@click.pass_context
def cluster_create_cmd(
    ctx: click.Context, groups: int, replicas: int, addrs: tuple[str, ...]
) -> None:
    """Create the layout: GROUPS shard groups of REPLICAS replicas over the nodes, slots
    spread evenly, never two replicas of a group on one node. Idempotent: running it again
    with the same layout succeeds and changes nothing. ADDRS (or --cluster) are the nodes."""
    from kvcluster.v1 import admin_pb2, admin_pb2_grpc

    seeds = list(addrs) or [s for s in ctx.obj["cluster"].split(",") if s]
    if not seeds:
        raise click.UsageError("give node addresses or --cluster")
    dial = ctx.obj["address_map"]
    tried: set[str] = set()
    queue = list(seeds)
    while queue:
        addr = queue.pop(0)
        if addr in tried:
            continue
        tried.add(addr)
        with grpc.insecure_channel(dial.get(addr, addr)) as ch:
            try:
                r = admin_pb2_grpc.ClusterAdminStub(ch).CreateCluster(
                    admin_pb2.CreateClusterRequest(groups=groups, replicas=replicas),
                    timeout=max(ctx.obj["timeout"], 10.0),
                )
            except grpc.RpcError:
                continue
        if r.ok:
            smap = json.loads(r.slot_map)
            if ctx.obj["json"]:
                click.echo(json.dumps({"ok": True, "epoch": r.epoch, "slot_map": smap}))
            else:
                click.echo(f"cluster layout at epoch {r.epoch}:")
                _print_slot_map(smap)
            return
        if r.leader_address:
            queue.insert(0, r.leader_address)
            continue
        if r.error == "not the meta leader":
            continue  # no leader known yet there; try the next node
        _fail(r.error)
    _fail("no node accepted the layout (is the meta group up?)", EXIT_UNREACHABLE)


def _fetch_slot_map(ctx: click.Context) -> dict[str, Any]:
    from kvcluster.v1 import admin_pb2, admin_pb2_grpc

    seeds = [s for s in ctx.obj["cluster"].split(",") if s]
    if not seeds:
        raise click.UsageError("give --cluster HOST:PORT or set KVCTL_CLUSTER")
    dial = ctx.obj["address_map"]
    best: dict[str, Any] | None = None
    for addr in seeds:
        with grpc.insecure_channel(dial.get(addr, addr)) as ch:
            try:
                r = admin_pb2_grpc.ClusterInfoStub(ch).ClusterSlots(
                    admin_pb2.ClusterSlotsRequest(), timeout=ctx.obj["timeout"]
                )
            except grpc.RpcError:
                continue
        smap = json.loads(r.slot_map)
        if best is None or smap["epoch"] > best["epoch"]:
            best = smap
    if best is None:
        _fail("no node answered", EXIT_UNREACHABLE)
    return best


def _print_slot_map(smap: dict[str, Any]) -> None:
    groups = {g["id"]: g for g in smap["groups"]}
    click.echo(f"{'slots':<14}{'group':<7}{'leader':<22}replicas")
    for start, end, gid in smap["slots"]:
        g = groups.get(gid, {})
        click.echo(
            f"{f'{start}-{end}':<14}{gid:<7}{g.get('leader') or '?':<22}"
            f"{','.join(g.get('replicas', []))}"
        )


@main.command("slots")
@click.pass_context
def slots_cmd(ctx: click.Context) -> None:
    """The slot map (like CLUSTER SLOTS): slot ranges, owning group, leader, replicas."""
    smap = _fetch_slot_map(ctx)
    if ctx.obj["json"]:
        click.echo(json.dumps(smap))
        return
    click.echo(f"epoch {smap['epoch']}")
    _print_slot_map(smap)


@main.command("nodes")
@click.pass_context
def nodes_cmd(ctx: click.Context) -> None:
    """Every node: id, address, reachable, and the groups it hosts and leads."""
    addrs, dial = _cluster_nodes(ctx)
    rows: list[dict[str, Any]] = []
    for nid, addr in sorted(addrs.items()):
        st = _node_status(addr, ctx.obj["timeout"], dial)
        rows.append(
            {
                "node": nid,
                "address": addr,
                "up": st is not None,
                "groups": sorted(g.group_id for g in st.groups) if st else [],
                "leads": sorted(g.group_id for g in st.groups if g.role == "LEADER") if st else [],
            }
        )
    if ctx.obj["json"]:
        click.echo(json.dumps({"nodes": rows}))
        return
    click.echo(f"{'node':<6}{'address':<24}{'up':<5}{'groups':<16}leads")
    for r in rows:
        click.echo(
            f"{r['node']:<6}{r['address']:<24}{'yes' if r['up'] else 'NO':<5}"
            f"{','.join(map(str, r['groups'])):<16}{','.join(map(str, r['leads']))}"
        )


@main.command("bench")
@click.option("--workload", type=click.Choice(["write", "read"]), default="write")
@click.option("--concurrency", "-c", type=int, default=16, show_default=True)
@click.option("--seconds", type=float, default=10.0, show_default=True)
@click.option("--warmup", type=float, default=1.0, show_default=True)
@click.option("--stale", is_flag=True, help="stale reads instead of linearizable")
@click.option("--nodes", type=int, default=3, show_default=True)
@click.option("--groups", type=int, default=3, show_default=True, help="shard groups")
@click.option("--no-fsync", is_flag=True, help="own cluster without fsync (unsafe)")
@click.pass_context
def bench_cmd(ctx: click.Context, /, **opts: Any) -> None:
    """Closed-loop benchmark; JSON on the last line. Starts its own cluster unless --cluster."""
    from kvcluster.bench import BenchConfig, run_bench

    cfg = BenchConfig(
        workload=opts["workload"],
        concurrency=opts["concurrency"],
        seconds=opts["seconds"],
        warmup=opts["warmup"],
        stale=opts["stale"],
        cluster=ctx.obj["cluster"] or None,
        nodes=opts["nodes"],
        groups=opts["groups"],
        fsync=not opts["no_fsync"],
    )
    result = run_bench(cfg)
    if not ctx.obj["json"]:
        click.echo(
            f"{result['workload']} C={result['concurrency']}: {result['ops_s']:,.0f} ops/s "
            f"p50 {result['p50_ms']} ms p99 {result['p99_ms']} ms errors {result['errors']}",
            err=True,
        )
    click.echo(json.dumps(result))


def _register() -> None:
    from kvcluster.reshard.commands import group_cmd, rebalance_cmd, reshard_cmd

    main.add_command(reshard_cmd)
    main.add_command(rebalance_cmd)
    main.add_command(group_cmd)


_register()

if __name__ == "__main__":
    main()
