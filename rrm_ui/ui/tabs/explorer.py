"""Explorer tab: the failure cases behind the dashboards, one row per run and item.

Filter by data set, run, subset, annotator, flags (disagreements, split votes, flips,
truncation, no verdict) and free text (query, responses, reasoning); a dashboard click arrives
as a :class:`~rrm_ui.analysis.explorer.Drill` and fills the same filters. Selecting a row opens
the item: the query, the responses side by side, every stored trace, the labels; "Judge again"
streams a new judgment with more compute beside the stored ones and stores it as a new run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
import pandas as pd

from rrm_ui.analysis.explorer import FLAGS, SORTS, Drill
from rrm_ui.domain import Compute
from rrm_ui.services import annotation, review
from rrm_ui.services.live import LiveJudgment
from rrm_ui.services.runtime import ModelUnavailable
from rrm_ui.ui import controls, render, render_item
from rrm_ui.ui.context import AppContext, RequestLike
from rrm_ui.ui.tabs import judge as judge_tab

ANY = "(any)"
COLUMNS = {
    "item_id": "item", "dataset": "data set", "subset": "subset", "run": "run", "model_choice": "model",
    "split": "votes", "inconsistent": "flips", "humans": "humans", "gold_choice": "gold", "n_truncated": "truncated",
    "reasoning_tokens": "reasoning tokens", "latency_s": "latency (s)", "preview": "query",
}  # fmt: skip
SLOT = "explorer"


@dataclass(frozen=True)
class ExplorerView:
    table: pd.DataFrame
    summary: str  # Markdown


def drill_from_form(
    extra: dict[str, Any] | None,
    dataset: str | None,
    run: str | None,
    subset: str | None,
    annotator: str | None,
    flags: list[str] | None,
    text: str | None,
    sort: str | None,
) -> Drill:
    """The visible filters plus the chart-only ones (``extra``: confusion cell, margin, bucket, ...)."""

    def val(v: str | None) -> str | None:
        return None if not v or v == ANY else v

    base = Drill.from_dict(extra or {})
    return replace(base, dataset=val(dataset), run=val(run), subset=val(subset), annotator=val(annotator),
                   flags=tuple(flags or ()), text=(text or "").strip(), sort=sort or "item")  # fmt: skip


def explore(ctx: AppContext, request: RequestLike | None, drill: Drill) -> ExplorerView:
    user = ctx.user(request)
    try:  # blind to each other (docs/review.md): no filtering by another annotator's labels
        if not user.can_review:
            review.check_blind_filters(ctx.repo, user.name, drill.dataset, ctx.overlap, annotator=drill.annotator,
                                       flags=tuple(drill.flags), reference=drill.reference)  # fmt: skip
    except PermissionError as exc:
        raise gr.Error(str(exc)) from exc
    rows, total = ctx.insights.explore(drill)
    blind = {} if user.can_review else review.blind_scope(ctx.repo, user.name, ctx.overlap)
    if blind and "humans" in rows:  # others' labels hidden until the item is adjudicated
        hidden = [ds in blind and it not in blind[ds] for ds, it in zip(rows["dataset"], rows["item_id"], strict=True)]
        rows = rows.assign(humans=rows["humans"].where(~pd.Series(hidden, index=rows.index), "(blind)"))
    table = rows.reindex(columns=list(COLUMNS)).rename(columns=COLUMNS)
    # the item as every tab names it (data set / the data set's own id), never the database's number
    pairs = zip(rows.get("dataset", ()), rows.get("ext_id", ()), strict=True)
    table["item"] = [annotation.item_ref(str(ds), str(ext)) for ds, ext in pairs]
    both_orders = rows["position_consistent"].notna() if "position_consistent" in rows else False
    table["flips"] = table["flips"].map({True: "yes", False: "no"}).where(both_orders, "")
    table["latency (s)"] = table["latency (s)"].round(1)
    for count in ("truncated", "reasoning tokens"):  # whole numbers (a missing one made the column float)
        table[count] = ["" if pd.isna(v) else str(int(v)) for v in table[count]]
    table = table.fillna("")
    shown = f"showing the first {len(rows):,}" if len(rows) < total else "showing all"
    summary = (f"**{total:,} rows** match ({shown}) · filter: {render.text_inline(drill.describe())}. "
               "Select a row to open the item.")  # fmt: skip
    return ExplorerView(table, summary)


def find_ref(ctx: AppContext, request: RequestLike | None, ref: str) -> int:
    """The database id of the item a reference names (``DATA SET / ITEM ID``, as the tabs show it: a
    table row's first column, the Annotate tab's heading); ValueError saying what is missing."""
    ctx.user(request)
    return annotation.find_item(ctx.repo, ref)[1].db_id


def open_ref(ctx: AppContext, request: RequestLike | None, ref: str) -> tuple[int | None, str, str]:
    """The item box: (the item's database id, its view, its runs) for a reference; a warning when it names
    nothing."""
    if not (ref or "").strip():
        return None, "", ""
    try:
        item_db_id = find_ref(ctx, request, ref)
    except ValueError as exc:
        return None, render.banner("warning", "Item not found", str(exc)), ""
    return (item_db_id, *open_item(ctx, request, item_db_id))


def open_item(ctx: AppContext, request: RequestLike | None, item_db_id: int | None) -> tuple[str, str]:
    """(the item with its labels, every run's decision and traces) as HTML."""
    user = ctx.user(request)
    if item_db_id is None:
        return "", ""
    detail = ctx.insights.item(int(item_db_id))
    if detail is None:
        return render.banner("warning", "Item not found", f"No item with id {int(item_db_id)}."), ""
    if not user.can_review and not detail.labels.empty:  # blind to each other: own labels, adjudicated pairs
        ds = ctx.repo.dataset(detail.dataset)
        detail = replace(detail, labels=review.visible_labels(ctx.repo, detail.labels, user.name, ds.id, ctx.overlap))
    return render_item.item_view(detail), render_item.runs_view(detail)


def rejudge(
    ctx: AppContext,
    request: RequestLike | None,
    item_db_id: int | None,
    votes: float,
    budget: float,
    swap: bool,
    run: str | None = None,
    judge: str | None = None,
) -> Iterator[judge_tab.JudgeView]:
    """Judge a stored item again with the given compute; the result goes to a re-judge run of its own,
    tied to ``run`` (the run of the selected row, which it re-examines), never into that run."""
    user = ctx.user(request)
    if item_db_id is None:
        raise gr.Error("select a row first")
    detail = ctx.insights.item(int(item_db_id))
    if detail is None:
        raise gr.Error(f"no item with id {int(item_db_id)}")
    try:
        compute = Compute(votes=controls.check_votes(votes), swap=bool(swap))
        budget = controls.check_budget(budget, ctx.runtime.settings)
        live = LiveJudgment(ctx.runtime, detail.item, compute=compute, sampling=ctx.runtime.sampling(max_tokens=int(
            budget)), annotator=user.name, stored_item=(detail.dataset, detail.item_db_id),
            parent_run=run or None, judge=judge or None)  # fmt: skip
    except (ModelUnavailable, ValueError) as exc:
        raise gr.Error(str(exc)) from exc
    ctx.set_live(request, live, slot=SLOT)
    while True:
        snap = live.snapshot()
        yield judge_tab.view(snap, budget=int(budget))
        if live.finished:
            return
        time.sleep(judge_tab.UPDATE_INTERVAL_S)


def stop(ctx: AppContext, request: RequestLike | None) -> str:
    live = ctx.live(request, slot=SLOT)
    if live is None or live.finished:
        return "Nothing is running."
    live.stop()
    return "Stopped."


# --- components -------------------------------------------------------------------------------


@dataclass
class ExplorerTab:
    extra: gr.State
    filters: list[Any]  # dataset, run, subset, annotator, flags, text, sort
    table: gr.Dataframe
    summary: gr.Markdown
    explore_fn: Any  # (extra, *filters, request) -> [menus (dataset, run, subset, annotator), table, summary]
    outputs: list[Any]


def render_tab(ctx: AppContext) -> ExplorerTab:
    extra = gr.State({})
    with gr.Row():
        dataset = gr.Dropdown([ANY], value=ANY, label="Data set", elem_id="exp-dataset")
        run = gr.Dropdown([ANY], value=ANY, label="Run", elem_id="exp-run")
        subset = gr.Dropdown([ANY], value=ANY, label="Subset", elem_id="exp-subset")
        annotator = gr.Dropdown([ANY], value=ANY, label="Annotator", elem_id="exp-annotator")
        sort = gr.Dropdown(list(SORTS), value="item", label="Sort", elem_id="exp-sort")
    with gr.Row():
        flags = gr.CheckboxGroup([(v, k) for k, v in FLAGS.items()], label="Only rows where", elem_id="exp-flags")
    with gr.Row():
        text = gr.Textbox(label="Search query, responses and reasoning", elem_id="exp-search", scale=4)
        search = gr.Button("Search", elem_id="exp-go", scale=0)
        clear = gr.Button("Clear filters", elem_id="exp-clear", scale=0)
    with gr.Row():
        ref_box = gr.Textbox(label="Open an item (data set / item id, as every tab names it)", scale=4,
                             placeholder="e.g. llmbar / row-3", elem_id="exp-item-id")  # fmt: skip
        ref_go = gr.Button("Open", elem_id="exp-item-open", scale=0)
    summary = gr.Markdown(elem_id="exp-summary")
    table = gr.Dataframe(interactive=False, wrap=False, max_height=420, elem_id="exp-table")
    selected = gr.State(None)
    selected_run = gr.State(None)  # the run of the selected row: what "Judge again" re-examines
    with gr.Row():
        with gr.Column(scale=3):
            item_html = gr.HTML(elem_id="exp-item")
        with gr.Column(scale=2):
            gr.Markdown("**Judge again** with more compute: the new traces stream here (the stored ones are below) "
                        "and are stored in a re-judge run of the selected row's run (never in that run).")  # fmt: skip
            with gr.Row():
                votes = controls.votes_input("exp-votes", value=4)
                swap = gr.Checkbox(value=True, label="Both presentation orders", elem_id="exp-swap")
            budget = controls.budget_input(ctx.runtime.settings, "exp-budget")
            judge_format = controls.judge_menu(ctx.runtime.settings, "exp-judge")
            with gr.Row():
                again = gr.Button("Judge again", variant="primary", elem_id="exp-rejudge")
                halt = gr.Button("Stop", variant="stop", elem_id="exp-stop")
            live_status = gr.Markdown(elem_id="exp-live-status")
            live_panels = gr.HTML(elem_id="exp-live-panels")
            live_card = gr.HTML(elem_id="exp-live-card")
    runs_html = gr.HTML(elem_id="exp-runs")  # the stored runs and traces, the page's full width

    filters = [dataset, run, subset, annotator, flags, text, sort]

    def explore_fn(ex, ds, rn, ss, an, fl, tx, so, request: gr.Request):  # noqa: ANN001, ANN202
        drill = drill_from_form(ex, ds, rn, ss, an, fl, tx, so)
        choices = ctx.insights.choices()
        v = explore(ctx, request, drill)
        menus = [gr.update(choices=[ANY, *choices[k]]) for k in ("datasets", "runs", "subsets", "annotators")]
        return [*menus, v.table, v.summary]

    outs = [dataset, run, subset, annotator, table, summary]
    for trigger in (search.click, text.submit, dataset.input, run.input, subset.input, annotator.input,
                    flags.input, sort.input):  # fmt: skip
        trigger(explore_fn, [extra, *filters], outs, show_progress="minimal")

    def clear_fn() -> list[Any]:
        return [{}, ANY, ANY, ANY, ANY, [], "", "item"]

    clear.click(clear_fn, None, [extra, *filters]).then(explore_fn, [extra, *filters], outs)

    def select_fn(evt: gr.SelectData, request: gr.Request):  # noqa: ANN202
        row = evt.row_value or []
        item_id = find_ref(ctx, request, str(row[0])) if row and str(row[0]).strip() else None
        run_at = list(COLUMNS.values()).index("run")
        run_name = str(row[run_at]).strip() if len(row) > run_at and str(row[run_at]).strip() else None
        item, runs = open_item(ctx, request, item_id)
        return item_id, run_name, item, runs, "", "", "", str(row[0]) if row else ""

    opened = [selected, selected_run, item_html, runs_html, live_status, live_panels, live_card, ref_box]
    table.select(select_fn, None, opened)

    def ref_fn(ref, request: gr.Request):  # noqa: ANN001, ANN202
        item_id, item, runs = open_ref(ctx, request, ref)
        return item_id, None, item, runs, "", "", ""  # no row chosen: "Judge again" ties to no run

    for trigger in (ref_box.submit, ref_go.click):
        trigger(ref_fn, ref_box, opened[:-1])

    def again_fn(item_id, v, b, sw, rn, jf, request: gr.Request):  # noqa: ANN001, ANN202
        for jv in rejudge(ctx, request, item_id, v, b, sw, rn, jf):
            yield jv.status, jv.panels, jv.card

    def refresh_item(item_id, request: gr.Request):  # noqa: ANN001, ANN202
        return open_item(ctx, request, item_id)

    def stop_fn(request: gr.Request) -> str:
        return stop(ctx, request)

    ev = again.click(
        again_fn,
        [selected, votes, budget, swap, selected_run, judge_format],
        [live_status, live_panels, live_card],
        concurrency_limit=ctx.runtime.ui_concurrency,
        concurrency_id="model",
        show_progress="hidden",
    )
    ev.then(refresh_item, selected, [item_html, runs_html])
    halt.click(stop_fn, None, live_status)
    return ExplorerTab(extra, filters, table, summary, explore_fn, outs)


def wire_drill(ctx: AppContext, tab: ExplorerTab, drill_input: gr.Textbox, drill_go: gr.Button, tabs: gr.Tabs) -> None:
    """A dashboard click (its filter JSON in ``drill_input``) fills the explorer and opens its tab."""

    def drill_fn(raw, request: gr.Request):  # noqa: ANN001, ANN202
        extra, values = drill_values(raw)
        drill = drill_from_form(extra, *values)
        choices = ctx.insights.choices()
        v = explore(ctx, request, drill)
        menus = [gr.update(choices=[ANY, *choices[k]], value=val) for k, val in
                 zip(("datasets", "runs", "subsets", "annotators"), values[:4], strict=True)]  # fmt: skip
        return [extra, *menus, *values[4:], v.table, v.summary, gr.Tabs(selected="explorer")]

    drill_go.click(drill_fn, drill_input, [tab.extra, *tab.filters, tab.table, tab.summary, tabs],
                   show_progress="minimal")  # fmt: skip


def drill_values(raw: str) -> tuple[dict[str, Any], list[Any]]:
    """A dashboard click's JSON as (the chart-only filters, the visible filter values)."""
    try:
        d = Drill.from_dict(json.loads(raw or "{}"))
    except (ValueError, TypeError) as exc:
        raise gr.Error(f"bad drill-down filter: {exc}") from exc
    visible = {"dataset", "run", "subset", "annotator", "flags", "text", "sort"}
    extra = {k: v for k, v in d.to_dict().items() if k not in visible}
    return extra, [d.dataset or ANY, d.run or ANY, d.subset or ANY, d.annotator or ANY, list(d.flags), d.text, d.sort]
