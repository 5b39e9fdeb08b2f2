"""The search behind the checker: Wing & Gong's algorithm as improved by Lowe, on one key.

What lives here: `search`, which, given the operations of one key that the checker kept
(determinate ``ok`` ops and indeterminate ``info`` ops), finds a linearization, or proves there
is none and returns the longest prefix it could place and why nothing could come next.

The algorithm (Lowe, "Testing for linearizability", 2017, section 3; the same shape as
porcupine's ``checkSingle``): the call and return entries of the determinate ops form a doubly
linked list in real-time order. Scanning from the head, any call before the first return is a
candidate to be linearized next; placing it ("lift") unlinks its call and return and pushes
(entry, state before) on a stack; reaching a return means its op cannot be placed in any order
tried from here, so the search pops the last placement ("unlift") and tries the next candidate.
A cache of (linearized set as an int bitset, model state) skips configurations already explored.

Reductions on top, each sound (the README argues why); all but the lookahead only choose
which of several equivalent orders to try:

- Info ops have no return entry (they are open to the end). At each configuration they are
  tried after every determinate candidate, only where they change the state, interchangeable
  ones (same `SearchView.kind`) in invoke order only, and never directly before a blind write
  (which would make them pointless). Because that last rule depends on how a configuration was
  reached, the cache remembers whether a configuration was explored under it.
- A read that fits the current state is placed at once, without trying alternatives
  (`_FORCED`). Of interchangeable determinate candidates, only the one that returns first is
  tried (`_twin_first`).
- The model's `Model.for_search` may merge states no read can tell apart (`UNSEEN`).
- Lookahead: a placement that changes the state is refused when one of the next
  `LOOKAHEAD_READS` unplaced reads could no longer see its value, whatever the ops still to
  come do (a necessary condition each model states in `Model.lookahead`).

What must not: choosing which ops to search (the checker prunes), formatting results, I/O. The
only clock is `time.monotonic`, read every few thousand steps for the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from jepsen_lite.history import Operation
from jepsen_lite.models import Model, ReadCheck, State

__all__ = ["LOOKAHEAD_READS", "SearchResult", "Step", "search"]

#: How many of the earliest unplaced reads the lookahead checks after a state change.
LOOKAHEAD_READS = 32
_CLOCK_EVERY = 2048  # search steps between two looks at the clock and the step budget
# A read that fits in the current state is placed at once, with no alternative tried: any
# linearization from here can be changed to place it first (it changes no state and could
# already come next). So if what follows it fails, the configuration before it fails too.
_FORCED = -2


@dataclass(frozen=True, slots=True)
class Step:
    """One placed operation of a linearization and the model state around it."""

    op: Operation
    before: State
    after: State


@dataclass(frozen=True, slots=True)
class SearchResult:
    """`linearization` is complete when valid; otherwise the longest prefix placed, after which
    every op of `candidates` (with the reason) could not come next and `stuck` is the op whose
    completion the scan reached unplaced. `states`: configurations explored."""

    outcome: Literal["valid", "invalid", "unknown"]
    linearization: tuple[Step, ...]
    stuck: Operation | None
    candidates: tuple[tuple[Operation, str], ...]
    states: int
    steps: int


class _Entry:
    """A call or return entry of a determinate op in the linked list."""

    __slots__ = ("is_call", "match", "next", "op", "pos", "prev")

    def __init__(self, op: int, pos: int, is_call: bool) -> None:
        self.op = op  # index into the determinate ops
        self.pos = pos  # position in the history: the real-time order
        self.is_call = is_call
        self.match: _Entry = self
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


# A stack frame: the call entry placed (None for an info op), the info op's index (-1 for a
# determinate op, _FORCED for a read placed because it fit), the state before, the return
# entry the scan was stuck at when an info op was placed (trying info ops resumes there when
# the frame is popped), and the lookahead's read pointer before.
_Frame: TypeAlias = tuple["_Entry | None", int, State, "_Entry | None", int]
# The lookahead's view of a determinate read: its bit and its `Model.lookahead` check.
_Read: TypeAlias = tuple[int, ReadCheck]
_DeadRead: TypeAlias = Callable[[State, int, int], int]


def search(
    model: Model,
    det: Sequence[Operation],
    info: Sequence[Operation],
    *,
    deadline: float | None = None,
    max_steps: int | None = None,
    lookahead: bool = True,
) -> SearchResult:
    """Linearize `det` (ok ops; all must be placed) with any of `info` (info ops), all of one
    key. Ends ``unknown`` when `deadline` (a `time.monotonic` value) or `max_steps` is passed."""
    det = sorted(det, key=lambda op: op.invoke_index)
    info = sorted(info, key=lambda op: op.invoke_index)
    n_det, n_info = len(det), len(info)
    head = _link(det)
    info_pos = [op.invoke_index for op in info]
    view = model.for_search([*det, *info])
    info_class, info_rank, n_classes = _classes(info, view.kind)
    class_used = [0] * n_classes
    det_blind = [view.blind(op) for op in det]
    info_blind = [view.blind(op) for op in info]
    reads = _reads(model, det, info) if lookahead else []
    step = view.step
    dead_read = _lookahead(reads)

    det_read = [op.f in model.read_functions for op in det]
    twins = _twins(det, view.kind)

    state: State = model.init()
    linearized = 0  # bit i: det[i]; bit n_det + j: info[j]
    remaining = n_det
    stack: list[_Frame] = []
    # Explored configurations -> whether only under the "no blind write next" rule.
    cache: dict[tuple[int, State], bool] = {}
    restricted = False  # the last placement was an info op: no blind write may follow
    read_ptr = 0  # reads before this one are all placed
    info_from = 0  # where trying info ops resumes at the current stuck point
    best: tuple[list[_Frame], State, _Entry, int] | None = None
    steps = 0
    entry = head.next
    outcome: Literal["valid", "invalid", "unknown"] = "valid"

    while remaining:
        steps += 1
        if steps % _CLOCK_EVERY == 0 and (
            (deadline is not None and time.monotonic() > deadline)
            or (max_steps is not None and steps > max_steps)
        ):
            outcome = "unknown"
            break
        assert entry is not None  # a determinate op remains, so its return is still linked
        if entry.is_call:
            i = entry.op
            if (restricted and det_blind[i]) or (
                twins[i] and _twin_first(twins[i], entry, linearized, det)
            ):
                entry = entry.next
                continue
            ok, new_state = step(state, det[i])
            if not ok:
                entry = entry.next
                continue
            new_linearized = linearized | (1 << i)
            config = (new_linearized, new_state)
            if cache.get(config, True):  # unexplored, or explored only restricted
                cache[config] = False
                if (
                    det_read[i]
                    or new_state == state
                    or dead_read(new_state, new_linearized, read_ptr) < 0
                ):
                    stack.append((entry, _FORCED if det_read[i] else -1, state, None, read_ptr))
                    state, linearized = new_state, new_linearized
                    remaining -= 1
                    _lift(entry)
                    restricted = False
                    while read_ptr < len(reads) and linearized & reads[read_ptr][0]:
                        read_ptr += 1
                    entry = head.next
                    info_from = 0
                    continue
            if not det_read[i]:
                entry = entry.next
                continue
            # A read that fits now but whose configuration was explored: nothing from here
            # works (see _FORCED), so backtrack without trying the other candidates.
        else:
            # Stuck at a return: no determinate candidate works from here. Try info ops.
            j = info_from
            placed = False
            while j < n_info and info_pos[j] < entry.pos:
                bit = 1 << (n_det + j)
                if (
                    not linearized & bit
                    and class_used[info_class[j]] == info_rank[j]
                    and not (restricted and info_blind[j])
                ):
                    ok, new_state = step(state, info[j])
                    if ok and new_state != state:
                        config = (linearized | bit, new_state)
                        if config not in cache:
                            cache[config] = True
                            if dead_read(new_state, linearized | bit, read_ptr) < 0:
                                stack.append((None, j, state, entry, read_ptr))
                                state, linearized = new_state, linearized | bit
                                class_used[info_class[j]] += 1
                                restricted = placed = True
                                break
                j += 1
            if placed:
                entry = head.next
                info_from = 0
                continue
            # Nothing can come next here. Remember the deepest such place (only unrestricted
            # ones: there, every candidate was really tried).
            if not restricted and (best is None or len(stack) > len(best[0])):
                best = (stack.copy(), state, entry, read_ptr)

        # Backtrack: undo placements until one whose configuration has more to try.
        while stack:
            call, j, state, stuck_at, read_ptr = stack.pop()
            if call is not None:
                linearized &= ~(1 << call.op)
                remaining += 1
                _unlift(call)
                entry = call.next
                info_from = 0
            else:
                linearized &= ~(1 << (n_det + j))
                class_used[info_class[j]] -= 1
                entry = stuck_at
                info_from = j + 1
            if j != _FORCED:
                break
        else:
            outcome = "invalid"
            break
        restricted = bool(stack) and stack[-1][0] is None

    if outcome == "valid" or best is None or len(stack) > len(best[0]):
        return SearchResult(outcome, _steps(model, stack, det, info), None, (), len(cache), steps)
    frames, state, stuck, read_ptr = best
    linearization = _steps(model, frames, det, info)
    concrete = linearization[-1].after if linearization else model.init()
    placed_det = {call.op for call, *_ in frames if call is not None}
    linearized = sum(1 << call.op for call, *_ in frames if call is not None)
    linearized |= sum(1 << (n_det + j) for call, j, *_ in frames if call is None)
    candidates: list[tuple[Operation, str]] = []
    for i, op in enumerate(det):
        if i in placed_det or op.invoke_index > stuck.pos:
            continue
        ok, new_state = step(state, op)
        if not ok:
            why = f"not possible in state {model.describe_state(concrete)}"
        else:
            k = dead_read(new_state, linearized | (1 << i), read_ptr)
            if k >= 0:
                read = det[(reads[k][0]).bit_length() - 1]
                after = model.step(concrete, op)[1]
                why = (
                    f"would leave state {model.describe_state(after)}, from which the "
                    f"{read.f} on line {read.complete_line} can no longer see "
                    f"{model.describe_value(read.value)}"
                )
            else:
                why = "every way on from here was explored"
        candidates.append((op, why))
    candidates.sort(key=lambda c: (c[0] is not det[stuck.op], c[0].invoke_index))
    return SearchResult(outcome, linearization, det[stuck.op], tuple(candidates), len(cache), steps)


def _twins(
    det: Sequence[Operation], kind: Callable[[Operation], Hashable]
) -> list[tuple[int, ...]]:
    """For each op, the ops of the same kind that overlap it and return first."""
    groups: dict[Hashable, list[int]] = {}
    for i, op in enumerate(det):
        groups.setdefault(kind(op), []).append(i)
    twins: list[tuple[int, ...]] = [()] * len(det)
    for members in groups.values():
        for i in members:
            a = det[i]
            twins[i] = tuple(
                j for j in members if a.invoke_index < _returned(det[j]) < _returned(a)
            )
    return twins


def _twin_first(
    twins: tuple[int, ...], entry: _Entry, linearized: int, det: Sequence[Operation]
) -> bool:
    """Whether an unplaced twin of `entry`'s op that returns first is also a candidate now.

    Placing that twin instead is as good (they are the same op, and it has the earlier
    deadline), so the search does not try `entry`'s op."""
    first_return = -1
    for j in twins:
        if linearized >> j & 1:
            continue
        invoked = det[j].invoke_index
        if invoked < entry.pos:
            return True  # its call is before entry's, so (unplaced) it is a candidate
        if first_return < 0:
            e = entry.next
            while e is not None and e.is_call:
                e = e.next
            assert e is not None  # entry's own return is still linked
            first_return = e.pos
        if invoked < first_return:
            return True
    return False


