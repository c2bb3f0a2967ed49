"""Batch jobs and rrm-ui judge keep the backend full (issue 13, item 10).

Before, ``judge_items`` kept at most 8 items open and held each item's place until it was yielded in
input order, so one long trace held the other places (8 requests in flight against a 128-slot
server). Now the items in flight follow the backend's capacity, a finished item frees its place at
once and is stored at once, and the output keeps input order. The scripted backend of
tests/test_engine.py stands in for the model (the logic under test is the scheduling around it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from rrm_ui.config import Settings
from rrm_ui.domain import GenRequest, ImportedDataset, ImportedItem, Item
from rrm_ui.engine.runner import items_in_flight_for, judge_completed, judge_items
from rrm_ui.services import open_repository
from rrm_ui.services.judging import judge_and_store, plan_run
from tests.test_engine import ScriptedBackend, make_judge, prefer_longest, shown

GUARD_S = 60  # a deadlock guard for the old behaviour, never reached when the code is right


class GatedBackend(ScriptedBackend):
    """Holds every request for ``query 0`` until ``gate`` is set; the others stream at once."""

    def __init__(self) -> None:
        super().__init__(prefer_longest)
        self.gate = asyncio.Event()
        self.open_requests = 0
        self.max_open = 0

    async def stream(self, request: GenRequest) -> AsyncIterator:  # type: ignore[override]
        query, _, _ = shown(request)
        self.open_requests += 1
        self.max_open = max(self.max_open, self.open_requests)
        try:
            if query == "query 0":
                await self.gate.wait()
            else:
                await asyncio.sleep(0.001)
            async for ev in super().stream(request):
                yield ev
        finally:
            self.open_requests -= 1


def pairs(n: int) -> list[Item]:
    return [Item(f"item-{k}", f"query {k}", (f"r{k}", f"longer r{k}")) for k in range(n)]


def test_a_long_item_does_not_hold_the_other_places() -> None:
    items = pairs(20)
    backend = GatedBackend()
    judge = make_judge(backend, concurrency=2)
    finished: list[int] = []

    async def run() -> list[str]:
        async def watch() -> None:  # opens the gate once every other item is done
            while len(finished) < len(items) - 1:
                await asyncio.sleep(0.001)
            backend.gate.set()

        watcher = asyncio.create_task(watch())
        out = []
        async for index, result in judge_completed(judge, items, "pair", items_in_flight=2):
            finished.append(index)
            out.append(result.id)
        await watcher
        return out

    ids = asyncio.run(asyncio.wait_for(run(), GUARD_S))
    assert finished[-1] == 0 and sorted(finished) == list(range(len(items)))  # 19 items passed the long one
    assert ids[-1] == "item-0"


def test_judge_items_keeps_input_order_while_items_finish_out_of_order() -> None:
    items = pairs(12)
    backend = GatedBackend()
    judge = make_judge(backend, concurrency=2)
    yielded: list[str] = []

    async def run() -> None:
        async def release() -> None:
            while len(backend.calls) < len(items) - 1:  # every other item was sent (item 0 waits at the gate)
                await asyncio.sleep(0.001)
            assert yielded == []  # nothing may come out before item 0
            backend.gate.set()

        opener = asyncio.create_task(release())
        async for result in judge_items(judge, items, "pair", items_in_flight=2):
            yielded.append(result.id)
        await opener

    asyncio.run(asyncio.wait_for(run(), GUARD_S))
    assert yielded == [it.id for it in items]


def test_items_in_flight_follow_the_backend_capacity() -> None:
    backend = GatedBackend()
    backend.concurrency = 48  # e.g. vLLM's max_num_seqs, or the endpoints' concurrency
    judge = make_judge(backend)
    assert judge.request_slots == 48 and items_in_flight_for(judge) == 48
    items = [it for it in pairs(60) if it.query != "query 0"]

    async def run() -> None:
        async for _ in judge_items(judge, items, "pair"):
            pass

    asyncio.run(asyncio.wait_for(run(), GUARD_S))
    assert backend.max_open == 48  # not 8: the backend's capacity is used
    assert items_in_flight_for(make_judge(ScriptedBackend(prefer_longest), concurrency=2)) == 8  # at least 8


def test_batch_job_stores_each_item_as_it_finishes_and_yields_in_order(tmp_path: Path) -> None:
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    rows = tuple(ImportedItem(f"item-{k}", f"query {k}", (f"r{k}", f"longer r{k}"), k + 1) for k in range(10))
    dataset_id = repo.create_dataset(ImportedDataset("d", "/data/d.jsonl", "pairwise", rows)).id
    backend = GatedBackend()
    judge = make_judge(backend, concurrency=2)
    plan = plan_run(repo, dataset_id, "run", judge, "pair")
    yielded: list[str] = []

    async def run() -> int:
        stored_while_open = 0

        async def release() -> None:
            nonlocal stored_while_open
            while len(await asyncio.to_thread(repo.judged_item_ids, plan.run.id)) < len(rows) - 1:
                await asyncio.sleep(0.005)
            stored_while_open = len(await asyncio.to_thread(repo.judged_item_ids, plan.run.id))
            backend.gate.set()

        opener = asyncio.create_task(release())
        async for result in judge_and_store(repo, plan, judge, "pair", items_in_flight=2):
            yielded.append(result.id)
        await opener
        return stored_while_open

    stored_while_open = asyncio.run(asyncio.wait_for(run(), GUARD_S))
    assert stored_while_open == len(rows) - 1  # all but the long one were stored while it ran
    assert yielded == [f"item-{k}" for k in range(10)]  # what an output file gets: input order
    assert len(repo.judged_item_ids(plan.run.id)) == len(rows)
