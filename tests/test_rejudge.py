"""Explorer re-judges and a data set's main run, with the tiny model on a real Runtime and SQLite.

A re-judge is its own run, tied to the run it re-examines: it never becomes a batch run's latest
decision (which would inflate that run's agreement), a batch job never continues it, and it never
becomes the run an export takes by default.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ImportedDataset, ImportedItem, Sampling
from rrm_ui.services import open_repository
from rrm_ui.services.exports import ExportFilters, export, main_run
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.live import REJUDGE, LiveJudgment, LiveState
from rrm_ui.services.runtime import Runtime
from rrm_ui.storage import Repository
from rrm_ui.storage.repository import RunMismatch
from tests.test_jobs import runtime_for, wait_until

pytestmark = pytest.mark.slow

N = 6
# the Explorer's defaults for a pair would be votes=4, both orders; one vote keeps the test short.
# What matters: the batch job and the re-judge use the same settings, so their default run names agree.
COMPUTE = Compute(votes=1)
SAMPLING = Sampling(max_tokens=24, seed=1)


@pytest.fixture(scope="module")
def runtime(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = runtime_for(tiny_model, f"sqlite:///{tmp_path_factory.mktemp('rt') / 'rt.db'}")
    yield rt
    rt.close()


@pytest.fixture
def judged(runtime: Runtime, tmp_path: Path) -> Iterator[tuple[Runtime, Repository, int, int]]:
    """A data set of N pairs judged to the end by a batch job; (runtime on this database, repo, data set id, run id)."""
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'r.db'}"))
    items = tuple(ImportedItem(f"x{k}", f"question {k}?", (f"one {k}", f"two {k}"), k + 1) for k in range(N))
    ds = repo.create_dataset(ImportedDataset("d", "/data/d.jsonl", "pairwise", items))
    old_repo, runtime.repo = runtime.repo, repo
    manager = JobManager(repo, runtime)
    try:
        job = manager.start(ds.id, compute=COMPUTE, sampling=SAMPLING, strategy="auto", owner=None)
        job = wait_until(lambda: manager.progress(job.id), lambda j: j.status.value in ("done", "failed"))
        assert job.status.value == "done", job
        yield runtime, repo, ds.id, job.run_id
    finally:
        manager.shutdown()
        runtime.repo = old_repo


def results_per_item(repo: Repository, run_id: int) -> dict[int, int]:
    frame = repo.frame("item_results")
    return frame[frame["run_id"] == run_id].groupby("item_id").size().to_dict()


def rejudge(runtime: Runtime, repo: Repository, item_db_id: int, parent: str | None) -> LiveJudgment:
    item = repo.item(item_db_id)
    assert item is not None
    live = LiveJudgment(runtime, item.item, compute=COMPUTE, sampling=SAMPLING, annotator="alice",
                        stored_item=("d", item_db_id), parent_run=parent)  # fmt: skip
    snap = live.wait(120)
    assert snap.state is LiveState.DONE, snap
    return live


def test_a_rejudge_is_its_own_run_tied_to_the_run_it_reexamines(judged) -> None:  # noqa: ANN001
    runtime, repo, ds_id, batch_run = judged
    (batch,) = repo.runs(ds_id)
    before = repo.latest_results(ds_id)
    item_db_id = int(before["item_id"].min())
    snap = rejudge(runtime, repo, item_db_id, batch.name).snapshot()

    # the batch run is as it was: one result per item, the same latest rows
    assert results_per_item(repo, batch_run) == dict.fromkeys(before["item_id"].tolist(), 1)
    after = repo.latest_results(ds_id)
    assert sorted(after[after["run_id"] == batch_run]["id"]) == sorted(before["id"])
    # the re-judge went to a run of its own that says which run it re-examined
    assert snap.run_id != batch_run
    runs = {r.id: r for r in repo.runs(ds_id)}
    mine = runs[snap.run_id]
    assert (mine.origin, mine.parent_run_id) == (REJUDGE, batch_run)
    assert mine.name != batch.name and mine.compute == batch.compute
    assert results_per_item(repo, mine.id) == {item_db_id: 1}
    # a second re-judge of another item of the same run with the same settings joins that re-judge run
    other = int(before["item_id"].max())
    assert rejudge(runtime, repo, other, batch.name).snapshot().run_id == mine.id
    # a batch job (or rrm-ui judge) never continues a re-judge run
    manager = JobManager(repo, runtime)
    try:
        with pytest.raises(RunMismatch, match="origin"):
            manager.start(ds_id, compute=COMPUTE, sampling=SAMPLING, strategy="auto", owner=None, run_name=mine.name)
    finally:
        manager.shutdown()


def test_the_default_export_is_the_main_run_not_the_newest_rejudge(judged, tmp_path: Path) -> None:  # noqa: ANN001
    runtime, repo, ds_id, batch_run = judged
    (batch,) = repo.runs(ds_id)
    rejudge(runtime, repo, int(repo.latest_results(ds_id)["item_id"].min()), batch.name)
    assert len(repo.runs(ds_id)) == 2

    # the model's decisive verdicts of the batch run, counted from its stored results
    res = repo.latest_results(ds_id)
    decisive = int((res[res["run_id"] == batch_run]["winner"].notna()).sum())
    out = tmp_path / "trl.jsonl"
    summary = export(repo, "trl", out, ExportFilters(dataset="d"))
    assert summary.run == batch.name and f"run {batch.name!r}" in summary.describe()
    assert summary.written == decisive == len(out.read_text().splitlines())
    assert main_run(repo, ds_id).id == batch_run
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["source"] == "model" for r in rows)
