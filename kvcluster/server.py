"""``kvcluster-server`` / ``python -m kvcluster.server``: run one node process.

Contract: configuration comes from an optional TOML file (``--config``), then ``KV_*``
environment variables, then flags (later wins). Bad configuration exits with status 2 and a
one-line reason before anything is opened. SIGTERM and SIGINT shut down gracefully: stop
accepting, hand leadership away, finish in-flight work, close storage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from kvcluster.errors import KvClusterError
from kvcluster.node.config import NodeConfig, parse_peers

__all__ = ["main"]


def _load_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            data = tomllib.loads(Path(value).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise click.BadParameter(f"cannot read {value}: {e}") from e
        ctx.default_map = {k.replace("-", "_"): v for k, v in data.items()}
    return value


@click.command(context_settings={"auto_envvar_prefix": "KV", "show_default": True})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_file,
    is_eager=True,
    expose_value=False,
    help="TOML file with any of the options below (snake_case keys).",
)
@click.option("--node-id", type=int, required=True, help="This node's id (>= 1).")
@click.option("--listen", required=True, help="gRPC HOST:PORT (client, peer, admin).")
@click.option("--advertise", default="", help="Address others dial (default: --listen).")
@click.option("--http", default="", help="HOST:PORT for /health and /metrics.")
@click.option("--peers", required=True, help="ID=HOST:PORT,... of every voter, this one too.")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True)
@click.option("--cluster-id", default="kvcluster")
@click.option("--tick-ms", type=int, default=50)
@click.option("--election-ticks", type=int, default=10)
@click.option("--heartbeat-ticks", type=int, default=2)
@click.option("--map-size-mb", type=int, default=1024, help="LMDB map size.")
@click.option("--no-fsync", is_flag=True, help="Unsafe: skip fsync (benchmarks only).")
@click.option(
    "--snapshot-entries",
    type=int,
    default=10_000,
    help="compact a group's log once it holds this many applied entries (the oldest tenth "
    "goes; a follower further behind is sent a snapshot of the applied data)",
)
@click.option(
    "--finish-stalled-moves-after",
    type=float,
    default=30.0,
    help="seconds a decided slot move (FROZEN or later) may make no progress before the "
    "meta group's leader finishes it itself; 0: leave it to kvctl reshard --resume",
)
@click.option(
    "--expire-keys-every",
    type=float,
    default=1.0,
    help="seconds between passes of active expiry: each shard group's leader reads up to "
    "1,000 of its keys and deletes the expired ones through its log; 0: off (expired keys "
    "are still never served, but keep their space until written again)",
)
@click.option(
    "--bootstrap-groups",
    type=int,
    default=0,
    help="create the layout on first start: this many shard groups (0: kvctl cluster create)",
)
@click.option("--bootstrap-replicas", type=int, default=3, help="replicas per shard group")
@click.option("--log-level", default="INFO")
def main(**opts: Any) -> None:
    """Run one kvcluster node."""
    logging.basicConfig(
        level=opts["log_level"].upper(),
        format=f"%(asctime)s n{opts['node_id']} %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = NodeConfig(
            node_id=opts["node_id"],
            listen=opts["listen"],
            advertise=opts["advertise"],
            http=opts["http"],
            peers=parse_peers(opts["peers"]),
            data_dir=Path(opts["data_dir"]),
            cluster_id=opts["cluster_id"],
            tick_ms=opts["tick_ms"],
            election_ticks=opts["election_ticks"],
            heartbeat_ticks=opts["heartbeat_ticks"],
            map_size=opts["map_size_mb"] << 20,
            fsync=not opts["no_fsync"],
            snapshot_entries=opts["snapshot_entries"],
            finish_stalled_moves_s=opts["finish_stalled_moves_after"],
            expire_keys_s=opts["expire_keys_every"],
            bootstrap_groups=opts["bootstrap_groups"],
            bootstrap_replicas=opts["bootstrap_replicas"],
        )
    except KvClusterError as e:
        click.echo(f"kvcluster-server: bad configuration: {e}", err=True)
        sys.exit(2)
    try:
        asyncio.run(_serve(cfg))
    except KvClusterError as e:
        click.echo(f"kvcluster-server: {e}", err=True)
        sys.exit(1)


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections: what was allocated while starting (modules, the
    opened groups) is moved out of the collector's sight (``gc.freeze``), and a young
    collection waits for 10x more allocations than CPython's default. Every collection
    stops the event loop; with the defaults, full ones took ~30 ms every few seconds under
    load and showed in the latency tail."""
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0 * 10, gen1, gen2)


async def _serve(cfg: NodeConfig) -> None:
    from kvcluster.node.node import Node

    node = Node(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    _tune_gc()
    logging.getLogger("kvcluster.server").info("node %d serving on %s", cfg.node_id, cfg.listen)
    await stop.wait()
    await node.stop()


if __name__ == "__main__":
    main()
