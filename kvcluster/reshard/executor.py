"""The migration executor: drives the migrations the meta group has recorded to their end.

Contract:
- State lives in the cluster, never here: the meta group records each migration and its
  phase, the groups record their side of the slot (``kvcluster.kv.slot_moves``). The executor
  reads the layout, takes each unfinished migration from the phase it is in, and retries
  every step until it is applied (steps are idempotent). So it can be stopped at any point
  (Ctrl-C, a crash, a killed node) and a new run resumes; two runs at once are safe (a copy
  attempt of one makes the other's chunks no-ops).
- One slot, in order (``M`` = meta group, ``S`` = source, ``T`` = target)::

      M: COPYING                                 (recorded before anything moves)
      S: MigrateOut      dirty tracking starts; S keeps serving
      T: ImportBegin(a)  copy attempt a = T's last attempt + 1: T clears the slot
      T: ImportChunk*    pages of S's slot (linearizable scans), throttled
      M: FROZEN          recorded before the freeze: the point of no return (the meta
                         group refuses to abort from here on)
      S: Freeze          cutover starts: S refuses the slot and sends clients to T (ASK)
      T: ImportChunk     the dirty keys (current value or delete) and the sessions whose
         + Activate      last write was in the slot, then Activate, in one batch: T serves
                         the slot (cutover ends for clients sent with ASK)
      M: OWNERSHIP_FLIPPED  then (epoch + 1: the slot is T's in every map)
      S: Release         S answers MOVED and deletes its copy
      M: SOURCE_RELEASED, DONE  (one batch)

  The steps are taken for a whole wave of slots at once (``batch`` slots, one proposal per
  group per step, ``parallel`` waves at a time).

  Resuming in COPYING or FROZEN repeats the copy as a new attempt, then freezes (again: a
  no-op if done) and makes the final pass; the copy of a frozen source is exact.
  Aborting (before the freeze only) is ``M: abort`` first — after that neither the freeze
  nor the flip can happen — then ``S: Unfreeze``, ``T: DropImport``, ``M: forget``. A
  migration already FROZEN is finished instead: the target may be serving it.
- ``stop`` (an Event) is honoured between steps *before* a freeze: a migration is never
  left frozen by a stop, only by a crash of the executor itself (then ``run`` again, or
  ``abort``; or the node leading the meta group calls ``finish_decided`` after a stall,
  ``kvcluster.node.stalled_moves``). Migrations run ``parallel`` at a time.
- Progress: ``on_slot(SlotReport)`` after each finished or aborted migration.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from kvcluster.errors import InvalidArgument
from kvcluster.kv._msgpack import unpack
from kvcluster.kv.commands import encode_command
from kvcluster.kv.slot_moves import (
    MAX_CHUNK_KEYS,
    Activate,
    DropImport,
    Freeze,
    ImportBegin,
    ImportChunk,
    MigrateOut,
    Release,
    SlotState,
    Unfreeze,
    decode_final_pass,
)
from kvcluster.meta import (
    META_GROUP,
    AbortMove,
    AdvanceMoves,
    ForgetMove,
    MetaState,
    PlanMoves,
)
from kvcluster.reshard.rpc import LeaderCalls
from kvcluster.sharding.migration import Migration, Phase
from kvcluster.v1 import admin_pb2

__all__ = ["Executor", "SlotReport"]

_CHUNK_BYTES = 512 * 1024
K = TypeVar("K")


@dataclass(frozen=True)
class SlotReport:
    migration_id: int
    slot: int
    source: int
    target: int
    outcome: str  # "done" | "aborted" | "stopped"
    keys: int  # keys copied in the bulk pass
    bytes: int
    dirty: int  # keys sent in the final pass
    seconds: float
    cutover_ms: float  # Freeze sent -> Activate applied (0 if not reached)


class _Stopped(Exception):
    pass


class _Wave:
    """Per-slot bookkeeping of one wave: copy attempt, chunks sent, what was copied."""

    def __init__(self, migrations: list[Migration]) -> None:
        self.migrations = migrations
        self.attempt: dict[int, int] = {}
        self.chunk: dict[int, int] = {m.slot: 0 for m in migrations}
        self.keys: dict[int, int] = dict.fromkeys(self.chunk, 0)
        self.bytes: dict[int, int] = dict.fromkeys(self.chunk, 0)
        self.dirty: dict[int, int] = dict.fromkeys(self.chunk, 0)
        self.state: dict[int, SlotState | None] = dict.fromkeys(self.chunk)  # at the target
        self.frozen_at = 0.0
        self.cutover_ms = 0.0
        # slot -> (clock, dirty puts, sessions) as the source's Freeze answered
        self.final: dict[
            int, tuple[int, list[tuple[bytes, bytes | None]], list[tuple[int, int, bytes]]]
        ] = {}

    def next_chunk(self, slot: int) -> int:
        self.chunk[slot] += 1
        return self.chunk[slot]


class Executor:
    def __init__(
        self,
        calls: LeaderCalls,
        *,
        batch: int = 64,
        parallel: int = 2,
        throttle_keys_per_s: float = 0.0,
        stop: threading.Event | None = None,
        on_slot: Callable[[SlotReport], None] | None = None,
        chunk_keys: int = 500,
        seed: int | None = None,
    ) -> None:
        if batch < 1 or parallel < 1:
            raise InvalidArgument("batch and parallel must be at least 1")
        self.calls = calls
        self.batch = batch
        self.parallel = parallel
        self.throttle = throttle_keys_per_s
        self.stop = stop or threading.Event()
        self.on_slot = on_slot or (lambda r: None)
        self.chunk_keys = min(chunk_keys, MAX_CHUNK_KEYS)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._next_send = time.monotonic()

    # -- planning ------------------------------------------------------------------------
    def plan(self, moves: list[tuple[int, int]]) -> MetaState:
        """Record ``moves`` in the meta group (all or nothing); the layout after."""
        if moves:
            self._meta([PlanMoves(tuple(moves)).encode()])
        return self.calls.meta_state()

    # -- running -------------------------------------------------------------------------
    def run(self) -> list[SlotReport]:
        """Drive every unfinished migration to DONE (and finish cleaning ABORTED ones)."""
        todo = list(self.calls.meta_state().migrations)
        aborted = [m for m in todo if m.phase == Phase.ABORTED]
        flipped = [m for m in todo if m.is_flipped]
        frozen = [m for m in todo if m.phase == Phase.FROZEN]
        fresh = [m for m in todo if m.phase in (Phase.PENDING, Phase.COPYING)]
        jobs: list[tuple[Callable[[_Wave], list[SlotReport]], list[Migration]]] = []
        jobs += [(self._abort_wave, w) for w in self._waves(aborted)]
        jobs += [(self._finish_wave, w) for w in self._waves(flipped)]
        jobs += [(self._resume_frozen_wave, w) for w in self._waves(frozen)]
        jobs += [(self._move_wave, w) for w in self._waves(fresh)]
        return self._each(jobs)

    def abort(self) -> list[SlotReport]:
        """Roll back every migration not yet frozen; finish the others (decided moves)."""
        todo = list(self.calls.meta_state().migrations)
        jobs = self._decided_jobs(todo)
        jobs += [(self._abort_wave, w) for w in self._waves([m for m in todo if not m.is_decided])]
        return self._each(jobs)

    def finish_decided(self, ids: frozenset[int]) -> list[SlotReport]:
        """Finish the migrations ``ids`` that are decided (FROZEN or later) and leave every
        other one as it is: what a node does for moves whose executor went away
        (``kvcluster.node.stalled_moves``)."""
        todo = [m for m in self.calls.meta_state().migrations if m.migration_id in ids]
        return self._each(self._decided_jobs(todo))

    def _decided_jobs(
        self, todo: list[Migration]
    ) -> list[tuple[Callable[[_Wave], list[SlotReport]], list[Migration]]]:
        flipped = [m for m in todo if m.is_flipped]
        frozen = [m for m in todo if m.phase == Phase.FROZEN]
        return [(self._finish_wave, w) for w in self._waves(flipped)] + [
            (self._resume_frozen_wave, w) for w in self._waves(frozen)
        ]

    def _waves(self, ms: list[Migration]) -> list[list[Migration]]:
        ms = sorted(ms, key=lambda m: (m.source, m.target, m.slot))
        return [ms[i : i + self.batch] for i in range(0, len(ms), self.batch)]

    def _each(
        self, jobs: list[tuple[Callable[[_Wave], list[SlotReport]], list[Migration]]]
    ) -> list[SlotReport]:
        """Run the waves; report every wave that finished, then raise the first error (the
        waves after a failed one still run: each is independent, and their migrations are
        better finished than left for a resume)."""
        reports: list[SlotReport] = []
        errors: list[BaseException] = []
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="migrate") as pool:
            futures = [pool.submit(fn, _Wave(ms)) for fn, ms in jobs]
            for fut in futures:
                try:
                    done = fut.result()
                except Exception as e:  # re-raised below, after the other waves
                    errors.append(e)
                    continue
                for report in done:
                    reports.append(report)
                    self.on_slot(report)
        if errors:
            raise errors[0]
        return reports

    # -- the waves -----------------------------------------------------------------------
    def _move_wave(self, w: _Wave, *, stoppable: bool = True) -> list[SlotReport]:
        t0 = time.monotonic()
        try:
            if stoppable:
                self._check_stop()
            pending = [m for m in w.migrations if m.phase == Phase.PENDING]
            self._advance(pending, Phase.COPYING)
            self._per_group(
                _by_source(w.migrations),
                lambda ms: [MigrateOut(0, m.slot, m.migration_id, m.target) for m in ms],
            )
            self._begin_imports(w)
            self._for_pairs(w, lambda ms: self._copy(w, ms, stoppable))
            if stoppable:
                self._check_stop()
                self._advance(w.migrations, Phase.FROZEN)  # before the cutover starts
        except _Stopped:
            return self._reports(w, "stopped", t0)
        w.frozen_at = time.monotonic()
        # Each source group freezes its slots; as soon as its answer (the final pass) is in,
        # each of its targets takes the final pass and activates (one batch per pair), not
        # waiting for the other sources. The move is decided (FROZEN), so a target serves
        # the clients its source sends it with ASK as soon as it is active: the meta group's
        # flip, which only tells everyone else, comes after, off the clients' path.
        self._parallel(
            lambda item: self._cutover(w, item[1]), list(_by_source(w.migrations).items())
        )
        w.cutover_ms = (time.monotonic() - w.frozen_at) * 1000
        self._advance(w.migrations, Phase.OWNERSHIP_FLIPPED)
        return self._finish_wave(w, t0, activated=True)

    def _cutover(self, w: _Wave, ms: list[Migration]) -> None:
        """Freeze ``ms`` (one source group's slots), then give each target its final pass
        and Activate."""
        self._freeze(w, ms)
        self._parallel(lambda part: self._final_pass(w, part), list(_by_target(ms).values()))

    def _resume_frozen_wave(self, w: _Wave) -> list[SlotReport]:
        """A wave left FROZEN: freezing may have begun, so no stopping now."""
        return self._move_wave(w, stoppable=False)

    def _finish_wave(
        self, w: _Wave, t0: float | None = None, *, activated: bool = False
    ) -> list[SlotReport]:
        t0 = time.monotonic() if t0 is None else t0
        flipped = [m for m in w.migrations if m.phase != Phase.SOURCE_RELEASED]
        if flipped:
            if not activated:  # resumed after the flip: make sure every target is active
                self._activate_after_flip(flipped)
            self._per_group(
                _by_source(flipped), lambda ms: [Release(0, m.slot, m.migration_id) for m in ms]
            )
        ids = tuple(m.migration_id for m in flipped)
        self._meta(
            [AdvanceMoves(ids, Phase.SOURCE_RELEASED).encode()] * bool(ids)
            + [AdvanceMoves(tuple(m.migration_id for m in w.migrations), Phase.DONE).encode()]
        )
        return self._reports(w, "done", t0)

    def _activate_after_flip(self, flipped: list[Migration]) -> None:
        """Resuming after the flip: every target should be active (the flip is proposed
        only after Activate was applied), but should one not be (a run of an older
        executor flipped first, and part of the final pass may be applied), it gets a whole
        new copy from its source, frozen and not yet released (the source releases only
        after Activate): bulk copy, final pass, Activate."""
        w = _Wave(flipped)
        self._read_attempts(w, fresh=False)
        redo = [m for m in flipped if w.state[m.slot] != SlotState.ACTIVE]
        if not redo:
            return
        w = _Wave(redo)
        self._begin_imports(w)
        self._for_pairs(w, lambda ms: self._copy(w, ms, False))
        self._parallel(lambda ms: self._freeze(w, ms), list(_by_source(redo).values()))
        self._for_pairs(w, lambda ms: self._final_pass(w, ms))

    def _abort_wave(self, w: _Wave) -> list[SlotReport]:
        t0 = time.monotonic()
        self._meta([AbortMove(m.migration_id).encode() for m in w.migrations])
        self._per_group(
            _by_source(w.migrations), lambda ms: [Unfreeze(0, m.slot, m.migration_id) for m in ms]
        )
        self._per_group(
            _by_target(w.migrations), lambda ms: [DropImport(0, m.slot, m.migration_id) for m in ms]
        )
        self._meta([ForgetMove(m.migration_id).encode() for m in w.migrations])
        return self._reports(w, "aborted", t0)

    def _reports(self, w: _Wave, outcome: str, t0: float) -> list[SlotReport]:
        took = time.monotonic() - t0
        return [
            SlotReport(
                m.migration_id,
                m.slot,
                m.source,
                m.target,
                outcome,
                w.keys[m.slot],
                w.bytes[m.slot],
                w.dirty[m.slot],
                took,
                w.cutover_ms,
            )
            for m in w.migrations
        ]

    # -- steps ---------------------------------------------------------------------------
    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    def _meta(self, commands: list[bytes]) -> None:
        if commands:
            self.calls.propose(META_GROUP, commands)

    def _advance(self, ms: list[Migration], phase: Phase) -> None:
        """One meta entry advances the whole wave (one epoch for all its flips)."""
        if ms:
            self._meta([AdvanceMoves(tuple(m.migration_id for m in ms), phase).encode()])

    def _per_group(
        self, groups: dict[int, list[Migration]], make: Callable[[list[Migration]], list[object]]
    ) -> None:
        """One batched proposal per group, the groups in parallel."""

        def one(item: tuple[int, list[Migration]]) -> None:
            group, ms = item
            self.calls.propose(group, [encode_command(c) for c in make(ms)])  # type: ignore[arg-type]

        self._parallel(one, list(groups.items()))

    def _for_pairs(self, w: _Wave, fn: Callable[[list[Migration]], None]) -> None:
        self._parallel(fn, list(_group(w.migrations, lambda m: (m.source, m.target)).values()))

    def _parallel(self, fn: Callable[[Any], None], items: list[Any]) -> None:
        if len(items) == 1:
            fn(items[0])
            return
        with ThreadPoolExecutor(max(1, len(items))) as pool:
            for _ in pool.map(fn, items):
                pass

    def _freeze(self, w: _Wave, ms: list[Migration]) -> None:
        """Freeze ``ms`` (slots of one source group); each Freeze answers with its slot's
        final pass when it fits (kept in ``w.final``), which spares the cutover a read."""
        cmds = [encode_command(Freeze(0, m.slot, m.migration_id)) for m in ms]
        outcomes = self.calls.propose(ms[0].source, cmds).outcomes
        for m, o in zip(ms, outcomes, strict=True):
            final = decode_final_pass(o.value) if o.value else None
            if final is not None:
                w.final[m.slot] = final

    def _read_attempts(self, w: _Wave, *, fresh: bool) -> None:
        """Each slot's copy attempt from its target's record: the current one, or (``fresh``)
        a new, higher one (counter in the high bits, random low bits, so two executors at
        once never pick the same: the higher wins, the other is refused)."""
        for target, ms in _by_target(w.migrations).items():
            r = self.calls.scan(target, [m.slot for m in ms], admin_pb2.DATA, limit=1)
            for m, raw in zip(ms, r.records, strict=True):
                current = 0
                if raw:
                    state, mid, _, attempt, _ = unpack(raw)
                    if mid == m.migration_id:
                        w.state[m.slot] = SlotState(state)
                        if state == SlotState.IMPORTING:
                            current = attempt
                if fresh:
                    with self._lock:
                        low = self._rng.getrandbits(31) + 1
                    w.attempt[m.slot] = (((current >> 32) + 1) << 32) | low
                else:
                    w.attempt[m.slot] = current

    def _begin_imports(self, w: _Wave) -> None:
        self._read_attempts(w, fresh=True)
        self._per_group(
            _by_target(w.migrations),
            lambda ms: [
                ImportBegin(0, m.slot, m.migration_id, m.source, w.attempt[m.slot]) for m in ms
            ],
        )

    def _pages(self, group: int, slots: list[int], kind: int) -> Iterator[Any]:
        start_slot, after = 0, None
        while True:
            r = self.calls.scan(
                group, slots, kind, start_slot=start_slot, start_after=after, limit=self.chunk_keys
            )
            yield r
            if r.done:
                return
            start_slot, after = r.next_slot, r.next_after

    def _chunks(
        self,
        w: _Wave,
        by_slot: dict[int, Migration],
        clock: int,
        puts: dict[int, list[tuple[bytes, bytes | None]]],
        sessions: dict[int, list[tuple[int, int, bytes]]] | None = None,
    ) -> list[bytes]:
        """ImportChunk commands for one page: per slot, chunks within the size limits."""
        out: list[bytes] = []
        sessions = sessions or {}
        for slot in sorted(set(puts) | set(sessions)):
            m = by_slot[slot]
            batches = list(_split(puts.get(slot, []))) or [[]]
            sess = sessions.get(slot, [])
            for i, batch in enumerate(batches):
                last = i == len(batches) - 1
                chunk_sess = sess if last and len(sess) <= MAX_CHUNK_KEYS else []
                out.append(self._chunk(w, m, clock, batch, chunk_sess))
            if len(sess) > MAX_CHUNK_KEYS:
                for j in range(0, len(sess), MAX_CHUNK_KEYS):
                    out.append(self._chunk(w, m, clock, [], sess[j : j + MAX_CHUNK_KEYS]))
        return out

    def _chunk(
        self,
        w: _Wave,
        m: Migration,
        clock: int,
        puts: list[tuple[bytes, bytes | None]],
        sessions: list[tuple[int, int, bytes]],
    ) -> bytes:
        """The next chunk of ``m``'s slot, stamped with the source's clock."""
        slot = m.slot
        return encode_command(
            ImportChunk(
                clock,
                slot,
                m.migration_id,
                w.attempt[slot],
                w.next_chunk(slot),
                tuple(puts),
                tuple(sessions),
            )
        )

    def _copy(self, w: _Wave, ms: list[Migration], stoppable: bool) -> None:
        """The bulk pass of one (source, target) pair while the source serves."""
        source, target = ms[0].source, ms[0].target
        by_slot = {m.slot: m for m in ms}
        for r in self._pages(source, [m.slot for m in ms], admin_pb2.DATA):
            if stoppable:
                self._check_stop()
            puts: dict[int, list[tuple[bytes, bytes | None]]] = {}
            for slot, k, v in zip(r.entry_slots, r.keys, r.values, strict=True):
                puts.setdefault(slot, []).append((k, v))
                w.keys[slot] += 1
                w.bytes[slot] += len(k) + len(v)
            if puts:
                self._pace(sum(len(p) for p in puts.values()))
                self.calls.propose(target, self._chunks(w, by_slot, r.clock, puts))

    def _final_pass(self, w: _Wave, ms: list[Migration]) -> None:
        """The dirty keys and the sessions of the frozen slots — from Freeze's answers, or
        read from the source for slots whose final pass was too big to carry — sent with
        the source's clock at the freeze; every slot gets at least one final chunk, and the
        target activates the slots in the same batch."""
        source, target = ms[0].source, ms[0].target
        by_slot = {m.slot: m for m in ms}
        puts: dict[int, list[tuple[bytes, bytes | None]]] = {m.slot: [] for m in ms}
        sessions: dict[int, list[tuple[int, int, bytes]]] = {}
        clock = 0
        for m in ms:
            if m.slot in w.final:
                c, p, sess = w.final[m.slot]
                clock = max(clock, c)
                puts[m.slot] = p
                if sess:
                    sessions[m.slot] = sess
        missing = [m.slot for m in ms if m.slot not in w.final]
        if missing:
            with ThreadPoolExecutor(max_workers=2) as pool:
                dirty_f = pool.submit(lambda: list(self._pages(source, missing, admin_pb2.DIRTY)))
                sess_f = pool.submit(lambda: self.calls.scan(source, missing, admin_pb2.SESSIONS))
                dirty_rs, sess_r = dirty_f.result(), sess_f.result()
            for r in dirty_rs:
                for slot, k, v, present in zip(
                    r.entry_slots, r.keys, r.values, r.present, strict=True
                ):
                    puts[slot].append((k, v if present else None))
            for slot, k, rec, seq in zip(
                sess_r.entry_slots, sess_r.keys, sess_r.values, sess_r.seqs, strict=True
            ):
                sessions.setdefault(slot, []).append((int.from_bytes(k, "big"), seq, rec))
            clock = max([clock, sess_r.clock, *(r.clock for r in dirty_rs)])
        for slot, p in puts.items():
            w.dirty[slot] += len(p)
        activate = [
            encode_command(Activate(0, m.slot, m.migration_id, w.attempt[m.slot])) for m in ms
        ]
        chunks = self._chunks(w, by_slot, clock, puts, sessions)
        self.calls.propose(target, chunks + activate)

    def _pace(self, n: int) -> None:
        if self.throttle <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_send)
            self._next_send = start + n / self.throttle
        if start > now:
            time.sleep(start - now)


def _group(ms: list[Migration], key: Callable[[Migration], K]) -> dict[K, list[Migration]]:
    """``ms`` grouped by ``key``, in their order."""
    out: dict[K, list[Migration]] = {}
    for m in ms:
        out.setdefault(key(m), []).append(m)
    return out


def _by_source(ms: list[Migration]) -> dict[int, list[Migration]]:
    return _group(ms, lambda m: m.source)


def _by_target(ms: list[Migration]) -> dict[int, list[Migration]]:
    return _group(ms, lambda m: m.target)


def _split(puts: list[tuple[bytes, bytes | None]]) -> Iterator[list[tuple[bytes, bytes | None]]]:
    """Chunks of at most MAX_CHUNK_KEYS keys and about _CHUNK_BYTES bytes."""
    batch: list[tuple[bytes, bytes | None]] = []
    size = 0
    for k, v in puts:
        batch.append((k, v))
        size += len(k) + (len(v) if v else 0)
        if len(batch) >= MAX_CHUNK_KEYS or size >= _CHUNK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
