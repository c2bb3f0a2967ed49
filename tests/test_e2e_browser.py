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

from rrm_ui.domain import Verdict
from rrm_ui.ui.render import ranking_table
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
    for name in ("ann1", "ann2", "ann3"):  # ann3 logs out (which ends every session of that user)
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
    assert page.locator("#judge-stop").is_disabled()  # nothing runs yet
    fill_pair(page, "Is 7 prime?", "Yes: its only divisors are 1 and 7.", "No, 7 = 2 x 3.5.", 2048)
    page.click("#judge-go")
    live = page.wait_for_selector(".rrm-stream[data-done='0'] .rrm-pre", timeout=60_000)
    page.wait_for_function("el => el.textContent.trim().length > 0", arg=live, timeout=60_000)
    assert page.locator(".rrm-verdict").count() == 0, "the verdict appeared before the reasoning streamed"
    shot(page, "judge-streaming")
    page.wait_for_selector(".rrm-verdict", timeout=180_000)
    assert page.locator(".rrm-stream[data-done='1']").count() >= 1
    # the verdict first, above the panels; each finished panel one line that opens on a click; Stop off
    card, panels = page.locator("#judge-card").bounding_box(), page.locator("#judge-panels").bounding_box()
    assert card and panels and card["y"] < panels["y"], (card, panels)
    folded = page.locator("#judge-panels details.rrm-stream-fold")
    assert folded.count() >= 1 and page.locator("#judge-panels details.rrm-stream-fold[open]").count() == 0
    page.wait_for_function("() => document.querySelector('#judge-stop')?.disabled === true", timeout=10_000)
    shot(page, "judge-done")
    folded.first.locator("summary").first.click()
    assert page.locator("#judge-panels details.rrm-stream-fold[open]").count() == 1
    shot(page, "judge-done-panel-opened")

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
    # the random model reaches no verdict, so the default (trl) export has no pair: the tab says why
    # instead of offering a 0-byte file; with verdicts it says what it wrote
    page.wait_for_selector(
        "#batch-exported:has-text('wrote'), #batch-exported:has-text('Nothing to download')", timeout=30_000
    )
    message = page.locator("#batch-exported").inner_text()
    assert "wrote" in message or "0 rows: of the 6 pairs considered" in message, message


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
    point.scroll_into_view_if_needed()  # a mouse click lands only inside the viewport
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
    # table headers break between words only: a one-word header is on one line
    words = pg.evaluate("""() => [...document.querySelectorAll('[id^=dash-table-] thead th')]
      .filter((th) => th.offsetParent && th.innerText.trim() && !/\\s/.test(th.innerText.trim()))
      .map((th) => {
        const walk = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
        const tops = new Set();
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
          const r = document.createRange(); r.selectNodeContents(n);
          [...r.getClientRects()].filter((x) => x.width > 0).forEach((x) => tops.add(Math.round(x.top)));
        }
        return [th.innerText.trim(), tops.size];
      })""")
    assert words and all(n == 1 for _, n in words), words

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
    trace, page_table = pg.locator("#exp-runs").bounding_box(), pg.locator("#exp-table").bounding_box()
    assert trace and page_table and trace["width"] > 0.9 * page_table["width"]  # the traces take the page's width
    shot(pg, "explorer-item-trace")
    # a folded section of the dashboards opens with its charts drawn at full size
    pg.get_by_role("tab", name="Dashboards").click()
    assert not pg.locator("#dash-tokens").is_visible()
    pg.get_by_text("Compute: tokens, time, truncation").click()
    pg.wait_for_selector("#dash-tokens .js-plotly-plot", state="visible", timeout=30_000)
    box = pg.locator("#dash-tokens .js-plotly-plot").bounding_box()
    assert box and box["width"] > 400, box
    shot(pg, "dashboards-compute-open")
    context.close()


# --- what a page shows and how it behaves (issue 13) -----------------------------------------

POEM = "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd so are you."


