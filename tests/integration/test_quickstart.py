"""The README's first command runs a local cluster with demo traffic (here without waiting)."""

from __future__ import annotations

import subprocess
import sys


def test_local_cluster_demo_runs_and_stops_cleanly() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kvcluster.local", "--no-wait"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 nodes up, 3 shard groups" in r.stdout
    assert "get demo:0 -> b'changed'" in r.stdout
