"""The pure parts of storage: key layout order, kv snapshot encoding, term runs, entry cache,
the compaction rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcluster.raft.types import ConfState, Entry, EntryType, HardState
from kvcluster.storage import CorruptSnapshot, codec, compaction_index, retained
from kvcluster.storage.state import EntryCache, TermRuns

groups = st.integers(0, 2**32 - 1)
indices = st.integers(0, 2**64 - 1)
slots = st.integers(0, codec.SLOT_MAX)
user_keys = st.binary(max_size=12)


@given(st.tuples(groups, indices), st.tuples(groups, indices))
def test_log_keys_sort_by_group_then_index(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (codec.log_key(*a) < codec.log_key(*b)) == (a < b)
    assert codec.log_index_of(codec.log_key(*a)) == a[1]
    assert codec.group_of(codec.log_key(*a)) == a[0]


@given(st.tuples(groups, slots, user_keys), st.tuples(groups, slots, user_keys))
def test_kv_keys_sort_by_group_slot_key(
    a: tuple[int, int, bytes], b: tuple[int, int, bytes]
) -> None:
    assert (codec.kv_key(*a) < codec.kv_key(*b)) == (a < b)
    assert codec.split_kv_key(codec.kv_key(*a)) == a[1:]
    assert codec.kv_key(*a).startswith(codec.slot_prefix(a[0], a[1]))


def test_records_round_trip() -> None:
    for e in (Entry(7, 9), Entry(2**63, 1, EntryType.CONF_CHANGE, b"\x00cc")):
        assert codec.decode_entry(e.index, codec.encode_entry(e)) == e
        assert codec.entry_term(codec.encode_entry(e)) == e.term
    hs = HardState(5, 3, 2**40)
    assert codec.decode_hard_state(codec.encode_hard_state(hs)) == hs
    cs = ConfState((1, 2, 3), (9,))
    assert codec.decode_conf_record(codec.encode_conf_record(12, cs)) == (12, cs)
    rec = codec.decode_snapshot_record(
        codec.encode_snapshot_record(codec.SnapshotRecord(4, 2, cs, 3, 99))
    )
    assert (rec.index, rec.term, rec.conf_state, rec.chunks, rec.size) == (4, 2, cs, 3, 99)
    assert codec.decode_identity(codec.encode_identity("c", 3)) == ("c", 3)
    assert codec.decode_group_flags(codec.encode_group_flags(True)) is True
    assert codec.decode_group_flags(codec.encode_group_flags(False)) is False


kv_items = st.lists(st.tuples(slots, user_keys, st.binary(max_size=40)), max_size=30)


@given(kv_items, st.integers(1, 64), st.integers(1, 17))
def test_kv_snapshot_round_trips_through_any_chunking(
    items: list[tuple[int, bytes, bytes]], chunk_size: int, cut: int
) -> None:
    chunks = list(codec.encode_kv_snapshot(items, chunk_size))
    assert all(len(c) >= chunk_size for c in chunks[:-1])
    data = b"".join(chunks)
    assert codec.is_kv_snapshot(data)
    assert list(codec.decode_kv_snapshot(chunks)) == items
    recut = [data[i : i + cut] for i in range(0, len(data), cut)]
    assert list(codec.decode_kv_snapshot(recut)) == items


def test_kv_snapshot_damage_is_detected() -> None:
    data = b"".join(codec.encode_kv_snapshot([(1, b"key", b"value"), (2, b"k", b"")], 8))
    for n in range(len(data)):  # every truncation
        with pytest.raises(CorruptSnapshot):
            list(codec.decode_kv_snapshot([data[:n]]))
    for bad in (data + b"\x01", b"XXXXXXXX" + data[8:], codec.SNAPSHOT_MAGIC + b"\x01\xc0"):
        with pytest.raises(CorruptSnapshot):
            list(codec.decode_kv_snapshot([bad]))


# -- TermRuns against a plain list ---------------------------------------------------------
@given(st.data())
def test_term_runs_match_a_list(data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, 5))
    terms = {offset: data.draw(st.integers(0, 3))}
    runs = TermRuns(offset, terms[offset])
    last = offset
    for _ in range(data.draw(st.integers(0, 12))):
        if data.draw(st.booleans()):  # append (maybe truncating) a few entries
            start = data.draw(st.integers(offset + 1, last + 1))
            runs.truncate_after(start - 1)
            terms = {i: t for i, t in terms.items() if i < start}
            last = start - 1
            for _ in range(data.draw(st.integers(0, 4))):
                last += 1
                terms[last] = max(terms[last - 1], 0) + data.draw(st.integers(0, 1))
                runs.push(last, terms[last])
        else:
            index = data.draw(st.integers(offset, last))
            runs.compact(index)
            terms = {i: t for i, t in terms.items() if i >= index}
            offset = index
        assert runs.starts[0] == offset
        assert all(runs.terms[k] != runs.terms[k + 1] for k in range(len(runs.terms) - 1))
        assert {i: runs.term(i) for i in range(offset, last + 1)} == terms


# -- EntryCache ----------------------------------------------------------------------------
def test_entry_cache_keeps_a_bounded_suffix() -> None:
    cache = EntryCache(max_entries=3, max_bytes=10**6)
    cache.append([Entry(1, i) for i in range(1, 6)])
    assert [e.index for e in cache.entries] == [3, 4, 5]
    cache.append([Entry(2, 5), Entry(2, 6)])  # overlaps: replaces 5
    assert [(e.index, e.term) for e in cache.entries] == [(4, 1), (5, 2), (6, 2)]
    cache.append([Entry(3, 2)])  # starts before the cache: the cache restarts
    assert [e.index for e in cache.entries] == [2]
    cache.compact(2)
    assert cache.entries == [] and cache.bytes == 0
    small = EntryCache(max_entries=100, max_bytes=3 * Entry(1, 1, data=b"x").size())
    small.append([Entry(1, i, data=b"x") for i in range(1, 10)])
    assert [e.index for e in small.entries] == [7, 8, 9]
    assert small.bytes == sum(e.size() for e in small.entries)
    off = EntryCache(0, 0)
    off.append([Entry(1, 1)])
    assert off.first_index() == 0


# -- compaction rule -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "applied", "threshold", "keep", "want"),
    [
        (1, 0, 10, 0, None),
        (1, 9, 10, 0, None),
        (1, 10, 10, 0, 10),
        (1, 10, 10, 4, 6),
        (101, 150, 50, 0, 150),
        (101, 149, 50, 0, None),
        (1, 10, 5, 20, None),  # keep more than there is
    ],
)
def test_compaction_index(
    first: int, applied: int, threshold: int, keep: int, want: int | None
) -> None:
    assert compaction_index(first, applied, threshold, keep) == want


@pytest.mark.parametrize("threshold", [1, 2, 10, 50, 10_000, 123_457])
def test_each_compaction_drops_about_a_tenth_of_the_threshold(threshold: int) -> None:
    keep = retained(threshold)
    assert 0 <= keep < threshold
    assert threshold - keep == max(1, threshold // 10)
    # steady state: the log holds between keep and threshold applied entries
    first, cuts = 1, 0
    for applied in range(1, 5 * threshold + 1):
        index = compaction_index(first, applied, threshold, keep)
        assert index == compaction_index(first, applied, threshold)  # keep's default
        if index is not None:
            assert index == applied - keep
            first, cuts = index + 1, cuts + 1
        assert applied - first + 1 < threshold
        assert applied - first + 1 >= min(applied, keep)
    assert cuts >= (5 * threshold - threshold) // max(1, threshold // 10)


def test_compaction_index_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        retained(0)
    with pytest.raises(ValueError):
        compaction_index(1, 10, 0)
