"""Batch judging jobs with real components: the tiny model on the transformers backend, a real
Runtime and its loop, SQLite files (and PostgreSQL for the repository part).

Checked: a job runs to done with exactly one result per item; pause really stops (no result
appears afterwards) and resume finishes without judging an item twice; cancel stops for good;
an abrupt stop of the app (the worker dies, the job stays 'running') is continued by
``recover()`` in a new runtime; jobs needing another model, or waiting for one that failed,
are parked with a message; only the owner or an admin controls a job.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ImportedDataset, ImportedItem, JobInfo, JobStatus, Sampling
from rrm_ui.services import open_repository
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.runtime import ModelUnavailable, Runtime
from rrm_ui.storage import Repository
from rrm_ui.storage.repo_jobs import JobConflict

N_ITEMS = 12
COMPUTE = Compute(votes=1)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def add_dataset(repo: Repository, name: str = "d", n: int = N_ITEMS) -> int:
    items = tuple(
        ImportedItem(f"x{k}", f"question {k}?", (f"answer one {k}", f"answer two {k}"), k + 1) for k in range(n)
    )
    return repo.create_dataset(ImportedDataset(name, f"/data/{name}.jsonl", "pairwise", items)).id


def result_counts(repo: Repository, run_id: int) -> dict[int, int]:
    """item id -> number of stored item results of the run."""
    frame = repo.frame("item_results")
    frame = frame[frame["run_id"] == run_id]
    return frame.groupby("item_id").size().to_dict()


def wait_until(what: Callable[[], JobInfo], cond: Callable[[JobInfo], bool], timeout: float = 240) -> JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        job = what()
        if cond(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s; job is {job}")
        time.sleep(0.02)


def final(job: JobInfo) -> bool:
    return job.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def runtime_for(model: Path, db: str, **settings) -> Runtime:  # noqa: ANN003
    s = Settings(backend="transformers", model=str(model), device="cpu", max_tokens=32, seed=1, database_url=db,
                 concurrency=1, **settings)  # fmt: skip
    rt = Runtime(s, open_repository(s))
    rt.load_model().result(120)
    assert rt.wait_for_model(0).status == "ready", rt.model
    return rt


@pytest.fixture(scope="module")
def runtime(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One loaded model for the tests that need no restart (each test has its own database)."""
    rt = runtime_for(tiny_model, sqlite_url(tmp_path_factory.mktemp("rt")))
    yield rt
    rt.close()


@pytest.fixture
def setup(runtime: Runtime, tmp_path: Path) -> Iterator[tuple[Repository, JobManager, int]]:
    repo = open_repository(Settings(database_url=sqlite_url(tmp_path)))
    manager = JobManager(repo, runtime)
    yield repo, manager, add_dataset(repo)
    manager.shutdown()


def start(manager: JobManager, dataset_id: int, *, max_tokens: int = 32, owner: str | None = "alice", **kw) -> JobInfo:  # noqa: ANN003
    return manager.start(dataset_id, compute=COMPUTE, sampling=Sampling(max_tokens=max_tokens, seed=1),
                         strategy="auto", owner=owner, **kw)  # fmt: skip


# --- the repository ------------------------------------------------------------------------------


