"""Fixtures for tests that run real node processes on 127.0.0.1 (cleaned up by PID)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kvcluster.local import LocalCluster
from kvcluster.testing.probes import stale_get_all

__all__ = ["stale_get_all"]


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[object]:
    made: list[LocalCluster] = []

    def make(nodes: int = 3, **kw: object) -> LocalCluster:
        c = LocalCluster(nodes, tmp_path / f"cluster{len(made)}", **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
        for node_id, text in c.logs():  # shown by pytest only when the test failed
            print(f"--- node {node_id} log (tail) ---")
            print("\n".join(text.splitlines()[-40:]))
