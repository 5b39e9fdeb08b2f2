"""A leader's appends leave while its own write is in flight (Raft thesis 10.2.1), as the
node runtime sends them: ``Ready.may_send_before_persist``. The simulator does the same
(``kvcluster.testing.cluster``), so the randomized sweeps cover it; these pin the rule."""

from __future__ import annotations

from kvcluster.raft import Message, MessageType, Ready
from kvcluster.testing.cluster import CrashPoint

from .conftest import ELECTION, elect, make


def test_a_leaders_appends_may_leave_before_its_write() -> None:
    c = make(3)
    lead = elect(c, 1)
    c.propose(lead, 1)
    assert lead.raw is not None
    rd = lead.raw.ready()
    assert rd.entries and not rd.new_term_or_vote
    assert {m.type for m in rd.messages} == {MessageType.APP}
    assert rd.may_send_before_persist()


def test_a_candidates_votes_wait_for_its_term_and_vote() -> None:
    c = make(3)
    n = c.nodes[1]
    assert n.raw is not None
    n.raw.campaign()
    rd = n.raw.ready()
    assert rd.new_term_or_vote
    assert {m.type for m in rd.messages} == {MessageType.VOTE}
    assert not rd.may_send_before_persist()


def test_a_followers_acknowledgements_wait_for_its_write() -> None:
    c = make(3)
    lead = elect(c, 1)
    c.propose(lead, 1)
    c.drain(lead)
    to_two = [e for e in c.net.take_all() if e.dst == 2]
    c.deliver(to_two[0])
    two = c.nodes[2]
    assert two.raw is not None
    rd = two.raw.ready()
    assert rd.entries
    assert {m.type for m in rd.messages} == {MessageType.APP_RESP}
    assert not rd.may_send_before_persist()


def test_appends_said_with_a_new_term_wait() -> None:
    # E.g. a lone voter becomes leader in the step that raises its term: a heartbeat to a
    # learner in that Ready would say a term that is not on disk yet.
    app = Message(MessageType.APP, to=2, from_=1, term=3)
    assert Ready(messages=[app]).may_send_before_persist()
    assert not Ready(messages=[app], new_term_or_vote=True).may_send_before_persist()
    mixed = [app, Message(MessageType.TIMEOUT_NOW, to=2, from_=1, term=3)]
    assert not Ready(messages=mixed).may_send_before_persist()
    assert not Ready().may_send_before_persist()


def test_the_leader_counts_its_own_copy_only_once_it_is_on_disk() -> None:
    # Five voters: the early appends reach two followers, whose acknowledgements arrive
    # while the leader's write is still in flight (the runtime steps messages between
    # ready() and advance()). Two of five is no majority without the leader's own copy.
    c = make(5)
    lead = elect(c, 1)
    c.propose(lead, 1)
    raw = lead.raw
    assert raw is not None
    rd = raw.ready()
    assert rd.may_send_before_persist()
    index = rd.entries[-1].index
    for m in rd.messages:
        if m.to in (2, 3):
            c.net.send(lead.id, lead.life, m)
    for env in c.net.take_all():
        dst = c.deliver(env)
        assert dst is not None
        c.drain(dst)
    acks = [e.msg for e in c.net.take_all() if e.dst == lead.id]
    assert sorted(m.from_ for m in acks) == [2, 3]
    assert all(m.type == MessageType.APP_RESP and m.index >= index for m in acks)
    for m in acks:
        raw.step(m)
    assert raw.raft.log.committed < index
    lead.storage.append(rd.entries)  # the leader's write completes
    if rd.hard_state is not None:
        lead.storage.set_hard_state(rd.hard_state)
    raw.advance(rd)
    assert raw.raft.log.committed >= index


def test_an_entry_sent_early_survives_its_leaders_crash() -> None:
    # The appends reached both followers, the leader's own copy never reached its disk: the
    # followers hold a majority, one of them is elected and commits the entry, and the old
    # leader takes it back from the new one when it returns.
    c = make(3)
    lead = elect(c, 1)
    c.propose(lead, 1)
    (data,) = lead.pending
    assert not c.handle_ready(lead, crash_at=CrashPoint.BEFORE_PERSIST)
    sent = c.net.inflight
    assert sorted(e.dst for e in sent) == [2, 3]
    assert all(e.msg.type == MessageType.APP and e.msg.entries for e in sent)
    c.settle()
    assert lead.storage.last_index() < c.nodes[2].storage.last_index()
    c.restart(lead)
    elect(c, 2)
    for _ in range(4 * ELECTION):
        c.round()
    for n in c.nodes.values():
        st = n.storage
        logged = [e.data for e in st.entries(st.first_index(), st.last_index() + 1, 1 << 30)]
        assert data in logged, f"node {n.id} lacks the entry"
        assert st.hard_state.commit >= logged.index(data) + st.first_index()