def _returned(op: Operation) -> int:
    assert op.complete_index is not None, op
    return op.complete_index


def _link(det: Sequence[Operation]) -> _Entry:
    """The list head, followed by the call and return entries of `det` in real-time order."""
    entries: list[_Entry] = []
    for i, op in enumerate(det):
        assert op.complete_index is not None
        call, ret = _Entry(i, op.invoke_index, True), _Entry(i, op.complete_index, False)
        call.match, ret.match = ret, call
        entries += (call, ret)
    entries.sort(key=lambda e: e.pos)
    head = prev = _Entry(-1, -1, False)
    for e in entries:
        prev.next, e.prev = e, prev
        prev = e
    return head


def _lift(call: _Entry) -> None:
    """Unlink a call entry and its return entry (dancing links: they remember their place)."""
    for e in (call, call.match):
        assert e.prev is not None
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev


def _unlift(call: _Entry) -> None:
    """Relink what `_lift` unlinked, in the reverse order."""
    for e in (call.match, call):
        assert e.prev is not None
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e


def _classes(
    info: Sequence[Operation], kind: Callable[[Operation], Hashable]
) -> tuple[list[int], list[int], int]:
    """Each info op's class of interchangeable ops (same kind) and its rank in it."""
    classes: dict[Hashable, int] = {}
    sizes: list[int] = []
    of: list[int] = []
    rank: list[int] = []
    for op in info:
        c = classes.setdefault(kind(op), len(classes))
        if c == len(sizes):
            sizes.append(0)
        of.append(c)
        rank.append(sizes[c])
        sizes[c] += 1
    return of, rank, len(sizes)


