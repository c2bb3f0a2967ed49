"""One active job per run, whoever starts it: the app, `rrm-ui judge`, two processes at once.

Against real SQLite and a real PostgreSQL server: threads that start jobs, create runs and add the
first Judge-tab item at the same moment; the partial unique index refusing a second active job
even when the check in Python is bypassed. With the tiny model: `rrm-ui judge --dataset` refuses a
run the app is judging, takes over a paused job or one whose `rrm-ui judge` died, and stops when
the app pauses its job.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from rrm_ui.config import Settings
from rrm_ui.domain import ImportedDataset, ImportedItem, Item, JobStatus
from rrm_ui.services import open_repository
from rrm_ui.storage import Repository
from rrm_ui.storage import models as m
from rrm_ui.storage.repo_jobs import JobConflict

ROOT = Path(__file__).resolve().parents[1]
THREADS = 8
SETTINGS = dict(backend="transformers", model="tiny", template="rrm", template_version="3", strategy="auto",
                sampling={"max_tokens": 8}, compute={"votes": 1})  # fmt: skip


def add_dataset(repo: Repository, n: int = 4, name: str = "d") -> int:
    items = tuple(ImportedItem(f"x{k}", f"question {k}?", (f"one {k}", f"two {k}"), k + 1) for k in range(n))
    return repo.create_dataset(ImportedDataset(name, f"/data/{name}.jsonl", "pairwise", items)).id


def at_once(fn: Callable[[int], Any], n: int = THREADS) -> list[Any]:
    """``fn(k)`` in ``n`` threads released together; each thread's return value or exception."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def work(k: int) -> None:
        barrier.wait()
        try:
            out[k] = fn(k)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[k] = exc

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def active_jobs(repo: Repository, run_id: int) -> int:
    jobs = repo.frame("jobs")
    return int(((jobs["run_id"] == run_id) & jobs["status"].isin(["queued", "running", "paused"])).sum())


# --- the database -------------------------------------------------------------------------------


def test_concurrent_job_starts_for_one_run_make_one_job(db_url: str) -> None:
    repo = open_repository(Settings(database_url=db_url))
    run, _ = repo.get_or_create_run(add_dataset(repo), "r", **SETTINGS)
    for attempt in range(3):  # a race is a matter of luck: try it a few times
        out = at_once(lambda k: repo.create_job(run.id, owner=f"user{k}", items_total=4, bracket_seed=0))
        made = [o for o in out if not isinstance(o, Exception)]
        assert len(made) == 1, out
        assert all(isinstance(o, JobConflict) and "already has job" in str(o) for o in out if o not in made), out
        assert active_jobs(repo, run.id) == 1
        repo.set_job_status(made[0].id, JobStatus.CANCELLED, f"round {attempt}")
    assert len(repo.jobs()) == 3


def test_the_database_refuses_a_second_active_job_of_a_run(db_url: str) -> None:
    """The rule holds even for a writer that skips the check (another version, a script)."""
    repo = open_repository(Settings(database_url=db_url))
    run, _ = repo.get_or_create_run(add_dataset(repo), "r", **SETTINGS)
    row = {"run_id": run.id, "items_total": 1, "items_done": 0, "judgments_error": 0, "tokens": 0, "active_s": 0.0}
    with repo.engine.begin() as conn:
        conn.execute(insert(m.Job), [{**row, "status": "paused"}])
        conn.execute(insert(m.Job), [{**row, "status": "done"}, {**row, "status": "cancelled"}])  # final: any number
    with pytest.raises(IntegrityError), repo.engine.begin() as conn:
        conn.execute(insert(m.Job), [{**row, "status": "running"}])
    assert active_jobs(repo, run.id) == 1


def test_concurrent_first_runs_and_first_live_items_lose_nothing(db_url: str) -> None:
    repo = open_repository(Settings(database_url=db_url))
    ds = add_dataset(repo)
    runs = at_once(lambda k: repo.get_or_create_run(ds, "same-run", **SETTINGS))
    assert not [r for r in runs if isinstance(r, Exception)], runs
    assert len({info.id for info, _ in runs}) == 1 and sum(created for _, created in runs) == 1
    assert len(repo.runs(ds)) == 1
    # the first Judge-tab judgments of several users at once: one data set, every item kept
    added = at_once(lambda k: repo.add_item("judge-tab", Item(f"live-{k}", "q?", ("a", "b"))))
    assert not [a for a in added if isinstance(a, Exception)], added
    assert len({ds_id for ds_id, _ in added}) == 1
    (live,) = [d for d in repo.datasets() if d.name == "judge-tab"]
    assert live.n_items == THREADS and len({item for _, item in added}) == THREADS


