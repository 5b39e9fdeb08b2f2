"""The randomized simulation driven by hypothesis: it picks the seed and the knobs, and shrinks
a failure towards a short schedule on a small cluster with few features on.

The printed falsifying example maps to a replay command, e.g.
``python -m kvcluster.testing.replay --seed 7 --steps 120 --nodes 3 --pre-vote 0 --verbose``
(``SimulationFailure`` prints the exact one).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcluster.testing.replay import run_seed

EXAMPLES = int(os.environ.get("KV_SIM_HYPOTHESIS_EXAMPLES", "40"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(20, 1500),
    nodes=st.integers(1, 5),
    pre_vote=st.booleans(),
    check_quorum=st.booleans(),
    fast_backtrack=st.booleans(),
    membership=st.booleans(),
    step_during_write=st.sampled_from([0.0, 0.5]),
)
def test_sim_hypothesis(
    seed: int,
    steps: int,
    nodes: int,
    pre_vote: bool,
    check_quorum: bool,
    fast_backtrack: bool,
    membership: bool,
    step_during_write: float,
) -> None:
    run_seed(
        seed,
        steps=steps,
        nodes=nodes,
        pre_vote=pre_vote,
        check_quorum=check_quorum,
        fast_backtrack=fast_backtrack,
        membership=membership,
        step_during_write=step_during_write,
    )
