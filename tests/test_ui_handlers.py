"""The tabs' handlers, called as the browser would call them, on a real model and a real database.

The model is the tiny random-weight model on the transformers backend (fast to load): its text
is noise, so the tests check wiring (streaming, stop, storage, labels, queues, jobs, exports),
never judging quality. Browser-level tests are in tests/test_e2e_browser.py.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import JobStatus, Role
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import accounts, open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.live import LIVE_DATASET, LiveState
from rrm_ui.services.runtime import ModelStatus, Runtime
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.tabs import annotate, batch, judge
from tests.conftest import llmbar_subset

pytestmark = pytest.mark.slow


@dataclass
class Req:
    """What the handlers read from ``gradio.Request``."""

    username: str | None = None
    session_hash: str | None = "s1"


@pytest.fixture(scope="module")
def runtime(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    db = tmp_path_factory.mktemp("ui") / "ui.db"
    settings = Settings(backend="transformers", model=str(tiny_model), database_url=f"sqlite:///{db}",
                        max_tokens=48, seed=7, hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    rt.load_model()
    assert rt.wait_for_model(120).status == ModelStatus.READY, rt.model.message
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def ctx(runtime: Runtime) -> Iterator[AppContext]:
    jobs = JobManager(runtime.repo, runtime)
    yield AppContext(runtime, jobs, login=False)
    jobs.shutdown()


def shown(markdown: str) -> str:
    """Markdown source as the reader sees it (the handlers escape untrusted text with backslashes)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def form(**changes: object) -> judge.JudgeForm:
    base = dict(query="Which answer is right?", responses=["Four.", "Five."], budget=48, votes=1, swap=False,
                adaptive=False, strategy="auto")  # fmt: skip
    return judge.JudgeForm(**{**base, **changes})  # type: ignore[arg-type]


# --- Judge tab --------------------------------------------------------------------------------


def test_judge_streams_then_shows_a_verdict_card_and_stores_the_judgment(ctx: AppContext) -> None:
    req = Req(session_hash="judge-1")
    views = list(judge.stream(ctx, req, form(budget=256, swap=True)))
    assert views[-1].running is False and "Done" in views[-1].status
    running = [v for v in views if v.running]
    assert any("rrm-stream" in v.panels for v in running), "no panel was shown while the model was writing"
    final = views[-1]
    assert "rrm-verdict" in final.card
    assert final.label_choices, "a finished judgment must offer the label choices"
    snap = ctx.live(req).snapshot()  # type: ignore[union-attr]
    assert snap.state == LiveState.DONE and snap.item_db_id is not None
    # both orders were judged, and each panel's final text is the stored judgment's full reasoning
    stored = ctx.repo.frame("judgments")
    mine = stored[stored["item_id"] == snap.item_db_id]
    assert sorted(zip(mine["a"], mine["b"], strict=True)) == [(0, 1), (1, 0)]
    for reasoning in mine["reasoning"]:
        assert html.escape(reasoning) in final.panels


def test_a_label_saved_in_the_judge_tab_is_listed_after_a_reload(ctx: AppContext) -> None:
    req = Req(session_hash="judge-2")
    final = list(judge.stream(ctx, req, form()))[-1]
    choice = final.label_choices[2]  # "Tie": valid whether or not the model reached a verdict
    assert judge.save_label(ctx, req, choice, "looks even").startswith("Saved")
    # a new page (another session) of the same user finds it in the history table
    table = judge.recent(ctx, Req(session_hash="judge-2-reloaded"))
    snap = ctx.live(req).snapshot()  # type: ignore[union-attr]
    row = table[table["item"] == f"{LIVE_DATASET} / {snap.id}"]  # the item as every tab names it
    assert list(row["label"]) == ["tie"] and list(row["note"]) == ["looks even"]


def test_stop_aborts_generation_and_stores_nothing(ctx: AppContext) -> None:
    req = Req(session_hash="judge-3")
    before = ctx.repo.dataset(LIVE_DATASET)
    n_before = before.n_items if before else 0
    running = judge.start(ctx, req, form(budget=4096))
    deadline = time.monotonic() + 60
    while not any(s.reasoning for s in running.snapshot().streams):
        assert time.monotonic() < deadline, "no text streamed"
        time.sleep(0.05)
    assert judge.stop(ctx, req).startswith("Stopping")
    snap = running.wait(30)
    assert snap.state == LiveState.STOPPED
    frozen = sum(s.pieces for s in snap.streams)
    time.sleep(0.5)
    assert sum(s.pieces for s in running.snapshot().streams) == frozen, "text kept coming after Stop"
    assert frozen < 4096, "the whole budget was generated: Stop did not abort"
    view = judge.view(running.snapshot())
    assert "Stopped" in view.status and not view.label_choices
    after = ctx.repo.dataset(LIVE_DATASET)
    assert (after.n_items if after else 0) == n_before


