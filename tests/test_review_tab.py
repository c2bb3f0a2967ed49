"""The Review tab, the guidelines beside the item, blind annotators in the Explorer, and the Batch tab's
fill menu, through their handlers on a real SQLite database with accounts (issue 17)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel, Role
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import accounts, annotation, open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.jobs import JobManager
from rrm_ui.services.runtime import Runtime
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.tabs import annotate, batch, explorer
from rrm_ui.ui.tabs import review as tab
from tests.conftest import llmbar_subset
from tests.test_ui_pages import Req, raw_views, seen, shown

PW = "correct horse battery"


@pytest.fixture
def world(tmp_path: Path, shared_data: Path) -> Iterator[tuple[AppContext, list, list[dict]]]:
    settings = Settings(backend="transformers", model=str(tmp_path / "no-such-model"),
                        database_url=f"sqlite:///{tmp_path / 'ui.db'}", hf_offline=True)  # fmt: skip
    rt = Runtime(settings, open_repository(settings))
    jobs = JobManager(rt.repo, rt)
    repo = rt.repo
    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:4]
    info = import_file(repo, llmbar_subset(shared_data, tmp_path, 4), name="llmbar", mapping=PRESETS["llmbar"])
    for name, role in (("ann", Role.ANNOTATOR), ("bob", Role.ANNOTATOR), ("rev", Role.REVIEWER), ("boss", Role.ADMIN)):
        accounts.add_user(repo, name, PW, role)
    items = repo.items(info.id)
    for k in (0, 1):  # ann and bob disagree on the first two items, each with a note
        repo.add_label(HumanLabel("ann", items[k].db_id, Choice.A, note=f"ann-note-{k}"))
        repo.add_label(HumanLabel("bob", items[k].db_id, Choice.B, note=f"bob-note-{k}"))
    yield AppContext(rt, jobs, login=True, overlap=2), items, raw
    jobs.shutdown()
    rt.close()


def test_annotators_cannot_adjudicate_reviewers_can(world) -> None:  # noqa: ANN001
    ctx, items, raw = world
    with pytest.raises(PermissionError, match="only reviewers and admins"):
        tab.load_queue(ctx, Req("ann"), "llmbar", None, ["humans"])
    key = f"{items[0].db_id}:0:1"
    with pytest.raises(PermissionError):
        tab.decide(ctx, Req("ann"), "llmbar", None, key, "A is better", "I am sure")
    with pytest.raises(PermissionError):
        tab.show_pair(ctx, Req("bob"), "llmbar", None, key)
    q = tab.load_queue(ctx, Req("rev"), "llmbar", None, ["humans"])
    assert [k for _, k in q.choices] == [f"{items[0].db_id}:0:1", f"{items[1].db_id}:0:1"]
    assert "2 pairs" in q.message and list(q.table["humans"]) == ["ann: A better, bob: B better"] * 2
    page = tab.show_pair(ctx, Req("rev"), "llmbar", None, key)
    assert raw_views(page)[:3] == [raw[0]["input"], raw[0]["output_1"], raw[0]["output_2"]]  # the exact texts
    view = seen(page)
    assert "ann-note-0" in view and "bob-note-0" in view and "none yet" in view
    gold = "A better" if raw[0]["label"] == 1 else "B better"
    assert f"Gold: {gold}" in view
    with pytest.raises(ValueError, match="reason"):
        tab.decide(ctx, Req("rev"), "llmbar", None, key, "B is better", "  ")
    message, view = tab.decide(ctx, Req("rev"), "llmbar", None, key, "B is better", "2 follows the instruction")
    assert "final label" in shown(message) and "2 follows the instruction" in seen(view)
    tab.decide(ctx, Req("boss"), "llmbar", None, key, "A is better", "on second reading")  # admins adjudicate too
    assert [(a.reviewer, a.choice) for a in ctx.repo.adjudications_of(item_db_id=items[0].db_id)] == [
        ("rev", Choice.B), ("boss", Choice.A)]  # fmt: skip
    # adjudicated: out of the queue, unless asked for
    assert [k for _, k in tab.load_queue(ctx, Req("rev"), "llmbar", None, ["humans"]).choices] == [
        f"{items[1].db_id}:0:1"]  # fmt: skip
    again = tab.load_queue(ctx, Req("rev"), "llmbar", None, ["humans"], include_adjudicated=True)
    assert list(again.table["final"]) == ["A better", ""]


def test_guidelines_admins_edit_annotators_read_and_labels_record(world) -> None:  # noqa: ANN001
    ctx, items, _ = world
    for who in ("ann", "rev"):
        with pytest.raises(PermissionError, match="only admins"):
            tab.save_settings(ctx, Req(who), "llmbar", "# Rules", None)
    assert annotate.guidelines_view(ctx, Req("ann"), "llmbar") == ""
    msg = tab.save_settings(ctx, Req("boss"), "llmbar", "# Rules\n\n*Prefer* the honest answer.", None)
    assert "version 1" in msg
    text, about, _ = tab.load_settings(ctx, Req("ann"), "llmbar")
    assert text.startswith("# Rules") and "Version 1 by boss" in shown(about)
    shown_to_ann = annotate.guidelines_view(ctx, Req("ann"), "llmbar")
    assert "version 1" in shown_to_ann and "<em>Prefer</em>" in shown_to_ann
    ctx.repo.add_label(HumanLabel("ann", items[2].db_id, Choice.A))
    assert ctx.repo.labels_of(item_db_id=items[2].db_id)[-1][2].guideline_version == 1
    # the blind setting: off for everyone, then back to auto (on: overlap 2)
    assert "Blind to each other: off" in tab.save_settings(ctx, Req("boss"), "llmbar", "", "off")
    assert ctx.repo.dataset_blind(ctx.repo.dataset("llmbar").id) is False
    assert "Blind to each other: on" in tab.save_settings(ctx, Req("boss"), "llmbar", "", next(iter(tab.BLIND)))


def test_blind_annotators_in_the_explorer(world) -> None:  # noqa: ANN001
    ctx, items, _ = world
    first, second = items[0].db_id, items[1].db_id
    view, _ = explorer.open_item(ctx, Req("ann"), first)
    assert "ann-note-0" in view and "bob-note-0" not in view  # blind: overlap 2, not adjudicated
    view, _ = explorer.open_item(ctx, Req("rev"), first)
    assert "ann-note-0" in view and "bob-note-0" in view  # reviewers see everything
    drill = explorer.drill_from_form(None, "llmbar", None, None, None, [], "", "item")
    rows = explorer.explore(ctx, Req("ann"), drill).table
    refs = [annotation.item_ref("llmbar", it.item.id) for it in items[:2]]  # the table names items as every tab
    assert set(rows.loc[rows["item"].isin(refs), "humans"]) == {"(blind)"}
    assert "(blind)" not in set(explorer.explore(ctx, Req("boss"), drill).table["humans"])
    import gradio as gr

    with pytest.raises(gr.Error, match="blind to each other"):
        explorer.explore(ctx, Req("ann"), explorer.drill_from_form(None, "llmbar", None, None, "bob", [], "", "item"))
    with pytest.raises(gr.Error, match="the flag 'disagree_human'"):
        explorer.explore(ctx, Req("ann"), explorer.drill_from_form(None, "llmbar", None, None, None,
                                                                   ["disagree_human"], "", "item"))  # fmt: skip
    with pytest.raises(gr.Error, match="the reference 'bob'"):
        explorer.explore(ctx, Req("ann"), explorer.drill_from_form({"reference": "bob"}, None, None, None, None, [],
                                                                   "", "item"))  # fmt: skip
    explorer.explore(ctx, Req("ann"), explorer.drill_from_form(None, "llmbar", None, None, "ann", ["truncated"], "",
                                                               "item"))  # fmt: skip
    tab.decide(ctx, Req("rev"), "llmbar", None, f"{first}:0:1", "B is better", "bob is right")
    view, _ = explorer.open_item(ctx, Req("ann"), first)
    assert "bob-note-0" in view  # adjudicated: the labels are shown
    view, _ = explorer.open_item(ctx, Req("ann"), second)
    assert "bob-note-1" not in view
    tab.save_settings(ctx, Req("boss"), "llmbar", "", "off")  # the research view
    view, _ = explorer.open_item(ctx, Req("ann"), second)
    assert "bob-note-1" in view
    by_ann = explorer.drill_from_form(None, "llmbar", None, None, "ann", ["disagree_human"], "", "item")
    assert "(blind)" not in set(explorer.explore(ctx, Req("bob"), by_ann).table["humans"])


def test_batch_export_fills_from_gold(world) -> None:  # noqa: ANN001
    ctx, items, raw = world
    path, message = batch.export_file(ctx, Req("boss"), "llmbar", None, "trl", False, "gold")
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    # items 0 and 1: annotators disagree (skipped); 2 and 3: gold
    assert [r["id"] for r in rows] == [items[2].item.id, items[3].item.id]
    for r, rec in zip(rows, raw[2:], strict=True):
        assert r["chosen"] == (rec["output_1"] if rec["label"] == 1 else rec["output_2"]) and r["source"] == "gold"
    assert "decisions from: gold 2" in shown(message) and "humans_disagree 2" in shown(message)
    path, message = batch.export_file(ctx, Req("boss"), "llmbar", None, "trl", False, "none")
    assert path is None and "2 had annotators who disagree" in shown(message)


def test_the_app_has_the_review_tab(world) -> None:  # noqa: ANN001
    from rrm_ui.ui.app import build

    ctx, _, _ = world
    demo = build(ctx)
    config = demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"tab-review", "rv-table", "rv-save", "ann-guidelines"} <= ids
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"review_queue", "review_decide", "review_settings", "batch_export"} <= names
