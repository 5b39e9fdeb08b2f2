"""``scripts/rolling_restart.py --compose PROJECT`` under load: no failed operation.

A compose project of docker-compose.yml of its own (conftest.py's ``compose_cluster``). A
client on the host (through the published ports and the address map) writes unique keys and
reads each back while the script, run as an operator would (a subprocess), drains, stops
(``docker compose stop``), starts and waits for each node in turn. Then: the script exited 0
with ``"ok": true`` on its last line, no operation raised, every read-back matched, and every
acknowledged write is readable. Skipped, saying why, where no Docker engine is usable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from kvcluster.client import Client

from .conftest import ROOT, ComposeCluster, wait_until

pytestmark = pytest.mark.timeout(900)  # a cold session builds the image first


def test_rolling_restart_of_a_compose_cluster_fails_no_operation(
    compose_cluster: ComposeCluster,
) -> None:
    cluster = compose_cluster
    wait_until("all three containers healthy", cluster.healthy, timeout=180)
    stop = threading.Event()
    acked: dict[bytes, bytes] = {}
    failures: list[str] = []
    reads = 0

    def traffic() -> None:
        nonlocal reads
        with Client(cluster.seeds, address_map=cluster.address_map) as kv:
            i = 0
            while not stop.is_set():
                i += 1
                key, value = f"rolling:{i}".encode(), f"v{i}".encode()
                try:
                    assert kv.set(key, value) is True
                    acked[key] = value
                    got = kv.get(key)
                    if got != value:
                        failures.append(f"read {key!r} -> {got!r}, wrote {value!r}")
                    reads += 1
                except Exception as e:
                    failures.append(f"{time.strftime('%X')} {key!r}: {type(e).__name__}: {e}")

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    wait_until("the first 20 writes", lambda: len(acked) >= 20 or bool(failures), 60)
    cmd = [sys.executable, str(ROOT / "scripts" / "rolling_restart.py")]
    cmd += ["--compose", cluster.project, "--compose-file", str(ROOT / "docker-compose.yml")]
    began = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    took = time.monotonic() - began
    before = len(acked)
    wait_until("20 more writes after the restart", lambda: len(acked) >= before + 20, 60)
    stop.set()
    thread.join(timeout=60)
    print(done.stdout)
    print(
        f"[compose rolling restart] {took:.1f}s; {len(acked)} writes and {reads} read-backs "
        f"acknowledged, {len(failures)} failed"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] is True and result["restarted"] == [1, 2, 3], result
    assert all(n["exit_code"] == 0 for n in result["nodes"]), result
    assert not failures, f"{len(failures)} operations failed:\n" + "\n".join(failures[:20])
    keys = list(acked)
    with Client(cluster.seeds, address_map=cluster.address_map) as kv:
        assert kv.mget(keys) == [acked[k] for k in keys]