def test_judge_refuses_bad_forms_with_a_plain_message(ctx: AppContext) -> None:
    (only,) = list(judge.stream(ctx, Req(), form(responses=["just one", "  "])))
    assert "at least two responses" in only.status and not only.running
    (empty,) = list(judge.stream(ctx, Req(), form(query="   ")))
    assert "query" in empty.status


def test_a_list_gets_a_ranking(ctx: AppContext) -> None:
    final = list(judge.stream(ctx, Req(session_hash="judge-4"), form(responses=["a", "b", "c"], strategy="knockout")))
    assert "Done" in final[-1].status
    assert "rrm-ranking" in final[-1].card or "Bracket" in final[-1].card or "bracket" in final[-1].card
    # your view on a pair other than the verdict's: every pair offered, the label stored on the one chosen
    snap = ctx.live(Req(session_hash="judge-4")).snapshot()  # type: ignore[union-attr]
    keys = [k for _, k in final[-1].pairs]
    assert sorted(tuple(sorted(map(int, k.split(":")))) for k in keys) == [(0, 1), (0, 2), (1, 2)]
    other = next(k for k in keys[1:] if k == "0:2" or k == "1:2")
    title, choices = judge.choose_pair(ctx, Req(session_hash="judge-4"), other)
    i, j = map(int, other.split(":"))
    assert title.startswith(f"Your view on Response {i + 1} vs Response {j + 1}")
    assert judge.save_label(ctx, Req(session_hash="judge-4"), judge.BOTH_BAD, "", other).startswith("Saved")
    stored = ctx.repo.labels_of(item_db_id=snap.item_db_id)
    assert [(lb.pair_i, lb.pair_j, lb.choice.value) for _, _, lb in stored] == [(i, j, "both_bad")]


def test_without_a_model_judging_says_why_and_the_rest_works(tmp_path: Path, shared_data: Path) -> None:
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'x.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    try:
        rt.load_model()
        assert rt.wait_for_model(30).status == ModelStatus.FAILED
        jobs = JobManager(rt.repo, rt)
        c = AppContext(rt, jobs, login=False)
        (view,) = list(judge.stream(c, Req(), form()))
        assert "Cannot judge" in view.status and "does not exist" in view.status
        # import and plain preference collection need no model
        path = tmp_path / "pairs.jsonl"
        path.write_text("".join(json.dumps({"query": f"q{i}", "response_a": "x", "response_b": "y"}) + "\n"
                                for i in range(3)))  # fmt: skip
        assert "Imported" in batch.import_file(c, Req(), str(path), "pairs", "", "", "")
        got = annotate.next_item(c, Req(), annotate.Session(), "pairs", annotate.NO_RUN, "Unlabelled items", "", False)
        assert got.can_label and "q0" in got.query
        assert "Not started" in batch.start_job(c, Req(), "pairs", 64, 1, False, False, "auto", "")
    finally:
        rt.close()


# --- Annotate tab -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llmbar(ctx: AppContext, shared_data: Path) -> str:
    folder = Path(ctx.runtime.settings.database_url.removeprefix("sqlite:///")).parent
    small = llmbar_subset(shared_data, folder, 6)
    import_file(ctx.repo, small, name="llmbar6", mapping=PRESETS["llmbar"])
    return "llmbar6"


