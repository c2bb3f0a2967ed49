"""A batch job's writes never block the model's event loop (issue 13, item 8).

While another connection holds SQLite's write lock, the loop that runs the judging (and every live
stream and job beside it) keeps serving other coroutines; the results are stored, in order, once the
lock is released. The backend is the scripted double of tests/test_engine.py (the logic under test is
the storing around it); the database is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from rrm_ui.config import Settings
from rrm_ui.domain import ImportedDataset, ImportedItem
from rrm_ui.services import open_repository
from rrm_ui.services.judging import judge_and_store, plan_run
from tests.test_engine import ScriptedBackend, make_judge, prefer_longest

N = 6


def test_a_held_write_lock_leaves_the_loop_serving(tmp_path: Path) -> None:
    db = tmp_path / "lock.db"
    repo = open_repository(Settings(database_url=f"sqlite:///{db}"))
    items = tuple(
        ImportedItem(f"x{k}", f"question {k}?", (f"short {k}", f"a longer answer {k}"), k + 1) for k in range(N)
    )
    dataset_id = repo.create_dataset(ImportedDataset("d", "/data/d.jsonl", "pairwise", items)).id
    backend = ScriptedBackend(prefer_longest)
    judge = make_judge(backend)
    plan = plan_run(repo, dataset_id, "locked", judge, "pair")

    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as another process's long write would hold it

    yielded: list[str] = []

    async def consume() -> None:
        async for result in judge_and_store(repo, plan, judge, "pair"):
            yielded.append(result.id)

    async def main() -> tuple[int, int, int]:
        consumer = asyncio.create_task(consume())
        ticks = 0
        # all N items are judged (the scripted backend is quick), the first write waits for the lock
        while len(backend.calls) < N or ticks < 50:
            await asyncio.sleep(0.005)  # another coroutine's progress: it only advances if the loop is free
            ticks += 1
            assert not consumer.done() or consumer.exception() is None, consumer.exception()
        seen_while_locked = len(yielded)
        calls = len(backend.calls)
        holder.execute("COMMIT")
        await consumer
        return ticks, seen_while_locked, calls

    ticks, seen_while_locked, calls = asyncio.run(main())
    holder.close()
    assert calls == N and ticks >= 50
    assert seen_while_locked == 0  # nothing was reported stored while the lock was held
    assert yielded == [f"x{k}" for k in range(N)]  # in input order
    stored = repo.frame("item_results")
    stored = stored[stored["run_id"] == plan.run.id]
    assert len(stored) == N
    ids = dict(zip(repo.frame("items")["id"], repo.frame("items")["ext_id"], strict=True))
    assert sorted(ids[i] for i in stored["item_id"]) == [f"x{k}" for k in range(N)]
