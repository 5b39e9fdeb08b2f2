"""Real runs of the local backend: node processes in network namespaces, partitions by
iptables, kill -9 and restart. Short (about 15-20 s of workload each).

- A register run under partitions and kills is linearizable, and the run removes everything it
  made (namespaces, veths, bridge, FORWARD rule, node processes).
- The self-test: with the nodes' test-only ``KVCLUSTER_UNSAFE_STALE_READS=1`` (reads skip
  ReadIndex) a run with partitions is found NOT linearizable; the same run without it is valid.
- A counter run under kills: the final value lies between acknowledged and attempted
  increments.
- Reshards (``--nemesis reshard``, and ``partition,kill,reshard``): slots, the hot keys' among
  them, move between shard groups while the workload runs (overlapping partitions and kills),
  the history stays linearizable, and no migration is left at the end.

Skipped, with the reason, when not root or network namespaces / iptables do not work here
(``scripts/jepsen_setup.sh`` installs the tools), or on request with ``JEPSEN_LITE_SKIP_RUNS=1``.
Nothing sleeps to synchronise: the runs wait for conditions with deadlines.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jepsen_lite import netns
from jepsen_lite.nemesis import periods
from jepsen_lite.runner import UNSAFE_STALE_READS_ENV, RunConfig, RunOutcome, run

pytestmark = pytest.mark.timeout(600)


def _skip_reason() -> str | None:
    if os.environ.get("JEPSEN_LITE_SKIP_RUNS") == "1":
        return "JEPSEN_LITE_SKIP_RUNS=1: local jepsen-lite runs skipped on request"
    try:
        netns.preflight()
    except netns.NetnsError as e:
        return f"local backend unavailable: {e}"
    return None


@pytest.fixture(scope="module")
def local_backend() -> None:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)


def assert_nothing_left(outcome: RunOutcome) -> None:
    assert outcome.pids, "the run started node processes"
    for pid in outcome.pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    mine = f"jepsen-lite-{os.getpid()}-"
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert mine not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"jl{os.getpid():x}" not in links
    rules = subprocess.run(["iptables", "-w", "-S", "FORWARD"], capture_output=True, text=True)
    assert f"jl{os.getpid():x}br" not in rules.stdout
    assert not outcome.info.get("cleanup_errors")


def short(tmp_path: Path, name: str, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "workload": "register",
        "time": 15.0,
        "quiet": 2.0,
        "concurrency": 5,
        "out": tmp_path / name,
        "check_timeout": 60.0,
    }
    base.update(kw)
    return RunConfig(**base)


def echo_to_test_log(line: str) -> None:
    print(line)  # shown by pytest when the test fails


def test_register_under_partitions_and_kills_is_linearizable(
    local_backend: None, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # A short retained log: nodes that were killed or cut off catch up by snapshot.
    cfg = short(
        tmp_path, "run", nemesis=("partition", "kill"), time=20.0, seed=7, snapshot_entries=20
    )
    outcome = run(cfg, echo_to_test_log)
    print(outcome.text)
    assert outcome.outcome == "valid", outcome.text
    assert outcome.summary["valid"] is True
    assert len(outcome.info["schedule"]) >= 3
    assert outcome.summary["ops"] > 200
    assert all(outcome.info["final_reads"].values())
    faults = {f["kind"] for f in outcome.info["schedule"]}
    assert faults == {"partition", "kill"}  # seed 7 plans both
    kills = outcome.info["failovers"]
    assert any(k["seconds"] is not None for k in kills), outcome.text  # failover measured
    for name in ("history.jsonl", "nemesis.jsonl", "report.html", "verdict.json", "summary.txt"):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "nodes").iterdir()) == ["n1.log", "n2.log", "n3.log"]
    logs = [(out / "nodes" / f"n{n}.log").read_text() for n in (1, 2, 3)]
    assert any("installed snapshot" in log for log in logs)  # the snapshot path was checked
    html = (out / "report.html").read_text()
    assert "latency over time" in html and "History is" in html
    assert_nothing_left(outcome)


SELF_TEST = {"nemesis": ("partition",), "seed": 3}


def test_self_test_unsafe_stale_reads_are_caught(local_backend: None, tmp_path: Path) -> None:
    outcome = run(short(tmp_path, "unsafe", unsafe_stale_reads=True, **SELF_TEST), echo_to_test_log)
    print(outcome.text)
    assert outcome.info["unsafe_nodes"] == [1, 2, 3], (
        f"the nodes did not turn on {UNSAFE_STALE_READS_ENV}: apply the kvcluster patch that "
        "adds the switch to kvcluster/node/services.py"
    )
    assert outcome.outcome == "invalid", "stale reads went unnoticed:\n" + outcome.text
    assert outcome.verdict is not None and outcome.verdict.failed_key is not None
    assert_nothing_left(outcome)


def test_self_test_the_same_run_without_the_switch_is_valid(
    local_backend: None, tmp_path: Path
) -> None:
    outcome = run(short(tmp_path, "safe", **SELF_TEST), echo_to_test_log)
    print(outcome.text)
    assert outcome.info["unsafe_nodes"] == []
    assert outcome.outcome == "valid", outcome.text
    assert_nothing_left(outcome)


def test_counter_under_kills_ends_between_acknowledged_and_attempted(
    local_backend: None, tmp_path: Path
) -> None:
    cfg = short(tmp_path, "counter", workload="counter", nemesis=("kill", "pause"), seed=11)
    outcome = run(cfg, echo_to_test_log)
    print(outcome.text)
    assert outcome.outcome == "valid", outcome.text
    assert outcome.counter is not None
    for key in outcome.counter.keys.values():
        assert key.final is not None and key.acked <= key.final <= key.attempted
        assert key.acked > 0
    assert_nothing_left(outcome)


def nemesis_log(outcome: RunOutcome) -> list[dict[str, Any]]:
    lines = (outcome.run_dir / "nemesis.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def assert_reshards_moved_slots_and_finished(outcome: RunOutcome) -> list[dict[str, Any]]:
    log = nemesis_log(outcome)
    assert not [e for e in log if e["type"] == "reshard-crashed"], outcome.text
    starts = [e for e in log if e.get("fault") == "reshard" and e["type"] == "start"]
    stops = {e["id"]: e for e in log if e.get("fault") == "reshard" and e["type"] == "stop"}
    planned = [e for e in starts if e["id"] != "finish"]
    assert len(planned) >= 3, outcome.text
    assert all(e["id"] in stops for e in starts), "every reshard logs its end"
    for e in planned:
        assert e["from"] != e["to"] and e["moves"] > 0
    # owners changed: the layout read after each reshard gives its slots to the target
    moved = [stops[e["id"]]["moved"] for e in planned]
    assert sum(m > 0 for m in moved) >= 2 and sum(moved) == outcome.summary["slots_moved"]
    assert any(stops[e["id"]]["hot_keys_moved"] for e in planned), "hot keys moved"
    stopped = sum(stops[e["id"]]["outcome"].get("stopped", 0) for e in planned)
    if stopped:  # the heal stopped a reshard: what it left was finished after the heal
        assert stops["finish"]["left"] == 0 and stops["finish"]["outcome"].get("done")
    assert log[-1]["type"] == "migrations" and log[-1]["left"] == 0
    assert outcome.info["migrations_left"] == 0 == outcome.summary["migrations_left"]
    assert "reshards:" in outcome.text and "migrations left: 0" in outcome.text
    assert "reshard g" in (outcome.run_dir / "report.html").read_text()
    return log


def test_register_under_reshards_is_linearizable(local_backend: None, tmp_path: Path) -> None:
    cfg = short(tmp_path, "reshard", nemesis=("reshard",), time=20.0, seed=23)
    outcome = run(cfg, echo_to_test_log)
    print(outcome.text)
    assert outcome.outcome == "valid", outcome.text
    assert outcome.summary["ops"] > 200 and all(outcome.info["final_reads"].values())
    assert_reshards_moved_slots_and_finished(outcome)
    assert not outcome.info["client_crashes"]
    assert_nothing_left(outcome)


def test_register_under_partitions_kills_and_reshards_is_linearizable(
    local_backend: None, tmp_path: Path
) -> None:
    kinds = ("partition", "kill", "reshard")
    outcome = run(short(tmp_path, "mixed", nemesis=kinds, time=20.0, seed=13), echo_to_test_log)
    print(outcome.text)
    assert outcome.outcome == "valid", outcome.text
    assert {f["kind"] for f in outcome.info["schedule"]} == set(kinds)  # seed 13 plans all
    assert outcome.summary["ops"] > 200 and all(outcome.info["final_reads"].values())
    log = assert_reshards_moved_slots_and_finished(outcome)
    spans = periods(log)
    reshards = [p for p in spans if p.kind == "reshard"]
    faults = [p for p in spans if p.kind != "reshard"]
    assert any(
        r.end is not None and f.end is not None and r.start < f.end and f.start < r.end
        for r in reshards
        for f in faults
    ), "a reshard overlapped a partition or a kill"
    assert not outcome.info["client_crashes"]
    assert_nothing_left(outcome)