def test_annotation_queue_with_a_judged_run_blind_then_open(ctx: AppContext, llmbar: str) -> None:
    job = batch.start_job(ctx, Req(), llmbar, 48, 1, True, False, "auto", "audit")
    assert job.startswith("Started"), job
    info = ctx.jobs.wait(ctx.jobs.jobs()[0].id, timeout=300)
    assert info.status == JobStatus.DONE, info.message

    s = annotate.Session()
    blind = annotate.next_item(ctx, Req("x"), s, llmbar, "audit", "Unlabelled items", "", True)
    assert blind.can_label and "Blind mode" in blind.model and "rrm-stream" not in blind.model
    assert "**0** done" in blind.progress and "**6** left" in blind.progress
    revealed = annotate.choose(ctx, Req("x"), blind.session, "A", "first is better")
    assert revealed.status.startswith("Saved") and not revealed.can_label
    assert "rrm-stream" in revealed.model  # the reasoning is shown once the choice is stored
    nxt = annotate.advance(ctx, Req("x"), revealed.session, (llmbar, "audit", "Unlabelled items", "", True))
    assert nxt.session.task.item.db_id != blind.session.task.item.db_id  # type: ignore[union-attr]
    assert "**1** done" in nxt.progress

    opened = annotate.next_item(ctx, Req("x"), annotate.Session(), llmbar, "audit", "Unlabelled items", "", False)
    assert "rrm-stream" in opened.model  # not blind: the reasoning is beside the responses
    after = annotate.choose(ctx, Req("x"), opened.session, "tie", "")
    assert "**2** done" in after.progress  # moved straight on to the next item
    labels = ctx.repo.latest_labels(ctx.repo.dataset(llmbar).id)
    assert sorted(labels["choice"]) == ["A", "tie"] and sorted(labels["blind"]) == [False, True]
    assert labels["time_taken_s"].notna().all()


def test_annotation_skip_and_run_filters(ctx: AppContext, llmbar: str) -> None:
    s = annotate.next_item(ctx, Req(), annotate.Session(), llmbar, annotate.NO_RUN, "Unlabelled items", "", False)
    first = s.session.task.item.db_id  # type: ignore[union-attr]
    skipped = annotate.skip(ctx, Req(), s.session)
    assert skipped.session.task.item.db_id != first  # type: ignore[union-attr]
    bad = annotate.next_item(ctx, Req(), annotate.Session(), llmbar, annotate.NO_RUN, "Votes split", "", False)
    assert "needs a run" in bad.status and not bad.can_label


# --- Batch tab --------------------------------------------------------------------------------


def test_upload_preview_detects_the_format_or_says_what_is_wrong(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"query": "q", "response_a": "a", "response_b": "b"}) + "\n")
    view = batch.inspect_upload(str(good))
    assert "pairwise" in view.summary and list(view.rows.columns) == ["query", "response_a", "response_b"]
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"instruction": "q", "output_1": "a", "output_2": "b", "preference": 1}) + "\n")
    unknown = batch.inspect_upload(str(odd))
    assert unknown.needs_mapping and "unknown format" in unknown.summary
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"query": "q", "response_a": "a", "response_b": "b"}) + "\n{not json\n")
    assert batch.inspect_upload(str(broken)).summary.startswith("**pairwise") is False


