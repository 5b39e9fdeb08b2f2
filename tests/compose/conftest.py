"""Plumbing for the docker compose tests: find a usable Docker, build the image, run the
compose file under a project name of its own, and remove everything that project made.

Contract:
- No usable Docker engine (no CLI, ``docker info`` fails, no compose tool) skips with the
  reason; ``KVCLUSTER_SKIP_COMPOSE=1`` skips on purpose, also saying so. Nothing else skips.
- The image is built by ``scripts/docker/build.sh`` (which pulls nothing), once per session
  (the ``kvcluster_image`` fixture, shared by every compose test module), tagged
  ``kvcluster:compose-test`` and kept, like any build cache, so the next run is warm.
- Containers, networks and volumes belong to one unique compose project; ``down -v`` removes
  them, and whatever is still labelled with the project afterwards is removed by id and
  reported as a failure.
- Waits poll a condition until a deadline; nothing sleeps a fixed time to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvcluster.local import free_ports

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "kvcluster:compose-test"
NODES = (1, 2, 3)
BUILD_TIMEOUT = 720  # a cold build on 2 busy cores; the test's own limit is 900 s


def _run(cmd: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) if present, else ``docker-compose`` (v1)."""
    if _run(["docker", "compose", "version"]).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") and _run(["docker-compose", "version"]).returncode == 0:
        return ["docker-compose"]
    return None


def docker_or_skip() -> list[str]:
    """The compose command to use, or skip the test saying why Docker is not usable."""
    if os.environ.get("KVCLUSTER_SKIP_COMPOSE") == "1":
        pytest.skip("KVCLUSTER_SKIP_COMPOSE=1: docker compose tests skipped on request")
    if shutil.which("docker") is None:
        pytest.skip("no Docker engine usable: the docker CLI is not installed")
    info = _run(["docker", "info"])
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no Docker engine usable: `docker info` failed: {reason}")
    compose = _compose_command()
    if compose is None:
        pytest.skip("no Docker Compose: neither `docker compose` nor `docker-compose` works")
    return compose


