"""The checked-in generated protobuf/gRPC code matches proto/ (no stale generated code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_generated_modules_import() -> None:
    from kvcluster.v1 import admin_pb2, kv_pb2, raft_pb2

    req = kv_pb2.Request(op=kv_pb2.SET, key=b"k", value=b"v", client_id=1, seq=1)
    assert kv_pb2.Request.FromString(req.SerializeToString()) == req
    assert raft_pb2.RaftBatch(from_node=1).from_node == 1
    assert admin_pb2.GroupStatus(group_id=3).group_id == 3
