"""What the tabs show, through their handlers, on a real SQLite database and no model.

No model is loaded (its path does not exist), so these run fast: the Annotate tab's plain
preference collection, stored runs written through the repository as a batch job writes them,
the Batch tab's forms and exports. The model-backed handler tests are in tests/test_ui_handlers.py.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, Compute, ItemResult, Judgment, PairOutcome, Status
from rrm_ui.services import open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.runtime import Runtime
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.tabs import annotate

POEM = "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd so are you."
MATH = r"Compute $\int_0^1 x^2\,dx$ and keep \\ and \* and &amp; as written."


@dataclass
class Req:
    username: str | None = None
    session_hash: str | None = "s1"


class Seen(HTMLParser):
    """The text a reader sees: ``<br>`` as a line break, the HTML source's own newlines dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.parts.append(data.replace("\n", ""))


def seen(html: str) -> str:
    parser = Seen()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'ui.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    yield AppContext(rt, jobs, login=False)
    jobs.shutdown()
    rt.close()


def raw_views(out: str) -> list[str]:
    """The exact texts of the rendered / raw switches in a page fragment (render.readable)."""
    return [html.unescape(t) for t in re.findall(r'<div class="rrm-pre rrm-raw">(.*?)</div>', out, re.S)]


def shown(markdown: str) -> str:
    """Markdown source as the reader sees it (the handlers escape untrusted text with backslashes)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- item 18: the text as the model saw it ----------------------------------------------------


def test_annotate_shows_line_breaks_and_backslashes_as_written(ctx: AppContext, tmp_path: Path) -> None:
    rows = [{"query": MATH, "response_a": POEM, "response_b": MATH + "\n" + POEM}]
    import_file(ctx.repo, write_jsonl(tmp_path / "poems.jsonl", rows), name="poems")
    view = annotate.next_item(ctx, Req(), annotate.Session(), "poems", annotate.NO_RUN, "Unlabelled items", "", False)
    assert view.can_label, view.status
    # the rendered view: the poem's lines, the backslashes, the formula whole for KaTeX
    assert POEM in seen(view.a) and POEM in seen(view.b)
    shown_math = MATH.replace(r"$\int_0^1 x^2\,dx$", r"\int_0^1 x^2\,dx")
    assert shown_math in seen(view.query) and shown_math + "\n" + POEM in seen(view.b)
    assert '<span class="rrm-math">\\int_0^1 x^2\\,dx</span>' in view.query
    # the raw view: the exact text
    assert raw_views(view.query) == [MATH] and raw_views(view.a) == [POEM]
    assert raw_views(view.b) == [MATH + "\n" + POEM]


# --- item 22: the Annotate tab's data set and run boxes ---------------------------------------


def _truncated(a: int, b: int, sample: int, finish_reason: str = "length") -> Judgment:
    return Judgment(a=a, b=b, sample=sample, verdict=None, status=Status.TRUNCATED, lenient_verdict=None,
                    reasoning="thinking and thinking", answer="", prompt_tokens=50, completion_tokens=64,
                    reasoning_tokens=64, ttft_s=0.01, latency_s=0.5, finish_reason=finish_reason,
                    seed=None)  # fmt: skip


def judged_world(ctx: AppContext, tmp_path: Path) -> str:
    """Two data sets: "judged" (a run, judged in both orders, where no order reached a verdict), then "plain"."""
    pairs = [{"query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(2)]
    judged = import_file(ctx.repo, write_jsonl(tmp_path / "judged.jsonl", pairs), name="judged")
    import_file(ctx.repo, write_jsonl(tmp_path / "plain.jsonl", pairs), name="plain")
    run, _ = ctx.repo.get_or_create_run(judged.id, "judge-tab:x", backend="test", model="m", template="rrm",
                                        template_version="1", strategy="pair", sampling={},
                                        compute={**vars(Compute(votes=1, swap=True))})  # fmt: skip
    for it in ctx.repo.items(judged.id):
        js = (_truncated(0, 1, 0), _truncated(1, 0, 0, "stop"))  # cut by the budget; stopped while thinking
        outcome = PairOutcome(0, 1, None, {0: 0, 1: 0}, 2, None, 2, None, js)
        result = ItemResult(it.item.id, "pair", None, (), (outcome,), "rrm", "1", "m", "test")
        ctx.repo.save_result(run.id, it.db_id, result)
    return run.name


def test_picking_a_data_set_without_runs_right_after_load_serves_its_queue(ctx: AppContext, tmp_path: Path) -> None:
    run = judged_world(ctx, tmp_path)
    names, dataset, runs, run_shown = annotate.form_choices(ctx, None, None)  # the page's load
    assert (names, dataset, run_shown) == (["judged", "plain"], "judged", run) and runs == [annotate.NO_RUN, run]
    # the old wiring served "plain" with the Run box's value of the moment: the other data set's run
    stale = annotate.next_item(ctx, Req(), annotate.Session(), "plain", run, "Unlabelled items", "", False)
    assert "has no run named" in stale.status
    runs, run_shown, view = annotate.pick_dataset(ctx, Req(), annotate.Session(), "plain", "Unlabelled items", "",
                                                  False)  # fmt: skip
    assert (runs, run_shown) == ([annotate.NO_RUN], annotate.NO_RUN)
    assert view.can_label and "has no run" not in view.status, view.status
    assert view.session.spec is not None and view.session.spec.run_id is None


def test_the_data_set_list_follows_imports_and_keeps_the_choice(ctx: AppContext, tmp_path: Path) -> None:
    run = judged_world(ctx, tmp_path)
    import_file(ctx.repo, write_jsonl(tmp_path / "new.jsonl", [{"query": "q", "response_a": "a", "response_b": "b"}]),
                name="imported-later")  # fmt: skip
    names, dataset, _runs, run_shown = annotate.form_choices(ctx, "judged", run)
    assert "imported-later" in names and (dataset, run_shown) == ("judged", run)  # the choice on screen is kept
    assert annotate.form_choices(ctx, "gone", run)[1] == "judged"  # a vanished data set falls back to the first


def test_showing_the_annotate_tab_refreshes_its_data_set_list(ctx: AppContext) -> None:
    """The wiring: selecting the Annotate tab runs the refresh whose outputs are its data set and run boxes."""
    from rrm_ui.ui import app

    demo = app.build(ctx)
    ids = {getattr(b, "elem_id", None): k for k, b in demo.blocks.items()}
    config = demo.get_config_file()
    selects = [d for d in config["dependencies"] if (ids["tab-annotate"], "select") in map(tuple, d["targets"])]
    assert any(ids["ann-dataset"] in d["outputs"] and ids["ann-run"] in d["outputs"] for d in selects), selects


def test_annotate_says_undetermined_for_both_orders_without_a_verdict(ctx: AppContext, tmp_path: Path) -> None:
    run = judged_world(ctx, tmp_path)
    view = annotate.next_item(ctx, Req(), annotate.Session(), "judged", run, "Unlabelled items", "", False)
    assert view.can_label and view.session.task is not None and view.session.task.model is not None
    assert "Position: undetermined" in view.model and "one order only" not in view.model


# --- item 23: the thinking budget is taken as typed, or refused with its range -----------------


def test_a_typed_thinking_budget_is_kept_or_refused_with_the_range(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui import app, controls
    from rrm_ui.ui.tabs import batch, judge

    settings = ctx.runtime.settings
    assert controls.check_budget(64, settings) == 64  # as typed, not raised to some minimum
    for bad in (0, -5, 40_000, 12.5):
        with pytest.raises(ValueError, match="from 1 to 32,768"):
            controls.check_budget(bad, settings)
    with pytest.raises(ValueError, match="empty"):
        controls.check_budget(None, settings)
    import_file(ctx.repo, write_jsonl(tmp_path / "p.jsonl", [{"query": "q", "response_a": "a", "response_b": "b"}]),
                name="p")  # fmt: skip
    refused = shown(batch.start_job(ctx, Req(), "p", 40_000, 1, False, False, "auto", ""))
    assert "Not started" in refused and "from 1 to 32,768, not 40000" in refused, refused
    kept = shown(batch.start_job(ctx, Req(), "p", 64, 1, False, False, "auto", ""))
    assert "Not started" in kept and "the thinking budget" not in kept  # refused for the missing model only
    form = judge.JudgeForm("q", ["a", "b"], 40_000, 1, False, False, "auto")
    (view,) = list(judge.stream(ctx, Req(), form))
    assert "Cannot judge" in view.status and "32,768" in shown(view.status)
    # the page's boxes have no bounds of their own: a slider's box clamped 64 to 256 on blur
    demo = app.build(ctx)
    boxes = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", "") in
             ("judge-budget", "batch-budget", "exp-budget")}  # fmt: skip
    assert len(boxes) == 3
    for box in boxes.values():
        assert box.get_config()["minimum"] is None and box.get_config()["maximum"] is None, box


# --- item 23: exports say why they are empty, and are named once -------------------------------


def test_an_empty_export_says_why_instead_of_a_zero_byte_file(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import batch

    judged_world(ctx, tmp_path)  # "judged": a run that decided nothing; "plain": no run, no labels
    path, message = batch.export_file(ctx, Req(), "plain", None, "trl", False)
    assert path is None and "Nothing to download" in message, message
    assert "2 had neither a human label nor a model verdict" in shown(message) and "Annotate tab" in message
    path, message = batch.export_file(ctx, Req(), "plain", None, "csv", False)
    assert path is None and "has no judgments" in shown(message), message
    path, message = batch.export_file(ctx, Req(), "judged", None, "trl", False)
    assert path is None and "of the 2 pairs considered, 2 had neither a human label nor a model verdict" in shown(
        message
    ), message
    # with rows: a file, named once by its extension
    path, message = batch.export_file(ctx, Req(), "judged", None, "csv", False)
    assert path is not None and Path(path).name == "judged.csv" and Path(path).stat().st_size > 0, message
    path, _ = batch.export_file(ctx, Req(), "judged", None, "parquet", False)
    assert path is not None and Path(path).name == "judged.parquet"


# --- item 23: counts are whole numbers on the page ---------------------------------------------


def test_counts_in_the_dashboard_tables_are_whole_numbers(ctx: AppContext, tmp_path: Path) -> None:
    """Two runs of one data set, only one of them on a labelled item: the other's missing figures must not
    turn the first run's counts into floats ("n=1.0")."""
    from rrm_ui.domain import Choice, HumanLabel, Verdict
    from rrm_ui.ui.tabs import dashboard

    pairs = [{"query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(2)]
    info = import_file(ctx.repo, write_jsonl(tmp_path / "d.jsonl", pairs), name="d")
    first, second = ctx.repo.items(info.id)
    for name, item in (("r1", first), ("r2", second)):
        run, _ = ctx.repo.get_or_create_run(info.id, name, backend="test", model="m", template="rrm",
                                            template_version="1", strategy="pair", sampling={},
                                            compute={**vars(Compute(votes=1))})  # fmt: skip
        j = Judgment(a=0, b=1, sample=0, verdict=Verdict.A, status=Status.OK, lenient_verdict=Verdict.A,
                     reasoning="r", answer=r"\boxed{Assistant 1}", prompt_tokens=5, completion_tokens=9,
                     reasoning_tokens=8, ttft_s=0.1, latency_s=0.2, finish_reason="stop", seed=None)  # fmt: skip
        outcome = PairOutcome(0, 1, 0, {0: 1, 1: 0}, 0, None, 1, None, (j,))
        ctx.repo.save_result(run.id, item.db_id, ItemResult(item.item.id, "pair", 0, (0, 1), (outcome,), "rrm", "1",
                                                            "m", "test"))  # fmt: skip
    ctx.repo.add_label(HumanLabel(annotator="ann", item_db_id=first.db_id, choice=Choice.A, pair_i=0, pair_j=1))
    view = dashboard.view(ctx, Req(), dashboard.scope_of("d", [], "humans"))
    runs = view.tables["runs"].set_index("run")
    assert runs.loc["r1", "vs humans"].endswith("(n=1)"), runs.loc["r1", "vs humans"]
    assert runs.loc["r2", "vs humans"] == "n/a"
    text = view.headline + "".join(t.to_csv() for t in view.tables.values())
    assert not re.search(r"n ?= ?\d+\.0\b", text), text


def test_counts_in_the_explorer_table_are_whole_numbers(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.services.insights import Drill
    from rrm_ui.ui.tabs import explorer

    judged_world(ctx, tmp_path)  # two items, each with two truncated judgments of 64 reasoning tokens
    table = explorer.explore(ctx, Req(), Drill(dataset="judged")).table
    assert list(table["truncated"]) == ["2", "2"], table["truncated"].tolist()
    assert list(table["reasoning tokens"]) == ["128", "128"], table["reasoning tokens"].tolist()


def test_the_explorer_traces_tell_a_cut_by_the_budget_from_a_stop(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import explorer

    judged_world(ctx, tmp_path)
    item = ctx.repo.items(ctx.repo.dataset("judged").id)[0]
    _item_html, runs_html = explorer.open_item(ctx, Req(), item.db_id)
    assert "truncated: cut by the budget" in runs_html and "truncated: stopped while thinking" in runs_html


# --- issue 14: the Annotate tab for annotators who move fast -----------------------------------


def pairs_world(ctx: AppContext, tmp_path: Path, name: str = "three", n: int = 3) -> None:
    rows = [{"query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(n)]
    import_file(ctx.repo, write_jsonl(tmp_path / f"{name}.jsonl", rows), name=name)


def _labels(ctx: AppContext, dataset: str) -> list[tuple[str, str]]:
    """(item id, choice) of every stored label of the data set, oldest first, read back through the repository."""
    info = ctx.repo.dataset(dataset)
    ids = {it.db_id: it.item.id for it in ctx.repo.items(info.id)}
    return [(ids[lab.item_db_id], lab.choice.value) for _, _, lab in ctx.repo.labels_of(dataset_id=info.id)]


def test_back_reopens_the_last_label_to_change_it_and_keeps_the_history(ctx: AppContext, tmp_path: Path) -> None:
    pairs_world(ctx, tmp_path)
    form = ("three", annotate.NO_RUN, "Unlabelled items", "", False)
    first = annotate.next_item(ctx, Req(), annotate.Session(), *form)
    assert "Query" in first.query  # the query has its heading
    second = annotate.choose(ctx, Req(), first.session, "A", "")
    assert second.session.task.item.item.id == "row-2" and "**1** done" in second.progress  # type: ignore[union-attr]
    back = annotate.back(ctx, Req(), second.session)
    assert back.session.task.item.item.id == "row-1" and back.can_label  # type: ignore[union-attr]
    assert back.chosen == "A" and "A is better" in back.status  # the earlier label, highlighted
    further = annotate.back(ctx, Req(), back.session)
    assert "first label" in further.status and further.session.task.item.item.id == "row-1"  # type: ignore[union-attr]
    changed = annotate.choose(ctx, Req(), further.session, "B", "on second thought")
    assert "A is better → B is better" in changed.status
    assert changed.session.task.item.item.id == "row-2"  # back to the queue: the item it held  # type: ignore[union-attr]
    assert "**1** done" in changed.progress  # the same item labelled twice counts once
    third = annotate.choose(ctx, Req(), changed.session, "tie", "")
    assert _labels(ctx, "three") == [("row-1", "A"), ("row-1", "B"), ("row-2", "tie")]  # history kept
    again = annotate.back(ctx, Req(), third.session)
    assert (again.session.task.item.item.id, again.chosen) == ("row-2", "tie")  # type: ignore[union-attr]
    before = annotate.back(ctx, Req(), again.session)
    assert (before.session.task.item.item.id, before.chosen) == ("row-1", "B")  # its latest label  # type: ignore[union-attr]
    resumed = annotate.advance(ctx, Req(), before.session, form)  # n: back to the queue
    assert resumed.session.task.item.item.id == "row-3" and resumed.chosen is None  # type: ignore[union-attr]


def test_a_blind_choice_is_counted_and_highlighted_at_once(ctx: AppContext, tmp_path: Path) -> None:
    run = judged_world(ctx, tmp_path)
    view = annotate.next_item(ctx, Req(), annotate.Session(), "judged", run, "Unlabelled items", "", True)
    assert "**0** done" in view.progress and view.chosen is None
    saved = annotate.choose(ctx, Req(), view.session, "B", "")
    assert not saved.can_label and saved.chosen == "B"
    assert "**1** done · **1** left" in saved.progress  # not the count from before the label
    reopened = annotate.back(ctx, Req(), saved.session)
    assert reopened.can_label and reopened.chosen == "B" and "Blind mode" not in reopened.model  # seen already
    annotate.choose(ctx, Req(), reopened.session, "A", "")
    blind = [lab.blind for _, _, lab in ctx.repo.labels_of(dataset_id=ctx.repo.dataset("judged").id)]
    assert blind == [True, False]  # the change was made with the verdict in view


def test_an_empty_queue_says_why_and_what_to_do(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.services import annotation

    run = judged_world(ctx, tmp_path)  # judged in both orders; nothing flipped
    flips = annotate.next_item(ctx, Req(), annotate.Session(), "judged", run, "Verdict flips between orders", "", False)
    assert "No item of the run" in shown(flips.status) and "Choose another queue" in flips.status
    one_order, _ = ctx.repo.get_or_create_run(ctx.repo.dataset("judged").id, "one-order", backend="test", model="m",
                                              template="rrm", template_version="1", strategy="pair", sampling={},
                                              compute={**vars(Compute(votes=1, swap=False))})  # fmt: skip
    never = annotate.next_item(ctx, Req(), annotate.Session(), "judged", one_order.name, "Verdict flips between orders",
                               "", False)  # fmt: skip
    assert "can never match" in never.status and "one presentation order" in never.status
    subset = annotate.next_item(ctx, Req(), annotate.Session(), "plain", annotate.NO_RUN, "Unlabelled items", "zz",
                                False)  # fmt: skip
    assert "has no items in the subset zz" in shown(subset.status) and "clear the subset" in subset.status
    # another annotator took one item: with overlap 1 it is not served here
    spec = annotate.queue_spec(ctx, "plain", annotate.NO_RUN, "Unlabelled items", "")
    annotation.submit(ctx.repo, annotation.next_task(ctx.repo, spec, "other"), "other", Choice.A)
    view = annotate.next_item(ctx, Req(), annotate.Session(), "plain", annotate.NO_RUN, "Unlabelled items", "", False)
    last = annotate.choose(ctx, Req(), view.session, "A", "")
    assert "already have 1 annotator each" in last.status and "--overlap" in last.status, last.status
    # all labelled by this annotator
    ctx.overlap = 2
    view = annotate.next_item(ctx, Req(), annotate.Session(), "plain", annotate.NO_RUN, "Unlabelled items", "", False)
    done = annotate.choose(ctx, Req(), view.session, "tie", "")
    assert "You have labelled all 2 items" in done.status and "**b**" in done.status


def test_a_list_item_shows_every_response_and_says_which_two_are_asked_about(ctx: AppContext, tmp_path: Path) -> None:
    rows = [{"query": "Pick", "responses": ["first", "second", "third", "fourth"]}]
    import_file(ctx.repo, write_jsonl(tmp_path / "list.jsonl", rows), name="list")
    view = annotate.next_item(ctx, Req(), annotate.Session(), "list", annotate.NO_RUN, "Unlabelled items", "", False)
    text = seen(view.query)
    assert "This list has 4 responses; the question is about Response 1 (A) and Response 2 (B)" in text
    assert "no run ranks this list" in text
    assert [r for r in raw_views(view.query)] == ["Pick", "first", "second", "third", "fourth"]
    assert "Response 1 · A" in text and "Response 2 · B" in text


# --- issue 14: flips side by side, the Explorer's traces and gold in words ----------------------


def _said(a: int, b: int, sample: int, first_wins: bool, reasoning: str) -> Judgment:
    from rrm_ui.domain import Verdict

    return Judgment(a=a, b=b, sample=sample, verdict=Verdict.A if first_wins else Verdict.B, status=Status.OK,
                    lenient_verdict=None, reasoning=reasoning, answer="\\boxed{Assistant 1}", prompt_tokens=50,
                    completion_tokens=40, reasoning_tokens=30, ttft_s=0.01, latency_s=0.4, finish_reason="stop",
                    seed=None)  # fmt: skip


def flipped_world(ctx: AppContext, tmp_path: Path) -> int:
    """One pair with gold 'Response 2 is better', judged in both orders; each order picked the response shown first."""
    rows = [{"query": "Which is right?", "response_a": "$x = 1$", "response_b": "$x = 2$", "label": "B"}]
    info = import_file(ctx.repo, write_jsonl(tmp_path / "flip.jsonl", rows), name="flip")
    run, _ = ctx.repo.get_or_create_run(info.id, "both-orders", backend="test", model="m", template="rrm",
                                        template_version="1", strategy="pair", sampling={},
                                        compute={**vars(Compute(votes=1, swap=True))})  # fmt: skip
    item = ctx.repo.items(info.id)[0]
    shared = "Both give a value of $x$.\nChecking each."
    js = (_said(0, 1, 0, True, shared + "\nThe first, $x=1$, fits."),
          _said(1, 0, 0, True, shared + "\nThe first shown, $x=2$, fits."))  # fmt: skip
    outcome = PairOutcome(0, 1, None, {0: 1, 1: 1}, 0, False, 2, None, js)
    ctx.repo.save_result(run.id, item.db_id, ItemResult(item.item.id, "pair", None, (), (outcome,), "rrm", "1", "m",
                                                        "test"))  # fmt: skip
    return item.db_id


def test_the_explorer_puts_a_flipped_pair_side_by_side_and_says_gold_in_words(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import explorer

    item_html, runs_html = explorer.open_item(ctx, Req(), flipped_world(ctx, tmp_path))
    assert "Gold: Response 2 is better" in seen(item_html)
    flip = seen(runs_html.split('<section class="rrm-flip">')[1].split("</section>")[0])
    assert "Response 1 first → Response 1; Response 2 first → Response 2" in flip
    assert "The first 2 lines are the same in both orders" in flip
    assert flip.index("The first, ") < flip.index("The first shown, ")  # the two orders' own parts, side by side
    # every trace in a full-width row of its own, not in a cell of the table
    assert runs_html.count('<tr class="rrm-trace-row"><td colspan="9"><details class="rrm-trace">') == 2


def test_the_judge_tab_leads_with_the_verdict_and_stop_only_while_running(ctx: AppContext) -> None:
    from rrm_ui.ui import app

    demo = app.build(ctx)
    ids = {getattr(b, "elem_id", None): k for k, b in demo.blocks.items()}
    config = demo.get_config_file()
    comps = {c["id"]: c for c in config["components"]}
    assert comps[ids["judge-stop"]]["props"]["interactive"] is False  # nothing runs at first
    judge = [d for d in config["dependencies"] if (ids["judge-go"], "click") in map(tuple, d["targets"])][0]
    assert ids["judge-stop"] in judge["outputs"]  # each update of a judgment sets it
    order = [k for k in ids if k in ("judge-card", "judge-panels")]
    position = {k: list(demo.blocks).index(ids[k]) for k in order}
    assert position["judge-card"] < position["judge-panels"]  # the verdict above the panels


# --- issue 14: dashboards that read on an empty database and with few items ---------------------


def test_every_dashboard_chart_says_something_on_an_empty_database(ctx: AppContext) -> None:
    from rrm_ui.ui.tabs import dashboard

    view = dashboard.view(ctx, Req(), dashboard.scope_of(None, [], None))
    for name, fig in view.figures.items():
        points = any(len(getattr(t, k, None) or ()) for t in fig.data for k in ("x", "y", "z", "values"))
        notes = [a.text for a in fig.layout.annotations or ()]
        assert points or any(notes), f"the chart {name!r} is blank axes with no message"
    # and the guard behind it: a chart built without a point (and without a message of its own) gets one
    import plotly.graph_objects as go

    blank = dashboard._said_if_empty(go.Figure(go.Bar(x=[], y=[]), layout={"title": {"text": "Tokens"}}))
    assert blank.layout.title.text == "Tokens" and "nothing to show" in blank.layout.annotations[0].text


def test_a_zero_width_interval_says_too_few_items_and_counts_are_whole() -> None:
    import pandas as pd

    from rrm_ui.ui.tabs import dashboard

    assert dashboard._interval(0.5, 0.5, 0.5, True) == "50.0% (too few items for an interval)"
    assert dashboard._interval(1.0, float("nan"), float("nan"), False) == "1.000 (too few items for an interval)"
    assert dashboard._interval(0.5, 0.25, 0.75, True) == "50.0% [25.0%, 75.0%]"
    table = dashboard.whole_counts(pd.DataFrame({"items": [3.0, float("nan")], "rate": [0.5, 1.0]}))
    assert table["items"].tolist()[0] == 3 and str(table["items"].dtype) == "Int64"
    assert table["rate"].tolist() == [0.5, 1.0]  # a real fraction stays as it is
    assert "3.0" not in table.to_csv()


# --- issue 14: upload and first start ---------------------------------------------------------


def test_an_upload_whose_fields_match_a_preset_gets_it_and_the_mapping_is_checked(tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import batch

    rows = [{"input": "q", "output_1": "a", "output_2": "b", "label": 2}]
    path = write_jsonl(tmp_path / "dataset.jsonl", rows)
    view = batch.inspect_upload(str(path))
    assert view.preset == "llmbar" and "match the preset **llmbar**" in view.summary and "Import" in view.summary
    assert "Cannot import" not in view.summary
    ok = batch.check_mapping(str(path), "llmbar", "", "")
    assert ok is not None and "has every field" in ok
    lacking = batch.check_mapping(str(path), "pku-saferlhf", "", "")
    assert lacking is not None and "lacks" in lacking and shown("prompt, response_0") in shown(lacking)
    no_codes = batch.check_mapping(str(path), "", "query=input\nresponses=output_1,output_2\nlabel=label", "")
    assert no_codes is not None and "Label values" in shown(no_codes) and "--labels" not in shown(no_codes)
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"x": "q", "y": "a", "z": "b"}])
    assert batch.inspect_upload(str(odd)).preset is None


def test_import_messages_name_the_form_fields_not_cli_flags(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import batch

    path = write_jsonl(tmp_path / "odd.jsonl", [{"x": "q", "y": "a", "z": "b", "w": 1}])
    unmapped = batch.import_file(ctx, Req(), str(path), "odd", "", "", "")
    assert "Not imported" in unmapped and "--map" not in shown(unmapped) and "Mapping box" in shown(unmapped)
    codes = batch.import_file(ctx, Req(), str(path), "odd", "", "query=x\nresponses=y,z\nlabel=w", "")
    assert "Label values" in shown(codes) and "--labels" not in shown(codes), codes
    done = batch.import_file(ctx, Req(), str(path), "odd", "", "query=x\nresponses=y,z\nlabel=w", "1=A")
    assert done.startswith("Imported")


def test_a_generic_file_name_takes_its_folders_name() -> None:
    from rrm_ui.io.importers import default_name
    from rrm_ui.services.uploads import safe_name

    assert default_name("/data/LLMBar/Natural/dataset.json") == "Natural"
    assert default_name("Adversarial/Neighbor/data.jsonl.gz") == "Neighbor"
    assert default_name("hh/train.jsonl") == "train"  # a name that says something stays
    assert default_name("dataset.json") == safe_name("dataset.json") == "dataset"  # no folder known (an upload)


def test_the_no_model_banner_gives_the_restart_commands() -> None:
    from rrm_ui.services.runtime import ModelState, ModelStatus
    from rrm_ui.ui import app

    state = ModelState(ModelStatus.FAILED, "transformers", "/no/such", message="model path does not exist")
    argv = ["app.py", "--db", "sqlite:///my db.db", "--model", "/no/such", "--port", "7861"]
    text = seen(app.banner_html(state, argv))
    assert "python3 app.py --db 'sqlite:///my db.db' --port 7861 --model PATH" in text
    assert "rrm-ui dev tiny-model ./tiny-model && python3 app.py --db 'sqlite:///my db.db' --port 7861 --model " \
           "./tiny-model" in text  # fmt: skip


def test_an_empty_database_says_what_to_do_in_annotate_and_dashboards(ctx: AppContext, tmp_path: Path) -> None:
    from rrm_ui.ui.tabs import dashboard

    view = annotate.next_item(ctx, Req(), annotate.Session(), None, annotate.NO_RUN, "Unlabelled items", "", False)
    assert "import one in the Batch tab" in shown(view.status) and "Judge tab" in shown(view.status)
    head = dashboard.view(ctx, Req(), dashboard.scope_of(None, [], None)).headline
    assert "Import a data set in the **Batch** tab" in head and "**Judge** tab" in head
    # a name keeps its capitals in the message (it was lowercased)
    pairs_world(ctx, tmp_path, name="Natural", n=1)
    wrong = annotate.next_item(ctx, Req(), annotate.Session(), "Natural", "No-Such-Run", "Unlabelled items", "", False)
    assert "Natural" in shown(wrong.status) and "No-Such-Run" in shown(wrong.status), wrong.status


def test_typed_votes_are_kept_or_refused_with_the_range(ctx: AppContext, tmp_path: Path) -> None:
    import gradio as gr

    from rrm_ui.ui import app, controls
    from rrm_ui.ui.tabs import batch, explorer, judge

    assert controls.check_votes(8) == 8 and controls.check_votes(1.0) == 1
    for bad in (0, 9, 20, 2.5):
        with pytest.raises(ValueError, match="from 1 to 8"):
            controls.check_votes(bad)
    with pytest.raises(ValueError, match="empty"):
        controls.check_votes(None)
    pairs_world(ctx, tmp_path, name="v", n=1)
    refused = shown(batch.start_job(ctx, Req(), "v", 64, 20, False, False, "auto", ""))
    assert "Not started" in refused and "from 1 to 8, not 20" in refused, refused
    (view,) = list(judge.stream(ctx, Req(), judge.JudgeForm("q", ["a", "b"], 64, 20, False, False, "auto")))
    assert "Cannot judge" in view.status and "from 1 to 8, not 20" in shown(view.status)
    item = ctx.repo.items(ctx.repo.dataset("v").id)[0]
    with pytest.raises(gr.Error, match="from 1 to 8, not 20"):
        next(explorer.rejudge(ctx, Req(), item.db_id, 20, 64, False))
    # the page's boxes are number boxes without bounds: a slider's box clamped a typed 20 to 8
    demo = app.build(ctx)
    boxes = [
        b for b in demo.blocks.values() if getattr(b, "elem_id", "") in ("judge-votes", "batch-votes", "exp-votes")
    ]
    assert len(boxes) == 3 and all(isinstance(b, gr.Number) for b in boxes)
    assert all(b.get_config()["minimum"] is None and b.get_config()["maximum"] is None for b in boxes)
