"""Dashboards tab: where the judge disagrees with humans, gold and itself, and what judging costs.

:func:`view` is a plain function of the scope (tests call it without a browser); every chart
point carries the explorer filter that lists its rows, and ``static/app.js`` turns a click on
it into that filter (it writes the JSON into the hidden ``#drill-input`` and presses
``#drill-go``; :mod:`rrm_ui.ui.tabs.explorer` does the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from rrm_ui.analysis import charts
from rrm_ui.services.insights import GOLD, HUMANS, Dashboard, Scope
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike

ALL = "(all data sets)"
GROUP_BY = {"run": "run", "subset": "subset", "data set": "data set", "annotator": "annotator"}


@dataclass(frozen=True)
class DashboardView:
    headline: str  # Markdown
    figures: dict[str, go.Figure]
    tables: dict[str, pd.DataFrame]


FIGURES = ("agreement", "confusion", "runs", "annotators", "flips", "splits", "margin", "tokens", "tokens_by_subset",
           "ttft", "latency", "throughput", "truncation", "by_length", "by_votes", "compute")  # fmt: skip
TABLES = ("agreement", "runs", "annotators", "totals", "tokens_by_subset", "tokens_by_status")


def scope_of(dataset: str | None, runs: list[str] | None, reference: str | None) -> Scope:
    return Scope(dataset=None if not dataset or dataset == ALL else dataset, runs=tuple(runs or ()),
                 reference=reference or HUMANS)  # fmt: skip


def view(ctx: AppContext, request: RequestLike | None, scope: Scope, group_by: str = "run") -> DashboardView:
    ctx.user(request)  # logged-in users only
    group = group_by if group_by in GROUP_BY else "run"
    if group == "annotator" and scope.reference != HUMANS:
        group = "run"  # one reference rater (gold or one annotator): nothing to break down by annotator
    d = ctx.insights.dashboard(scope, group)
    memo = getattr(ctx, "views", None)  # figures of an unchanged dashboard are built once
    if memo is not None and (hit := memo.get((id(d), group))) is not None and hit[0] is d:
        return hit[1]
    v = _build(d, scope, group)
    if memo is not None:
        memo[(id(d), group)] = (d, v)
        while len(memo) > 32:
            memo.pop(next(iter(memo)))
    return v


def _build(d: Dashboard, scope: Scope, group: str) -> DashboardView:
    ref = _ref_name(scope.reference)
    flag = "has_gold" if scope.reference == GOLD else "labelled"  # a bar lists all the rows behind it
    base: dict[str, Any] = {"dataset": scope.dataset} if scope.dataset else {}
    ref_base = dict(base)  # charts about one annotator's labels list that annotator's items
    if scope.reference not in (HUMANS, GOLD):
        ref_base["annotator"] = scope.reference
    table = d.by_group[group]
    drill_key = {"run": "run", "subset": "subset", "data set": "dataset", "annotator": "annotator"}[group]
    flips = d.flips.rename(columns={"judged_both_orders": "n"})
    truncation = d.totals.rename(columns={"run": "group", "truncation_rate": "rate"})
    figures = {
        "agreement": charts.agreement_bars(table, title=f"Agreement with {ref} by {group} (95% intervals)",
                                           x_title=group, reference=ref, drill_key=drill_key, base=ref_base, flag=flag),
        "confusion": charts.confusion_heatmap(d.confusion, reference=ref, base=ref_base, ref_key=scope.reference),
        "runs": charts.runs_bars(d.runs, base=base),
        "annotators": charts.annotator_kappa(d.annotator_pairs, base=base),
        "flips": charts.rate_bars(flips, title="Position inconsistency: verdict flips with the order, per run",
                                  x="run", y="items whose verdict flips (%)", count="inconsistent", total="n",
                                  base=base, drill={"flags": ["inconsistent"]}),
        "splits": charts.vote_split_bars(d.splits, base=base),
        "margin": charts.margin_bars(d.by_margin, reference=ref, base=ref_base, flag=flag),
        "tokens": charts.token_bars(d.tokens, base=base),
        "tokens_by_subset": charts.stat_bars(d.tokens_by_subset, title="Reasoning tokens by subset (median, "
                                             "whisker to p90)", x="subset", y="reasoning tokens per judgment",
                                             drill_key="subset", base=base, unit=" tokens"),
        "ttft": charts.stat_bars(d.ttft, title="Time to first token by backend (median, whisker to p90)",
                                 x="backend", y="seconds", drill_key="backend", base=base, unit=" s"),
        "latency": charts.stat_bars(d.latency, title="Latency per judgment by backend (median, whisker to p90)",
                                    x="backend", y="seconds", drill_key="backend", base=base, unit=" s"),
        "throughput": charts.stat_bars(d.throughput, title="Decode speed per judgment by backend (median, whisker "
                                       "to p90)", x="backend", y="tokens per second", drill_key="backend", base=base,
                                       unit=" tok/s"),
        "truncation": charts.rate_bars(truncation, title="Truncation: judgments cut off by the thinking budget",
                                       x="run", y="truncated judgments (%)", count="truncated", total="judgments",
                                       base=base, drill={"flags": ["truncated"]}, color=charts.COLORS["truncated"]),
        "by_length": charts.length_accuracy(d.by_length, reference=ref, base=ref_base),
        "by_votes": charts.votes_accuracy(d.by_votes, reference=ref, base=ref_base),
        "compute": charts.compute_scatter(d.fixed_vs_adaptive, base=base),
    }  # fmt: skip
    tables = {
        "agreement": _agreement_table(table, group),
        "runs": d.runs.drop(columns=["agreement_humans", "agreement_gold"], errors="ignore"),
        "annotators": _pairs_table(d.annotator_pairs),
        "totals": _totals_table(d.totals),
        "tokens_by_subset": d.tokens_by_subset.round(1),
        "tokens_by_status": d.tokens_by_status.round(1),
    }
    return DashboardView(headline(d), figures, tables)


def _ref_name(reference: str) -> str:
    return {HUMANS: "humans", GOLD: "gold"}.get(reference, f"annotator {reference}")


def headline(d: Dashboard) -> str:
    """The figures a researcher reads first, in one Markdown block."""
    ref = _ref_name(d.scope.reference)
    c = d.counts
    a, k = d.headline["agreement"], d.headline["kappa"]
    return "  \n".join([  # Markdown hard line breaks: one figure group per line
        f"**Model vs {render.text_inline(ref)}**: agreement **{a.fmt(pct=True)}** · Cohen's kappa **{k.fmt()}** "
        f"({c['decisive']:,} decisive of {c['references']:,} references; ties and \"both bad\" are not decisive)",
        f"**Between annotators**: Krippendorff's alpha **{d.alpha.fmt()}** (n = items labelled by two or more) · "
        f"**position inconsistency** **{d.flip.fmt(pct=True)}** of items judged in both orders",
        f"In scope: {c['items']:,} items · {c['runs']:,} runs · {c['judgments']:,} judgments · {c['labels']:,} labels "
        f"by {c['annotators']:,} annotators. 95% intervals: Wilson for shares, Cohen's large-sample SE for kappa, "
        "bootstrap over items for alpha (docs/dashboards.md).",
    ])  # fmt: skip


def _agreement_table(t: pd.DataFrame, group: str) -> pd.DataFrame:
    out = pd.DataFrame({
        group: t["group"], "decisive references": t["decisive"], "agree": t["agree"],
        "agreement": [f"{a:.1%} [{lo:.1%}, {hi:.1%}]" if pd.notna(a) else "n/a" for a, lo, hi in
                      t[["agreement", "agreement_low", "agreement_high"]].itertuples(index=False)],
        "kappa": [f"{k:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(k) else "n/a" for k, lo, hi in
                  t[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)],
    })  # fmt: skip
    return out


def _pairs_table(p: pd.DataFrame) -> pd.DataFrame:
    if p.empty:
        return pd.DataFrame(columns=["annotator 1", "annotator 2", "items", "agreement", "kappa"])
    return pd.DataFrame({
        "annotator 1": p["rater_1"], "annotator 2": p["rater_2"], "items": p["n"],
        "agreement": [f"{a:.1%} [{lo:.1%}, {hi:.1%}]" for a, lo, hi in
                      p[["agreement", "agreement_low", "agreement_high"]].itertuples(index=False)],
        "kappa": [f"{k:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(k) else "n/a" for k, lo, hi in
                  p[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)],
    }).sort_values("items", ascending=False)  # fmt: skip


def _totals_table(t: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "backend", "compute", "items", "judgments", "prompt_tokens", "completion_tokens", "reasoning_tokens",
            "generation_s", "truncated", "no_verdict", "tokens_per_item"]  # fmt: skip
    out = t[[c for c in cols if c in t.columns]].copy()
    for c in ("generation_s", "tokens_per_item"):
        out[c] = out[c].round(1)
    return out.rename(columns={"generation_s": "generation (s, summed)", "tokens_per_item": "tokens per item"})


# --- components -------------------------------------------------------------------------------


@dataclass
class DashboardTab:
    drill_input: gr.Textbox
    drill_go: gr.Button
    refresh: Any  # (fn, inputs, outputs) to run on page load


def render_tab(ctx: AppContext) -> DashboardTab:
    gr.Markdown("Where the judge can be trusted: agreement with humans and gold, disagreement between annotators "
                "and inside the model, and the compute spent. **Click any bar or point to list its rows in the "
                "Explorer.**")  # fmt: skip
    with gr.Row():
        dataset = gr.Dropdown([ALL], value=ALL, label="Data set", elem_id="dash-dataset")
        runs = gr.Dropdown([], value=[], multiselect=True, label="Runs (none: all)", elem_id="dash-runs")
        reference = gr.Dropdown([HUMANS, GOLD], value=HUMANS, label="Reference", elem_id="dash-reference")
        group_by = gr.Radio(list(GROUP_BY), value="run", label="Agreement by", elem_id="dash-group")
        go_btn = gr.Button("Refresh", elem_id="dash-refresh", scale=0)
    head = gr.Markdown(elem_id="dash-headline")
    plots: dict[str, gr.Plot] = {}
    tables: dict[str, gr.Dataframe] = {}

    def plot(name: str) -> None:
        plots[name] = gr.Plot(elem_id=f"dash-{name}", elem_classes=["rrm-chart"], show_label=False)

    def table(name: str, label: str) -> None:
        tables[name] = gr.Dataframe(label=label, interactive=False, wrap=True, elem_id=f"dash-table-{name}")

    with gr.Accordion("Disagreement", open=True):
        with gr.Row():
            plot("agreement")
            plot("confusion")
        table("agreement", "Model vs reference with 95% intervals")
        with gr.Row():
            plot("runs")
            plot("flips")
        table("runs", "Runs side by side")
        with gr.Row():
            plot("splits")
            plot("margin")
        with gr.Row():
            plot("annotators")
        table("annotators", "Annotator pairs (items labelled by both)")
    with gr.Accordion("Compute", open=True):
        with gr.Row():
            plot("tokens")
            plot("tokens_by_subset")
        with gr.Row():
            plot("ttft")
            plot("latency")
        with gr.Row():
            plot("throughput")
            plot("truncation")
        table("totals", "Totals per run")
        table("tokens_by_subset", "Reasoning tokens by subset")
        table("tokens_by_status", "Reasoning tokens by verdict status")
        with gr.Row():
            plot("by_length")
            plot("by_votes")
        with gr.Row():
            plot("compute")
    drill_input = gr.Textbox(elem_id="drill-input", elem_classes=["rrm-hidden"], show_label=False, container=False)
    drill_go = gr.Button("drill", elem_id="drill-go", elem_classes=["rrm-hidden"])

    outputs = [head, *plots.values(), *tables.values()]

    def update(ds, rs, ref, grp, request: gr.Request):  # noqa: ANN001, ANN202
        choices = ctx.insights.choices()
        v = view(ctx, request, scope_of(ds, rs, ref), grp)
        menus = [
            gr.update(choices=[ALL, *choices["datasets"]]),
            gr.update(choices=choices["runs"]),
            gr.update(choices=choices["references"]),
        ]
        return [*menus, v.headline, *(v.figures[n] for n in plots), *(v.tables[n] for n in tables)]

    inputs = [dataset, runs, reference, group_by]
    all_out = [dataset, runs, reference, *outputs]
    for trigger in (go_btn.click, dataset.input, reference.input, group_by.input, runs.input):
        trigger(update, inputs, all_out, show_progress="minimal")
    return DashboardTab(drill_input, drill_go, (update, inputs, all_out))
