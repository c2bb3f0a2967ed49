"""A live judgment reports what really happened to it, even when Stop comes while it is being stored.

The tiny model on a real Runtime and a real SQLite file. The store is held up by another
connection holding SQLite's write lock (what a busy batch job or annotators can do), so the Stop
arrives while the store thread waits; the judgment must end up reported as stored exactly when
the database holds it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rrm_ui.domain import Compute, Item, Sampling
from rrm_ui.services.live import LIVE_DATASET, LiveJudgment, LiveState
from rrm_ui.services.runtime import Runtime
from tests.test_jobs import runtime_for

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[Runtime, Path]]:
    path = tmp_path / "live.db"
    rt = runtime_for(tiny_model, f"sqlite:///{path}")
    yield rt, path
    rt.close()


def stored_items(runtime: Runtime) -> int:
    ds = runtime.repo.dataset(LIVE_DATASET)
    return 0 if ds is None else len(runtime.repo.latest_results(ds.id))


def test_a_stop_during_the_store_reports_the_stored_judgment(runtime) -> None:  # noqa: ANN001
    rt, path = runtime
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")  # the store will wait for this write lock
    try:
        live = LiveJudgment(rt, Item("live-x", "Which is right?", ("Four.", "Five.")), compute=Compute(votes=1),
                            sampling=Sampling(max_tokens=16, seed=1))  # fmt: skip
        deadline = time.monotonic() + 120
        while not (live.snapshot().streams and all(s.judgment for s in live.snapshot().streams)):
            assert time.monotonic() < deadline and not live.finished, live.snapshot()
            time.sleep(0.01)
        time.sleep(0.5)  # the judgment has ended: judge_item returned, the store thread waits for the lock
        assert not live.finished
        live.stop()
        assert live.wait(0.5).state is not LiveState.STOPPED  # not reported stopped while the store goes on
    finally:
        lock.execute("COMMIT")
        lock.close()
    snap = live.wait(60)
    assert stored_items(rt) == 1
    assert snap.state is LiveState.DONE and snap.item_db_id is not None and snap.result is not None, snap
    assert snap.note and "stored all the same" in snap.note


def test_a_stop_while_streaming_stores_nothing_and_says_so(runtime) -> None:  # noqa: ANN001
    rt, _path = runtime
    live = LiveJudgment(rt, Item("live-y", "Which is right?", ("Four.", "Five.")), compute=Compute(votes=2, swap=True),
                        sampling=Sampling(max_tokens=4000, seed=1))  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(s.pieces for s in live.snapshot().streams):
        assert time.monotonic() < deadline and not live.finished
        time.sleep(0.01)
    live.stop()
    snap = live.wait(60)
    assert snap.state is LiveState.STOPPED and snap.item_db_id is None and stored_items(rt) == 0