def wait_until(what: str, cond: Callable[[], bool], timeout: float, poll: float = 0.25) -> float:
    """Poll ``cond`` until it holds; returns the seconds it took. Raises naming ``what``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - start


@dataclass
class ComposeCluster:
    """One running compose project of docker-compose.yml, seen from the host."""

    compose: list[str]
    project: str
    grpc_ports: dict[int, int]
    http_ports: dict[int, int]
    env: dict[str, str] = field(default_factory=dict)
    _containers: dict[int, str] = field(default_factory=dict)

    # -- addresses as the host sees them ---------------------------------------------------
    def grpc(self, node: int) -> str:
        return f"127.0.0.1:{self.grpc_ports[node]}"

    @property
    def seeds(self) -> str:
        return ",".join(self.grpc(n) for n in NODES)

    @property
    def address_map(self) -> dict[str, str]:
        """What nodes advertise (service names) -> the published ports."""
        return {f"node{n}:7000": self.grpc(n) for n in NODES}

    # -- docker ----------------------------------------------------------------------------
    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose, "-p", self.project, "-f", str(ROOT / "docker-compose.yml"), *args]
        return _run(cmd, timeout=timeout, env=self.env, cwd=ROOT)

    def check(self, *args: str, timeout: float = 180) -> str:
        r = self.run(*args, timeout=timeout)
        assert r.returncode == 0, f"compose {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    def container(self, node: int) -> str:
        """The node's container id (it survives kill and start)."""
        if node not in self._containers:
            cid = self.check("ps", "-a", "-q", f"node{node}").strip()
            assert cid, f"node{node} has no container"
            self._containers[node] = cid
        return self._containers[node]

    def state(self, node: int) -> tuple[str, str]:
        """(status, health) of the node's container, e.g. ("running", "healthy")."""
        fmt = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        r = _run(["docker", "inspect", "-f", fmt, self.container(node)])
        status, _, health = r.stdout.strip().partition(" ")
        return status, health

    def healthy(self, *nodes: int) -> bool:
        return all(self.state(n) == ("running", "healthy") for n in nodes or NODES)

    def health(self, node: int) -> dict[str, Any] | None:
        """The node's /health body (200 or 503), None if it does not answer."""
        url = f"http://127.0.0.1:{self.http_ports[node]}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        except (OSError, ValueError):
            return None
        return body

    def leader(self) -> int | None:
        """The leader of group 1 in the highest term any node reports."""
        best: tuple[int, int] | None = None
        for n in NODES:
            h = self.health(n)
            for g in (h or {}).get("groups", []):
                if g["leader"] and (best is None or g["term"] > best[0]):
                    best = (g["term"], g["leader"])
        return best[1] if best else None

    def leftovers(self) -> list[str]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in (["ps", "-aq"], ["volume", "ls", "-q"], ["network", "ls", "-q"]):
            out = _run(["docker", *kind, "--filter", label]).stdout.split()
            found += [f"{kind[0]} {x}" for x in out]
        return found

    def remove(self, leftovers: list[str]) -> None:
        for item in leftovers:
            kind, ident = item.split()
            cmd = {
                "ps": ["rm", "-f"],
                "volume": ["volume", "rm", "-f"],
                "network": ["network", "rm"],
            }
            _run(["docker", *cmd[kind], ident])


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group ``proc`` leads (it cleans up), SIGKILL it after a grace."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def build_image() -> float:
    """Build ``IMAGE`` with scripts/docker/build.sh; returns the seconds it took."""
    if (
        not os.environ.get("BASE_IMAGE")
        and os.geteuid() != 0
        and _run(["docker", "image", "inspect", "kvcluster-base:bookworm-py311"]).returncode
    ):
        pytest.skip(
            "building the local base image needs root (debootstrap): run as root, or set "
            "BASE_IMAGE to a Python 3.11 image already present"
        )
    start = time.monotonic()
    env = {**os.environ, "KVCLUSTER_IMAGE": IMAGE}
    # Output is not captured: with -s it shows the build as it goes. Its own session, so
    # that giving up stops debootstrap and docker too, not just the script.
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts/docker/build.sh")], env=env, start_new_session=True
    )
    try:
        code = proc.wait(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/docker/build.sh did not finish in {BUILD_TIMEOUT}s")
    finally:
        _stop_group(proc)
    assert code == 0, f"scripts/docker/build.sh failed (exit {code})"
    return time.monotonic() - start


@pytest.fixture(scope="session")
def kvcluster_image() -> str:
    """``IMAGE``, built once per test session (skips, saying why, without Docker)."""
    docker_or_skip()
    took = build_image()
    print(f"\n[compose] image {IMAGE} built in {took:.0f}s")
    return IMAGE


@pytest.fixture(scope="module")
def compose_cluster(
    request: pytest.FixtureRequest, kvcluster_image: str
) -> Iterator[ComposeCluster]:
    compose = docker_or_skip()
    ports = free_ports(6)
    grpc_ports = {n: ports[n - 1] for n in NODES}
    http_ports = {n: ports[n + 2] for n in NODES}
    env = {**os.environ, "KVCLUSTER_IMAGE": kvcluster_image, "KVCLUSTER_PUBLISH_HOST": "127.0.0.1"}
    for n in NODES:
        env[f"KVCLUSTER_NODE{n}_GRPC_PORT"] = str(grpc_ports[n])
        env[f"KVCLUSTER_NODE{n}_HTTP_PORT"] = str(http_ports[n])
    cluster = ComposeCluster(
        compose, f"kvtest{uuid.uuid4().hex[:10]}", grpc_ports, http_ports, env=env
    )
    failed_before = request.session.testsfailed
    try:
        cluster.check("up", "-d", "--no-build")
        yield cluster
    finally:
        if request.session.testsfailed > failed_before:
            logs = cluster.run("logs", "--no-color", "--tail", "60").stdout
            print(f"--- compose logs (tail) ---\n{logs}")
        down = cluster.run("down", "-v", "--remove-orphans", "--timeout", "10")
        left = cluster.leftovers()
        cluster.remove(left)
        assert down.returncode == 0, f"compose down failed:\n{down.stdout}\n{down.stderr}"
        assert not left, f"compose down left behind: {left}"