def test_job_store_counters_states_and_listing(db_url: str) -> None:
    repo = open_repository(Settings(database_url=db_url))
    ds = add_dataset(repo, n=3)
    other = add_dataset(repo, "other", n=2)
    run, _ = repo.get_or_create_run(ds, "r1", backend="transformers", model="m", strategy="pair")
    run2, _ = repo.get_or_create_run(other, "r2", backend="transformers", model="m", strategy="pair")

    job = repo.create_job(run.id, owner="alice", items_total=3, bracket_seed=7)
    assert (job.run_name, job.dataset_id, job.dataset, job.owner) == ("r1", ds, "d", "alice")
    assert (job.status, job.items_done, job.tokens, job.active_s, job.bracket_seed) == (JobStatus.QUEUED, 0, 0, 0, 7)
    assert job.tokens_per_s is None
    with pytest.raises(JobConflict, match=f"job #{job.id}"):
        repo.create_job(run.id, owner="bob", items_total=3, bracket_seed=0)
    job2 = repo.create_job(run2.id, owner=None, items_total=2, bracket_seed=None)
    assert job2.owner is None

    # increments are done in SQL: many threads at once lose none of them
    def bump() -> None:
        for _ in range(10):
            repo.add_job_progress(job.id, items=1, errors=2, tokens=5, active_s=0.5)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = repo.job(job.id)
    assert (got.items_done, got.judgments_error, got.tokens) == (40, 80, 200)
    assert got.active_s == pytest.approx(20.0) and got.tokens_per_s == pytest.approx(10.0)

    assert repo.set_job_status(job.id, JobStatus.RUNNING, only_from=[JobStatus.QUEUED], items_done=1)
    assert not repo.set_job_status(job.id, JobStatus.RUNNING, "x", only_from=[JobStatus.PAUSED])
    assert repo.job(job.id).items_done == 1 and repo.job(job.id).message is None
    repo.set_job_status(job.id, JobStatus.DONE, "3 items judged")
    assert repo.job(job.id).message == "3 items judged"
    assert (
        repo.create_job(run.id, owner="alice", items_total=3, bracket_seed=0).status is JobStatus.QUEUED
    )  # done ones free the run

    assert [j.id for j in repo.jobs()] == sorted((j.id for j in repo.jobs()), reverse=True)
    assert {j.id for j in repo.jobs("alice")} == {job.id, job.id + 2}
    assert [j.id for j in repo.jobs(dataset_id=other)] == [job2.id]
    assert repo.jobs("nobody") == []
    assert [j.id for j in repo.jobs_with_status(JobStatus.QUEUED, "done")] == [job.id, job2.id, job.id + 2]
    assert repo.job(10_000) is None


# --- jobs with the real model --------------------------------------------------------------------


@pytest.mark.slow
def test_job_runs_to_done_with_one_result_per_item(setup) -> None:  # noqa: ANN001
    repo, manager, ds = setup
    job = start(manager, ds)
    assert job.items_total == N_ITEMS and job.owner == "alice" and job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    done = wait_until(lambda: manager.progress(job.id), final)
    assert done.status is JobStatus.DONE, done.message
    assert done.items_done == N_ITEMS and done.message == f"{N_ITEMS} items judged, 0 errors"
    assert 0 < done.tokens <= N_ITEMS * 32  # one vote, one order, at most max_tokens each
    assert done.active_s > 0 and done.tokens_per_s > 0
    counts = result_counts(repo, done.run_id)
    assert len(counts) == N_ITEMS and set(counts.values()) == {1}
    assert [j.id for j in manager.jobs("alice")] == [job.id] and manager.jobs("bob") == []

    with pytest.raises(ValueError, match="done already"):
        manager.pause(job.id)
    # the same settings continue the same run: nothing left to judge, nothing judged twice
    again = start(manager, ds)
    assert again.run_id == done.run_id and again.items_done == N_ITEMS
    assert wait_until(lambda: manager.progress(again.id), final).status is JobStatus.DONE
    assert set(result_counts(repo, done.run_id).values()) == {1}


@pytest.mark.slow
def test_pause_stops_and_resume_finishes_without_judging_twice(setup) -> None:  # noqa: ANN001
    repo, manager, ds = setup
    job = start(manager, ds, max_tokens=48, run_name="slow")
    wait_until(lambda: manager.progress(job.id), lambda j: j.items_done >= 3)
    paused = manager.pause(job.id, actor="alice")
    assert paused.status is JobStatus.PAUSED and paused.message == "paused by alice"
    assert not manager.running(job.id)
    stored = sum(result_counts(repo, job.run_id).values())
    assert 3 <= stored < N_ITEMS
    time.sleep(1.0)  # nothing may arrive after pause() returned
    assert sum(result_counts(repo, job.run_id).values()) == stored
    assert manager.progress(job.id).items_done == stored

    with pytest.raises(JobConflict, match="resume or cancel it"):
        start(manager, ds, max_tokens=48, run_name="slow")
    resumed = manager.resume(job.id, actor="alice")
    assert resumed.status in (JobStatus.QUEUED, JobStatus.RUNNING) and resumed.message is None
    done = wait_until(lambda: manager.progress(job.id), final)
    assert done.status is JobStatus.DONE and done.items_done == N_ITEMS
    counts = result_counts(repo, job.run_id)
    assert len(counts) == N_ITEMS and set(counts.values()) == {1}


