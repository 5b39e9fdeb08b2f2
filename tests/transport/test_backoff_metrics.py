"""Reconnect backoff (pure, seeded) and the transport's counters."""

from __future__ import annotations

import random

import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.transport import BATCH_SIZE_BUCKETS, Backoff, BackoffPolicy, TransportMetrics


def test_backoff_grows_to_the_cap_with_bounded_jitter() -> None:
    policy = BackoffPolicy(initial=0.05, maximum=2.0, multiplier=2.0, jitter=0.2)
    b = Backoff(policy, random.Random(7))
    delays = [b.next_delay() for _ in range(12)]
    bases = [min(0.05 * 2**i, 2.0) for i in range(12)]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.8 <= d <= base
    assert b.attempt == 12
    assert max(delays) <= 2.0


def test_backoff_is_deterministic_per_seed_and_resets() -> None:
    policy = BackoffPolicy()
    a, b = Backoff(policy, random.Random(3)), Backoff(policy, random.Random(3))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]
    a.reset()
    assert a.attempt == 0
    assert a.next_delay() <= policy.initial


def test_backoff_without_jitter_is_exact() -> None:
    b = Backoff(BackoffPolicy(initial=0.1, maximum=0.5, jitter=0.0), random.Random(0))
    assert [b.next_delay() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"initial": 3, "maximum": 2}, {"multiplier": 0.5}, {"jitter": 1.0}],
)
def test_backoff_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidArgument):
        BackoffPolicy(**kwargs)


def test_batch_size_histogram_is_cumulative() -> None:
    m = TransportMetrics()
    for n in (1, 1, 3, 64, 65, 5000):
        m.observe_batch_size(n)
    hist = dict(m.batch_size_histogram())
    assert hist[1.0] == 2
    assert hist[2.0] == 2
    assert hist[4.0] == 3
    assert hist[64.0] == 4
    assert hist[128.0] == 5
    assert hist[float(BATCH_SIZE_BUCKETS[-1])] == 5
    assert hist[float("inf")] == 6
    assert "batch_size_counts" not in m.counters()
    assert m.counters()["drops"] == 0
