"""Issue 14, the last parts: one item id in every tab, and "your view" on any pair of a list.

Handlers on a real SQLite database and no model (its path does not exist). The Judge tab's list
judgment is an :class:`ItemResult` built here, as the engine returns it, behind a stand-in for the
live judgment (the handlers read only its snapshot); the label goes through the real storage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rrm_ui.domain import Choice, Compute, Item, ItemResult, Verdict
from rrm_ui.services import annotation, live
from rrm_ui.services.datasets import import_file
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.tabs import annotate, explorer, judge
from tests.test_render import judgment, pair
from tests.test_ui_pages import Req
from tests.test_ui_pages import ctx as ctx  # noqa: PLC0414 - the fixture, by name


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def shown(markdown: str) -> str:
    """Markdown source as the reader sees it (the handlers escape untrusted text with backslashes)."""
    return re.sub(r"\\(.)", r"\1", markdown)


# --- the item's id ------------------------------------------------------------------------------


def test_an_item_ref_reads_back_and_says_what_is_missing(ctx: AppContext, tmp_path: Path) -> None:
    rows = [{"id": f"q{i}", "query": f"Q{i}", "response_a": "a", "response_b": "b"} for i in range(2)]
    rows.append({"id": "odd / id", "query": "Q slash", "response_a": "a", "response_b": "b"})
    import_file(ctx.repo, write_jsonl(tmp_path / "named.jsonl", rows), name="named")
    assert annotation.item_ref("named", "q1") == "named / q1"
    assert annotation.parse_item_ref("  named /q1 ") == ("named", "q1")
    assert annotation.parse_item_ref("q1", "named") == ("named", "q1")  # a bare id: the chosen data set
    name, item = annotation.find_item(ctx.repo, "named / q1")
    assert (name, item.item.id, item.item.query) == ("named", "q1", "Q1")
    assert annotation.find_item(ctx.repo, "named / odd / id")[1].item.query == "Q slash"  # the first slash splits
    assert annotation.find_item(ctx.repo, "odd / id", "named")[1].item.query == "Q slash"  # bare, with a slash
    with pytest.raises(ValueError, match="expected an item as 'DATA SET / ITEM ID'"):
        annotation.find_item(ctx.repo, "q1")
    with pytest.raises(ValueError, match="no data set named 'nope'"):
        annotation.find_item(ctx.repo, "nope / q1")
    with pytest.raises(ValueError, match="the data set 'named' has no item with the id 'q9'"):
        annotation.find_item(ctx.repo, "named / q9")


def test_annotate_and_the_explorer_name_an_item_the_same_way_and_open_it_by_that_name(
    ctx: AppContext, tmp_path: Path
) -> None:
    rows = [{"id": f"q{i}", "query": f"Question {i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3)]
    import_file(ctx.repo, write_jsonl(tmp_path / "named.jsonl", rows), name="named")
    import_file(ctx.repo, write_jsonl(tmp_path / "plain.jsonl", [{"query": "Plain", "response_a": "x",
                                                                 "response_b": "y"}]), name="plain")  # fmt: skip
    form = ("named", annotate.NO_RUN, "Unlabelled items", "", False)
    view = annotate.next_item(ctx, Req(), annotate.Session(), *form)
    served = view.session.task.item.item.id  # type: ignore[union-attr]
    assert f"Item named / {served}" in view.query
    # the Explorer's table names every item so; a row's name opens it, as the item box does
    table = explorer.explore(ctx, Req(), explorer.drill_from_form(None, None, None, None, None, [], "", "item")).table
    expected = sorted(f"{ds} / {it.item.id}" for ds in ("named", "plain")
                      for it in ctx.repo.items(ctx.repo.dataset(ds).id))  # fmt: skip
    assert sorted(table["item"]) == expected
    ref = "named / q2"
    db_id = explorer.find_ref(ctx, Req(), ref)
    assert db_id == next(it.db_id for it in ctx.repo.items(ctx.repo.dataset("named").id) if it.item.id == "q2")
    opened_id, item_html, _runs = explorer.open_ref(ctx, Req(), ref)
    assert opened_id == db_id and "Item named / q2" in item_html and "Question 2" in item_html
    missing_id, warning, _ = explorer.open_ref(ctx, Req(), "named / q7")
    assert missing_id is None and "Item not found" in warning and "no item with the id" in warning
    # the Annotate tab's item box takes the same name: the item opens (not claimed), labelled like any other
    ds, _runs, run, opened = annotate.open_ref(ctx, Req(), view.session, ref, *form)
    assert (ds, run) == ("named", annotate.NO_RUN) and opened.can_label
    assert "Item named / q2 · opened by its id" in opened.query and "Question 2" in opened.query
    after = annotate.choose(ctx, Req(), opened.session, "B", "")
    labels = ctx.repo.labels_of(dataset_id=ctx.repo.dataset("named").id)
    assert [(lb.item_db_id, lb.choice) for _, _, lb in labels] == [(db_id, Choice.B)]
    assert after.session.task is not None and not after.session.opened  # back to the queue
    # a bare id is taken in the chosen data set; another data set's item switches the form to it
    bare = annotate.open_ref(ctx, Req(), after.session, "q0", *form)[3]
    assert "Item named / q0" in bare.query
    plain_id = ctx.repo.items(ctx.repo.dataset("plain").id)[0].item.id
    ds, runs, run, other = annotate.open_ref(ctx, Req(), after.session, f"plain / {plain_id}", *form)
    assert (ds, runs, run) == ("plain", [annotate.NO_RUN], annotate.NO_RUN)
    assert f"Item plain / {plain_id}" in other.query
    assert other.session.spec.dataset_id == ctx.repo.dataset("plain").id  # type: ignore[union-attr]
    # n after an opened item returns to the queue
    resumed = annotate.advance(ctx, Req(), opened.session, form)
    assert "opened by its id" not in resumed.query
    # a name that names nothing: said, the item on screen kept
    kept = annotate.open_ref(ctx, Req(), after.session, "named / nope", *form)[3]
    assert "Cannot open" in kept.status and "no item with the id 'nope'" in shown(kept.status)
    assert after.session.task.ref in kept.query  # type: ignore[union-attr]


def test_the_judge_tabs_history_names_items_as_every_tab_does(ctx: AppContext) -> None:
    _info, db_id = ctx.repo.add_item(live.LIVE_DATASET, Item("live-abc", "Typed in", ("x", "y")), meta={"by": "local"})
    table = judge.recent(ctx, Req())
    assert list(table["item"]) == ["judge-tab / live-abc"]
    assert annotation.find_item(ctx.repo, table["item"].iat[0])[1].db_id == db_id


# --- your view on any pair of a list ---------------------------------------------------------------


class Finished:
    """Stands in for a finished :class:`LiveJudgment`: the handlers read its snapshot only."""

    finished = True

    def __init__(self, snap: live.LiveSnapshot) -> None:
        self.snap = snap

    def snapshot(self) -> live.LiveSnapshot:
        return self.snap


def knockout_of_three(ctx: AppContext) -> tuple[live.LiveSnapshot, ItemResult]:
    """Responses 1-3: round 1 Response 1 vs 2 (2 wins, 2 votes to 0), Response 3 a bye; the final Response 2 vs 3
    (3 wins). Stored as a Judge-tab item with its run, as the live judgment stores it."""
    r01 = pair(0, 1, [judgment(0, 1, 0, Verdict.B), judgment(0, 1, 1, Verdict.B)])
    final = pair(1, 2, [judgment(1, 2, 0, Verdict.B)])
    bracket = (({"round": 1, "i": 0, "j": 1, "winner": 1}, {"round": 1, "i": 2, "j": None, "winner": 2}),
               ({"round": 2, "i": 1, "j": 2, "winner": 2},))  # fmt: skip
    result = ItemResult("live-ko", "knockout", 2, (2, 1, 0), (r01, final), "rrm", "1", "m", "test", bracket=bracket)
    ds_id, db_id = ctx.repo.add_item(live.LIVE_DATASET, Item("live-ko", "Best?", ("one", "two", "three")))
    run, _ = ctx.repo.get_or_create_run(ds_id, "judge-tab:ko", backend="test", model="m", template="rrm",
                                        template_version="1", strategy="knockout", sampling={},
                                        compute={**vars(Compute(votes=1))})  # fmt: skip
    ctx.repo.save_result(run.id, db_id, result)
    snap = live.LiveSnapshot("live-ko", live.LiveState.DONE, (), 1.0, result, None, db_id, run.id, None,
                             live.LIVE_DATASET)  # fmt: skip
    return snap, result


def test_your_view_names_its_pair_and_is_stored_on_any_pair_of_the_list(ctx: AppContext) -> None:
    snap, result = knockout_of_three(ctx)
    ctx.set_live(Req(), Finished(snap))  # type: ignore[arg-type]
    view = judge.view(snap)
    assert "stored as judge-tab / live-ko" in shown(view.status)
    # every pair of the three, the final first (the pair the verdict is about), each said in words
    assert [k for _, k in view.pairs] == ["2:1", "0:1", "0:2"]
    words = dict((k, w) for w, k in view.pairs)
    assert words["2:1"] == "Response 3 vs Response 2 (the final: the verdict is about these two)"
    assert words["0:1"] == "Response 1 vs Response 2 (compared: Response 2 is better)"
    assert words["0:2"] == "Response 1 vs Response 3 (not compared; Response 3 won the list)"
    assert view.label_title.startswith("Your view on Response 3 vs Response 2 (the final")
    # another pair: the title names it and the choices follow the model's view of it
    title, choices = judge.choose_pair(ctx, Req(), "0:1")
    assert title.startswith("Your view on Response 1 vs Response 2 (compared: Response 2 is better")
    assert choices == [judge.AGREE, judge.PREFER_OTHER, judge.TIE, judge.BOTH_BAD]
    said = judge.save_label(ctx, Req(), judge.PREFER_OTHER, "the first is right", "0:1")
    assert said == "Saved your label (Prefer the other response) on Response 1 vs Response 2 as local."
    said = judge.save_label(ctx, Req(), judge.AGREE, "", "0:2")
    assert "on Response 1 vs Response 3" in said
    said = judge.save_label(ctx, Req(), judge.TIE, "", None)  # no pair chosen: the verdict's pair
    assert "on Response 3 vs Response 2" in said
    for bad, why in (("1:1", "two different responses"), ("0:5", "two different responses"), ("x", "'I:J'")):
        assert why in shown(judge.save_label(ctx, Req(), judge.TIE, "", bad))
    stored = [(lb.pair_i, lb.pair_j, lb.choice, lb.agrees_with_model, lb.note)
              for _, _, lb in ctx.repo.labels_of(item_db_id=snap.item_db_id)]  # fmt: skip
    # independently: "prefer the other" on 0:1, where the model chose Response 2 (index 1, B), is A;
    # "agree" on 0:2, where the list's winner is Response 3 (index 2, B), is B
    assert stored == [(0, 1, Choice.A, False, "the first is right"), (0, 2, Choice.B, True, None),
                      (2, 1, Choice.TIE, None, None)]  # fmt: skip


def test_a_pair_the_model_never_compared_is_asked_by_response(ctx: AppContext) -> None:
    r01, r23 = pair(0, 1, [judgment(0, 1, 0, Verdict.A)]), pair(2, 3, [judgment(2, 3, 0, Verdict.A)])
    final = pair(0, 2, [judgment(0, 2, 0, Verdict.A)])
    result = ItemResult("live-4", "knockout", 0, (0, 2, 1, 3), (r01, r23, final), "rrm", "1", "m", "test")
    snap = live.LiveSnapshot("live-4", live.LiveState.DONE, (), 1.0, result, None, None, None)
    assert judge.pair_note(result, (1, 3)) == "the model did not compare these two"
    assert judge.label_choices(snap, (1, 3)) == ["Response 2 is better", "Response 4 is better", judge.TIE,
                                                 judge.BOTH_BAD]  # fmt: skip
    assert judge.choice_of(snap, "Response 4 is better", (1, 3)) == Choice.B
    assert len(judge.pair_choices(result)) == 6  # 4 choose 2
    assert judge.pair_choices(ItemResult("p", "pair", 0, (0, 1), (r01,), "rrm", "1", "m", "test")) == ()


def test_a_knockout_without_a_verdict_asks_about_its_final_and_says_no_verdict(ctx: AppContext) -> None:
    """As the tiny model judges: every match cut by the budget, bracket order decides who goes on."""
    from rrm_ui.domain import Status

    cut = [judgment(0, 1, 0, None, Status.TRUNCATED)]
    r01, final = pair(0, 1, cut), pair(0, 2, [judgment(0, 2, 0, None, Status.TRUNCATED)])
    tied = pair(1, 2, [judgment(1, 2, 0, Verdict.A), judgment(2, 1, 0, Verdict.A)])  # one vote each: a tie
    bracket = (({"round": 1, "i": 0, "j": 1, "winner": None}, {"round": 1, "i": 2, "j": None, "winner": 2}),
               ({"round": 2, "i": 0, "j": 2, "winner": None},))  # fmt: skip
    result = ItemResult("live-none", "knockout", None, (), (r01, final, tied), "rrm", "1", "m", "test",
                        bracket=bracket)  # fmt: skip
    assert live.labelled_pair(result) == (0, 2)  # the final, not the first two
    words = {k: w for w, k in judge.pair_choices(result)}
    assert list(words) == ["0:2", "0:1", "1:2"]
    assert words["0:2"].endswith("(the final: the verdict is about these two)")
    assert words["0:1"].endswith("(compared: no verdict)") and words["1:2"].endswith("(compared: a tie)")
