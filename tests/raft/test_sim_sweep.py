"""The randomized simulation of the Raft core over many seeds (kvcluster.testing.replay).

Each seed is a whole run: a random schedule with loss, duplication, reordering, partitions,
crashes, snapshots and membership changes, with the invariants checked after every step, then
healing and the liveness goals. ``KV_SIM_SEEDS`` sets how many seeds (default 1000),
``KV_SIM_SEED`` runs just one (and ``KV_SIM_SEED_BASE`` shifts the range). A failure names the
seed and the command that replays it step by step.
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


@pytest.mark.parametrize("seeds", _chunks(), ids=lambda s: f"seeds{s[0]}-{s[-1]}")
def test_sim_seed_sweep(seeds: list[int]) -> None:
    failures: list[SimulationFailure] = []
    for seed in seeds:
        try:
            run_seed(seed)
        except SimulationFailure as e:
            failures.append(e)
    if failures:
        others = ", ".join(str(f.params.seed) for f in failures[1:])
        more = f"\n(also failing in this chunk: seeds {others})" if others else ""
        pytest.fail(f"{failures[0]}{more}", pytrace=False)