def test_import_errors_name_the_file_line_and_field_and_store_nothing(ctx: AppContext, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = [{"query": "q", "response_a": "a", "response_b": "b"},
             {"query": "q2", "response_a": {"text": 5}, "response_b": "b"}]  # fmt: skip
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = len(ctx.repo.datasets())
    message = shown(batch.import_file(ctx, Req(), str(bad), "bad", "", "", ""))
    assert "Not imported" in message and "bad.jsonl" in message and "line 2" in message and "response_a" in message
    assert str(tmp_path) not in message  # the server's upload folder is not shown
    assert len(ctx.repo.datasets()) == before
    mapped = tmp_path / "farm.jsonl"
    mapped.write_text(json.dumps({"instruction": "q", "input": "", "output_1": "a", "output_2": "b",
                                  "preference": 1}) + "\n")  # fmt: skip
    assert "Imported" in batch.import_file(ctx, Req(), str(mapped), "farm", "alpaca-farm", "", "")
    assert "Imported" in batch.import_file(ctx, Req(), str(mapped), "farm2", "",
                                           "query=instruction+input\nresponses=output_1,output_2", "")  # fmt: skip


def test_batch_job_runs_to_the_end_and_exports_download(ctx: AppContext, tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    path.write_text("".join(json.dumps({"id": f"b{i}", "query": f"q{i}", "responses": ["x", "y", "z"][: 2 + i % 2]})
                            + "\n" for i in range(5)))  # fmt: skip
    assert "Imported" in batch.import_file(ctx, Req(), str(path), "batch5", "", "", "")
    assert batch.start_job(ctx, Req(), "batch5", 48, 1, False, False, "auto", "").startswith("Started")
    job = next(j for j in batch.visible_jobs(ctx, Req()) if j.dataset == "batch5")
    done = ctx.jobs.wait(job.id, timeout=300)
    assert done.status == JobStatus.DONE and done.items_done == 5
    table = batch.jobs_table(batch.visible_jobs(ctx, Req()))
    row = table[table["job"] == job.id].iloc[0]
    assert (row["status"], row["done"], row["total"]) == ("done", 5, 5)
    assert "Job" in batch.jobs_progress([done])
    assert "Cannot pause" in batch.control(ctx, Req(), job.id, "pause")  # a finished job cannot be paused
    out, message = batch.export_file(ctx, Req(), "batch5", None, "csv", False)
    assert out is not None and Path(out).exists(), message
    assert len(pd.read_csv(out)) >= 5  # a row per judgment


def test_accounts_gate_every_handler_and_keep_jobs_apart(ctx: AppContext, tmp_path: Path) -> None:
    accounts.add_user(ctx.repo, "ann", "password-ann")
    accounts.add_user(ctx.repo, "boss", "password-boss", Role.ADMIN)
    gated = AppContext(ctx.runtime, ctx.jobs, login=True)
    with pytest.raises(PermissionError):
        gated.user(Req(username=None))
    assert gated.user(Req("boss")).is_admin and not gated.user(Req("ann")).is_admin
    mine = [j for j in batch.visible_jobs(gated, Req("ann"))]
    assert all(j.owner == "ann" for j in mine)
    others = [j for j in batch.visible_jobs(gated, Req("boss")) if j.owner != "ann"]
    assert others, "the admin sees everyone's jobs"
    assert "Cannot cancel" in batch.control(gated, Req("ann"), others[0].id, "cancel")


# --- Dashboards and Explorer ------------------------------------------------------------------


def test_explorer_rejudges_an_item_with_more_compute_beside_the_stored_traces(ctx: AppContext, llmbar: str) -> None:
    from rrm_ui.analysis.explorer import Drill
    from rrm_ui.ui.tabs import dashboard, explorer

    rows = explorer.explore(ctx, Req(), Drill(dataset=llmbar)).table
    item_id = explorer.find_ref(ctx, Req(), rows["item"].iloc[0])  # a row names its item as every tab does
    before_item, before_runs = explorer.open_item(ctx, Req(), item_id)
    views = list(explorer.rejudge(ctx, Req(session_hash="exp-1"), item_id, votes=2, budget=48, swap=True))
    assert views[-1].running is False and "Done" in views[-1].status, views[-1].status
    assert any(v.panels for v in views[:-1]) or len(views) == 1  # streamed panels while running
    after_item, after_runs = explorer.open_item(ctx, Req(), item_id)
    assert after_runs.count('data-judgment="') == before_runs.count('data-judgment="') + 4  # 2 votes x 2 orders
    new_runs = set(re.findall(r'data-run="([^"]+)"', after_runs)) - set(re.findall(r'data-run="([^"]+)"', before_runs))
    assert len(new_runs) == 1 and next(iter(new_runs)).startswith(f"{llmbar}:")
    # the new run is in the dashboards at once (the cache follows the database)
    view = dashboard.view(ctx, Req(), dashboard.scope_of(llmbar, [], "humans"))
    runs = view.tables["totals"]["run"].tolist()
    assert next(iter(new_runs)) in runs
    assert explorer.stop(ctx, Req(session_hash="exp-1")) == "Nothing is running."


def test_a_run_name_in_the_started_message_stays_plain_text(ctx: AppContext, tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    path = tmp_path / "names.jsonl"
    path.write_text(json.dumps({"query": "q", "response_a": "a", "response_b": "b"}) + "\n")
    assert "Imported" in batch.import_file(ctx, Req(), str(path), "names", "", "", "")
    hostile = "x` **bold** <img src=x onerror=alert(1)> [l](https://e.example) `y"
    message = batch.start_job(ctx, Req(), "names", 48, 1, False, False, "auto", hostile)
    assert message.startswith("Started"), message
    # rendered by a permissive Markdown renderer (raw HTML on): only the message's own bold forms
    out = MarkdownIt("commonmark", {"html": True}).render(message)
    assert re.findall(r"<(\w+)", out) == ["p", "strong"], out
    assert hostile in html.unescape(shown(message))
    job = next(j for j in batch.visible_jobs(ctx, Req()) if j.dataset == "names")
    assert ctx.jobs.wait(job.id, timeout=300).status == JobStatus.DONE
