"""Membership changes: encoding, and the pure ``applied_to`` agreeing with the core."""

from __future__ import annotations

import pytest

from kvcluster.errors import InvalidArgument
from kvcluster.raft import ConfChange, ConfChangeType, ConfState
from kvcluster.testing.interaction import InteractionEnv


def test_conf_change_applied_to_matches_the_tracker() -> None:
    """``ConfChange.applied_to`` (used by the node to persist membership) and the core's own
    ``apply_conf_change`` agree on every kind of change."""
    env = InteractionEnv()
    env.run("add-nodes 1 voters=1,2,3 learners=4")
    cs = ConfState((1, 2, 3), (4,))
    for cc in (
        ConfChange(ConfChangeType.ADD_VOTER, 4),
        ConfChange(ConfChangeType.ADD_LEARNER, 3),
        ConfChange(ConfChangeType.REMOVE_NODE, 2),
        ConfChange(ConfChangeType.ADD_VOTER, 5),
    ):
        cs = cc.applied_to(cs)
        assert env.raw(1).apply_conf_change(cc) == cs


def test_encode_round_trip_and_bad_input() -> None:
    cc = ConfChange(ConfChangeType.ADD_LEARNER, 7, b"10.0.0.7:7000")
    assert ConfChange.decode(cc.encode()) == cc
    for bad in (b"", b"\x09" + bytes(8), b"\x00" + bytes(8)):
        with pytest.raises(InvalidArgument):
            ConfChange.decode(bad)
