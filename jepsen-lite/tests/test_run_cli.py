"""``jepsen-lite run`` without a cluster: options, refusals with clear messages and exit code 3
(compose backend, bad nemesis, not root), and the run modules' contracts."""

from __future__ import annotations

import ast
import os
import shutil
from pathlib import Path

import click
import jepsen_lite
import pytest
from click.testing import CliRunner, Result
from jepsen_lite import netns
from jepsen_lite.cli import main
from jepsen_lite.run_cli import register
from jepsen_lite.runner import RunConfig, RunError, validate

if "run" not in main.commands:  # until cli.py registers it itself
    register(main)

RUN_MODULES = ["netns", "nemesis", "workloads", "runner", "run_cli", "runreport"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def test_register_adds_the_run_command() -> None:
    group = click.Group()
    register(group)
    assert "run" in group.commands


def test_compose_backend_is_refused_clearly(tmp_path: Path) -> None:
    result = invoke("--backend", "compose", "--time", "5", "--out", str(tmp_path / "r"))
    assert result.exit_code == 3
    assert "backend 'compose' is not available here" in result.stderr
    assert not (tmp_path / "r").exists(), "nothing is created for a refused run"


def test_unknown_nemesis_is_a_usage_error() -> None:
    result = invoke("--nemesis", "partition,meteor")
    assert result.exit_code == 3
    assert "unknown nemesis meteor" in result.stderr


def test_partitions_need_two_nodes() -> None:
    with pytest.raises(RunError, match="at least 2 nodes"):
        validate(RunConfig(nodes=1, nemesis=("partition",)))
    validate(RunConfig(nodes=1, nemesis=("kill",)))


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
