"""Several app processes on one database (issue 18): job leases claimed by compare-and-set, one first
result per (run, item), migrations under a lock, login sessions' owners shared; and, marked slow,
two real app processes on one PostgreSQL sharing a batch job through a kill, a pause and a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update

from rrm_ui.domain import JobStatus
from rrm_ui.storage import Repository, make_engine, upgrade
from rrm_ui.storage import models as m
from rrm_ui.storage.db import MIGRATIONS, current_revision
from tests.conftest import ROOT
from tests.test_storage import dataset, result


def repo_on(url: str) -> Repository:
    """A repository with its own engine, as another process has."""
    engine = make_engine(url)
    upgrade(engine)
    return Repository(engine)


def a_run(repo: Repository) -> tuple[int, list[int]]:
    info = repo.create_dataset(dataset(n=3))
    run, _ = repo.get_or_create_run(info.id, "r", backend="transformers", model="tiny", strategy="pair")
    return run.id, [it.db_id for it in repo.items(info.id)]


def together(*calls):  # noqa: ANN002, ANN201
    """Run the calls in threads released at the same moment; their answers in order."""
    barrier = threading.Barrier(len(calls))
    out: list[object] = [None] * len(calls)

    def one(k: int) -> None:
        barrier.wait()
        out[k] = calls[k]()

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_a_job_lease_is_claimed_by_one_process_and_taken_over_once_it_expires(db_url: str) -> None:
    first, second = repo_on(db_url), repo_on(db_url)
    run_id, _ = a_run(first)
    job = first.create_job(run_id, owner=None, items_total=3, bracket_seed=0)  # queued, no worker: claimable
    assert [j.id for j in second.claimable_jobs()] == [job.id]
    wins = together(lambda: first.claim_job(job.id, "A", 30), lambda: second.claim_job(job.id, "B", 30))
    assert sorted(wins) == [False, True]
    holder, other = ("A", "B") if wins[0] else ("B", "A")
    assert first.job(job.id).worker == holder and second.claimable_jobs() == []
    assert second.held_elsewhere(job.id, me=other) == holder and second.held_elsewhere(job.id, me=holder) is None
    assert not second.claim_job(job.id, other, 30)  # the lease runs
    assert first.renew_lease(job.id, holder, 30) is JobStatus.QUEUED
    assert first.renew_lease(job.id, other, 30) is None  # not the other's

    # the holder stops renewing (killed): once the lease expired, one other process takes the job
    with first.engine.begin() as conn:
        conn.execute(update(m.Job).where(m.Job.id == job.id).values(lease_until=m.utcnow() - timedelta(seconds=1)))
    assert [j.id for j in second.claimable_jobs()] == [job.id]
    assert (
        together(lambda: second.claim_job(job.id, "C", 30), lambda: first.claim_job(job.id, "D", 30)).count(True) == 1
    )
    new_holder = first.job(job.id).worker
    assert new_holder in ("C", "D")
    assert first.renew_lease(job.id, holder, 30) is None  # the old holder learns it lost the job and stops
    # a pause from any process: the holder reads it at its next beat and lets go
    assert second.set_job_status(job.id, JobStatus.PAUSED, "paused", only_from=(JobStatus.QUEUED,))
    assert first.renew_lease(job.id, new_holder, 30) is JobStatus.PAUSED
    assert first.release_lease(job.id, new_holder) and first.job(job.id).worker is None
    assert second.claimable_jobs() == []  # paused: a resume requeues it, nothing claims it
    assert second.requeue_job(job.id, worker="E", lease_s=30) and second.job(job.id).worker == "E"
    assert not first.requeue_job(job.id, worker="F", lease_s=30)  # E's lease runs


def test_one_first_result_per_run_and_item_and_re_judges_are_history(db_url: str) -> None:
    first, second = repo_on(db_url), repo_on(db_url)
    run_id, items = a_run(first)
    x0 = items[0]
    stored = together(lambda: first.save_first_result(run_id, x0, result("x0", 0)),
                      lambda: second.save_first_result(run_id, x0, result("x0", 1)))  # fmt: skip
    assert sorted(stored) == [False, True]
    rows = first.frame("item_results")
    assert len(rows) == 1 and list(rows["revision"]) == [0]
    assert len(first.frame("judgments")) == 1  # the loser stored no judgment either
    assert not first.save_first_result(run_id, x0, result("x0", 1))
    # a re-judge of the item in the same run adds the next revision; readers take the latest
    assert first.save_result(run_id, x0, result("x0", 1)) and second.save_result(run_id, x0, result("x0", 0))
    rows = first.frame("item_results").sort_values("id")
    assert list(rows["revision"]) == [0, 1, 2] and len(first.frame("judgments")) == 3
    latest = first.latest_results(first.datasets()[0].id)
    assert len(latest) == 1 and int(latest["winner"].iloc[0]) == 0


def test_migration_0007_numbers_the_stored_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0006")
    repo = Repository(engine)
    info = repo.create_dataset(dataset(n=2))
    run, _ = repo.get_or_create_run(info.id, "r", backend="transformers", model="tiny", strategy="pair")
    x0, x1 = (it.db_id for it in repo.items(info.id))
    with engine.begin() as conn:  # three results of x0 and one of x1, as the old schema stored them
        for item, winner in ((x0, 0), (x1, 1), (x0, 1), (x0, 0)):
            row = {"r": run.id, "i": item, "w": winner}
            conn.execute(text("INSERT INTO item_results (run_id, item_id, strategy, winner, decision, ranking, votes, "
                              "pairs, ratings, bracket, created_at) VALUES (:r, :i, 'pair', :w, 'decided', '[]', "
                              "'{}', '[]', '{}', '[]', '2026-01-01')"), row)  # fmt: skip
    upgrade(engine)
    assert current_revision(engine) >= "0007"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT item_id, revision FROM item_results ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(x0, 0), (x1, 0), (x0, 1), (x0, 2)]


def test_three_app_starts_on_an_empty_postgresql_all_migrate(postgres) -> None:  # noqa: ANN001
    url = postgres.new_database("three_starts")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "rrm_ui", "db", "upgrade", "--db", url], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outs]
    heads = sorted(f.name.split("_")[0] for f in (MIGRATIONS / "versions").glob("0*.py"))
    assert current_revision(create_engine(url)) == heads[-1]


def test_a_session_belongs_to_its_first_user_in_every_process(db_url: str) -> None:
    first, second = repo_on(db_url), repo_on(db_url)
    owners = together(lambda: first.claim_session("s1", "ann"), lambda: second.claim_session("s1", "bob"))
    assert owners[0] == owners[1] and owners[0] in ("ann", "bob")
    assert first.claim_session("s1", "carol") == owners[0] and second.claim_session("s2", "carol") == "carol"
    assert first.claim_session("s2", "ann") == "carol"


def test_the_login_gates_of_two_processes_agree_on_a_sessions_owner(db_url: str) -> None:
    import asyncio
    import functools

    from rrm_ui.services import accounts
    from rrm_ui.ui.login_gate import LoginGate

    gates = [LoginGate(None, session_owner=functools.partial(accounts.session_owner, repo_on(db_url)))
             for _ in range(2)]  # fmt: skip
    assert asyncio.run(gates[0]._owner("hash-1", "ann")) == "ann"
    assert asyncio.run(gates[1]._owner("hash-1", "bob")) == "ann"  # the other process refuses bob this session
    assert asyncio.run(gates[1]._owner("hash-2", "bob")) == "bob"
    assert asyncio.run(gates[0]._owner("hash-2", "ann")) == "bob"
    assert gates[1].owners == {"hash-1": "ann", "hash-2": "bob"}  # cached: an owner never changes


# --- two real app processes on one PostgreSQL ----------------------------------------------------------

N_E2E = 60
ORDERS = [(0, 1, 0), (1, 0, 0)]  # one vote, both orders: two judgments per item
LEASE_S, BEAT_S = 4.0, 0.5


def _pg_app(tmp: Path, name: str, url: str, *args: str):  # noqa: ANN202
    from tests.test_e2e_browser import App

    class PgApp(App):
        @property
        def url_db(self) -> str:
            return url

    where = tmp / name
    where.mkdir()
    return PgApp(where, *args)


def _wait_for(what: str, check, timeout: float = 300):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.1)
    return found


@pytest.mark.slow
def test_two_app_processes_share_a_job_through_a_kill_a_pause_and_a_resume(
    postgres,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    from gradio_client import Client

    from tests.scripted_openai import Script, start_server
    from tests.test_app_kill import llmbar_pairs
    from tests.test_cli import rrm_ui as run_cli

    url = postgres.new_database("two_apps")
    proc = run_cli("import", str(llmbar_pairs(shared_data, tmp_path, N_E2E)), "--name", "pairs", "--preset", "llmbar",
                   "--db", url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    engine = create_engine(url)

    def sql(q: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(q))]

    items = {r[0] for r in sql("select id from items")}
    # a scripted OpenAI server: each judgment streams for about half a second, two at a time per app
    script = Script(chunks=5, chunk_delay_s=0.1)
    server = start_server(script)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1"
    for key, value in {"RRM_UI_JOB_LEASE_S": LEASE_S, "RRM_UI_JOB_BEAT_S": BEAT_S, "RRM_UI_CONCURRENCY": 2}.items():
        monkeypatch.setenv(key, str(value))
    options = ["--backend", "openai", "--endpoint", endpoint, "--model", "scripted-judge", "--max-tokens", "256"]
    apps = [_pg_app(tmp_path, name, url, *options) for name in "abc"]  # all three serve from the start

    def call(app, *args, api: str):  # noqa: ANN001, ANN002, ANN202
        client = Client(app.url, verbose=False)
        try:
            client.predict(api_name="/batch_datasets")  # the page load of this session
            return client.predict(*args, api_name=api)
        finally:
            client.close()

    def stored() -> int:
        return sql("select count(*) from item_results")[0][0]

    try:
        for app in apps:
            app.wait("serving on", timeout=900)  # a loaded machine starts three apps slowly
        first, *others = apps
        message = _wait_for(
            "the model is ready",
            lambda: (
                (m := call(first, "pairs", 256, 1, True, False, "auto", "", api="/batch_start")).startswith("Started")
                and m
            ),
        )
        [(job_id, run_id, worker, status, job_message)] = sql("select id, run_id, worker, status, message from jobs")
        assert f"{N_E2E} items to judge" in message, message
        assert worker is not None and worker.startswith("rrm-ui app on "), (worker, status, job_message)
        assert f"pid {first.proc.pid}," in worker  # the process that started it holds it

        # --- the first app is killed mid-way: the second takes the job over once the lease expired ----------
        _wait_for("a fifth of the items stored", lambda: stored() >= N_E2E // 5)
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
        t_kill, at_kill = time.monotonic(), stored()
        assert at_kill < N_E2E // 2, f"{at_kill} stored at the kill: not mid-way"
        holder = _wait_for("another app holds the job",
                           lambda: (w := sql(f"select worker from jobs where id = {job_id}")[0][0]) and
                           any(f"pid {a.proc.pid}," in w for a in others) and w)  # fmt: skip
        assert time.monotonic() - t_kill >= LEASE_S - 1.5  # not before the lease expired (less the sweep's wait)
        second, third = others if f"pid {others[0].proc.pid}," in holder else others[::-1]
        _wait_for("the second app judges", lambda: stored() > at_kill + 3)
        assert f"job #{job_id} continues here after rrm-ui app on" in second.log_path.read_text()
        assert "continues" not in third.log_path.read_text()  # one of the two took it, the other did not

        # --- the third app pauses it while the second works on it, then resumes it --------------------------
        paused = call(third, job_id, api="/batch_pause")
        assert "paused" in paused.lower(), paused
        _wait_for("the second app lets go", lambda: sql(f"select worker from jobs where id = {job_id}")[0][0] is None,
                  timeout=10 * BEAT_S)  # fmt: skip
        at_pause = stored()
        time.sleep(4 * BEAT_S)
        assert stored() == at_pause < N_E2E, "results went on after the pause"
        assert sql(f"select status from jobs where id = {job_id}") == [("paused",)]
        resumed = call(third, job_id, api="/batch_resume")
        assert "resumed" in resumed.lower() or "running" in resumed.lower() or "queued" in resumed.lower(), resumed
        assert f"pid {third.proc.pid}," in (sql(f"select worker from jobs where id = {job_id}")[0][0] or "")
        _wait_for("the job is done", lambda: sql(f"select status from jobs where id = {job_id}") == [("done",)],
                  timeout=600)  # fmt: skip
        assert holder != sql(f"select worker from jobs where id = {job_id}")[0][0]

        # --- every item judged exactly once: one result, both orders once --------------------------------
        results = dict(sql(f"select item_id, count(*) from item_results where run_id = {run_id} group by item_id"))
        assert set(results) == items and set(results.values()) == {1}
        keys: dict[int, list[tuple]] = {}
        for item, a, b, sample in sql("select item_id, a, b, sample from judgments"):
            keys.setdefault(item, []).append((a, b, sample))
        assert {i: sorted(k) for i, k in keys.items() if sorted(k) != ORDERS} == {}
        assert set(keys) == items and sum(map(len, keys.values())) == N_E2E * len(ORDERS)
        [(done, total)] = sql(f"select items_done, items_total from jobs where id = {job_id}")
        assert total == N_E2E and done >= N_E2E

        # --- both live processes' dashboards show every row ----------------------------------------------
        for app in (second, third):
            client = Client(app.url, verbose=False)
            try:
                api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
                [update_api] = [n for n in api if n.startswith("/update")][:1]  # the Insights tab's refresh
                # all data sets (the only one here): a new client session lists no data set before its page load
                out = client.predict("(all data sets)", [], None, "run", api_name=update_api)
            finally:
                client.close()
            head = next(o for o in out if isinstance(o, str) and "In scope" in o)
            assert f"In scope: {N_E2E:,} items · 1 runs · {N_E2E * len(ORDERS):,} judgments" in head, head
    finally:
        for app in apps:
            if app.proc.poll() is None:
                app.stop()
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        for name, app in zip("abc", apps, strict=True):  # pytest's tmp folders do not last
            (ROOT / "test-artifacts" / f"two-apps-{name}.log").write_text(app.log_path.read_text()[-20000:])
        server.shutdown()
        engine.dispose()
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "two-apps.txt").write_text(json.dumps(
        {"stored_at_kill": at_kill, "stored_at_pause": at_pause, "requests": script.requests}) + "\n")  # fmt: skip
