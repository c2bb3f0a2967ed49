"""GET /metrics, the operators' metrics (rrm_ui/services/metrics.py, docs/deploy.md).

The real app (``python app.py``, no model needed) on a SQLite file with accounts, scraped over HTTP
and parsed with prometheus_client's own parser; the figures are checked against what the database
holds, read in this file with plain SQL (sqlite3) and counted in Python. The same figures are read
from a real PostgreSQL too. The data is written through the repository and the annotation service,
as the app writes it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from rrm_ui.domain import (
    Choice,
    ImportedDataset,
    ImportedItem,
    ItemResult,
    JobStatus,
    Judgment,
    PairOutcome,
    QueueSpec,
    Status,
    Verdict,
)
from rrm_ui.services import annotation, metrics
from rrm_ui.storage import Repository, make_engine, upgrade
from rrm_ui.storage.repo_metrics import LATENCY_BUCKETS_S
from tests.conftest import ROOT
from tests.test_e2e_browser import App

TOKEN = "scrape-token-0123456789"
OVERLAP = 2


# --- the data ------------------------------------------------------------------------------------


def judgment(sample: int, status: Status, latency: float | None, tokens: tuple[int, int, int]) -> Judgment:
    verdict = Verdict.A if status is Status.OK else None
    return Judgment(0, 1, sample, verdict, status, None, f"reasoning {sample}", f"answer {sample}",
                    *tokens, 0.01, latency, "stop", sample)  # fmt: skip


def result(ext: str, js: list[Judgment]) -> ItemResult:
    votes = {0: sum(j.verdict is Verdict.A for j in js), 1: 0}
    pair = PairOutcome(0, 1, 0 if votes[0] else None, votes, 0, None, len(js), None, tuple(js))
    return ItemResult(ext, "pair", pair.winner, (0, 1) if votes[0] else (), (pair,), "rrm", "1", "tiny", "test")


def dataset(repo: Repository, name: str, n: int) -> list[int]:
    items = tuple(ImportedItem(f"{name}-{k}", f"query {k}", (f"first {k}", f"second {k}"), 1) for k in range(n))
    info = repo.create_dataset(ImportedDataset(name, f"/data/{name}.jsonl", "pairwise", items))
    return [s.db_id for s in repo.items(info.id)]


def fill(repo: Repository) -> None:
    """Two data sets; runs with judgments of every kind of latency and status; jobs in four states;
    labels by two annotators (one item by both: the overlap reached) and one open claim."""
    big, small = dataset(repo, "big", 6), dataset(repo, "small", 3)
    dataset(repo, "empty-ish", 1)
    runs = {}
    for name in ("r-running", "r-paused", "r-done", "r-queued"):
        runs[name], _ = repo.get_or_create_run(repo.dataset("big").id, name, backend="test", model="tiny")
    latencies = [0.4, 1.0, 3.2, 7.5, 19.9, 45.0, 250.0, 900.0, None]
    sample = 0
    for k, item in enumerate(big[:5]):
        js = []
        for _ in range(2):
            latency = latencies[sample % len(latencies)]
            status = (Status.OK, Status.TRUNCATED, Status.ERROR)[sample % 3]
            js.append(judgment(len(js), status, latency, (100 + sample, 40 + 3 * sample, 30 + sample)))
            sample += 1
        repo.save_result(runs["r-running" if k < 3 else "r-done"].id, item, result(f"big-{k}", js))
    running = repo.create_job(runs["r-running"].id, owner=None, items_total=6, bracket_seed=None)
    repo.set_job_status(running.id, JobStatus.RUNNING)
    repo.add_job_progress(running.id, items=3, tokens=321)
    paused = repo.create_job(runs["r-paused"].id, owner=None, items_total=4, bracket_seed=None)
    repo.add_job_progress(paused.id, items=1, tokens=17)
    repo.set_job_status(paused.id, JobStatus.PAUSED)
    done = repo.create_job(runs["r-done"].id, owner=None, items_total=2, bracket_seed=None, items_done=2)
    repo.set_job_status(done.id, JobStatus.DONE)
    repo.create_job(runs["r-queued"].id, owner=None, items_total=5, bracket_seed=None)
    for annotator, spec, n in (("ann", QueueSpec(repo.dataset("big").id, overlap=OVERLAP), 3),
                               ("boss", QueueSpec(repo.dataset("big").id, overlap=OVERLAP), 1),
                               ("ann", QueueSpec(repo.dataset("small").id, overlap=OVERLAP), 1)):  # fmt: skip
        for _ in range(n):
            task = annotation.next_task(repo, spec, annotator)
            assert task is not None
            annotation.submit(repo, task, annotator, Choice.A)
    assert annotation.next_task(repo, QueueSpec(repo.dataset("small").id, overlap=OVERLAP), "boss") is not None
    assert small  # boss holds a claim on a small item without labelling it


# --- what the database holds, counted here ----------------------------------------------------------


def expected(db: Path) -> dict:
    with sqlite3.connect(db) as conn:
        rows = lambda sql: conn.execute(sql).fetchall()  # noqa: E731
        jobs = Counter({s.value: 0 for s in JobStatus})
        jobs.update(status for (status,) in rows("SELECT status FROM jobs"))
        active = {
            (str(job), run): (done, total, tokens)
            for job, run, done, total, tokens in rows(
                "SELECT jobs.id, runs.name, items_done, items_total, tokens FROM jobs JOIN runs ON runs.id = run_id "
                "WHERE status IN ('queued', 'running', 'paused')"
            )
        }
        judgments = rows("SELECT status, prompt_tokens, completion_tokens, reasoning_tokens, latency_s FROM judgments")
        labels = rows("SELECT item_id, annotator_id FROM labels")
        items = rows("SELECT items.id, datasets.name FROM items JOIN datasets ON datasets.id = dataset_id")
        names = [n for (n,) in rows("SELECT name FROM datasets")]
        claims = rows("SELECT item_id, annotator_id, claimed_at FROM assignments")
    latency = [j[4] for j in judgments if j[4] is not None]
    labellers = defaultdict(set)
    for item, who in labels:
        labellers[item].add(who)
    depth = dict.fromkeys(names, 0)
    for item, name in items:
        depth[name] += len(labellers[item]) < OVERLAP
    now = datetime.now(UTC)
    fresh = {
        item
        for item, who, at in claims
        if who not in labellers[item] and now - datetime.fromisoformat(at).replace(tzinfo=UTC) < timedelta(minutes=10)
    }
    return {
        "jobs": dict(jobs),
        "active": active,
        "judgments": dict(Counter(j[0] for j in judgments)),
        "tokens": {
            "prompt": sum(j[1] for j in judgments),
            "completion": sum(j[2] for j in judgments),
            "reasoning": sum(j[3] for j in judgments),
        },
        "buckets": {b: sum(x <= b for x in latency) for b in LATENCY_BUCKETS_S} | {float("inf"): len(latency)},
        "latency_sum": sum(latency),
        "labels": len(labels),
        "depth": depth,
        "claims": len(fresh),
    }


def scraped(text: str) -> dict:
    """The figures of a /metrics page, read with prometheus_client's parser."""
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {name: [(s.name, s.labels, s.value) for s in f.samples] for name, f in fams.items()}
    assert fams["rrm_ui_jobs"].type == "gauge" and fams["rrm_ui_judgments"].type == "counter"
    assert fams["rrm_ui_judgment_latency_seconds"].type == "histogram"
    by = lambda fam, key: {s[1][key]: s[2] for s in samples[fam]}  # noqa: E731
    per_job = defaultdict(dict)
    for fam in ("rrm_ui_job_items_done", "rrm_ui_job_items_total", "rrm_ui_job_tokens"):
        for _n, lab, value in samples[fam]:
            per_job[(lab["job"], lab["run"])][fam] = value
    hist = samples["rrm_ui_judgment_latency_seconds"]
    return {
        "jobs": by("rrm_ui_jobs", "status"),
        "active": {
            k: (v["rrm_ui_job_items_done"], v["rrm_ui_job_items_total"], v["rrm_ui_job_tokens"])
            for k, v in per_job.items()
        },
        "judgments": by("rrm_ui_judgments", "status"),
        "tokens": by("rrm_ui_tokens", "kind"),
        "buckets": {float(lab["le"]): v for n, lab, v in hist if n.endswith("_bucket")},
        "latency_sum": next(v for n, _l, v in hist if n.endswith("_sum")),
        "latency_count": next(v for n, _l, v in hist if n.endswith("_count")),
        "labels": samples["rrm_ui_labels"][0][2],
        "depth": by("rrm_ui_annotation_queue_depth", "dataset"),
        "claims": samples["rrm_ui_annotation_claims"][0][2],
    }