def _reads(model: Model, det: Sequence[Operation], info: Sequence[Operation]) -> list[_Read]:
    """The lookahead's reads, in invoke order (see `_Read`); checks are built when first used."""
    bits = [(1 << i, op) for i, op in enumerate(det)]
    bits += ((1 << (len(det) + j), op) for j, op in enumerate(info))
    read_check = model.lookahead([(b, op) for b, op in bits if op.f not in model.read_functions])
    return [
        (b, _lazy(read_check, op)) for b, op in bits[: len(det)] if op.f in model.read_functions
    ]


def _lazy(build: Callable[[Operation], ReadCheck], read: Operation) -> ReadCheck:
    check: ReadCheck | None = None

    def lazy_check(state: State, linearized: int) -> bool:
        nonlocal check
        if check is None:
            check = build(read)
        return check(state, linearized)

    return lazy_check


def _lookahead(reads: Sequence[_Read]) -> _DeadRead:
    n_reads = len(reads)

    def dead_read(state: State, linearized: int, ptr: int) -> int:
        """Index in `reads` of an unplaced read that `state` can no longer lead to, or -1."""
        checked = 0
        while ptr < n_reads and checked < LOOKAHEAD_READS:
            bit, check = reads[ptr]
            if not linearized & bit:
                checked += 1
                if not check(state, linearized):
                    return ptr
            ptr += 1
        return -1

    return dead_read


def _steps(
    model: Model, frames: Sequence[_Frame], det: Sequence[Operation], info: Sequence[Operation]
) -> tuple[Step, ...]:
    """The placed ops with their concrete states (the search may have used `UNSEEN`)."""
    out: list[Step] = []
    state = model.init()
    for call, j, *_ in frames:
        op = det[call.op] if call is not None else info[j]
        ok, after = model.step(state, op)
        assert ok, (op, state)
        out.append(Step(op, state, after))
        state = after
    return tuple(out)
