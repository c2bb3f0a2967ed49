"""Faults survived by the running app: the model server killed mid-stream and brought back.

The real app (``python app.py``) judges a batch job through the openai backend against a real
vLLM OpenAI server. The server is SIGKILLed while judgments stream and started again on the
same port. What must hold: the app stays up and answers; another session labels items during
the outage without noticing; the judgments cut off carry status ``error`` with the reason and
are tried again (``--retries``) once the server is back; the job ends with one result per item,
every sample decided by a try that did not fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import VLLMServer, llmbar_subset
from tests.test_app_kill import read
from tests.test_e2e_browser import App, rrm_ui

pytestmark = pytest.mark.slow
ITEMS = 32
NO_RUN = "(none: collect preferences without a model verdict)"  # rrm_ui.ui.tabs.annotate.NO_RUN


def wait_for(what: str, check: Callable[[], bool], timeout: float, app: App) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        assert app.proc.poll() is None, f"the app exited:\n{app.log_path.read_text()[-3000:]}"
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{app.log_path.read_text()[-3000:]}")


def test_model_server_killed_mid_stream_and_back(tiny_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from gradio_client import Client

    server = VLLMServer(tiny_model, tmp_path).wait_ready()
    db = tmp_path / "app.db"
    url_db = f"sqlite:///{db}"
    rrm_ui("import", str(llmbar_subset(shared_data, tmp_path, ITEMS)), "--name", "pairs", "--preset", "llmbar",
           "--db", url_db)  # fmt: skip
    # waits of 3 s doubling over 6 tries again cover about three minutes: a vLLM restart on a busy CPU
    app = App(tmp_path, "--backend", "openai", "--endpoint", server.url, "--retries", "6", "--retry-wait", "3")
    restarted: VLLMServer | None = None
    try:
        app.wait("serving on")
        judge_user = Client(app.url, verbose=False)
        judge_user.predict(api_name="/batch_datasets")  # as the page load does: this session's choices
        started = ""

        def start() -> bool:  # refused with "still loading" until the backend has asked the server
            nonlocal started
            started = judge_user.predict("pairs", 2048, 1, True, False, "auto", "", api_name="/batch_start")
            return "Started job" in started

        wait_for("the job to start", start, 120, app)

        # kill the server while judgments stream (the random model often ends early: poll the server often)
        wait_for("requests in flight", lambda: server.metric("vllm:num_requests_running") > 0, 300, app)
        server.kill()
        killed_at = time.monotonic()
        done_at_kill = read(db, "select count(*) from item_results")[0][0]
        assert done_at_kill < ITEMS, "the job ended before the server was killed"

        # the outage: the app answers, and another session labels items as if nothing happened
        assert httpx.get(app.url + "/", timeout=10).status_code == 200
        annotator = Client(app.url, verbose=False)
        annotator.predict(api_name="/annotate_datasets")
        first = annotator.predict("pairs", NO_RUN, "Unlabelled items", "", False, api_name="/annotate_start")
        assert "Item" in first[1], first
        for k in range(3):
            out = annotator.predict(f"during the outage {k}", api_name="/annotate_choose_A")
            assert "Saved: A is better." in out[5], out
        notes = read(db, "select note from labels order by id")
        assert [n for (n,) in notes] == [f"during the outage {k}" for k in range(3)]
        # the judgments cut off wait to be tried again; the app says why (they are stored with the item)
        wait_for("a retry scheduled", lambda: "trying again" in app.log_path.read_text(), 120, app)
        assert server.proc.poll() is not None  # the retry was scheduled during the outage

        restarted = VLLMServer(tiny_model, tmp_path, port=server.port).wait_ready()
        back_after = time.monotonic() - killed_at
        wait_for("the job to end", lambda: read(db, "select status from jobs")[0][0] in ("done", "failed"), 600, app)
        status, message, done = read(db, "select status, message, items_done from jobs")[0]
        assert (status, done) == ("done", ITEMS), (status, message)
        assert message.endswith(" 0 errors")  # every failed try was replaced by one that did not fail
        assert app.proc.poll() is None

        # one result per item; every failed try has the reason and a later try that did not fail
        per_item = read(db, "select item_id, count(*) from item_results group by item_id")
        assert len(per_item) == ITEMS and {n for _, n in per_item} == {1}
        failed = read(db, "select item_id, a, b, sample, attempt, error from judgments where status = 'error'")
        assert failed, "no judgment was cut off by the kill"
        assert all(err and (server.url in err or "attempts" in err) for *_, err in failed), failed
        last = dict(((i, a, b, s), (att, st)) for i, a, b, s, att, st in read(
            db, "select item_id, a, b, sample, attempt, status from judgments order by attempt"))  # fmt: skip
        for item, a, b, sample, attempt, _ in failed:
            final_attempt, final_status = last[(item, a, b, sample)]
            assert final_attempt > attempt and final_status != "error", (item, a, b, sample)
        # 1 vote x 2 orders: each item has exactly 2 samples that count, each decided once
        samples = read(
            db, "select item_id, count(distinct a || '-' || b || ':' || sample) from judgments group by item_id"
        )
        assert {n for _, n in samples} == {2}
        print(
            f"killed with {done_at_kill}/{ITEMS} items stored; server back after {back_after:.0f} s; "
            f"{len(failed)} failed tries, all tried again"
        )
    finally:
        app.stop()
        server.stop()
        if restarted is not None:
            restarted.stop()