def check(got: dict, want: dict) -> None:
    for key in ("jobs", "active", "judgments", "tokens", "buckets", "labels", "depth", "claims"):
        assert got[key] == want[key], f"{key}: /metrics says {got[key]}, the database {want[key]}"
    assert got["latency_sum"] == pytest.approx(want["latency_sum"])
    assert got["latency_count"] == want["buckets"][float("inf")]


# --- the app -----------------------------------------------------------------------------------------


def users(db: str, *args: str, password: str) -> None:
    command = [sys.executable, "-m", "rrm_ui", "users", *args, "--db", db, "--password-stdin"]
    proc = subprocess.run(command, input=password + "\n", cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("metrics")
    url = f"sqlite:///{tmp / 'app.db'}"
    users(url, "add", "boss", "--admin", password="boss-password-1")
    users(url, "add", "ann", password="ann-password-1")
    engine = make_engine(url)
    upgrade(engine)
    fill(Repository(engine))
    engine.dispose()
    os.environ["RRM_UI_METRICS_TOKEN"] = TOKEN  # the app process inherits it (App copies os.environ)
    try:
        a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers", "--overlap", str(OVERLAP))
    finally:
        del os.environ["RRM_UI_METRICS_TOKEN"]
    a.wait("serving on")
    yield a
    a.stop()


@pytest.mark.slow
def test_metrics_need_a_login_or_the_token(app: App) -> None:
    with httpx.Client(base_url=app.url, timeout=60) as anon:
        assert anon.get("/metrics").status_code == 401
        assert anon.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
        assert anon.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401  # not as a bearer token
        scraper = anon.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraper.status_code == 200 and scraper.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert anon.get("/config", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401  # only /metrics
    with httpx.Client(base_url=app.url, timeout=60) as ann:
        assert ann.post("/login", data={"username": "ann", "password": "ann-password-1"}).status_code == 200
        page = ann.get("/metrics")
        assert page.status_code == 200 and "rrm_ui_jobs" in page.text


@pytest.mark.slow
def test_metrics_are_the_databases_figures_and_follow_it(app: App) -> None:
    def scrape() -> dict:
        r = httpx.get(f"{app.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200, r.text
        return scraped(r.text)

    first, want = scrape(), expected(app.db)
    check(first, want)
    # the data is not trivial: every kind of figure is there and differs from the rest (the app took
    # over the running and queued jobs at start: with no model, their states are the app's to say)
    assert sum(want["jobs"].values()) == 4 and want["jobs"]["done"] == 1 and want["active"]
    assert want["claims"] == 1 and want["labels"] == 5
    assert set(want["judgments"]) == {"ok", "truncated", "error"}
    assert 0 < want["buckets"][1.0] < want["buckets"][60.0] < want["buckets"][600.0] < want["buckets"][float("inf")]
    # big: 6 items, one labelled by both annotators; small: one labelled by one of the two
    assert want["depth"] == {"big": 5, "small": 3, "empty-ish": 1}

    # the app writes more (another annotator labels the item boss holds; a job moves on): the next scrape says so
    engine = make_engine(f"sqlite:///{app.db}")
    try:
        repo = Repository(engine)
        task = annotation.next_task(repo, QueueSpec(repo.dataset("small").id, overlap=OVERLAP), "boss")
        assert task is not None
        annotation.submit(repo, task, "boss", Choice.B)
        running = repo.jobs_with_status(JobStatus.PAUSED)[0]  # not moved by the app at start
        repo.add_job_progress(running.id, items=2, tokens=1000)
    finally:
        engine.dispose()
    second, want2 = scrape(), expected(app.db)
    check(second, want2)
    assert second["labels"] == first["labels"] + 1 and second["claims"] == 0
    assert second["depth"] == {"big": 5, "small": 2, "empty-ish": 1}  # boss labelled the item ann had
    key = next(k for k in first["active"] if k[0] == str(running.id))
    assert key in second["active"]
    assert second["active"][key][0] == first["active"][key][0] + 2
    assert second["active"][key][2] == first["active"][key][2] + 1000


# --- the same figures on PostgreSQL, in-process ------------------------------------------------------


def test_figures_on_postgresql(postgres, tmp_path: Path) -> None:  # noqa: ANN001
    """The aggregate SQL runs on PostgreSQL and gives what SQLite gives for the same writes."""
    found = {}
    for kind, url in (("sqlite", f"sqlite:///{tmp_path / 'm.db'}"), ("postgresql", postgres.new_database("metrics"))):
        engine = make_engine(url)
        upgrade(engine)
        repo = Repository(engine)
        fill(repo)
        found[kind] = scraped(metrics.exposition(repo, overlap=OVERLAP).decode())
        engine.dispose()
    want = expected(tmp_path / "m.db")
    assert want["jobs"] == {"queued": 1, "running": 1, "paused": 1, "done": 1, "failed": 0, "cancelled": 0}
    assert sorted(want["active"].values()) == [(0, 5, 0), (1, 4, 17), (3, 6, 321)]
    check(found["sqlite"], want)
    # job ids and item ids are the same on both (fresh databases, the same writes)
    check(found["postgresql"], want)


def test_judgment_totals_kept_between_scrapes_add_only_the_new_rows(db_url: str) -> None:
    """The judgments' sums a process keeps (storage/repo_metrics.JudgmentTotals): old rows are summed
    once and kept, newer rows each scrape; the figures are those of summing everything now."""
    engine = make_engine(db_url)
    upgrade(engine)
    repo = Repository(engine)
    fill(repo)

    def full() -> dict:
        return scraped(metrics.exposition(repo, overlap=OVERLAP).decode())

    totals = metrics.JudgmentTotals()
    recent = scraped(metrics.exposition(repo, overlap=OVERLAP, totals=totals).decode())  # nothing 5 minutes old
    assert totals.upto == 0 and recent == full()
    settled = scraped(metrics.exposition(repo, overlap=OVERLAP, totals=totals, settle_s=0).decode())
    with engine.connect() as conn:
        top = conn.execute(text("SELECT max(id) FROM judgments")).scalar()
    assert totals.upto == top and settled == full()
    # more judgments: only they are summed now, on top of what is kept
    big = repo.dataset("big").id
    run, _ = repo.get_or_create_run(big, "r-running", backend="test", model="tiny")
    item = repo.items(big)[5].db_id
    repo.save_result(run.id, item, result("big-5", [judgment(0, Status.OK, 2.0, (7, 8, 9)),
                                                  judgment(1, Status.ERROR, None, (1, 0, 0))]))  # fmt: skip
    assert scraped(metrics.exposition(repo, overlap=OVERLAP, totals=totals).decode()) == full()
    assert totals.upto == top  # the new rows are not settled yet
    totals.tokens[0] += 1000  # what is kept is used, not summed again
    again = scraped(metrics.exposition(repo, overlap=OVERLAP, totals=totals).decode())
    assert again["tokens"]["prompt"] == full()["tokens"]["prompt"] + 1000
    engine.dispose()
