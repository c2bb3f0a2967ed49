"""The app is killed (SIGKILL) in the middle of a batch job; after a restart the job finishes by itself.

A few hundred LLMBar pairs are imported with the CLI, the real app (``python app.py`` on the tiny
model with in-process vLLM) is started, and the job is started through the Batch tab's API
endpoints as the page does. Once a good share of the items is stored the app process gets
SIGKILL (no shutdown handler runs), and a second app on the same database must continue the job
(``JobManager.recover``) until it is done. Then, from the database: every item has exactly one
result in the job's run and exactly votes x orders judgments (items in flight at the kill are
lost and judged again, never stored twice), and the job's counters add up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.test_cli import rrm_ui as run_cli
from tests.test_e2e_browser import App

pytestmark = pytest.mark.slow
N_ITEMS = 300
BUDGET = 256  # the Batch tab's smallest thinking budget
VOTES, SWAP = 1, True  # 2 judgments per item: one in each order
ORDERS = [(0, 1, 0), (1, 0, 0)]  # (a, b, sample) of an item's judgments
KILL_AT = (0.2, 0.6)  # share of items stored when the app is killed
LLMBAR = ["Natural", "Adversarial/Neighbor", "Adversarial/GPTInst", "Adversarial/GPTOut", "Adversarial/Manual"]


def llmbar_pairs(shared_data: Path, dest: Path, n: int) -> Path:
    """The first ``n`` pairs of the LLMBar sets, one after the other, as one raw LLMBar JSON list."""
    rows: list[dict] = []
    for name in LLMBAR:
        rows += json.loads((shared_data / "llmbar/Dataset/LLMBar" / name / "dataset.json").read_text())
    assert len(rows) >= n, f"LLMBar has {len(rows)} pairs, fewer than {n}"
    path = dest / f"llmbar-{n}.json"
    path.write_text(json.dumps(rows[:n]))
    return path


def read(db: Path, sql: str, *args: object) -> list[tuple]:
    """A read-only query, as another process sees the database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def job_row(db: Path, job_id: int) -> tuple[str, int, int, str | None]:
    """status, items_done, items_total, message"""
    [row] = read(db, "select status, items_done, items_total, message from jobs where id = ?", job_id)
    return row


def stored(db: Path, run_id: int) -> int:
    return read(db, "select count(*) from item_results where run_id = ?", run_id)[0][0]


def kill_orphans(children: list[psutil.Process]) -> list[str]:
    """Kill what the killed app left running after 20 s; the names of what was left.

    vLLM's engine processes would outlive a killed parent (nothing tells them) and keep their memory
    (on a GPU: the memory the next app needs); the app's watchdog (rrm_ui/backends/orphans.py) ends
    them, so this list must be empty. The kill here only cleans up when that failed.
    """
    _, alive = psutil.wait_procs(children, timeout=20)
    names = []
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            names.append(child.name())
            child.kill()
    psutil.wait_procs(alive, timeout=30)
    return sorted(names)


def start_job(app: App, dataset: str) -> int:
    """Start the job as the Batch tab does (page load, then Start and the job table), once the model is ready."""
    from gradio_client import Client

    client = Client(app.url, verbose=False)
    try:
        client.predict(api_name="/batch_datasets")  # the page load fills the data set choices of this session
        deadline = time.monotonic() + 300
        while True:
            message = client.predict(dataset, BUDGET, VOTES, SWAP, False, "auto", "", api_name="/batch_start")
            if message.startswith("Started job"):
                break
            assert "loading" in message.lower(), message  # only a model still loading may delay the start
            assert time.monotonic() < deadline, f"the model never became ready: {message}"
            time.sleep(1)
        *_, job_id = client.predict(api_name="/batch_latest")  # the job table and the job number after Start
    finally:
        client.close()
    assert message.startswith(f"Started job {int(job_id)} on run"), message
    assert f"{N_ITEMS} items to judge (0 already judged)" in message, message
    return int(job_id)


