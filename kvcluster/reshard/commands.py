"""``kvctl reshard``, ``kvctl rebalance`` and ``kvctl group add|remove``.

Contract:
- Plans come from ``kvcluster.sharding.rebalance``; they are recorded in the meta group in
  one command (all or nothing) and then driven by ``Executor`` from this process, with a
  progress bar (slots, keys/s, ETA) on stderr and a JSON summary on stdout's last line.
- ``--dry-run`` prints the plan (per slot: keys and bytes, read from the source group) and
  an estimate, and changes nothing.
- Ctrl-C stops before any further freeze; slots already frozen finish their cutover, so
  the cluster is left consistent (every slot served by exactly one group). What remains is
  recorded in the meta group: ``kvctl reshard --resume`` finishes it, ``--abort`` rolls back
  what has not been frozen yet (a frozen slot's move is decided, so it is finished).
- Exit codes (as the rest of kvctl): 0 done; 1 refused or failed; 4 unreachable; 5 stopped
  with migrations left (resume or abort them).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from kvcluster.errors import InvalidArgument, KvClusterError, OutcomeUnknown
from kvcluster.meta import META_GROUP, AddGroup, MetaState, RemoveGroup
from kvcluster.reshard.executor import Executor, SlotReport
from kvcluster.reshard.rpc import LeaderCalls
from kvcluster.sharding.rebalance import plan_rebalance, plan_reshard
from kvcluster.v1 import admin_pb2

__all__ = ["group_cmd", "rebalance_cmd", "reshard_cmd"]

EXIT_FAILED, EXIT_UNREACHABLE, EXIT_STOPPED = 1, 4, 5
# What moving costs, for --dry-run's estimate, from scripts/bench_reshard.py on the 2-core
# reference machine (see the README): about 94 nearly empty slots/s in the default waves, and
# a 10,000-key slot of 790 kB copied in 0.59 s. The cluster's own load changes both.
_SECONDS_PER_SLOT = 0.011
_BYTES_PER_SECOND = 1.3e6


def _fail(msg: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"kvctl: {msg}", err=True)
    sys.exit(code)


def _calls(ctx: click.Context) -> LeaderCalls:
    seeds = [s for s in ctx.obj["cluster"].split(",") if s]
    if not seeds:
        raise click.UsageError("give --cluster HOST:PORT or set KVCTL_CLUSTER")
    return LeaderCalls(seeds, address_map=ctx.obj["address_map"], rpc_timeout=ctx.obj["timeout"])


def _owners(meta: MetaState) -> dict[int, int]:
    return {s: g for first, last, g in meta.owners for s in range(first, last + 1)}


def parse_slots(spec: str) -> list[int]:
    """``0-99,200,300-310`` -> the slots."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        a, sep, b = part.partition("-")
        try:
            lo, hi = int(a), int(b) if sep else int(a)
        except ValueError:
            raise click.BadParameter(f"bad slot range {part!r}") from None
        if lo > hi:
            raise click.BadParameter(f"empty slot range {part!r}")
        out.extend(range(lo, hi + 1))
    return out


