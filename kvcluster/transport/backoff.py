"""Capped exponential backoff with jitter, for reconnecting to a peer.

Contract:
- Pure: no clock and no global random. ``next_delay()`` returns how long to wait before the
  next attempt and advances; ``reset()`` is called once a connection is proven (the peer
  acknowledged a batch). The caller does the waiting.
- Delays grow ``initial * multiplier**n`` up to ``maximum``; each is scaled by a factor drawn
  uniformly from ``[1 - jitter, 1]`` from the injected ``random.Random``, so peers that lost
  a node at the same moment do not reconnect in lockstep, and no delay exceeds ``maximum``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from kvcluster.errors import InvalidArgument

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float = 0.05
    maximum: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise InvalidArgument(f"need 0 < initial <= maximum, got {self}")
        if self.multiplier < 1:
            raise InvalidArgument(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise InvalidArgument(f"jitter must be in [0, 1), got {self.jitter}")


class Backoff:
    """The delay schedule of one peer's reconnect attempts."""

    __slots__ = ("_base", "_policy", "_rng", "attempt")

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self._base = policy.initial  # invariant: initial <= _base <= maximum
        self.attempt = 0  # failed attempts since the last reset

    def next_delay(self) -> float:
        p = self._policy
        delay = self._base * (1.0 - p.jitter * self._rng.random())
        self._base = min(self._base * p.multiplier, p.maximum)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self._base = self._policy.initial
        self.attempt = 0