@pytest.mark.slow
def test_cancel_stops_for_good(setup) -> None:  # noqa: ANN001
    repo, manager, ds = setup
    job = start(manager, ds, max_tokens=48)
    wait_until(lambda: manager.progress(job.id), lambda j: j.items_done >= 1)
    cancelled = manager.cancel(job.id, actor="admin", is_admin=True)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.message == "cancelled by admin"
    stored = sum(result_counts(repo, job.run_id).values())
    assert stored < N_ITEMS
    time.sleep(1.0)
    assert sum(result_counts(repo, job.run_id).values()) == stored
    for act in (manager.pause, manager.resume, manager.cancel):
        with pytest.raises(ValueError, match="cancelled already"):
            act(job.id)
    # the run is free again: a new job continues it and judges only the rest
    again = start(manager, ds, max_tokens=48)
    assert again.run_id == job.run_id and again.items_done == stored
    assert wait_until(lambda: manager.progress(again.id), final).status is JobStatus.DONE
    assert set(result_counts(repo, job.run_id).values()) == {1} and len(result_counts(repo, job.run_id)) == N_ITEMS


@pytest.mark.slow
def test_only_the_owner_or_an_admin_controls_a_job(setup) -> None:  # noqa: ANN001
    _repo, manager, ds = setup
    job = start(manager, ds, max_tokens=48, owner="alice")
    for act in (manager.pause, manager.cancel, manager.resume):
        with pytest.raises(PermissionError, match="alice's; only its owner or an admin"):
            act(job.id, actor="bob")
    assert manager.progress(job.id).status in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert manager.pause(job.id, actor="carol", is_admin=True).status is JobStatus.PAUSED
    with pytest.raises(PermissionError):
        manager.resume(job.id, actor="bob")
    assert manager.resume(job.id, actor="alice").status in (JobStatus.QUEUED, JobStatus.RUNNING)
    with pytest.raises(ValueError, match="already"):  # running already (or, on a fast machine, done already)
        manager.resume(job.id, actor="alice")
    assert manager.cancel(job.id).status is JobStatus.CANCELLED  # no actor: the local admin


def test_start_needs_a_loaded_model(tmp_path: Path) -> None:
    s = Settings(backend="transformers", model="unused", database_url=sqlite_url(tmp_path))
    repo = open_repository(s)
    rt = Runtime(s, repo)  # never loaded: the model is "loading"
    try:
        manager = JobManager(repo, rt)
        with pytest.raises(ModelUnavailable, match="still loading"):
            start(manager, add_dataset(repo))
        assert repo.jobs() == []
    finally:
        rt.close()


# --- app restarts --------------------------------------------------------------------------------