def test_a_job_killed_mid_way_continues_after_a_restart(tiny_model: Path, shared_data: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    db = tmp_path / "app.db"  # App's database file
    proc = run_cli("import", str(llmbar_pairs(shared_data, tmp_path, N_ITEMS)), "--name", "llmbar300",
                   "--preset", "llmbar", "--db", f"sqlite:///{db}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    items = {row[0] for row in read(db, "select id from items")}
    assert len(items) == N_ITEMS

    options = ["--model", str(tiny_model), "--backend", "vllm", "--dtype", "float32", "--enforce-eager",
               "--gpu-memory-utilization", "0.2", "--max-tokens", str(BUDGET)]  # fmt: skip
    first = App(tmp_path, *options)
    second: App | None = None
    orphans: list[str] = []
    try:
        first.wait("serving on")
        job_id = start_job(first, "llmbar300")
        t_started = time.monotonic()
        [(run_id,)] = read(db, "select run_id from jobs where id = ?", job_id)

        # --- kill it mid-job ---------------------------------------------------------------------
        app_proc = psutil.Process(first.proc.pid)  # taskset execs into python: this is the app itself
        assert "app.py" in " ".join(app_proc.cmdline()), app_proc.cmdline()
        low, high = (int(share * N_ITEMS) for share in KILL_AT)
        deadline = time.monotonic() + 600
        while (n := stored(db, run_id)) < low:
            assert first.proc.poll() is None, first.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"only {n} items stored after 600 s"
            time.sleep(0.05)
        children = app_proc.children(recursive=True)  # vLLM's engine core process
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(30) == -signal.SIGKILL
        t_killed = time.monotonic()
        assert any("EngineCore" in c.name() or "VLLM" in c.name() for c in children), [c.name() for c in children]
        orphans = kill_orphans(children)
        assert not orphans, f"the killed app left {orphans} running"
        first.log.close()
        first.log_path.rename(tmp_path / "app-1.log")
        at_kill = stored(db, run_id)
        status, done_at_kill, total, _ = job_row(db, job_id)
        assert low <= at_kill < high, f"{at_kill} items stored at the kill: the kill was not mid-job"
        assert (status, total) == ("running", N_ITEMS), (status, total)
        assert done_at_kill <= at_kill  # the counter is written after the item, so it may lag by one
        # an item's judgments and result are one transaction: no judgment of an item without its result
        assert read(db, "select count(*) from judgments where run_id = ?", run_id) == [(at_kill * len(ORDERS),)]
        assert read(db, "select count(distinct item_id) from judgments where item_id not in "
                        "(select item_id from item_results where run_id = ?)", run_id) == [(0,)]  # fmt: skip

        # --- restart on the same database: the job continues by itself ---------------------------
        second = App(tmp_path, *options)
        second.wait("serving on")
        deadline = time.monotonic() + 900
        t_resumed = None
        while (status := job_row(db, job_id))[0] == "running" or status[0] == "queued":
            if t_resumed is None and stored(db, run_id) > at_kill:
                t_resumed = time.monotonic()
            assert second.proc.poll() is None, second.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"job still {status} after 900 s"
            time.sleep(0.5)
        t_done = time.monotonic()
        status, items_done, total, message = job_row(db, job_id)
        assert status == "done", (status, message)
        assert (items_done, total) == (N_ITEMS, N_ITEMS), (items_done, total, message)
        log = second.log_path.read_text()
        assert f"job #{job_id} continues after a restart: {at_kill} of {N_ITEMS} items were judged before" in log

        # --- from the database: one verdict per item, nothing judged twice, nothing missing ------
        assert read(db, "select count(*) from runs") == [(1,)]
        assert read(db, "select count(*) from jobs") == [(1,)]
        assert read(db, "select distinct run_id from item_results") == [(run_id,)]
        assert read(db, "select distinct run_id from judgments") == [(run_id,)]
        results = dict(read(db, "select item_id, count(*) from item_results group by item_id"))
        assert set(results) == items, f"missing: {sorted(items - set(results))[:10]}"
        assert {k: c for k, c in results.items() if c != 1} == {}, "items with more than one result"
        keys: dict[int, list[tuple[int, int, int]]] = {}
        for item, a, b, sample, attempt in read(db, "select item_id, a, b, sample, attempt from judgments"):
            assert attempt == 0, (item, a, b, sample, attempt)  # no failed try was retried
            keys.setdefault(item, []).append((a, b, sample))
        assert set(keys) == items
        wrong = {item: sorted(k) for item, k in keys.items() if sorted(k) != ORDERS}
        assert wrong == {}, f"items not judged exactly once in each order: {list(wrong.items())[:5]}"
        assert read(db, "select count(*) from judgments") == [(N_ITEMS * len(ORDERS),)]
        # each result aggregates exactly its item's two judgments (valid votes plus invalid ones)
        for (pairs,) in read(db, "select pairs from item_results"):
            [pair] = json.loads(pairs)
            assert pair["samples_spent"] == sum(pair["votes"].values()) + pair["invalid_votes"] == len(ORDERS), pair
    finally:
        for app in (first, second):
            if app is not None and app.proc.poll() is None:
                app.stop()
    timing = (f"job started {t_started - t0:.0f} s into the test; {at_kill} of {N_ITEMS} items stored at the "
              f"kill, {t_killed - t_started:.0f} s after the start; first new item {t_resumed - t_killed:.0f} s "
              f"after the kill, done {t_done - t_killed:.0f} s after it; orphaned processes killed: "
              f"{', '.join(orphans) or 'none'}")  # fmt: skip
    print(timing)
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "app-kill.txt").write_text(timing + "\n")