def _slot_sizes(
    calls: LeaderCalls, moves: list[tuple[int, int]], owners: dict[int, int]
) -> dict[int, tuple[int, int]]:
    """slot -> (keys, bytes), read from each slot's owner, 256 slots per call."""
    by_group: dict[int, list[int]] = {}
    for s, _ in moves:
        by_group.setdefault(owners[s], []).append(s)
    batches = [(g, ss[i : i + 256]) for g, ss in by_group.items() for i in range(0, len(ss), 256)]

    def one(item: tuple[int, list[int]]) -> list[tuple[int, tuple[int, int]]]:
        group, slots = item
        r = calls.scan(group, slots, admin_pb2.SIZES)
        return [
            (s, (int(k), int(b)))
            for s, k, b in zip(slots, r.keys_totals, r.bytes_totals, strict=True)
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {s: kb for part in pool.map(one, batches) for s, kb in part}


def _dry_run(
    ctx: click.Context, calls: LeaderCalls, meta: MetaState, moves: list[tuple[int, int]]
) -> None:
    owners = _owners(meta)
    sizes = _slot_sizes(calls, moves, owners)
    keys = sum(k for k, _ in sizes.values())
    size = sum(b for _, b in sizes.values())
    estimate = len(moves) * _SECONDS_PER_SLOT + size / _BYTES_PER_SECOND
    rows = [
        {"slot": s, "from": owners[s], "to": t, "keys": sizes[s][0], "bytes": sizes[s][1]}
        for s, t in moves
    ]
    if not ctx.obj["json"]:
        click.echo(f"{'slot':>6} {'from':>5} {'to':>5} {'keys':>9} {'bytes':>12}")
        for r in rows:
            click.echo(
                f"{r['slot']:>6} {r['from']:>5} {r['to']:>5} {r['keys']:>9} {r['bytes']:>12}"
            )
        click.echo(
            f"{len(moves)} slots, {keys} keys, {size} bytes; estimated {estimate:.0f} s "
            "(dry run: nothing changed)"
        )
    click.echo(
        json.dumps(
            {"dry_run": True, "slots": len(moves), "keys": keys, "bytes": size,
             "estimate_s": round(estimate, 1), "moves": rows if ctx.obj["json"] else []}
        )
    )  # fmt: skip


def _drive(
    ctx: click.Context,
    calls: LeaderCalls,
    work: Callable[[Executor], list[SlotReport]],
    total: int,
    batch: int,
    parallel: int,
    throttle: float,
    verb: str,
) -> None:
    """Run ``work`` on a thread with a progress bar; Ctrl-C stops it cleanly."""
    stop = threading.Event()
    done: list[SlotReport] = []
    keys = [0]
    t0 = time.monotonic()
    bar: Any = click.progressbar(
        length=max(total, 1),
        label=verb,
        show_eta=True,
        show_pos=True,
        file=sys.stderr,
        item_show_func=lambda _: f"{keys[0] / max(time.monotonic() - t0, 1e-9):,.0f} keys/s",
    )

    def on_slot(r: SlotReport) -> None:
        done.append(r)
        keys[0] += r.keys + r.dirty
        bar.update(1, r)

    ex = Executor(
        calls,
        batch=batch,
        parallel=parallel,
        throttle_keys_per_s=throttle,
        stop=stop,
        on_slot=on_slot,
    )
    error: list[BaseException] = []
    # Not Thread.join/is_alive: a KeyboardInterrupt inside join() can leave is_alive()
    # reporting False while the thread still runs (CPython before 3.13), and the process
    # would exit in the middle of a cutover.
    finished = threading.Event()

    def target() -> None:
        try:
            work(ex)
        except BaseException as e:  # reported by the main thread
            error.append(e)
        finally:
            finished.set()

    th = threading.Thread(target=target, name="reshard", daemon=True)
    with bar:
        th.start()
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            stop.set()
            click.echo("\nstopping: slots already frozen finish their cutover ...", err=True)
            while not finished.is_set():
                try:
                    finished.wait(0.2)
                except KeyboardInterrupt:
                    click.echo("still finishing frozen slots; please wait", err=True)
    elapsed = time.monotonic() - t0
    moved = [r for r in done if r.outcome == "done"]
    cut = sorted(r.cutover_ms for r in moved if r.cutover_ms)
    summary: dict[str, Any] = {
        "slots_done": len(moved),
        "slots_aborted": sum(r.outcome == "aborted" for r in done),
        "slots_stopped": sum(r.outcome == "stopped" for r in done),
        "keys": keys[0],
        "seconds": round(elapsed, 2),
        "cutover_p50_ms": round(cut[len(cut) // 2], 1) if cut else None,
        "cutover_max_ms": round(cut[-1], 1) if cut else None,
    }
    if error:
        e = error[0]
        summary["error"] = str(e)
        click.echo(json.dumps(summary))
        code = EXIT_UNREACHABLE if isinstance(e, OutcomeUnknown) else EXIT_FAILED
        _fail(f"{verb} failed: {e}; `kvctl reshard --resume` or `--abort` to finish", code)
    click.echo(json.dumps(summary))
    if summary["slots_stopped"]:
        _fail(
            f"stopped with {summary['slots_stopped']} migrations left: "
            "`kvctl reshard --resume` finishes them, `kvctl reshard --abort` rolls them back",
            EXIT_STOPPED,
        )


def _execute(
    ctx: click.Context,
    moves: list[tuple[int, int]],
    *,
    dry_run: bool,
    throttle: float,
    batch: int,
    parallel: int,
    verb: str,
) -> None:
    with _calls(ctx) as calls:
        try:
            meta = calls.meta_state()
            if meta.migrations:
                _fail(
                    f"{len(meta.migrations)} migrations are unfinished: "
                    "`kvctl reshard --resume` or `--abort` first"
                )
            if not moves:
                click.echo(json.dumps({"slots_done": 0, "note": "nothing to move"}))
                return
            if dry_run:
                _dry_run(ctx, calls, meta, moves)
                return
            ex = Executor(calls)
            ex.plan(moves)
        except OutcomeUnknown as e:
            _fail(str(e), EXIT_UNREACHABLE)
        except KvClusterError as e:
            _fail(str(e))
        _drive(ctx, calls, lambda ex: ex.run(), len(moves), batch, parallel, throttle, verb)


def _layout(ctx: click.Context) -> MetaState:
    with _calls(ctx) as calls:
        try:
            return calls.meta_state()
        except OutcomeUnknown as e:
            _fail(str(e), EXIT_UNREACHABLE)
        except KvClusterError as e:
            _fail(str(e))
    raise AssertionError  # pragma: no cover


_common = [
    click.option("--dry-run", is_flag=True, help="print the plan and an estimate; change nothing"),
    click.option("--throttle", type=float, default=0.0, help="copy at most this many keys/s"),
    click.option(
        "--batch",
        type=int,
        default=64,
        show_default=True,
        help="slots per wave (cut over together)",
    ),
    click.option("--parallel", type=int, default=2, show_default=True, help="waves at once"),
]


def _with_common(f: Any) -> Any:
    for opt in reversed(_common):
        f = opt(f)
    return f


@click.command("reshard")
@click.option("--slots", "slot_spec", default=None, help="slots to move, e.g. 0-99,200")
@click.option("--count", type=int, default=None, help="how many slots to move")
@click.option("--from", "source", type=int, default=None, help="take them from this group")
@click.option("--to", "target", type=int, default=None, help="the group that receives them")
@click.option("--resume", is_flag=True, help="finish the migrations recorded earlier")
@click.option(
    "--abort", "abort_", is_flag=True, help="roll back migrations not yet frozen (finish the rest)"
)
@_with_common
@click.pass_context
def reshard_cmd(
    ctx: click.Context,
    /,
    slot_spec: str | None,
    count: int | None,
    source: int | None,
    target: int | None,
    resume: bool,
    abort_: bool,
    **opts: Any,
) -> None:
    """Move slots between shard groups while the cluster serves.

    \b
    kvctl reshard --slots 0-99 --to 2
    kvctl reshard --count 500 --from 1 --to 3
    kvctl reshard --resume | --abort
    """
    if resume or abort_:
        if resume and abort_:
            raise click.UsageError("--resume or --abort, not both")
        meta = _layout(ctx)
        work = (lambda ex: ex.abort()) if abort_ else (lambda ex: ex.run())
        with _calls(ctx) as calls:
            _drive(
                ctx,
                calls,
                work,
                len(meta.migrations),
                opts["batch"],
                opts["parallel"],
                0 if abort_ else opts["throttle"],
                "abort" if abort_ else "resume",
            )
        return
    if target is None:
        raise click.UsageError("--to GROUP is required")
    meta = _layout(ctx)
    try:
        moves = plan_reshard(
            _owners(meta),
            sorted(meta.groups),
            target,
            slots=parse_slots(slot_spec) if slot_spec else None,
            count=count,
            source=source,
        )
    except InvalidArgument as e:
        raise click.UsageError(str(e)) from None
    _execute(ctx, moves, verb="reshard", **opts)


@click.command("rebalance")
@click.option(
    "--by", type=click.Choice(["slots", "keys", "bytes"]), default="slots", show_default=True
)
@_with_common
@click.pass_context
def rebalance_cmd(ctx: click.Context, /, by: str, **opts: Any) -> None:
    """Even the shard groups out: by slot count (default), or by keys or bytes held."""
    meta = _layout(ctx)
    owners = _owners(meta)
    weights = None
    if by != "slots":
        with _calls(ctx) as calls:
            calls.meta_state()
            sizes = _slot_sizes(calls, [(s, 0) for s in owners], owners)
        weights = {s: float(k if by == "keys" else b) for s, (k, b) in sizes.items()}
    moves = plan_rebalance(owners, sorted(meta.groups), weights)
    _execute(ctx, moves, verb="rebalance", **opts)


@click.group("group")
def group_cmd() -> None:
    """Add or remove shard groups (scale out and in)."""


@group_cmd.command("add")
@click.argument("group_id", type=int)
@click.option("--replicas", required=True, help="node ids, e.g. 1,2,3")
@click.pass_context
def group_add_cmd(ctx: click.Context, group_id: int, replicas: str) -> None:
    """Create shard group GROUP_ID with replicas on the named nodes (it owns no slots;
    `kvctl rebalance` then moves slots onto it)."""
    try:
        nodes = tuple(int(n) for n in replicas.split(",") if n.strip())
    except ValueError:
        raise click.BadParameter("--replicas takes node ids like 1,2,3") from None
    with _calls(ctx) as calls:
        try:
            calls.meta_state()
            r = calls.propose(META_GROUP, [AddGroup(group_id, nodes).encode()])
        except OutcomeUnknown as e:
            _fail(str(e), EXIT_UNREACHABLE)
        except KvClusterError as e:
            _fail(str(e))
    click.echo(
        json.dumps({"ok": True, "group": group_id, "replicas": list(nodes), "epoch": r.epoch})
    )


@group_cmd.command("remove")
@click.argument("group_id", type=int)
@_with_common
@click.pass_context
def group_remove_cmd(ctx: click.Context, /, group_id: int, **opts: Any) -> None:
    """Drain GROUP_ID (move its slots evenly onto the other groups), then remove it."""
    meta = _layout(ctx)
    if group_id not in meta.groups:
        _fail(f"no group {group_id}")
    others = sorted(g for g in meta.groups if g != group_id)
    if not others:
        _fail("cannot remove the last group")
    owners = _owners(meta)
    mine = [s for s, g in owners.items() if g == group_id]
    moves = [(s, others[i % len(others)]) for i, s in enumerate(sorted(mine))]
    if opts["dry_run"] or moves:
        _execute(ctx, moves, verb="drain", **opts)
        if opts["dry_run"]:
            return
    with _calls(ctx) as calls:
        try:
            calls.meta_state()
            r = calls.propose(META_GROUP, [RemoveGroup(group_id).encode()])
        except OutcomeUnknown as e:
            _fail(str(e), EXIT_UNREACHABLE)
        except KvClusterError as e:
            _fail(str(e))
    click.echo(json.dumps({"ok": True, "removed": group_id, "epoch": r.epoch}))
