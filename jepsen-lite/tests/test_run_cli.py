"""``jepsen-lite run`` without a cluster: options, refusals with clear messages and exit code 3
(compose backend without Docker or with options the compose file fixes, bad nemesis, not
root), the compose backend's override file and address map, and the run modules' contracts."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
from pathlib import Path

import click
import jepsen_lite
import pytest
from click.testing import CliRunner, Result
from jepsen_lite import compose, netns
from jepsen_lite.cli import main
from jepsen_lite.compose import ComposeBackend
from jepsen_lite.resharder import advertised_seeds
from jepsen_lite.run_cli import register
from jepsen_lite.runner import UNSAFE_STALE_READS_ENV, RunConfig, RunError, validate

if "run" not in main.commands:  # until cli.py registers it itself
    register(main)

RUN_MODULES = [
    "netns",
    "nemesis",
    "workloads",
    "runner",
    "run_cli",
    "runreport",
    "compose",
    "resharder",
]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def test_register_adds_the_run_command() -> None:
    group = click.Group()
    register(group)
    assert "run" in group.commands


def test_compose_backend_without_docker_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda tool: None if tool == "docker" else real_which(tool)
    )
    result = invoke("--backend", "compose", "--time", "5", "--out", str(tmp_path / "r"))
    assert result.exit_code == 3
    assert "--backend compose needs Docker: the docker CLI is not installed" in result.stderr
    assert not (tmp_path / "r").exists(), "nothing is created for a refused run"


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--nodes", "5"], "runs the 3 nodes of docker-compose.yml; --nodes 5 is not possible"),
        (["--subnet", "10.99.0.0/24"], "--subnet is for --backend local"),
        (["--keep-data"], "--keep-data is for --backend local"),
    ],
)
def test_compose_backend_refuses_what_the_compose_file_fixes(
    tmp_path: Path, args: list[str], why: str
) -> None:
    result = invoke("--backend", "compose", *args, "--out", str(tmp_path / "r"))
    assert result.exit_code == 3
    assert why in result.stderr
    assert not (tmp_path / "r").exists()


def test_compose_override_and_address_map(tmp_path: Path) -> None:
    cfg = RunConfig(
        backend="compose", groups=2, tick_ms=25, unsafe_stale_reads=True, snapshot_entries=50
    )
    backend = ComposeBackend(cfg, tmp_path / "nodes")
    assert re.fullmatch(rf"jepsen-lite-{os.getpid()}-[0-9a-f]{{6}}", backend.project)
    ports = [*backend.grpc_ports.values(), *backend.http_ports.values()]
    assert len(set(ports)) == 6
    assert backend.address_map == {f"node{n}:7000": backend.address(n) for n in (1, 2, 3)}
    assert backend.client_options() == {"address_map": backend.address_map}
    # the reshard nemesis's seeds are what the nodes advertise (leader hints name those)
    assert advertised_seeds(backend.seeds, backend.address_map) == [
        "node1:7000",
        "node2:7000",
        "node3:7000",
    ]
    assert advertised_seeds(["10.0.0.1:7000"], {}) == ["10.0.0.1:7000"]
    backend._write_override()
    override = json.loads(backend.override_path.read_text())
    for n in (1, 2, 3):
        service = override["services"][f"node{n}"]
        assert service["restart"] == "no"
        assert service["environment"]["KV_BOOTSTRAP_GROUPS"] == "2"
        assert service["environment"]["KV_TICK_MS"] == "25"
        assert service["environment"][UNSAFE_STALE_READS_ENV] == "1"
        assert service["environment"]["KV_SNAPSHOT_ENTRIES"] == "50"


def test_heal_recognises_only_its_own_rules() -> None:
    ours = shlex.split("-A INPUT -s 172.18.0.3/32 -m comment --comment jepsen-lite -j DROP")
    theirs = shlex.split('-A INPUT -s 10.0.0.0/8 -m comment --comment "jepsen-lite x" -j DROP')
    assert compose._comment_of(ours) == "jepsen-lite"
    assert compose._comment_of(theirs) == "jepsen-lite x"
    assert compose._comment_of(shlex.split("-A INPUT -j ACCEPT")) is None


def test_unknown_nemesis_is_a_usage_error() -> None:
    result = invoke("--nemesis", "partition,meteor")
    assert result.exit_code == 3
    assert "unknown nemesis meteor" in result.stderr


def test_partitions_need_two_nodes() -> None:
    with pytest.raises(RunError, match="at least 2 nodes"):
        validate(RunConfig(nodes=1, nemesis=("partition",)))
    validate(RunConfig(nodes=1, nemesis=("kill",)))


def test_reshards_need_two_shard_groups() -> None:
    with pytest.raises(RunError, match="--groups must be at least 2"):
        validate(RunConfig(groups=1, nemesis=("kill", "reshard")))
    validate(RunConfig(groups=2, nemesis=("reshard",)))
    result = invoke("--nemesis", "reshard", "--groups", "1", "--out", "/nonexistent/r")
    assert result.exit_code == 3 and "--groups must be at least 2" in result.stderr


def test_not_root_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsError, match="needs root"):
        netns.preflight()
    result = invoke("--time", "5", "--nemesis", "kill")
    assert result.exit_code == 3 and "needs root" in result.stderr


def test_missing_tools_name_the_setup_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(netns.NetnsError, match=r"missing ip and iptables.*jepsen_setup\.sh"):
        netns.preflight()


def test_subnet_must_be_a_private_slash_24() -> None:
    with pytest.raises(netns.NetnsError, match="/24"):
        netns.Network(3, "10.77.0.0/16")
    with pytest.raises(netns.NetnsError, match="private"):
        netns.Network(3, "8.8.8.0/24")
    net = netns.Network(3, "10.99.5.0/24", owner_pid=0x1F)
    assert net.bridge == "jl1fbr" and net.bridge_ip == "10.99.5.1"
    assert [h.ip for h in net.hosts.values()] == ["10.99.5.11", "10.99.5.12", "10.99.5.13"]
    assert all(len(h.veth) <= 15 for h in net.hosts.values())


@pytest.mark.parametrize("module", RUN_MODULES)
def test_run_modules_state_their_contract_and_export_all(module: str) -> None:
    path = Path(jepsen_lite.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    assert "What lives here" in doc and "What must not" in doc
    assert any(
        isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
        for n in tree.body
    )