@pytest.fixture(scope="module")
def plain_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """No accounts and no model: plain preference collection, light enough for keyboard tests."""
    tmp = tmp_path_factory.mktemp("e2e-plain")
    rows = [{"query": f"Poem {i}, with x^2\\,dx:\n{POEM}", "response_a": f"A{i}", "response_b": f"B{i}"}
            for i in range(8)]  # fmt: skip
    path = tmp / "poems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rrm_ui("import", str(path), "--name", "poems", "--db", f"sqlite:///{tmp / 'app.db'}")
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


def test_holding_a_shortcut_key_labels_only_the_item_on_screen(browser, plain_app: App) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(plain_app.url)
    pg.get_by_role("tab", name="Annotate").click()
    pg.wait_for_selector("#ann-next")
    pg.evaluate("document.activeElement && document.activeElement.blur()")
    pg.keyboard.press("n")
    pg.wait_for_selector("#ann-progress:has-text('left')", timeout=30_000)
    # the query is shown as written: four lines, and its backslash
    query = pg.locator("#ann-query .rrm-md").inner_text()
    assert POEM in query and "x^2\\,dx" in query, query
    first = pg.locator("#ann-query").inner_text()
    pg.keyboard.down("1")  # held: the browser sends keydown again and again with repeat set
    for _ in range(8):
        pg.keyboard.down("1")
        time.sleep(0.05)
    pg.keyboard.up("1")
    pg.wait_for_selector("#ann-status:has-text('Saved')", timeout=30_000)
    pg.wait_for_function("q => document.querySelector('#ann-query').innerText !== q", arg=first)
    time.sleep(2)  # any further click would have been sent by now
    shot(pg, "annotate-key-held")
    assert plain_app.query("select choice from labels") == [("A",)]
    assert "1 done" in pg.locator("#ann-progress").inner_text()
    context.close()


def test_log_out_in_place_and_a_logged_out_tab_returns_to_the_login_screen(team_browser) -> None:  # noqa: ANN001
    first = team_browser("ann3")
    second = first.context.new_page()  # a second tab of the same browser: the same login
    second.goto(first.url)
    second.wait_for_selector("#whoami:has-text('Logged in as')", timeout=60_000)
    second.locator("#whoami a", has_text="log out").click()
    second.wait_for_selector("input[type=password]", timeout=30_000)  # this tab, not a new one
    assert len(first.context.pages) == 2
    shot(second, "logged-out-in-place")
    # the other tab still shows the app; its next request is refused (401) and brings the login screen
    # (a timer of the page may send one first: then the tab is back at the login screen by itself)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        first.get_by_role("tab", name="Annotate").click(timeout=5_000)
        first.click("#ann-next", timeout=5_000)
    except PlaywrightTimeout:
        assert first.locator("input[type=password]").count() == 1
    first.wait_for_selector("input[type=password]", timeout=30_000)
    assert first.locator("#whoami").count() == 0
    shot(first, "logged-out-elsewhere")


def test_only_the_ranking_marks_its_first_row_not_the_match_tables(browser) -> None:  # noqa: ANN001
    """The page's stylesheet on the render of a round robin and a knockout, in Chromium (no app needed)."""
    from rrm_ui.domain import ItemResult
    from tests.test_render import judgment, pair

    p01, p02 = pair(0, 1, [judgment(0, 1, 0, Verdict.A)]), pair(0, 2, [judgment(0, 2, 0, Verdict.A)])
    p12 = pair(1, 2, [judgment(1, 2, 0, Verdict.A)])
    robin = ItemResult("i", "round-robin", 0, (0, 1, 2), (p01, p02, p12), "rrm", "1", "m", "test",
                       ratings={"wins": {0: 2, 1: 1, 2: 0}})  # fmt: skip
    bracket = (({"round": 1, "i": 0, "j": 1, "winner": 0}, {"round": 1, "i": 2, "j": None, "winner": 2}),
               ({"round": 2, "i": 0, "j": 2, "winner": 0},))  # fmt: skip
    knockout = ItemResult("i", "knockout", 0, (0, 2, 1), (p01, p02), "rrm", "1", "m", "test", bracket=bracket)
    css = (ROOT / "static" / "app.css").read_text()
    body = ranking_table(robin) + ranking_table(knockout)
    context = browser.new_context(viewport={"width": 900, "height": 900})
    pg = context.new_page()
    pg.set_content(f"<html><head><style>{css}</style></head><body>{body}</body></html>")
    weight = "els => els.map(e => getComputedStyle(e).fontWeight)"
    ranking_first = pg.eval_on_selector_all(".rrm-ranking > .rrm-table-wrap tbody tr:first-child td", weight)
    matches_first = pg.eval_on_selector_all(".rrm-matches tbody tr:first-child td", weight)
    matches_second = pg.eval_on_selector_all(".rrm-matches tbody tr:nth-child(2) td", weight)
    shot(pg, "ranking-and-match-tables")
    context.close()
    assert ranking_first and set(ranking_first) == {"600"}
    assert matches_first and set(matches_first) == set(matches_second) == {"400"}, matches_first


