"""NodeConfig refuses bad settings with a clear error, before anything is opened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.node.config import NodeConfig


def config(**kw: Any) -> NodeConfig:
    base: dict[str, Any] = {
        "node_id": 1,
        "data_dir": Path("/nonexistent"),
        "listen": "127.0.0.1:7000",
        "peers": {i: f"127.0.0.1:{7000 + i}" for i in (1, 2, 3)},
    }
    return NodeConfig(**(base | kw))


def test_the_defaults_are_valid() -> None:
    assert config().finish_stalled_moves_s == 30.0
    assert config(finish_stalled_moves_s=0).finish_stalled_moves_s == 0


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"finish_stalled_moves_s": -1.0}, "finish_stalled_moves_s must be >= 0"),
        ({"snapshot_entries": 5}, "snapshot_entries must be at least 10"),
        ({"peers": {i: f"127.0.0.1:{7000 + i}" for i in (2, 3, 4)}}, r"must include this node"),
    ],
)
def test_bad_settings_are_refused(kw: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason):
        config(**kw)
