"""The store's errors, re-exported: they are defined in ``kvcluster/errors.py`` (the one
exception tree); import them from either place."""

from kvcluster.errors import (
    CorruptSnapshot,
    GroupExists,
    IdentityMismatch,
    IncompatibleFormat,
    NodeStoreError,
    StorageFull,
    StoreLocked,
    UnknownGroup,
)

__all__ = [
    "CorruptSnapshot",
    "GroupExists",
    "IdentityMismatch",
    "IncompatibleFormat",
    "NodeStoreError",
    "StorageFull",
    "StoreLocked",
    "UnknownGroup",
]