def test_an_outside_worker_holds_its_job_until_it_stops_beating(db_url: str) -> None:
    repo = open_repository(Settings(database_url=db_url))
    run, _ = repo.get_or_create_run(add_dataset(repo), "r", **SETTINGS)
    job = repo.create_job(run.id, owner=None, items_total=4, bracket_seed=0, status=JobStatus.RUNNING, worker="cli 1")
    assert repo.held_elsewhere(job.id) == "cli 1"
    assert repo.take_over_job(run.id, "cli 2") is None  # it beats: nobody takes it
    assert not repo.requeue_job(job.id)  # nor does the app's resume
    assert repo.beat(job.id, "cli 1") is JobStatus.RUNNING
    assert repo.beat(job.id, "cli 2") is None  # not cli 2's job
    with repo.engine.begin() as conn:  # cli 1 died a while ago
        conn.execute(update(m.Job).values(heartbeat_at=m.utcnow() - timedelta(seconds=600)))
    assert repo.held_elsewhere(job.id) is None
    taken = repo.take_over_job(run.id, "cli 2")
    assert taken is not None and (taken.id, taken.worker, taken.status) == (job.id, "cli 2", JobStatus.RUNNING)
    # the app pauses it; cli 2 learns at its next beat and lets go; the state the app set stays
    assert repo.set_job_status(job.id, JobStatus.PAUSED, "paused by boss")
    assert repo.beat(job.id, "cli 2") is JobStatus.PAUSED
    assert not repo.release_job(job.id, "cli 2", JobStatus.DONE, "all done")
    after = repo.job(job.id)
    assert (after.status, after.message, after.worker) == (JobStatus.PAUSED, "paused by boss", None)
    assert repo.requeue_job(job.id) and repo.job(job.id).status is JobStatus.QUEUED


# --- rrm-ui judge against the app's jobs ------------------------------------------------------------


def judge_cli(db: str, model: Path, *extra: str, wait: bool = True) -> Any:
    cmd = [sys.executable, "-m", "rrm_ui", "judge", "--dataset", "d", "--db", db, "--run", "r", "--backend",
           "transformers", "--model", str(model), "--max-tokens", "16", "--seed", "3", "--quiet", *extra]  # fmt: skip
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def results_per_item(repo: Repository) -> dict[int, int]:
    return repo.frame("item_results").groupby("item_id").size().to_dict()


@pytest.mark.slow
def test_judge_refuses_a_run_the_app_is_judging_and_takes_over_a_paused_one(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    repo = open_repository(Settings(database_url=db))
    add_dataset(repo, n=3)
    first = judge_cli(db, tiny_model)  # creates the run "r" with the command's settings, judges all 3
    assert first.returncode == 0, first.stderr
    (run,) = repo.runs()
    (job,) = repo.jobs()
    assert (job.status, job.worker, job.items_done) == (JobStatus.DONE, None, 3)  # the command's own job
    with repo.engine.begin() as conn:  # two more items for the run to judge
        rows = [{"dataset_id": run.dataset_id, "ext_id": f"y{k}", "query": f"more {k}?", "responses": ["a", "b"],
                 "n_responses": 2, "meta": {}} for k in range(2)]  # fmt: skip
        conn.execute(insert(m.Item), rows)
    app_job = repo.create_job(run.id, owner="boss", items_total=5, items_done=3, bracket_seed=0,
                              status=JobStatus.RUNNING)  # fmt: skip
    refused = judge_cli(db, tiny_model)
    assert refused.returncode == 2, refused.stderr
    assert f"already has job #{app_job.id} (running)" in refused.stderr
    assert len(repo.frame("item_results")) == 3  # nothing judged twice, nothing judged at all

    assert repo.set_job_status(app_job.id, JobStatus.PAUSED, "paused by boss")
    joined = judge_cli(db, tiny_model)  # a paused job is taken over and finished by the command
    assert joined.returncode == 0, joined.stderr
    assert f"as job #{app_job.id}" in joined.stderr
    done = repo.job(app_job.id)
    assert (done.status, done.worker, done.items_done) == (JobStatus.DONE, None, 5)
    assert set(results_per_item(repo).values()) == {1} and len(results_per_item(repo)) == 5


@pytest.mark.slow
def test_judge_stops_when_the_app_pauses_its_job(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    repo = open_repository(Settings(database_url=db))
    add_dataset(repo, n=400)
    proc = judge_cli(db, tiny_model, wait=False)
    try:
        deadline = time.monotonic() + 240
        while not (jobs := repo.jobs()) or jobs[0].items_done < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the command judged nothing"
            time.sleep(0.2)
        (job,) = jobs
        assert job.worker and job.worker.startswith("rrm-ui judge on ") and repo.held_elsewhere(job.id)
        from rrm_ui.ui.tabs import batch

        assert batch.jobs_table([job])["owner"].iloc[0] == job.worker  # the Batch tab says who runs it
        assert repo.set_job_status(job.id, JobStatus.PAUSED, "paused by boss")  # what JobManager.pause does
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 3, err
    assert f"job #{job.id} was paused in the app (paused by boss)" in err
    after = repo.job(job.id)
    assert (after.status, after.worker) == (JobStatus.PAUSED, None)
    stored = len(repo.frame("item_results"))
    # the job's counters are written just after each item's own transaction (docs/app.md): a pause that
    # lands between the two leaves the last stored item out of items_done; the results themselves are exact
    assert stored - 1 <= after.items_done <= stored < 400 and set(results_per_item(repo).values()) == {1}