@pytest.fixture(scope="module")
def judged_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """No model; the first data set has a run (another judge's verdicts), as after a Judge-tab judgment."""
    tmp = tmp_path_factory.mktemp("e2e-judged")
    db = f"sqlite:///{tmp / 'app.db'}"
    rows = [{"id": f"j{i}", "query": f"Judged {i}", "response_a": "a", "response_b": "b"} for i in range(3)]
    (tmp / "judged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "verdicts.jsonl").write_text("".join(json.dumps({"id": r["id"], "verdict": "A"}) + "\n" for r in rows))
    rrm_ui("import", str(tmp / "judged.jsonl"), "--name", "a-judged", "--external", str(tmp / "verdicts.jsonl"),
           "--external-run", "judge-tab:other", "--external-labels", "A=A,B=B", "--db", db)  # fmt: skip
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


def test_a_data_set_imported_in_batch_is_offered_in_annotate_and_serves_without_a_run(
    browser,  # noqa: ANN001
    judged_app: App,
    tmp_path: Path,
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(judged_app.url)
    pg.get_by_role("tab", name="Annotate").click()
    pg.wait_for_function("() => document.querySelector('#ann-run input')?.value === 'judge-tab:other'",
                         timeout=30_000)  # fmt: skip
    # import a data set in the Batch tab, then come back
    path = tmp_path / "fresh.jsonl"
    path.write_text("".join(json.dumps({"query": f"Fresh {i}", "response_a": "x", "response_b": "y"}) + "\n"
                            for i in range(2)))  # fmt: skip
    pg.get_by_role("tab", name="Batch").click()
    pg.set_input_files("#batch-file input[type=file]", str(path))
    pg.wait_for_selector("#batch-summary:has-text('pairwise')", timeout=30_000)
    pg.fill("#batch-name textarea, #batch-name input", "fresh")
    pg.click("#batch-import")
    pg.wait_for_selector("#batch-imported:has-text('2 items')", timeout=30_000)
    pg.get_by_role("tab", name="Annotate").click()
    pg.click("#ann-dataset input")
    pg.get_by_role("option", name="fresh").click(timeout=30_000)  # offered without a reload
    # the new data set's first item (the progress of the queue shown before also says "left")
    pg.wait_for_selector("#ann-query:has-text('Fresh')", timeout=30_000)
    pg.wait_for_selector("#ann-progress:has-text('left')", timeout=30_000)
    status = pg.locator("#ann-status").inner_text()
    assert "has no run" not in status, status
    assert "Fresh" in pg.locator("#ann-query").inner_text()
    assert pg.locator("#ann-run input").input_value().startswith("(none")
    shot(pg, "annotate-after-batch-import")
    context.close()


# --- issue 14: an annotator who moves fast and can undo; text as the model saw it ---------------

CODE = "```python\ndef area(r):\n    return 3.14 * r * r\n```"
FORMULA = r"The area is $\frac{1}{2} r^2$ and $$\sum_{i=1}^n i$$"


@pytest.fixture(scope="module")
def reading_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """No model: three pairs with a poem, math and code, for the keyboard, back and rendered / raw."""
    tmp = tmp_path_factory.mktemp("e2e-reading")
    rows = [{"query": f"Item {i}. {FORMULA}\n{POEM}", "response_a": CODE, "response_b": f"Plain answer {i}"}
            for i in range(3)]  # fmt: skip
    path = tmp / "reading.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rrm_ui("import", str(path), "--name", "reading", "--db", f"sqlite:///{tmp / 'app.db'}")
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


def test_label_by_keyboard_and_clicks_go_back_to_change_a_label_and_read_math_and_code(
    browser,  # noqa: ANN001
    reading_app: App,
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(reading_app.url)
    pg.get_by_role("tab", name="Annotate").click()
    # the queue starts by itself when the tab is shown
    pg.wait_for_selector("#ann-progress:has-text('0 done')", timeout=30_000)
    head = pg.locator("#ann-query").inner_text()
    assert "Item 0." in head and "query" in head.lower()  # the query has its heading
    # math typeset by KaTeX (MathML), code with its indentation, the poem's lines
    pg.wait_for_selector("#ann-query .rrm-math math", timeout=10_000)
    assert pg.locator("#ann-query .rrm-math--display math[display=block]").count() == 1
    assert "    return 3.14 * r * r" in pg.locator("#ann-resp-a pre").inner_text()
    assert POEM in pg.locator("#ann-query .rrm-view--rendered").inner_text()
    shot(pg, "annotate-math-rendered")
    # raw: the exact text, the rendered view hidden
    pg.click("#ann-query .rrm-view-btn[data-view=raw]")
    raw = pg.locator("#ann-query .rrm-view--raw")
    assert raw.is_visible() and not pg.locator("#ann-query .rrm-view--rendered").is_visible()
    assert raw.inner_text() == f"Item 0. {FORMULA}\n{POEM}"
    shot(pg, "annotate-raw")
    # 1 labels the first item; a click on the B panel labels the second
    pg.evaluate("document.activeElement && document.activeElement.blur()")
    pg.keyboard.press("1")
    pg.wait_for_selector("#ann-progress:has-text('1 done')", timeout=30_000)
    pg.wait_for_selector("#ann-query:has-text('Item 1.')", timeout=30_000)
    pg.click("#ann-resp-b .rrm-md")
    pg.wait_for_selector("#ann-progress:has-text('2 done')", timeout=30_000)
    pg.wait_for_selector("#ann-query:has-text('Item 2.')", timeout=30_000)
    # b: the item labelled last, its label highlighted; 1 changes it
    pg.keyboard.press("b")
    pg.wait_for_selector("#ann-query:has-text('Item 1.')", timeout=30_000)
    pg.wait_for_selector("#ann-B.rrm-chosen", timeout=10_000)
    assert "B is better" in pg.locator("#ann-status").inner_text()
    shot(pg, "annotate-back")
    pg.keyboard.press("1")
    pg.wait_for_selector("#ann-status:has-text('Changed')", timeout=30_000)
    pg.wait_for_selector("#ann-query:has-text('Item 2.')", timeout=30_000)  # back to the queue's item
    assert "2 done" in pg.locator("#ann-progress").inner_text()
    shot(pg, "annotate-changed")
    rows = reading_app.query("select i.ext_id, l.choice from labels l join items i on i.id = l.item_id order by l.id")
    assert [c for _, c in rows] == ["A", "B", "A"] and rows[1][0] == rows[2][0], rows
    context.close()


def test_a_flip_reads_side_by_side_with_math_and_a_raw_view(browser) -> None:  # noqa: ANN001
    """The flip view and the rendered / raw switch on the page's stylesheet, KaTeX and app.js (no app needed)."""
    from rrm_ui.ui.render import Trace, flip_view

    shared = "Both responses answer.\nI compare them."
    body = flip_view([Trace(0, 1, 0, shared + "\nThe first, with $\\int_0^1 x\\,dx = \\tfrac12$, is right.", "A1"),
                      Trace(1, 0, 1, shared + "\nThe one shown first is more detailed.", "A1")])  # fmt: skip
    css = (ROOT / "static" / "app.css").read_text()
    katex = (ROOT / "static" / "katex" / "katex.min.js").read_text()
    js = (ROOT / "static" / "app.js").read_text()
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    pg = context.new_page()
    page = f"<!DOCTYPE html><html><head><style>{css}</style><script>{katex}</script></head><body>{body}</body></html>"
    pg.set_content(page)  # KaTeX refuses to typeset in quirks mode: the doctype, as Gradio's page has
    pg.evaluate(f"({js})()")
    pg.wait_for_selector(".rrm-flip .rrm-math math", timeout=10_000)
    left, right = (pg.locator(".rrm-flip-col").nth(k).bounding_box() for k in (0, 1))
    assert left and right and abs(left["y"] - right["y"]) < 2 and right["x"] > left["x"] + left["width"] - 1
    pg.locator(".rrm-flip-col").nth(0).locator(".rrm-view-btn[data-view=raw]").first.click()
    assert (
        "$\\int_0^1 x\\,dx = \\tfrac12$"
        in pg.locator(".rrm-flip-col").nth(0).locator(".rrm-view--raw").first.inner_text()
    )
    shot(pg, "flip-side-by-side")
    context.close()


# --- issue 14, last parts: your view on any pair of a list; one item id in every tab ---------------


def test_your_view_on_a_list_names_its_pair_and_is_stored_on_the_pair_chosen(page, app: App) -> None:  # noqa: ANN001
    page.click("#judge-add")
    page.fill("#judge-query textarea", "Which greeting is best?")
    for k, text in enumerate(["Hello.", "Hi there!", "Good morning to you."]):
        page.fill(f"#judge-response-{k + 1} textarea", text)
    box = page.locator("#judge-budget input[type=number]")
    box.fill("64")
    box.press("Enter")
    page.click("#judge-go")
    page.wait_for_selector(".rrm-verdict", timeout=180_000)
    page.wait_for_selector("#judge-pair input", state="visible", timeout=30_000)
    default = page.locator("#judge-pair input").input_value()
    assert re.match(r"Response \d vs Response \d \((the final|the model's top two)", default), default
    assert "Your view on " + default.split(" (")[0] in page.locator("#judge-label").inner_text()
    page.click("#judge-pair input")
    options = [t.split("\n")[-1].strip() for t in page.get_by_role("option").all_inner_texts()]  # without the ✓
    assert len(options) == 3 and options[0].strip() == default, options  # every pair of three, the verdict's first
    other = options[1].strip()
    page.get_by_role("option", name=other, exact=True).click()
    shown = other.split(" (")[0]  # "Response I vs Response J"
    page.wait_for_selector(f"#judge-label:has-text('Your view on {shown}')", timeout=30_000)
    shot(page, "judge-list-pair-chosen")
    page.locator("#judge-label label", has_text="Both bad").click()
    page.fill("#judge-note textarea", "on another pair")
    page.click("#judge-save")
    page.wait_for_selector(f"#judge-saved:has-text('on {shown}')", timeout=30_000)
    shot(page, "judge-list-pair-saved")
    i, j = (int(n) - 1 for n in re.findall(r"Response (\d)", shown))
    stored = app.query("select pair_i, pair_j, choice from labels where note = 'on another pair'")
    assert stored == [(i, j, "both_bad")], stored


@pytest.fixture(scope="module")
def ids_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """No model: two data sets whose items carry their own ids."""
    tmp = tmp_path_factory.mktemp("e2e-ids")
    db = f"sqlite:///{tmp / 'app.db'}"
    for name, prefix, n in (("named", "q", 4), ("other", "o", 2)):
        rows = [{"id": f"{prefix}-{i}", "query": f"{name} question {i}", "response_a": f"a{i}", "response_b": f"b{i}"}
                for i in range(n)]  # fmt: skip
        (tmp / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        rrm_ui("import", str(tmp / f"{name}.jsonl"), "--name", name, "--db", db)
    a = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    a.wait("serving on")
    yield a
    a.stop()


def test_one_item_id_in_every_tab_opens_the_item_and_the_queue_starts_by_itself(browser, ids_app: App) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.goto(ids_app.url)
    pg.wait_for_selector("#model-banner", timeout=60_000)
    time.sleep(2)  # the page's load events have run
    assert ids_app.query("select count(*) from assignments") == [(0,)]  # a page load claims no item
    pg.get_by_role("tab", name="Annotate").click()
    pg.wait_for_selector("#ann-progress:has-text('0 done')", timeout=30_000)  # started by itself
    assert "Item named / q-0" in pg.locator("#ann-query .rrm-ann-head").inner_text()
    assert ids_app.query("select count(*) from assignments") == [(1,)]
    shot(pg, "ids-annotate")
    # a changed subset starts its own queue at once
    subset = pg.locator("#ann-subset textarea, #ann-subset input").first
    subset.press_sequentially("nope", delay=30)  # typed as a person types: one input event per key
    pg.wait_for_selector("#ann-status:has-text('no items in the subset nope.')", timeout=30_000)  # the last value
    shot(pg, "ids-annotate-subset-changed")
    for _ in range(4):  # cleared by Backspace (no key press event): the whole queue again
        subset.press("Backspace")
    pg.wait_for_selector("#ann-query:has-text('Item named / q-0')", timeout=30_000)
    # the Explorer names the items the same way, and opens one by that name
    pg.get_by_role("tab", name="Explorer").click()
    pg.wait_for_selector("#exp-summary:has-text('rows match')", timeout=30_000)
    items = pg.locator("#exp-table .virtual-body [role=gridcell][data-col='0']").all_inner_texts()
    assert {t.strip() for t in items} == {"named / q-0", "named / q-1", "named / q-2", "named / q-3", "other / o-0",
                                          "other / o-1"}, items  # fmt: skip
    pg.locator("#exp-table [data-testid='cell-1-0']").click()
    pg.wait_for_selector("#exp-item .rrm-item-head:has-text('Item named / q-1')", timeout=30_000)
    assert pg.locator("#exp-item-id textarea, #exp-item-id input").first.input_value() == "named / q-1"
    pg.fill("#exp-item-id textarea, #exp-item-id input", "other / o-1")
    pg.press("#exp-item-id textarea, #exp-item-id input", "Enter")
    pg.wait_for_selector("#exp-item .rrm-item-head:has-text('Item other / o-1')", timeout=30_000)
    assert "other question 1" in pg.locator("#exp-item").inner_text()
    shot(pg, "ids-explorer-opened")
    pg.fill("#exp-item-id textarea, #exp-item-id input", "other / o-9")
    pg.press("#exp-item-id textarea, #exp-item-id input", "Enter")
    pg.wait_for_selector("#exp-item:has-text('no item with the id')", timeout=30_000)
    # the Annotate tab's box takes the same name: the form follows the item's data set
    pg.get_by_role("tab", name="Annotate").click()
    pg.fill("#ann-goto textarea, #ann-goto input", "other / o-1")
    pg.press("#ann-goto textarea, #ann-goto input", "Enter")
    pg.wait_for_selector("#ann-query:has-text('Item other / o-1 · opened by its id')", timeout=30_000)
    assert pg.locator("#ann-dataset input").input_value() == "other"
    shot(pg, "ids-annotate-opened")
    pg.evaluate("document.activeElement && document.activeElement.blur()")
    pg.keyboard.press("2")
    pg.wait_for_selector("#ann-status:has-text('Saved')", timeout=30_000)
    assert ids_app.query("select i.ext_id, l.choice from labels l join items i on i.id = l.item_id") == [("o-1", "B")]
    context.close()
