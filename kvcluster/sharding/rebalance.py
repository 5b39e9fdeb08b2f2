"""Which slots to move: the pure planning behind ``kvctl reshard`` and ``kvctl rebalance``.

Contract:
- Input is the current owner of every slot (``owners``: slot -> group, every owned slot) and
  the shard groups; output is a list of ``(slot, target group)`` moves, never a move of a
  slot to the group that already owns it. Deterministic: the same input gives the same plan.
- ``plan_reshard``: explicit ``slots`` to ``target``; or ``count`` slots to ``target``, taken
  from ``source`` (from the top of its slots, so ranges stay contiguous) or, without a
  source, from every other group in proportion to what it owns.
- ``plan_rebalance``: even the groups out. By slot count (the default: every group ends
  with ``16384 // n`` or one more), or by a weight per slot (keys or bytes): greedy moves
  from the heaviest group to the lightest while a move narrows the spread.
- Refusals are ``InvalidArgument`` with the reason. Pure: stdlib only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

from kvcluster.errors import InvalidArgument
from kvcluster.sharding.slots import SLOT_COUNT as NUM_SLOTS

__all__ = ["plan_rebalance", "plan_reshard"]

Move = tuple[int, int]


def _by_group(owners: Mapping[int, int], groups: Iterable[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {g: [] for g in groups}
    for slot, g in sorted(owners.items()):
        out.setdefault(g, []).append(slot)
    return out


def plan_reshard(
    owners: Mapping[int, int],
    groups: Sequence[int],
    target: int,
    *,
    slots: Iterable[int] | None = None,
    count: int | None = None,
    source: int | None = None,
) -> list[Move]:
    if target not in groups:
        raise InvalidArgument(f"unknown target group {target}")
    if (slots is None) == (count is None):
        raise InvalidArgument("give either slots or a count")
    if slots is not None:
        wanted = sorted(set(slots))
        for s in wanted:
            if not 0 <= s < NUM_SLOTS:
                raise InvalidArgument(f"slot {s} out of range 0..{NUM_SLOTS - 1}")
            if s not in owners:
                raise InvalidArgument(f"slot {s} has no owner")
        return [(s, target) for s in wanted if owners[s] != target]
    assert count is not None
    if count < 1:
        raise InvalidArgument("count must be at least 1")
    by = _by_group(owners, groups)
    if source is not None:
        if source not in groups:
            raise InvalidArgument(f"unknown source group {source}")
        if source == target:
            raise InvalidArgument("source and target are the same group")
        have = by.get(source, [])
        if count > len(have):
            raise InvalidArgument(f"group {source} owns {len(have)} slots, fewer than {count}")
        return [(s, target) for s in have[len(have) - count :]]
    donors = {g: s for g, s in by.items() if g != target and s}
    total = sum(len(s) for s in donors.values())
    if count > total:
        raise InvalidArgument(f"the other groups own {total} slots, fewer than {count}")
    # Largest remainder: each donor gives in proportion to what it owns.
    shares = {g: count * len(s) // total for g, s in donors.items()}
    rest = count - sum(shares.values())
    for g in sorted(donors, key=lambda g: (-(count * len(donors[g]) % total), g))[:rest]:
        shares[g] += 1
    moves: list[Move] = []
    for g in sorted(donors):
        have = donors[g]
        moves += [(s, target) for s in have[len(have) - shares[g] :]] if shares[g] else []
    return sorted(moves)


def plan_rebalance(
    owners: Mapping[int, int],
    groups: Sequence[int],
    weights: Mapping[int, float] | None = None,
    *,
    max_moves: int = NUM_SLOTS,
) -> list[Move]:
    """Moves that even out ``groups``: by slot count, or by ``weights`` (slot -> weight)."""
    if not groups:
        raise InvalidArgument("no groups to balance")
    by = _by_group(owners, groups)
    for g in by:
        if g not in groups:
            raise InvalidArgument(f"slots owned by group {g}, which is not in the layout")
    if weights is None:
        return _even_by_count(by, sorted(groups))
    return _even_by_weight(by, weights, max_moves)


def _even_by_count(by: dict[int, list[int]], groups: list[int]) -> list[Move]:
    total = sum(len(s) for s in by.values())
    n = len(groups)
    # The first (total % n) groups in id order get one extra slot.
    quota = {g: total // n + (1 if i < total % n else 0) for i, g in enumerate(groups)}
    spare: list[int] = []
    for g in groups:
        have = by[g]
        if len(have) > quota[g]:
            spare += have[quota[g] :]
    spare.sort()
    moves: list[Move] = []
    for g in groups:
        need = quota[g] - len(by[g])
        for _ in range(max(0, need)):
            moves.append((spare.pop(0), g))
    return sorted(moves)


def _even_by_weight(
    by: dict[int, list[int]], weights: Mapping[int, float], max_moves: int
) -> list[Move]:
    load = {g: sum(weights.get(s, 0.0) for s in slots) for g, slots in by.items()}
    # Per group, its weighted slots sorted by (weight, slot): the best slot to move is found
    # by bisection, so a plan over thousands of slots stays fast.
    owned = {g: sorted((weights.get(s, 0.0), s) for s in slots) for g, slots in by.items()}
    moves: dict[int, int] = {}
    for _ in range(max_moves):
        heavy = max(load, key=lambda g: (load[g], -g))
        light = min(load, key=lambda g: (load[g], g))
        gap = load[heavy] - load[light]
        if gap <= 0:
            break
        # The slot whose move narrows the gap the most: weight closest to half of it, and
        # strictly between 0 and the gap (anything else does not narrow it).
        items = owned[heavy]
        i = bisect.bisect_left(items, (gap / 2, -1))
        near = [j for j in (i - 1, i) if 0 <= j < len(items) and 0 < items[j][0] < gap]
        if not near:
            break
        j = min(near, key=lambda j: (abs(gap / 2 - items[j][0]), items[j][1]))
        w, best = items.pop(j)
        bisect.insort(owned[light], (w, best))
        load[heavy] -= w
        load[light] += w
        moves[best] = light
    original = {s: g for g, slots in by.items() for s in slots}
    return sorted((s, g) for s, g in moves.items() if original[s] != g)
