"""The transport's errors, re-exported: they are defined in ``kvcluster/errors.py`` (the one
exception tree); import them from either place."""

from kvcluster.errors import (
    CodecError,
    TransportError,
)

__all__ = [
    "CodecError",
    "TransportError",
]
