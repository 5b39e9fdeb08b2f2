"""``jepsen-lite run --backend compose``: the fault-injection run against docker-compose.yml.

- A register run (concurrency 4) under partitions (iptables in the containers' network
  namespaces), kills (``docker kill`` / ``docker start``) and reshards (slots moved online,
  through the address map) is linearizable, no migration is left at the end, and the run
  removes its compose project: no container, volume or network is left with its label.
- The self-test on compose: with the nodes' test-only ``KVCLUSTER_UNSAFE_STALE_READS=1`` (reads
  skip ReadIndex), a run with partitions is found NOT linearizable. This is what shows that
  the partitions really cut the containers apart.

Uses the image the session's ``kvcluster_image`` fixture built (see conftest.py). Skipped,
with the reason, where no Docker engine is usable, or without root (the partitions use
``nsenter`` and ``iptables`` from the host), or on request (``KVCLUSTER_SKIP_COMPOSE=1`` or
``JEPSEN_LITE_SKIP_RUNS=1``). Nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from jepsen_lite.runner import RunConfig, RunOutcome, run

from .conftest import ROOT

pytestmark = pytest.mark.timeout(900)  # a cold session builds the image first


@pytest.fixture(scope="module")
def image(kvcluster_image: str) -> str:
    if os.environ.get("JEPSEN_LITE_SKIP_RUNS") == "1":
        pytest.skip("JEPSEN_LITE_SKIP_RUNS=1: jepsen-lite runs skipped on request")
    if os.geteuid() != 0:
        pytest.skip("jepsen-lite compose partitions need root (nsenter + iptables on the host)")
    missing = [t for t in ("nsenter", "iptables") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing {' and '.join(missing)} on the host: run scripts/jepsen_setup.sh")
    return kvcluster_image


def config(tmp_path: Path, image: str, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "backend": "compose",
        "image": image,
        "compose_file": ROOT / "docker-compose.yml",
        "workload": "register",
        "concurrency": 4,
        "quiet": 2.0,
        "out": tmp_path / "run",
        "check_timeout": 60.0,
    }
    base.update(kw)
    return RunConfig(**base)


def assert_project_removed(outcome: RunOutcome) -> None:
    backend = outcome.info["backend"]
    assert backend.startswith("docker compose project jepsen-lite-"), backend
    project = backend.rsplit(" ", 1)[1]
    label = f"label=com.docker.compose.project={project}"
    for kind in (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]):
        out = subprocess.run(
            ["docker", *kind, "--filter", label], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0 and not out.stdout.strip(), (kind, out.stdout)
    assert not outcome.info.get("cleanup_errors")


def test_register_under_partitions_kills_and_reshards_is_linearizable(
    tmp_path: Path, image: str
) -> None:
    cfg = config(tmp_path, image, nemesis=("partition", "kill", "reshard"), time=25.0, seed=7)
    began = time.monotonic()
    outcome = run(cfg, print)
    print(outcome.text)
    print(f"[jepsen compose] run took {time.monotonic() - began:.1f}s")
    assert outcome.outcome == "valid", outcome.text
    assert outcome.summary["ops"] > 200
    assert all(outcome.info["final_reads"].values())
    assert {f["kind"] for f in outcome.info["schedule"]} == {"partition", "kill", "reshard"}
    assert outcome.info.get("migrations_left") == 0, outcome.text
    kills = outcome.info["failovers"]
    assert any(k["seconds"] is not None for k in kills), outcome.text
    out = cfg.out
    assert out is not None
    for name in ("history.jsonl", "nemesis.jsonl", "report.html", "verdict.json", "summary.txt"):
        assert (out / name).stat().st_size > 0, name
    for n in (1, 2, 3):  # the containers' logs, saved before `down -v`
        assert "serving on 0.0.0.0:7000" in (out / "nodes" / f"n{n}.log").read_text()
    assert_project_removed(outcome)


def test_self_test_unsafe_stale_reads_are_caught_on_compose(tmp_path: Path, image: str) -> None:
    cfg = config(
        tmp_path, image, nemesis=("partition",), time=15.0, seed=3, unsafe_stale_reads=True
    )
    outcome = run(cfg, print)
    print(outcome.text)
    assert outcome.info["unsafe_nodes"] == [1, 2, 3]
    assert outcome.outcome == "invalid", "stale reads went unnoticed:\n" + outcome.text
    assert_project_removed(outcome)
