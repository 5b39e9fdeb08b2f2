"""The randomized simulation of the Raft core over many seeds (kvcluster.testing.replay).

Each seed is a whole run: a random schedule with loss, duplication, reordering, partitions,
crashes, snapshots and membership changes, with the invariants checked after every step, then
healing and the liveness goals. ``KV_SIM_SEEDS`` sets how many seeds (default 1000),
``KV_SIM_SEED`` runs just one (and ``KV_SIM_SEED_BASE`` shifts the range). A failure names the
seed and the command that replays it step by step. ``KV_SIM_INTERLEAVED_SEEDS`` (default 300)
seeds run again with replicas stepping messages while their Ready is written.
"""

from __future__ import annotations

import os

import pytest

from kvcluster.testing.replay import SimulationFailure, run_seed

CHUNK = 50


def _seeds() -> list[int]:
    one = os.environ.get("KV_SIM_SEED")
    if one:
        return [int(one)]
    base = int(os.environ.get("KV_SIM_SEED_BASE", "0"))
    return list(range(base, base + int(os.environ.get("KV_SIM_SEEDS", "1000"))))


def _chunks() -> list[list[int]]:
    seeds = _seeds()
    return [seeds[i : i + CHUNK] for i in range(0, len(seeds), CHUNK)]


def _interleaved_chunks() -> list[list[int]]:
    n = int(os.environ.get("KV_SIM_INTERLEAVED_SEEDS", "300"))
    return [list(range(i, min(i + CHUNK, n))) for i in range(0, n, CHUNK)]


@pytest.mark.parametrize("seeds", _chunks(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
def test_sim_seed_sweep(seeds: list[int]) -> None:
    _sweep(seeds)


@pytest.mark.parametrize("seeds", _interleaved_chunks(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
def test_sim_seed_sweep_stepping_during_writes(seeds: list[int]) -> None:
    # As the node runtime does: messages are stepped into a replica while its Ready is
    # being written (between ready() and advance()), e.g. followers' acknowledgements of
    # appends that left before the leader's own write finished.
    _sweep(seeds, step_during_write=0.5)


def _sweep(seeds: list[int], **knobs: float) -> None:
    failures: list[SimulationFailure] = []
    for seed in seeds:
        try:
            run_seed(seed, **knobs)
        except SimulationFailure as e:
            failures.append(e)
    if failures:
        others = ", ".join(str(f.params.seed) for f in failures[1:])
        more = f"\n(also failing in this chunk: seeds {others})" if others else ""
        pytest.fail(f"{failures[0]}{more}", pytrace=False)
