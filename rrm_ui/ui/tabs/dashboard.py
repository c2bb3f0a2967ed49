"""Dashboards tab: where the judge disagrees with humans, gold and itself, and what judging costs.

:func:`view` is a plain function of the scope (tests call it without a browser); every chart
point carries the explorer filter that lists its rows, and ``static/app.js`` turns a click on
it into that filter (it writes the JSON into the hidden ``#drill-input`` and presses
``#drill-go``; :mod:`rrm_ui.ui.tabs.explorer` does the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from rrm_ui.analysis import charts
from rrm_ui.analysis.explorer import Drill
from rrm_ui.analysis.frames import ADJUDICATED
from rrm_ui.analysis.references import HUMANS, MAJORITY
from rrm_ui.services.insights import GOLD, Dashboard, Scope
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike

ALL = "(all data sets)"
GROUP_BY = {"run": "run", "subset": "subset", "data set": "data set", "annotator": "annotator",
            "guideline version": "guideline"}  # fmt: skip


@dataclass(frozen=True)
class DashboardView:
    headline: str  # Markdown
    figures: dict[str, go.Figure]
    tables: dict[str, pd.DataFrame]




def scope_of(dataset: str | None, runs: list[str] | None, reference: str | None) -> Scope:
    return Scope(dataset=None if not dataset or dataset == ALL else dataset, runs=tuple(runs or ()),
                 reference=reference or HUMANS)  # fmt: skip


#: the page's folding sections: their figures and tables. The first two are open when the page
#: loads; a folded one is built when it is opened (``render_tab``), so its tables are not computed before.
SECTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "agreement": (("agreement", "confusion"), ("agreement", "references")),
    "runs": (("runs", "flips", "splits", "margin"), ("runs",)),
    "raters": (("annotators", "judges"), ("annotators", "judges")),
    "compute": (("tokens", "tokens_by_subset", "ttft", "latency", "throughput", "truncation"),
                ("totals", "tokens_by_subset", "tokens_by_status")),
    "accuracy": (("by_length", "by_votes", "compute"), ("adaptive_audit",)),
}  # fmt: skip
OPEN = ("agreement", "runs")
FIGURES = tuple(name for figures, _ in SECTIONS.values() for name in figures)
TABLES = tuple(name for _, tables in SECTIONS.values() for name in tables)


def view(ctx: AppContext, request: RequestLike | None, scope: Scope, group_by: str = "run",
         sections: tuple[str, ...] | None = None) -> DashboardView:  # fmt: skip
    """The headline and the figures and tables of ``sections`` (None: all of them)."""
    ctx.user(request)  # logged-in users only
    # the radio's label ("guideline version") or the grouping itself ("guideline")
    group = GROUP_BY.get(group_by) or (group_by if group_by in GROUP_BY.values() else "run")
    if group == "annotator" and scope.reference != HUMANS:
        group = "run"  # one reference rater (gold or one annotator): nothing to break down by annotator
    wanted = tuple(SECTIONS) if sections is None else tuple(s for s in SECTIONS if s in sections)
    d = ctx.insights.dashboard(scope, group)
    memo = getattr(ctx, "views", None)  # built figures and tables, newest last
    v = _build(d, scope, group, wanted, memo)
    if memo is not None:
        while len(memo) > 4 * len(FIGURES + TABLES):
            memo.pop(next(iter(memo)))
    return v


def warm(ctx: AppContext) -> None:
    """Read the frames and build the page the Dashboards tab opens with (all data sets, humans, by run),
    so that the first visit after a start finds it made. The app runs this in a thread when it starts
    (``rrm_ui.ui.app.launch``); a visit before it ends waits for the same work instead of repeating it."""
    scope = Scope()
    _build(ctx.insights.dashboard(scope, "run"), scope, "run", OPEN, getattr(ctx, "views", None))


def _build(d: Dashboard, scope: Scope, group: str, sections: tuple[str, ...] = tuple(SECTIONS),
           memo: dict[Any, Any] | None = None) -> DashboardView:
    """The headline and the figures and tables of ``sections``. With ``memo``, a figure or table whose
    dashboard tables are the same objects as when it was last built (on this or an earlier version:
    a label changes no compute table) is taken from it instead of built again."""
    ref = _ref_name(scope.reference)
    flag = "has_gold" if scope.reference == GOLD else "labelled"  # a bar lists all the rows behind it
    base = Drill(dataset=scope.dataset)
    ref_base = base  # charts about one annotator's labels list that annotator's items
    if scope.reference not in (HUMANS, GOLD):
        ref_base = replace(base, annotator=scope.reference)
    drill_key = {"run": "run", "subset": "subset", "data set": "dataset", "annotator": "annotator",
                 "guideline": "guideline"}[group]  # fmt: skip

    def flips() -> pd.DataFrame:
        return d.flips.rename(columns={"judged_both_orders": "n"})

    def truncation() -> pd.DataFrame:
        return d.totals.rename(columns={"run": "group", "truncation_rate": "rate"})

    # each figure and table is built only when its section is asked for (the tables it reads are then computed)
    make_figure = {
        "agreement": lambda: charts.agreement_bars(d.by_group[group], title=f"Agreement with {ref} by {group} "
                                                   "(95% intervals)", x_title=group, reference=ref, drill_key=drill_key,
                                                   base=ref_base, flag=flag),
        "confusion": lambda: charts.confusion_heatmap(d.confusion, reference=ref, base=ref_base,
                                                      ref_key=scope.reference),
        "runs": lambda: charts.runs_bars(d.runs, base=base),
        "annotators": lambda: charts.annotator_kappa(d.annotator_pairs, base=base),
        "judges": lambda: charts.judge_kappa(d.judges, base=base),
        "flips": lambda: charts.rate_bars(flips(), title="Position inconsistency: verdict flips with the order, per "
                                          "run", x="run", y="items whose verdict flips (%)", count="inconsistent",
                                          total="n", base=base, flag="inconsistent",
                                          none="no item was judged in both orders in this scope"),
        "splits": lambda: charts.vote_split_bars(d.splits, base=base),
        "margin": lambda: charts.margin_bars(d.by_margin, reference=ref, base=ref_base, flag=flag),
        "tokens": lambda: charts.token_bars(d.tokens, base=base),
        "tokens_by_subset": lambda: charts.stat_bars(d.tokens_by_subset, title="Reasoning tokens by subset (median, "
                                                     "whisker to p90)", x="subset", y="reasoning tokens per judgment",
                                                     drill_key="subset", base=base, unit=" tokens"),
        "ttft": lambda: charts.stat_bars(d.ttft, title="Time to first token by backend (median, whisker to p90)",
                                         x="backend", y="seconds", drill_key="backend", base=base, unit=" s"),
        "latency": lambda: charts.stat_bars(d.latency, title="Latency per judgment by backend (median, whisker to "
                                            "p90)", x="backend", y="seconds", drill_key="backend", base=base,
                                            unit=" s"),
        "throughput": lambda: charts.stat_bars(d.throughput, title="Decode speed per judgment by backend (median, "
                                               "whisker to p90)", x="backend", y="tokens per second",
                                               drill_key="backend", base=base, unit=" tok/s"),
        "truncation": lambda: charts.rate_bars(truncation(), title="Truncation: judgments cut off by the thinking "
                                               "budget", x="run", y="truncated judgments (%)", count="truncated",
                                               total="judgments", base=base, flag="truncated",
                                               color=charts.COLORS["truncated"], none="no judgments in this scope"),
        "by_length": lambda: charts.length_accuracy(d.by_length, reference=ref, base=ref_base),
        "by_votes": lambda: charts.votes_accuracy(d.by_votes, reference=ref, base=ref_base),
        "compute": lambda: charts.compute_scatter(d.fixed_vs_adaptive, base=base),
    }  # fmt: skip
    make_table = {
        "agreement": lambda: _agreement_table(d.by_group[group], group),
        "runs": lambda: d.runs.drop(columns=["agreement_humans", "agreement_gold", "paper_score_gold"],
                                    errors="ignore"),  # fmt: skip
        "references": lambda: _references_table(d.by_reference),
        "annotators": lambda: _pairs_table(d.annotator_pairs),
        "judges": lambda: _judges_table(d.judges),
        "totals": lambda: _totals_table(d.totals),
        "adaptive_audit": lambda: _audit_table(d.adaptive_audit),
        "tokens_by_subset": lambda: d.tokens_by_subset.round(1),
        "tokens_by_status": lambda: d.tokens_by_status.round(1),
    }
    def made(kind: str, name: str, make: Any) -> Any:
        key = (kind, name, scope, group)
        hit = memo.get(key) if memo is not None else None
        if hit is not None and d.unchanged(hit[0]):
            memo[key] = memo.pop(key)  # newest last
            return hit[1]
        value, reads = d.tracked(make)
        if memo is not None:
            memo[key] = (reads, value)
        return value

    figures = {name: made("figure", name, lambda n=name: _said_if_empty(make_figure[n]()))
               for s in sections for name in SECTIONS[s][0]}  # fmt: skip
    tables = {name: made("table", name, lambda n=name: whole_counts(make_table[n]()))
              for s in sections for name in SECTIONS[s][1]}  # fmt: skip
    return DashboardView(headline(d), figures, tables)


TOO_FEW = "too few items for an interval"


def _has_points(fig: go.Figure) -> bool:
    for trace in fig.data:
        for key in ("x", "y", "z", "values"):
            values = getattr(trace, key, None)
            if values is not None and len(values) > 0:
                return True
    return False


def _said_if_empty(fig: go.Figure) -> go.Figure:
    """A chart without a single point says so instead of showing blank axes (one that says why already stays)."""
    if _has_points(fig) or fig.layout.annotations:
        return fig
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
    return charts.empty(title, "nothing to show in this scope: no judgment or label it needs")


def whole_counts(t: pd.DataFrame) -> pd.DataFrame:
    """Count columns as whole numbers: a float column whose every value is whole (a missing value made it
    float) becomes an integer column (missing stays empty), so 3 is not shown as 3.0."""
    out = t.copy()
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_float_dtype(col) and col.notna().any():
            known = col.dropna()
            if ((known % 1) == 0).all() and known.abs().max() < 2**53:
                out[c] = col.astype("Int64")
    return out


def _ref_name(reference: str) -> str:
    names = {HUMANS: "humans", GOLD: "gold", MAJORITY: "the human majority", ADJUDICATED: "the adjudicated labels"}
    return names.get(reference, f"annotator {reference}")


NOTHING_YET = (
    "**Nothing to show yet: the database holds no items.** Import a data set in the **Batch** tab (and judge it "
    "there, or attach labels and verdicts), or judge something in the **Judge** tab; label it in **Annotate**. "
    "Then come back: every chart fills in."
)


def headline(d: Dashboard) -> str:
    """The figures a researcher reads first, in one Markdown block."""
    ref = _ref_name(d.scope.reference)
    c = d.counts
    if not c["items"]:
        return NOTHING_YET if d.scope.dataset is None else (
            f"**{render.text_inline(d.scope.dataset)} has no items.** Choose another data set above.")  # fmt: skip
    a, k = d.headline["agreement"], d.headline["kappa"]
    return "  \n".join([  # Markdown hard line breaks: one figure group per line
        f"**Model vs {render.text_inline(ref)}**: agreement **{a.fmt(pct=True)}** · Cohen's kappa **{k.fmt()}** "
        f"({c['decisive']:,} decisive of {c['references']:,} references; ties and \"both bad\" are not decisive"
        + (f"; {c['not_compared']:,} on pairs of a list the run never compared, not counted" if c["not_compared"]
           else "") + ")",
        f"**Three-way** (A / B / tie references, the model's ties scored): agreement "
        f"**{d.three_way['agreement'].fmt(pct=True)}** · kappa **{d.three_way['kappa'].fmt()}** · **human majority**: "
        f"{c['labelled_comparisons']:,} labelled comparisons, {c['no_majority']:,} without a majority (not counted "
        "against it)",
        f"**Between annotators**: Krippendorff's alpha **{d.alpha.fmt()}** (n = items labelled by two or more) · "
        f"**position inconsistency** **{d.flip.fmt(pct=True)}** of items judged in both orders",
        f"In scope: {c['items']:,} items · {c['runs']:,} runs · {c['judgments']:,} judgments · {c['labels']:,} labels "
        f"by {c['annotators']:,} annotators. 95% intervals: Wilson for shares, Cohen's large-sample SE for kappa, "
        "bootstrap over items for alpha (docs/dashboards.md).",
    ])  # fmt: skip


def _agreement_table(t: pd.DataFrame, group: str) -> pd.DataFrame:
    out = pd.DataFrame({
        group: t["group"], "decisive references": t["decisive"], "agree": t["agree"],
        "agreement": [_interval(a, lo, hi, True) for a, lo, hi in
                      t[["agreement", "agreement_low", "agreement_high"]].itertuples(index=False)],
        "kappa": [_interval(k, lo, hi, False) for k, lo, hi in
                  t[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)],
    })  # fmt: skip
    return out


def _interval(v: float, lo: float, hi: float, pct: bool) -> str:
    """A figure with its 95% interval; an interval of zero width (or none) says there were too few items."""
    if pd.isna(v):
        return "n/a"
    text = f"{v:.1%}" if pct else f"{v:.3f}"
    if pd.isna(lo) or pd.isna(hi) or hi - lo < 1e-12:
        return f"{text} ({TOO_FEW})"
    return f"{text} [{lo:.1%}, {hi:.1%}]" if pct else f"{text} [{lo:.3f}, {hi:.3f}]"


def _references_table(t: pd.DataFrame) -> pd.DataFrame:
    """Every reference per run: decisive and three-way agreement and kappa, with the counts left out."""

    def col(name: str, pct: bool) -> list[str]:
        return [_interval(v, lo, hi, pct) for v, lo, hi in t[[name, f"{name}_low", f"{name}_high"]].itertuples(
            index=False)]  # fmt: skip

    return pd.DataFrame({
        "reference": t["reference"], "run": t["run"], "decisive": t["decisive"], "agreement": col("agreement", True),
        "kappa": col("kappa", False), "A/B/tie": t["three_way"], "three-way agreement": col("agreement3", True),
        "three-way kappa": col("kappa3", False), "not compared": t["not_compared"], "no majority": t["no_majority"],
    })  # fmt: skip


def _judges_table(j: pd.DataFrame) -> pd.DataFrame:
    if j.empty:
        return pd.DataFrame(columns=["run 1", "run 2", "shared items", "agreement", "kappa", "both decided",
                                     "agreement when both decided"])  # fmt: skip
    return pd.DataFrame({
        "run 1": j["run_1"], "run 2": j["run_2"], "shared items": j["n"],
        "agreement": [_interval(a, lo, hi, True) for a, lo, hi in j[["agreement", "agreement_low",
                                                                     "agreement_high"]].itertuples(index=False)],
        "kappa": [_interval(k, lo, hi, False) for k, lo, hi in j[["kappa", "kappa_low", "kappa_high"]].itertuples(
            index=False)],
        "both decided": j["both_decided"],
        "agreement when both decided": [f"{a / n:.1%}" if n else "n/a" for a, n in zip(j["agree_decided"],
                                                                                       j["both_decided"], strict=True)],
    })  # fmt: skip


def _pairs_table(p: pd.DataFrame) -> pd.DataFrame:
    if p.empty:
        return pd.DataFrame(columns=["annotator 1", "annotator 2", "items", "agreement", "kappa"])
    return pd.DataFrame({
        "annotator 1": p["rater_1"], "annotator 2": p["rater_2"], "items": p["n"],
        "agreement": [_interval(a, lo, hi, True) for a, lo, hi in
                      p[["agreement", "agreement_low", "agreement_high"]].itertuples(index=False)],
        "kappa": [_interval(k, lo, hi, False) for k, lo, hi in
                  p[["kappa", "kappa_low", "kappa_high"]].itertuples(index=False)],
    }).sort_values("items", ascending=False)  # fmt: skip


def _audit_table(t: pd.DataFrame) -> pd.DataFrame:
    """Each adaptive run against its full-budget reference run (analysis.compute.adaptive_audit)."""
    out = t.copy()
    for c in ("tokens_per_item", "reference_tokens_per_item"):
        out[c] = out[c].round(1)
    for c in ("tokens_saved", "same_choice", "agreement", "reference_agreement", "agreement_lost"):
        out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    names = {"reference_run": "full-budget run", "tokens_per_item": "tokens per item",
             "reference_tokens_per_item": "full-budget tokens per item", "tokens_saved": "tokens saved",
             "same_choice": "same choice as full budget", "labels": "against", "decisive": "labelled",
             "reference_agreement": "full-budget agreement", "agreement_lost": "agreement lost"}  # fmt: skip
    return out.rename(columns=names)


def _totals_table(t: pd.DataFrame) -> pd.DataFrame:
    cols = ["run", "backend", "compute", "items", "judgments", "prompt_tokens", "completion_tokens", "reasoning_tokens",
            "generation_s", "truncated", "forced", "no_verdict", "tokens_per_item"]  # fmt: skip
    out = t[[c for c in cols if c in t.columns]].copy()
    for c in ("generation_s", "tokens_per_item"):
        out[c] = out[c].round(1)
    names = {"generation_s": "generation (s, summed)", "tokens_per_item": "tokens per item", "no_verdict": "no verdict",
             "prompt_tokens": "prompt tokens", "completion_tokens": "completion tokens",
             "forced": "forced closes",
             "reasoning_tokens": "reasoning tokens"}  # fmt: skip
    return out.rename(columns=names)


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
        reference = gr.Dropdown([HUMANS, MAJORITY, GOLD, ADJUDICATED], value=HUMANS, label="Reference",
                                elem_id="dash-reference")  # fmt: skip
        group_by = gr.Radio(list(GROUP_BY), value="run", label="Agreement by", elem_id="dash-group")
        go_btn = gr.Button("Refresh", elem_id="dash-refresh", scale=0)
    head = gr.Markdown(elem_id="dash-headline")
    plots: dict[str, gr.Plot] = {}
    tables: dict[str, gr.Dataframe] = {}

    def plot(name: str) -> None:
        plots[name] = gr.Plot(elem_id=f"dash-{name}", elem_classes=["rrm-chart"], show_label=False)

    def table(name: str, label: str) -> None:
        tables[name] = gr.Dataframe(label=label, interactive=False, wrap=True, elem_id=f"dash-table-{name}")

    # sections that fold (the summary above stays): the first two open, the rest a click away and
    # computed when opened
    acc: dict[str, gr.Accordion] = {}

    def section(name: str, title: str) -> gr.Accordion:
        acc[name] = gr.Accordion(title, open=name in OPEN, elem_id=f"dash-sec-{name}")
        return acc[name]

    with section("agreement", "Agreement with the reference"):
        with gr.Row():
            plot("agreement")
            plot("confusion")
        table("agreement", "Model vs reference with 95% intervals")
        table("references", "Every reference per run: decisive and three-way (A / B / tie) agreement and kappa")
    with section("runs", "Runs, flips and vote splits"):
        with gr.Row():
            plot("runs")
            plot("flips")
        table("runs", "Runs side by side")
        with gr.Row():
            plot("splits")
            plot("margin")
    with section("raters", "Annotators and judges"):
        with gr.Row():
            plot("annotators")
        table("annotators", "Annotator pairs (items labelled by both)")
        with gr.Row():
            plot("judges")
        table("judges", "Judge vs judge (items both judged; a heat-map cell lists the items they disagree on)")
    with section("compute", "Compute: tokens, time, truncation"):
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
    with section("accuracy", "Accuracy by length, by votes, fixed vs adaptive compute"):
        with gr.Row():
            plot("by_length")
            plot("by_votes")
        with gr.Row():
            plot("compute")
        table("adaptive_audit", "Adaptive runs against their full-budget run on the same items: tokens saved, "
              "agreement lost")
    from rrm_ui.ui.tabs import sweeps  # the Test-time scaling section (compute sweeps), folded and lazy

    sweeps.render_section(ctx, dataset, reference, go_btn)
    drill_input = gr.Textbox(elem_id="drill-input", elem_classes=["rrm-hidden"], show_label=False, container=False)
    drill_go = gr.Button("drill", elem_id="drill-go", elem_classes=["rrm-hidden"])

    opened = gr.State(list(OPEN))  # the sections open in this browser tab
    outputs = [head, *plots.values(), *tables.values()]

    def values(v: DashboardView) -> list[Any]:
        """The outputs: what ``v`` built, and no change (``gr.skip``) for the folded sections it did not."""
        return [v.headline, *(v.figures[n] if n in v.figures else gr.skip() for n in plots),
                *(v.tables[n] if n in v.tables else gr.skip() for n in tables)]  # fmt: skip

    def update(ds, rs, ref, grp, open_now, request: gr.Request):  # noqa: ANN001, ANN202
        choices = ctx.insights.choices()
        v = view(ctx, request, scope_of(ds, rs, ref), grp, tuple(open_now or OPEN))
        menus = [
            gr.update(choices=[ALL, *choices["datasets"]]),
            gr.update(choices=choices["runs"]),
            gr.update(choices=choices["references"]),
        ]
        return [*menus, *values(v)]

    inputs = [dataset, runs, reference, group_by, opened]
    all_out = [dataset, runs, reference, *outputs]
    for trigger in (go_btn.click, dataset.input, reference.input, group_by.input, runs.input):
        trigger(update, inputs, all_out, show_progress="minimal")

    for name, accordion in acc.items():

        def expand(ds, rs, ref, grp, open_now, request: gr.Request, name: str = name):  # noqa: ANN001, ANN202
            now = [s for s in SECTIONS if s in {*(open_now or ()), name}]
            return [now, *values(view(ctx, request, scope_of(ds, rs, ref), grp, (name,)))]

        def collapse(open_now, name: str = name):  # noqa: ANN001, ANN202
            return [s for s in (open_now or ()) if s != name]

        accordion.expand(expand, inputs, [opened, *outputs], show_progress="minimal")
        accordion.collapse(collapse, [opened], [opened], show_progress="hidden")
    return DashboardTab(drill_input, drill_go, (update, inputs, all_out))
