"""A narrated, deterministic run of a simulated 3-node Raft group (the README's first command
until the node runtime exists).

Contract: in-process only (no sockets, no clock); one seed decides everything. It prints the
elections, commits and a leader failover as they happen and exits 0 when every node applied
the same entries.
"""

from __future__ import annotations

import argparse
import random

from kvcluster.raft import Config, MemoryStorage, Message, RawNode, StateRole


class DemoGroup:
    def __init__(self, seed: int) -> None:
        self.ids = (1, 2, 3)
        self.stores = {i: MemoryStorage(voters=self.ids) for i in self.ids}
        self.nodes: dict[int, RawNode | None] = {
            i: RawNode(
                Config(id=i, pre_vote=True, check_quorum=True),
                self.stores[i],
                random.Random(seed * 31 + i),
            )
            for i in self.ids
        }
        self.applied: dict[int, list[bytes]] = {i: [] for i in self.ids}
        self.inbox: dict[int, list[Message]] = {i: [] for i in self.ids}
        self.ticks = 0
        self.leader = 0

    def pump(self) -> None:
        busy = True
        while busy:
            busy = False
            for i, n in self.nodes.items():
                if n is None or not n.has_ready():
                    continue
                busy = True
                rd = n.ready()
                st = self.stores[i]
                st.append(rd.entries)
                if rd.hard_state is not None:
                    st.set_hard_state(rd.hard_state)
                if rd.soft_state is not None and rd.soft_state.role == StateRole.LEADER:
                    print(f"[tick {self.ticks:>3}] node {i} is leader of term {n.status().term}")
                    self.leader = i
                for m in rd.messages:
                    self.inbox[m.to].append(m)
                for e in rd.committed_entries:
                    if e.data:
                        self.applied[i].append(e.data)
                        if i == self.leader:
                            print(f"[tick {self.ticks:>3}] committed #{e.index}: {e.data.decode()}")
                n.advance(rd)
            for i, n in self.nodes.items():
                msgs, self.inbox[i] = self.inbox[i], []
                for m in msgs:
                    if n is not None:
                        busy = True
                        n.step(m)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.ticks += 1
            for n in self.nodes.values():
                if n is not None:
                    n.tick()
            self.pump()


def main() -> int:
    ap = argparse.ArgumentParser(description="simulated 3-node Raft group")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    g = DemoGroup(args.seed)
    print("kvcluster demo: a simulated 3-node Raft group (pre-vote, check-quorum)")
    while not g.leader:
        g.tick()
    for k in range(3):
        n = g.nodes[g.leader]
        assert n is not None
        n.propose(f"SET user:{k} alice-{k}".encode())
        g.pump()
    old = g.leader
    print(f"[tick {g.ticks:>3}] crashing leader node {old}")
    g.nodes[old] = None
    g.leader = 0
    while not g.leader:
        g.tick()
    n = g.nodes[g.leader]
    assert n is not None
    n.propose(b"SET after-failover ok")
    g.pump()
    print(f"[tick {g.ticks:>3}] restarting node {old} from its storage")
    g.nodes[old] = RawNode(
        Config(id=old, pre_vote=True, check_quorum=True), g.stores[old], random.Random(old)
    )
    g.applied[old] = []
    g.tick(5)
    same = len({tuple(a) for a in g.applied.values()}) == 1
    for i in g.ids:
        print(f"node {i} applied {len(g.applied[i])} commands")
    print("all replicas agree" if same else "REPLICAS DIFFER")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
