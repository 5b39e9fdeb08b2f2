"""The ``jepsen-lite run`` command: a workload against a cluster under a nemesis, then a verdict.

What lives here: `run` (the click command) and `register`, which attaches it to the checker's
click group (``register(main)`` in ``cli.py``). It parses options into a `RunConfig`, calls
`runner.run`, prints progress and the one-screen summary, then the verdict as JSON on the
**last line** of stdout (the ``check`` command's keys, plus ``run_dir``, ``workload``,
``seed``, ``info``, ``failover_s``, ``final_reads_ok`` and ``unsafe_stale_reads``; with the
``reshard`` nemesis also ``slots_moved`` and ``migrations_left``, which must be 0).

Exit codes are the checker's: 0 valid, 1 invalid, 2 unknown (the checker's time limit ran out,
or a counter key has no final read), 3 bad usage or a run that could not be carried out (not
root, ``ip``/``iptables`` missing, no Docker or no image for ``--backend compose``, the
cluster did not start; the reason on stderr); 130 on Ctrl-C or SIGTERM, after everything the
run made is removed.

What must not: anything the runner does (this only translates between the command line and
`runner`).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click

from jepsen_lite.nemesis import parse_kinds
from jepsen_lite.netns import DEFAULT_SUBNET
from jepsen_lite.runner import BACKENDS, RunConfig, RunError
from jepsen_lite.runner import run as run_once
from jepsen_lite.workloads import WORKLOADS

__all__ = ["EXIT_INTERRUPTED", "register", "run"]

_EXIT = {"valid": 0, "invalid": 1, "unknown": 2}
EXIT_ERROR = 3  # the checker's EXIT_MALFORMED: bad usage, or the run could not be carried out
EXIT_INTERRUPTED = 130


def _nemesis(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_kinds(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command("run")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="local",
    show_default=True,
    help="local: node processes in network namespaces on this machine (root). "
    "compose: the 3 nodes of docker-compose.yml as a compose project of the run's own "
    "(Docker; partitions need root).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=3,
    show_default=True,
    help="Nodes (local backend; compose has exactly 3).",
)
@click.option(
    "--workload", type=click.Choice(sorted(WORKLOADS)), default="register", show_default=True
)
@click.option(
    "--nemesis",
    "nemesis",
    default="partition,kill,pause",
    show_default=True,
    callback=_nemesis,
    help="Comma-separated faults: partition, kill, pause, reshard (online slot moves between "
    "shard groups, on a timeline of their own, overlapping the other faults); or none.",
)
@click.option(
    "--time",
    "duration",
    type=click.FloatRange(min=1),
    default=60,
    show_default=True,
    metavar="SECONDS",
    help="How long the workload runs under the nemesis (a quiet period and final reads follow).",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=5, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed of the schedule (default: random).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run directory (default: jepsen-runs/<time>-<workload>-seed<seed>).",
)
@click.option("--groups", type=click.IntRange(1, 16), default=3, show_default=True)
@click.option(
    "--quiet",
    type=click.FloatRange(min=0),
    default=5,
    show_default=True,
    metavar="SECONDS",
    help="Fault-free workload after the heal, before the final reads.",
)
@click.option(
    "--op-timeout",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="The client's timeout per attempt.",
)
@click.option("--attempts", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120,
    show_default=True,
    metavar="SECONDS",
    help="The checker's time limit (then the verdict is unknown).",
)
@click.option(
    "--subnet",
    default=None,
    help=f"Private /24 for the test network (default: the first free one from {DEFAULT_SUBNET}, "
    "10.77.1.0/24, ... 10.77.31.0/24).",
)
@click.option(
    "--unsafe-stale-reads",
    is_flag=True,
    help="TEST ONLY: start the nodes with KVCLUSTER_UNSAFE_STALE_READS=1 (reads skip "
    "ReadIndex). The self-test: such a run with partitions must be found not linearizable.",
)
@click.option(
    "--snapshot-entries",
    type=click.IntRange(min=10),
    default=None,
    help="The nodes' --snapshot-entries (default: theirs). A small value makes a node that "
    "was killed or cut off catch up by a snapshot instead of the log.",
)
@click.option("--keep-data", is_flag=True, help="Keep the nodes' data directories (local).")
@click.option(
    "--image",
    envvar="KVCLUSTER_IMAGE",
    default="kvcluster:latest",
    show_default=True,
    help="Node image for --backend compose; must be present (scripts/docker/build.sh). "
    "Default from $KVCLUSTER_IMAGE.",
)
@click.option(
    "--compose-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("docker-compose.yml"),
    show_default=True,
    help="The compose file for --backend compose.",
)
@click.pass_context
def run(
    ctx: click.Context,
    backend: str,
    nodes: int,
    workload: str,
    nemesis: tuple[str, ...],
    duration: float,
    concurrency: int,
    seed: int | None,
    out: Path | None,
    groups: int,
    quiet: float,
    op_timeout: float,
    attempts: int,
    check_timeout: float,
    subnet: str | None,
    unsafe_stale_reads: bool,
    snapshot_entries: int | None,
    keep_data: bool,
    image: str,
    compose_file: Path,
) -> None:
    """Run a WORKLOAD against a cluster while a NEMESIS injects faults, then check it.

    Writes the run directory (history.jsonl, nemesis.jsonl, node logs, verdict.json,
    report.html, summary.txt), prints a summary, and the verdict as JSON on the last line.
    Exit codes: 0 valid, 1 invalid, 2 unknown, 3 the run could not be carried out.
    """
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    cfg = RunConfig(
        workload=workload,
        nemesis=nemesis,
        time=duration,
        nodes=nodes,
        concurrency=concurrency,
        seed=seed,
        out=out,
        backend=backend,
        groups=groups,
        quiet=quiet,
        op_timeout=op_timeout,
        attempts=attempts,
        check_timeout=check_timeout,
        subnet=subnet,
        unsafe_stale_reads=unsafe_stale_reads,
        snapshot_entries=snapshot_entries,
        keep_data=keep_data,
        image=image,
        compose_file=compose_file,
    )
    click.echo(f"jepsen-lite run: seed {seed}")
    try:
        outcome = run_once(cfg, echo=click.echo)
    except RunError as e:
        click.echo(f"jepsen-lite: {e}", err=True)
        ctx.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo(
            "jepsen-lite: interrupted; the nodes and the test network were removed", err=True
        )  # (compose: `down -v` removed the project's containers, network and volumes)
        ctx.exit(EXIT_INTERRUPTED)
    click.echo(outcome.text)
    click.echo(f"report: {outcome.run_dir / 'report.html'}")
    click.echo(json.dumps(outcome.summary))
    ctx.exit(_EXIT[outcome.outcome])


def register(group: click.Group) -> None:
    """Attach `run` to the checker's CLI group (``register(main)`` in ``cli.py``)."""
    group.add_command(run)
