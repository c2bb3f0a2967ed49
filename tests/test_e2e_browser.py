"""End-to-end: the real app (``python app.py``) in a subprocess, driven by a real Chromium.

Two apps are started: one on the tiny model with in-process vLLM and no accounts (judging,
stopping, labels, the annotation queue, uploads and batch jobs), and one with two annotator
accounts whose model cannot load (login, separate queues, the banner, XSS in imported data).
Screenshots of every tab go to ``test-artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, llmbar_subset
from tests.test_cli import rrm_ui as run_cli

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# On a CPU-only machine vLLM's workers spin on every core and starve Chromium for seconds (see
# docs/benchmarks.md); with two or more cores the app gets CPU 0 and the browser the last one.
CPUS = sorted(os.sched_getaffinity(0))
PIN_APP = ["taskset", "-c", str(CPUS[0])] if len(CPUS) >= 2 and shutil.which("taskset") else []
XSS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    '<svg onload="window.__xss=1"></svg>',
    "[click](javascript:window.__xss=1)",
]


class App:
    """``python app.py`` on a free port with its own SQLite file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.db = tmp / "app.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "app.log").open("w")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
        command = [sys.executable, "app.py", "--db", self.url_db, "--port", str(self.port), *args]
        self.proc = subprocess.Popen(PIN_APP + command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = tmp / "app.log"

    @property
    def url_db(self) -> str:
        return f"sqlite:///{self.db}"

    def wait(self, text: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_path.read_text():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the app exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        pytest.fail(f"{text!r} not seen in the app's log:\n{self.log_path.read_text()[-3000:]}")

    def query(self, sql: str) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def rrm_ui(*args: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def app(tiny_model: Path, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("e2e-app")
    db = f"sqlite:///{tmp / 'app.db'}"
    rrm_ui("import", str(llmbar_subset(shared_data, tmp, 4)), "--name", "llmbar4", "--preset", "llmbar", "--db", db)
    a = App(tmp, "--model", str(tiny_model), "--backend", "vllm", "--dtype", "float32", "--enforce-eager",
            "--gpu-memory-utilization", "0.2", "--max-tokens", "2048")  # fmt: skip
    a.wait("serving on")
    yield a
    a.stop()


@pytest.fixture(scope="module")
def team_app(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    tmp = tmp_path_factory.mktemp("e2e-team")
    db = f"sqlite:///{tmp / 'app.db'}"
    rows = [{"query": f"Question {i}? {XSS[i % len(XSS)]}", "response_a": f"A{i} {XSS[(i + 1) % len(XSS)]}",
             "response_b": f"B{i} {XSS[(i + 2) % len(XSS)]}"} for i in range(6)]  # fmt: skip
    path = tmp / "xss.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rrm_ui("import", str(path), "--name", "xss-pairs", "--db", db)
    for name in ("ann1", "ann2"):
        proc = subprocess.run([sys.executable, "-m", "rrm_ui", "users", "add", name, "--password-stdin", "--db", db],
                              input=f"pw-{name}-secret\n", cwd=ROOT, capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: scripts/test.sh installs Debian's chromium package")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        before = os.sched_getaffinity(0)
        if PIN_APP:
            os.sched_setaffinity(0, {CPUS[-1]})  # Chromium's processes inherit this
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"])
        finally:
            os.sched_setaffinity(0, before)
        yield b
        b.close()


@pytest.fixture
def page(browser, app: App) -> Iterator[object]:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(app.url)
    pg.wait_for_selector("#model-banner:has-text('Model ready')", timeout=240_000)
    yield pg
    context.close()


def shot(pg, name: str) -> None:  # noqa: ANN001
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def fill_pair(pg, query: str, first: str, second: str, budget: int) -> None:  # noqa: ANN001
    pg.fill("#judge-query textarea", query)
    pg.fill("#judge-response-1 textarea", first)
    pg.fill("#judge-response-2 textarea", second)
    box = pg.locator("#judge-budget input[type=number]")
    box.fill(str(budget))
    box.press("Enter")


def test_reasoning_streams_in_before_the_judgment_ends_and_a_label_survives_a_reload(page, app: App) -> None:  # noqa: ANN001
    fill_pair(page, "Is 7 prime?", "Yes: its only divisors are 1 and 7.", "No, 7 = 2 x 3.5.", 2048)
    page.click("#judge-go")
    live = page.wait_for_selector(".rrm-stream[data-done='0'] .rrm-pre", timeout=60_000)
    page.wait_for_function("el => el.textContent.trim().length > 0", arg=live, timeout=60_000)
    assert page.locator(".rrm-verdict").count() == 0, "the verdict appeared before the reasoning streamed"
    shot(page, "judge-streaming")
    page.wait_for_selector(".rrm-verdict", timeout=180_000)
    assert page.locator(".rrm-stream[data-done='1']").count() >= 1
    shot(page, "judge-done")

    page.locator("#judge-label label", has_text="Both bad").click()
    page.fill("#judge-note textarea", "neither explains it well")
    page.click("#judge-save")
    page.wait_for_selector("#judge-saved:has-text('Saved')")
    assert app.query("select choice, note from labels") == [("both_bad", "neither explains it well")]

    page.reload()
    page.wait_for_selector("#model-banner:has-text('Model ready')")
    page.get_by_text("Your recent judgments").click()
    page.wait_for_function(
        "() => /both_bad[\\s\\S]*neither explains it well/"
        ".test(document.querySelector('#judge-history')?.innerText || '')",
        timeout=30_000,
    )
    shot(page, "judge-history-after-reload")


def test_stop_ends_the_stream_and_stores_nothing(page, app: App) -> None:  # noqa: ANN001
    # The random-weight model ends a judgment on its own when it happens to sample its end token;
    # a judgment that ended before Stop arrived proves nothing, so that case is tried again.
    for _attempt in range(4):
        items_before = app.query("select count(*) from items")[0][0]
        fill_pair(page, f"Long one {_attempt}", "first answer", "second answer", 16384)
        page.click("#judge-go")
        page.wait_for_selector(".rrm-stream[data-done='0']", timeout=60_000)
        page.wait_for_function(
            "() => Number(document.querySelector('.rrm-stream')?.dataset.tokens || 0) > 20", timeout=60_000
        )
        page.click("#judge-stop")
        page.wait_for_selector("#judge-status:has-text('Stopped'), #judge-status:has-text('Done')", timeout=60_000)
        if "Stopped" in page.locator("#judge-status").inner_text():
            break
    else:
        pytest.fail("every judgment ended on its own before Stop reached it")
    tokens = int(page.locator(".rrm-stream").first.get_attribute("data-tokens"))
    time.sleep(1.5)
    assert int(page.locator(".rrm-stream").first.get_attribute("data-tokens")) == tokens
    assert tokens < 16384
    assert app.query("select count(*) from items")[0][0] == items_before
    shot(page, "judge-stopped")


def test_xss_payloads_in_the_judge_tab_stay_inert(page) -> None:  # noqa: ANN001
    fill_pair(page, XSS[1] + " which is better?", XSS[0] + " **bold**", XSS[2] + " " + XSS[3], 256)
    page.click("#judge-go")
    page.wait_for_selector(".rrm-verdict", timeout=120_000)
    assert page.evaluate("window.__xss") is None
    preview = page.locator("#judge-preview").inner_text()
    assert "onerror" in preview and "<svg" in preview  # shown as text, not run
    assert page.locator("#judge-preview img, #judge-preview svg, #judge-preview script").count() == 0
    shot(page, "judge-xss")


def test_annotation_queue_by_keyboard(page, app: App) -> None:  # noqa: ANN001
    page.get_by_role("tab", name="Annotate").click()
    page.wait_for_selector("#ann-next")
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("n")
    page.wait_for_selector("#ann-progress:has-text('left')", timeout=30_000)
    first = page.locator("#ann-query").inner_text()
    page.keyboard.press("1")
    page.wait_for_selector("#ann-status:has-text('Saved')")
    page.wait_for_function("q => document.querySelector('#ann-query').innerText !== q", arg=first)
    page.keyboard.press("3")
    page.wait_for_selector("#ann-progress:has-text('2 done')", timeout=30_000)
    shot(page, "annotate")
    rows = app.query("select l.choice, a.name from labels l join annotators a on a.id = l.annotator_id "
                     "join items i on i.id = l.item_id join datasets d on d.id = i.dataset_id "
                     "where d.name = 'llmbar4' order by l.id")  # fmt: skip
    assert rows == [("A", "local"), ("tie", "local")]


def test_upload_and_follow_a_batch_job_to_the_end(page, app: App, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "uploaded-pairs.jsonl"
    path.write_text("".join(json.dumps({"id": f"u{i}", "query": f"Say {i}", "response_a": str(i),
                                        "response_b": str(i + 1)}) + "\n" for i in range(6)))  # fmt: skip
    page.get_by_role("tab", name="Batch").click()
    page.set_input_files("#batch-file input[type=file]", str(path))
    page.wait_for_selector("#batch-summary:has-text('pairwise')", timeout=30_000)
    page.click("#batch-import")
    page.wait_for_selector("#batch-imported:has-text('6 items')", timeout=30_000)
    box = page.locator("#batch-budget input[type=number]")
    box.fill("256")
    box.press("Enter")
    page.click("#batch-start")
    page.wait_for_selector("#batch-started:has-text('Started job')", timeout=30_000)
    page.wait_for_selector("#batch-progress:has-text('done: 6/6 items')", timeout=240_000)
    shot(page, "batch")
    (job,) = app.query("select j.status, j.items_done, j.items_total from jobs j")
    assert job == ("done", 6, 6)
    page.click("#batch-export")
    page.wait_for_selector("#batch-exported:has-text('wrote')", timeout=30_000)


@pytest.fixture
def team_browser(browser, team_app: App) -> Iterator[object]:  # noqa: ANN001
    contexts = []

    def login(name: str) -> object:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        pg = context.new_page()
        pg.goto(team_app.url)
        pg.wait_for_selector("input[type=password]", timeout=60_000)
        shot(pg, "login")
        pg.locator("input").first.fill(name)
        pg.fill("input[type=password]", f"pw-{name}-secret")
        pg.keyboard.press("Enter")
        pg.wait_for_selector("#whoami:has-text('Logged in as')", timeout=60_000)
        return pg

    yield login
    for c in contexts:
        c.close()


def test_two_annotators_get_separate_queues_and_payloads_stay_inert(team_browser, team_app: App) -> None:  # noqa: ANN001
    one, two = team_browser("ann1"), team_browser("ann2")
    for pg in (one, two):
        assert "could not be loaded" in pg.locator("#model-banner").inner_text()
        pg.get_by_role("tab", name="Annotate").click()
        pg.click("#ann-next")
        pg.wait_for_selector("#ann-progress:has-text('left')", timeout=30_000)
    q1, q2 = one.locator("#ann-query").inner_text(), two.locator("#ann-query").inner_text()
    assert re.search(r"Question \d", q1) and re.search(r"Question \d", q2)
    assert q1 != q2, "two annotators were served the same item with overlap 1"
    shot(one, "annotate-ann1")
    one.click("#ann-A")
    one.wait_for_selector("#ann-status:has-text('Saved')")
    assert one.evaluate("window.__xss") is None and two.evaluate("window.__xss") is None
    assert one.locator("#ann-query img, #ann-resp-a img, #ann-resp-b svg, #ann-query script").count() == 0
    assert team_app.query("select a.name, l.choice from labels l join annotators a on a.id = l.annotator_id") == [
        ("ann1", "A")
    ]


# --- Dashboards and Explorer ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dash_app(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, object]]:
    from tests.test_dashboards import build_world

    tmp = tmp_path_factory.mktemp("e2e-dash")
    world = build_world(f"sqlite:///{tmp / 'app.db'}", shared_data, tmp)
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a, world
    a.stop()


def click_point(pg, selector: str, index: int = 0) -> None:  # noqa: ANN001
    """Click the centre of a plotly bar or marker (plotly's drag layer covers it for locator clicks)."""
    point = pg.locator(f"{selector} .js-plotly-plot g.point path").nth(index)
    box = point.bounding_box()
    assert box is not None, f"no point {index} in {selector}"
    pg.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_dashboard_bar_drills_down_to_its_rows_and_a_trace_opens(browser, dash_app) -> None:  # noqa: ANN001
    app, world = dash_app
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(app.url)
    pg.get_by_role("tab", name="Dashboards").click()
    pg.wait_for_selector("#dash-agreement .js-plotly-plot g.point path", timeout=60_000)
    headline = pg.inner_text("#dash-headline")
    labels = [c for c in world.labels.values() if c in ("A", "B")]
    assert f"{2 * len(labels):,} decisive" in headline  # each decisive label set beside both runs' verdicts
    shot(pg, "dashboards")

    # agreement by run: bars in run order, "fixed-2x2" first; a click lists every labelled row of that run
    click_point(pg, "#dash-agreement", 0)
    pg.wait_for_selector("#exp-summary:has-text('rows match')", timeout=30_000)
    labelled = {item for (_name, item) in world.labels}
    summary = pg.inner_text("#exp-summary")
    assert f"{len(labelled)} rows match" in summary and "run = fixed-2x2" in summary, summary
    assert pg.locator("#tab-explorer").is_visible()
    runs = pg.locator("#exp-table .virtual-body [role=gridcell][data-col='3']").all_inner_texts()
    assert runs and set(r.strip() for r in runs) == {"fixed-2x2"}, runs
    shot(pg, "explorer-after-drill")

    # the confusion cell "human tie, model A" lists exactly those comparisons' rows
    pg.get_by_role("tab", name="Dashboards").click()
    pg.wait_for_selector("#dash-confusion .js-plotly-plot", timeout=30_000)
    cells = pg.locator("#dash-confusion .js-plotly-plot .hm, #dash-confusion .js-plotly-plot image")
    assert cells.count() >= 1

    # open the first row: query, responses, the stored traces
    pg.get_by_role("tab", name="Explorer").click()
    pg.locator("#exp-table [data-testid='cell-0-1']").click()
    pg.wait_for_selector("#exp-item .rrm-item-head", timeout=30_000)
    pg.wait_for_selector("#exp-runs .rrm-run", timeout=30_000)
    assert pg.locator("#exp-runs tr[data-judgment]").count() >= 4
    pg.locator("#exp-runs details.rrm-trace summary").first.click()
    assert "thinking about it" in pg.locator("#exp-runs details.rrm-trace").first.inner_text()
    shot(pg, "explorer-item-trace")
    context.close()
