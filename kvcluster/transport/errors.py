"""Errors of the peer transport.

Contract:
- Every error the transport raises on purpose is a ``TransportError`` under ``KvClusterError``.
- Network trouble is never raised to the caller of ``send()``: Raft tolerates loss, so a peer
  that cannot be reached is reported through the ``on_unreachable`` callback and counted.
  What is raised is misuse (``InvalidArgument`` from ``kvcluster.errors``, ``TransportError``)
  and bytes or messages that have no wire form (``CodecError``).
- These classes are meant to move into ``kvcluster/errors.py`` (which this package may not
  edit); until then they live here:

      KvClusterError
      └── TransportError                the peer transport refused an operation
          └── CodecError                bytes that are not an encoded Raft message, or a
                                        message that has no wire form (a local message type)
"""

from __future__ import annotations

from kvcluster.errors import KvClusterError

__all__ = ["CodecError", "TransportError"]


class TransportError(KvClusterError):
    """The peer transport refused an operation (misuse, such as starting it twice)."""


class CodecError(TransportError, ValueError):
    """Bytes that do not decode as one Raft message, or a message that cannot be encoded.

    A receiver skips and counts the offending payload; it never takes the node down.
    """