@pytest.mark.slow
def test_recover_continues_a_job_after_an_abrupt_stop(tiny_model: Path, tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    first = runtime_for(tiny_model, db)
    repo = first.repo
    ds = add_dataset(repo)
    job = start(JobManager(repo, first), ds, max_tokens=48)
    wait_until(lambda: repo.job(job.id), lambda j: j.items_done >= 2)
    first.close()  # the app goes away mid-job: the worker never runs again, the job stays 'running'
    left = repo.job(job.id)
    assert left.status is JobStatus.RUNNING and left.items_done < N_ITEMS

    second = runtime_for(tiny_model, db)
    try:
        manager = JobManager(open_repository(second.settings), second)
        recovered = manager.recover().result(60)
        assert [j.id for j in recovered] == [job.id]
        done = wait_until(lambda: manager.progress(job.id), final)
        assert done.status is JobStatus.DONE and done.items_done == N_ITEMS
        counts = result_counts(repo, job.run_id)
        assert len(counts) == N_ITEMS and set(counts.values()) == {1}
        assert manager.recover().result(60) == []  # nothing left to recover
    finally:
        second.close()
        bury(first.loop)


def bury(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a stopped loop left pending and close it (quiet garbage collection; after the test)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.close()


def test_recover_parks_jobs_that_need_another_model(runtime: Runtime, tmp_path: Path) -> None:
    repo = open_repository(Settings(database_url=sqlite_url(tmp_path)))
    ds = add_dataset(repo, n=2)
    run, _ = repo.get_or_create_run(ds, "big", backend="vllm", model="Reward-Reasoning/RRM-32B", template="rrm",
                                    template_version="1", strategy="auto", sampling={}, compute={})  # fmt: skip
    job = repo.create_job(run.id, owner="alice", items_total=2, bracket_seed=0, status=JobStatus.RUNNING)
    manager = JobManager(repo, runtime)
    [got] = manager.recover().result(60)
    assert got.status is JobStatus.PAUSED
    assert "needs the model Reward-Reasoning/RRM-32B on the vllm backend" in got.message
    assert not manager.running(job.id) and result_counts(repo, run.id) == {}


def test_recover_waits_when_the_model_failed_to_load(tmp_path: Path) -> None:
    s = Settings(backend="transformers", model=str(tmp_path / "no-such-model"), hf_offline=True,
                 database_url=sqlite_url(tmp_path))  # fmt: skip
    repo = open_repository(s)
    ds = add_dataset(repo, n=2)
    run, _ = repo.get_or_create_run(ds, "r", backend="transformers", model="m", strategy="auto")
    job = repo.create_job(run.id, owner=None, items_total=2, bracket_seed=0, status=JobStatus.RUNNING)
    rt = Runtime(s, repo)
    try:
        manager = JobManager(repo, rt, poll_s=0.01)
        future = manager.recover()  # the model is still loading: the job waits for it
        assert repo.job(job.id).status is JobStatus.QUEUED
        rt.load_model()
        [got] = future.result(60)
        assert rt.model.status == "failed"
        assert got.status is JobStatus.QUEUED and got.message.startswith("waiting for a model: ")
        assert len(got.message) > len("waiting for a model: ")
    finally:
        rt.close()


@pytest.mark.slow
def test_the_app_leaves_a_job_that_rrm_ui_judge_holds(setup) -> None:  # noqa: ANN001
    """A job held by a beating ``rrm-ui judge`` is neither resumed nor recovered by the app; once that
    command has died (no beat for STALE_AFTER_S), a resume takes it over and finishes it."""
    from datetime import timedelta

    from sqlalchemy import update

    from rrm_ui.services.judging import plan_run
    from rrm_ui.storage import models as m

    repo, manager, ds = setup
    judge = manager.runtime.judge(COMPUTE, Sampling(max_tokens=32, seed=1))
    run = plan_run(repo, ds, "cli", judge, "auto").run  # the run an rrm-ui judge with these settings holds
    job = repo.create_job(run.id, owner=None, items_total=N_ITEMS, bracket_seed=0, status=JobStatus.RUNNING,
                          worker="rrm-ui judge on elsewhere, pid 1")  # fmt: skip
    with pytest.raises(ValueError, match="being judged by rrm-ui judge on elsewhere, pid 1; pause it"):
        manager.resume(job.id)
    assert manager.recover().result(60) == []  # not the app's to continue
    assert repo.job(job.id).status is JobStatus.RUNNING and not manager.running(job.id)
    with repo.engine.begin() as conn:
        conn.execute(update(m.Job).where(m.Job.id == job.id).values(heartbeat_at=m.utcnow() - timedelta(hours=1)))
    resumed = manager.resume(job.id)
    assert resumed.worker == manager.worker  # the app worker holds it now, with a lease
    done = wait_until(lambda: manager.progress(job.id), final)
    assert done.status is JobStatus.DONE and set(result_counts(repo, job.run_id).values()) == {1}
