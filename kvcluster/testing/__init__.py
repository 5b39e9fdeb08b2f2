"""Fakes and harnesses for testing kvcluster without I/O (STYLE.md rule 10).

Contract:
- Everything here is deterministic: randomness comes from an injected ``random.Random``,
  time from ticks; nothing sleeps, reads a clock or uses the global ``random``.
- The randomized simulation of the Raft core is ``network`` (a lossy, partitionable
  simulated network), ``cluster`` (a simulated Raft group whose replicas crash and restart
  from what they persisted), ``invariants`` (Raft's safety properties, checked after every
  step) and ``replay`` (one seed's schedule; ``python -m kvcluster.testing.replay --seed N
  --verbose`` replays it step by step).
- Importing this package imports nothing else: pick the submodule you need.
"""
