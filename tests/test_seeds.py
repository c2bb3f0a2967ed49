"""Per-sample seeds: items and orders draw apart, the same run seed reproduces every sample's seed.

Regression: sample k of every item was seeded ``S + k``, so sample 0 of item 1 and sample 0 of
item 2 used one seed and a content-blind judge drew alike on every item (docs/demo-judge.md).
The seeds are checked against the rule docs/engine.md states, computed here (``seed_of``).
"""

from __future__ import annotations

import asyncio

from rrm_ui.domain import Item, Sampling
from rrm_ui.engine.judge import SEED_SPACE, pair_seed
from tests.test_engine import BAD, GOOD, QUERY, ScriptedBackend, make_judge, prefer_text, seed_of

ITEM_1 = Item("item-1", QUERY, (BAD, GOOD))
ITEM_2 = Item("item-2", QUERY, (BAD, GOOD))


def _seeds(items: list[Item], seed: int | None, **compute: object) -> list[tuple[str, str, int, int | None]]:
    """(item's first shown response, second, n, request seed) of every request, per item in turn."""
    out = []
    for item in items:
        backend = ScriptedBackend(prefer_text(GOOD))
        asyncio.run(make_judge(backend, sampling=Sampling(seed=seed), **compute).judge_pair(item, 0, 1))
        out += [(item.id, c.first, c.n, c.seed) for c in backend.calls]
    return out


def test_two_items_sample_0_get_different_seeds() -> None:
    calls = _seeds([ITEM_1, ITEM_2], seed=1)
    assert [c[0] for c in calls] == ["item-1", "item-2"]
    (_, _, _, s1), (_, _, _, s2) = calls
    assert s1 != s2
    assert s1 == seed_of(1, "item-1", 0, 1) and s2 == seed_of(1, "item-2", 0, 1)


def test_the_same_item_twice_gets_the_same_seeds() -> None:
    twice = _seeds([ITEM_1, ITEM_1], seed=1, votes=2, swap=True)
    assert twice[:2] == twice[2:]
    assert {c[3] for c in twice} == {seed_of(1, "item-1", 0, 1), seed_of(1, "item-1", 1, 0)}


def test_the_two_orders_and_the_run_seed_change_the_seed() -> None:
    calls = _seeds([ITEM_1], seed=1, swap=True)
    by_first = {first: s for _, first, _, s in calls}
    assert by_first[BAD] == seed_of(1, "item-1", 0, 1) and by_first[GOOD] == seed_of(1, "item-1", 1, 0)
    assert by_first[BAD] != by_first[GOOD]
    assert _seeds([ITEM_1], seed=2)[0][3] != _seeds([ITEM_1], seed=1)[0][3]


def test_a_request_for_several_samples_carries_its_first_sample_seed_and_unseeded_stays_unseeded() -> None:
    assert _seeds([ITEM_2], seed=5, votes=3) == [("item-2", BAD, 3, seed_of(5, "item-2", 0, 1))]
    assert _seeds([ITEM_1], seed=None) == [("item-1", BAD, 1, None)]


def test_pair_seed_range() -> None:
    seeds = [pair_seed(s, f"i{n}", a, b) for s in (-3, 0, 2**40) for n in range(200) for a, b in ((0, 1), (1, 0))]
    assert all(0 <= x < SEED_SPACE for x in seeds) and SEED_SPACE + 2**20 - 1 < 2**31
    assert len(set(seeds)) == len(seeds)
