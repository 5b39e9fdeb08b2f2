"""kvcluster — a Raft-replicated, hash-slot-sharded key-value store."""

__version__ = "0.1.0"
