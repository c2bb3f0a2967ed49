"""Plotly figures for the dashboards: pure functions of the tables in :mod:`rrm_ui.analysis`.

Every figure has a title, labelled axes with units, and hover text with the counts behind each
bar. Every point carries ``customdata``: the JSON of the explorer filter (a typed
:class:`~rrm_ui.analysis.explorer.Drill`, narrowed from the dashboard's scope) that lists the rows
behind it; the page's script turns a click into that filter.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from rrm_ui.analysis.explorer import Drill
from rrm_ui.analysis.frames import HUMAN_CHOICES, MODEL_CHOICES, bucket_labels

COLORS = {"ok": "#2e7d32", "truncated": "#ef6c00", "no_verdict": "#8e24aa", "invalid": "#6d4c41", "error": "#c62828"}
PALETTE = ["#1565c0", "#ef6c00", "#2e7d32", "#c62828", "#6a1b9a", "#00838f", "#9e9d24", "#4e342e"]
# A few explicit settings instead of a named template: applying "plotly_white" to each figure took about half
# of a page's figure building and 100 KB of its JSON (docs/benchmarks.md).
_AXIS = {"gridcolor": "#e5e7eb", "zerolinecolor": "#d1d5db", "linecolor": "#9ca3af", "automargin": True}
LAYOUT = {"height": 340, "margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "template": "none",
          "paper_bgcolor": "white", "plot_bgcolor": "white", "colorway": PALETTE, "font": {"size": 12},
          "hoverlabel": {"align": "left"}, "xaxis": _AXIS, "yaxis": _AXIS}  # fmt: skip


def _drill(base: Drill, **extra: Any) -> str:
    """The JSON of ``base`` narrowed by ``extra`` (typed: an unknown field raises here, not in the page)."""
    return base.narrow(**extra).to_json()


def _fig(title: str, x: str, y: str, **layout: Any) -> go.Figure:
    """A figure with the common layout, its title and axis titles; ``layout`` adds settings, with
    ``xaxis_...`` / ``yaxis_...`` for the axes (``yaxis_range=[0, 105]``).

    The whole layout goes to the constructor in one dict: plotly validates it once, about ten times
    faster than ``update_layout`` with the same settings (docs/benchmarks.md)."""
    axes: dict[str, dict[str, Any]] = {"xaxis": {**_AXIS, "title": {"text": x}},
                                       "yaxis": {**_AXIS, "title": {"text": y}}}  # fmt: skip
    top: dict[str, Any] = {}
    for key, value in layout.items():
        axis, sep, prop = key.partition("_")
        if sep and axis in axes:
            axes[axis][prop] = value
        else:
            top[key] = value
    return go.Figure(layout={**LAYOUT, "title": {"text": title, "x": 0.01}, **axes, **top})


def empty(title: str, why: str) -> go.Figure:
    """A figure that says why it has nothing to show (a message in place of axes)."""
    note = {"text": why, "showarrow": False, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
            "font": {"size": 14}}  # fmt: skip
    return _fig(title, "", "", annotations=[note], xaxis_visible=False, yaxis_visible=False)


def _pct_errors(df: pd.DataFrame, value: str, low: str, high: str) -> dict[str, Any]:
    return {"type": "data", "symmetric": False, "array": (df[high] - df[value]) * 100,
            "arrayminus": (df[value] - df[low]) * 100, "thickness": 1.2}  # fmt: skip


def agreement_bars(
    table: pd.DataFrame,
    *,
    title: str,
    x_title: str,
    reference: str,
    drill_key: str | None,
    base: Drill,
    flag: str,
) -> go.Figure:
    """Agreement (%) per group with its 95% interval; a click lists the group's rows (``flag``: with a reference)."""
    t = table[table["decisive"] > 0]
    if t.empty:
        return empty(title, f"no decisive {reference} references in this scope")
    fig = _fig(title, x_title, f"agreement with {reference} (%)", yaxis_range=[0, 105])
    custom = [_drill(base, **({drill_key: g} if drill_key else {}), flags=[flag]) for g in t["group"]]
    hover = [f"{g}<br>agreement {a:.1%} [{lo:.1%}, {hi:.1%}]<br>kappa {k:.2f} [{kl:.2f}, {kh:.2f}]<br>"
             f"{ag} of {n} decisive references" for g, a, lo, hi, k, kl, kh, ag, n in
             t[["group", "agreement", "agreement_low", "agreement_high", "kappa", "kappa_low", "kappa_high", "agree",
                "decisive"]].itertuples(index=False)]  # fmt: skip
    fig.add_bar(x=t["group"].astype(str), y=t["agreement"] * 100, error_y=_pct_errors(t, "agreement", "agreement_low",
                "agreement_high"), customdata=custom, hovertext=hover, hoverinfo="text",
                text=[f"n={n}" for n in t["decisive"]], textposition="inside", marker_color=PALETTE[0])  # fmt: skip
    return fig


def confusion_heatmap(cm: pd.DataFrame, *, reference: str, base: Drill, ref_key: str) -> go.Figure:
    title = f"Confusion: {reference} (rows) vs the model (columns)"
    if cm.to_numpy().sum() == 0:
        return empty(title, f"no {reference} references in this scope")
    fig = _fig(title, "the model's choice", f"{reference}'s choice", height=320)
    z = cm.loc[list(HUMAN_CHOICES), list(MODEL_CHOICES)]
    custom = [[_drill(base, reference=ref_key, ref_choice=r, model_choice=c) for c in MODEL_CHOICES]
              for r in HUMAN_CHOICES]  # fmt: skip
    fig.add_heatmap(z=z.to_numpy(), x=list(MODEL_CHOICES), y=list(HUMAN_CHOICES), customdata=custom,
                    colorscale="Blues", text=z.to_numpy(), texttemplate="%{text}", showscale=False,
                    hovertemplate="reference %{y}, model %{x}: %{z} comparisons<extra></extra>")  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


def annotator_kappa(pairs: pd.DataFrame, *, base: Drill) -> go.Figure:
    title = "Cohen's kappa between annotators (items labelled by both)"
    if pairs.empty:
        return empty(title, "no item has been labelled by two annotators")
    names = sorted(set(pairs["rater_1"]) | set(pairs["rater_2"]))
    pos = {n: k for k, n in enumerate(names)}
    z = [[None] * len(names) for _ in names]
    text = [[""] * len(names) for _ in names]
    custom = [[_drill(base, annotator=names[r]) for _ in names] for r in range(len(names))]
    for r1, r2, n, k, a in pairs[["rater_1", "rater_2", "n", "kappa", "agreement"]].itertuples(index=False):
        for x, y in ((r1, r2), (r2, r1)):
            z[pos[y]][pos[x]] = k
            text[pos[y]][pos[x]] = f"{y} vs {x}: kappa {k:.2f}, agreement {a:.0%}, {n} items"
    fig = _fig(title, "annotator", "annotator", height=max(320, 22 * len(names) + 120))
    fig.add_heatmap(z=z, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu", customdata=custom, hovertext=text,
                    hoverinfo="text", colorbar={"title": "kappa"})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


def judge_kappa(judges: pd.DataFrame, *, base: Drill) -> go.Figure:
    """Cohen's kappa between every two runs on the items both judged; a cell lists the items where the
    row's run and the column's run chose differently (the row's run's rows)."""
    title = "Judge vs judge: Cohen's kappa between runs (items both judged)"
    if judges.empty:
        return empty(title, "no two runs have judged the same item in this scope")
    names = sorted(set(judges["run_1"]) | set(judges["run_2"]))
    pos = {n: k for k, n in enumerate(names)}
    z: list[list[float | None]] = [[None] * len(names) for _ in names]
    text = [[f"{n}" for _ in names] for n in names]
    custom = [[_drill(base, run=names[r]) for _ in names] for r in range(len(names))]
    for r1, r2, n, agree, k, a in judges[["run_1", "run_2", "n", "agree", "kappa", "agreement"]].itertuples(
            index=False):  # fmt: skip
        for y, x in ((r1, r2), (r2, r1)):
            z[pos[y]][pos[x]] = None if pd.isna(k) else float(k)
            kappa = "n/a" if pd.isna(k) else f"{k:.2f}"
            text[pos[y]][pos[x]] = f"{y} vs {x}: kappa {kappa}, agreement {a:.0%} ({agree} of {n} items)"
            if agree < n:  # the items they disagree on, as rows of the row's run
                custom[pos[y]][pos[x]] = _drill(base, run=y, versus=x)
    fig = _fig(title, "run", "run", height=max(320, 22 * len(names) + 120))
    fig.add_heatmap(z=z, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu", customdata=custom, hovertext=text,
                    hoverinfo="text", colorbar={"title": "kappa"})  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    if all(v is None for row in z for v in row):
        fig.add_annotation(text="kappa is undefined for every pair (each run used one category)", showarrow=False,
                           x=0.5, y=1.08, xref="paper", yref="paper")  # fmt: skip
    return fig


def rate_bars(
    table: pd.DataFrame,
    *,
    title: str,
    x: str,
    y: str,
    count: str,
    total: str,
    base: Drill,
    flag: str,
    color: str = PALETTE[1],
    none: str = "nothing to show in this scope",
) -> go.Figure:
    """A share per group (e.g. the flip rate per run); a click lists the group's rows with ``flag``; ``none``
    says why there is nothing to show (no group with a ``total``)."""
    table = table[table[total].fillna(0) > 0]  # a run with no judgments has no rate
    if table.empty:
        return empty(title, none)
    fig = _fig(title, x, y, yaxis_range=[0, 105])
    custom = [_drill(base, run=g, flags=[flag]) for g in table["group"]]
    hover = [f"{g}: {k} of {n} ({k / n:.1%})" if n else f"{g}: none" for g, k, n in
             table[["group", count, total]].itertuples(index=False)]  # fmt: skip
    fig.add_bar(x=table["group"].astype(str), y=table["rate"] * 100, customdata=custom, hovertext=hover,
                hoverinfo="text", marker_color=color, text=[f"{k}/{n}" for k, n in zip(table[count], table[total],
                strict=True)], textposition="inside")  # fmt: skip
    return fig


def vote_split_bars(splits: pd.DataFrame, *, base: Drill) -> go.Figure:
    title = "Vote splits: votes for the leader - votes for the other"
    if splits.empty:
        return empty(title, "no run with votes in this scope")
    order = splits.drop_duplicates("split").sort_values(["total", "lead"], ascending=[True, False])["split"].tolist()
    fig = _fig(title, "vote split (leader-other)", "items", barmode="group")
    for k, (run, g) in enumerate(splits.groupby("run", sort=True)):
        fig.add_bar(x=g["split"], y=g["items"], name=str(run), marker_color=PALETTE[k % len(PALETTE)],
                    customdata=[_drill(base, run=run, split=s) for s in g["split"]],
                    hovertemplate=f"{run}<br>split %{{x}}: %{{y}} items<extra></extra>")  # fmt: skip
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    return fig


def margin_bars(by_margin: pd.DataFrame, *, reference: str, base: Drill, flag: str) -> go.Figure:
    title = f"Agreement with {reference} by vote margin"
    if by_margin.empty:
        return empty(title, "no voted comparison has a decisive reference in this scope")
    fig = _fig(title, "vote margin |votes i - votes j| (votes)", f"agreement with {reference} (%)",
               yaxis_range=[0, 105])  # fmt: skip
    fig.add_bar(x=by_margin["margin"].astype(str), y=by_margin["agreement"] * 100,
                error_y=_pct_errors(by_margin, "agreement", "low", "high"), marker_color=PALETTE[0],
                customdata=[_drill(base, margin=int(m), flags=[flag]) for m in by_margin["margin"]],
                text=[f"n={n}" for n in by_margin["n"]], textposition="inside",
                hovertemplate="margin %{x}: %{y:.1f}% agreement (%{text})<extra></extra>")  # fmt: skip
    return fig


def runs_bars(runs: pd.DataFrame, *, base: Drill) -> go.Figure:
    title = "Runs side by side: agreement with humans and with gold"
    if runs.empty:
        return empty(title, "no runs in this scope")
    if runs[["agreement_humans", "agreement_gold"]].isna().all().all():
        return empty(title, "no run has a decisive human or gold reference in this scope")
    fig = _fig(title, "run", "agreement (%)", barmode="group", yaxis_range=[0, 105])
    for k, (col, ref, flag) in enumerate((("agreement_humans", "humans", "labelled"),
                                          ("agreement_gold", "gold", "has_gold"))):  # fmt: skip
        fig.add_bar(x=runs["run"], y=runs[col] * 100, name=f"vs {ref}", marker_color=PALETTE[k],
                    customdata=[_drill(base, run=r, flags=[flag]) for r in runs["run"]],
                    hovertemplate=f"%{{x}} vs {ref}: %{{y:.1f}}%<extra></extra>")  # fmt: skip
    return fig


def token_bars(hist: pd.DataFrame, *, base: Drill) -> go.Figure:
    title = "Reasoning tokens per judgment, by verdict status"
    if hist.empty:
        return empty(title, "no judgments in this scope")
    fig = _fig(title, "reasoning tokens per judgment (bucket)", "judgments", barmode="stack")
    for status, g in hist.groupby("status", sort=True):
        fig.add_bar(x=g["bucket"], y=g["judgments"], name=str(status), marker_color=COLORS.get(str(status)),
                    customdata=[_drill(base, bucket=b, status=status) for b in g["bucket"]],
                    hovertemplate=f"{status}, %{{x}} tokens: %{{y}} judgments<extra></extra>")  # fmt: skip
    fig.update_xaxes(categoryorder="array", categoryarray=bucket_labels())
    return fig


def stat_bars(
    table: pd.DataFrame,
    *,
    title: str,
    x: str,
    y: str,
    drill_key: str,
    base: Drill,
    unit: str = "",
) -> go.Figure:
    """Median per group with whiskers up to the 90th percentile."""
    if table.empty:
        return empty(title, "nothing to show in this scope")
    fig = _fig(title, x, y)
    custom = [_drill(base, **{drill_key: g}) for g in table["group"]]
    hover = [f"{g}: median {md:,.2f}{unit}, mean {mn:,.2f}{unit}, p90 {p90:,.2f}{unit}, p99 {p99:,.2f}{unit}, "
             f"n={n:,}" for g, n, mn, md, p90, p99 in
             table[["group", "count", "mean", "median", "p90", "p99"]].itertuples(index=False)]  # fmt: skip
    fig.add_bar(x=table["group"].astype(str), y=table["median"], customdata=custom, hovertext=hover,
                hoverinfo="text", marker_color=PALETTE[2],
                error_y={"type": "data", "symmetric": False, "array": table["p90"] - table["median"],
                         "arrayminus": [0] * len(table)})  # fmt: skip
    return fig


def length_accuracy(by_length: pd.DataFrame, *, reference: str, base: Drill) -> go.Figure:
    title = f"Single samples: agreement with {reference} by reasoning length"
    if by_length.empty:
        return empty(title, "no sample has a decisive reference in this scope")
    fig = _fig(title, "reasoning tokens of the sample (bucket)", f"agreement with {reference} (%)",
               yaxis_range=[0, 105])  # fmt: skip
    fig.add_bar(x=by_length["bucket"], y=by_length["agreement"] * 100, marker_color=PALETTE[0],
                error_y=_pct_errors(by_length, "agreement", "low", "high"),
                customdata=[_drill(base, bucket=b) for b in by_length["bucket"]],
                text=[f"n={n}" for n in by_length["n"]], textposition="inside",
                hovertext=[f"{b} tokens: {a:.1%} of {n} samples agree; {t:.0%} truncated" for b, a, n, t in
                           by_length[["bucket", "agreement", "n", "truncated"]].itertuples(index=False)],
                hoverinfo="text")  # fmt: skip
    fig.update_xaxes(categoryorder="array", categoryarray=bucket_labels())
    return fig


def votes_accuracy(by_votes: pd.DataFrame, *, reference: str, base: Drill) -> go.Figure:
    title = f"Majority of the first m stored samples: agreement with {reference}"
    if by_votes.empty:
        return empty(title, "no run with samples and decisive references in this scope")
    fig = _fig(title, "samples per comparison (m)", f"agreement with {reference} (%)", yaxis_range=[0, 105])
    for k, (run, g) in enumerate(by_votes.groupby("run", sort=True)):
        fig.add_scatter(x=g["votes"], y=g["agreement"] * 100, mode="lines+markers", name=str(run),
                        line_color=PALETTE[k % len(PALETTE)], customdata=[_drill(base, run=run)] * len(g),
                        error_y=_pct_errors(g, "agreement", "low", "high"),
                        hovertext=[f"{run}, first {m} samples: {a:.1%} (n={n})" for m, a, n in
                                   g[["votes", "agreement", "n"]].itertuples(index=False)],
                        hoverinfo="text")  # fmt: skip
    fig.update_xaxes(dtick=1)
    return fig


def compute_scatter(table: pd.DataFrame, *, base: Drill) -> go.Figure:
    title = "Fixed vs adaptive compute: tokens spent per item and agreement reached"
    t = table.dropna(subset=["agreement"])
    if t.empty:
        return empty(title, "no judge run with references in this scope")
    fig = _fig(title, "completion tokens per item (tokens)", "agreement (%)", yaxis_range=[0, 105])
    for k, (adaptive, g) in enumerate(t.groupby(t["compute"].str.startswith("adaptive"), sort=True)):
        fig.add_scatter(x=g["tokens per item"], y=g["agreement"] * 100, mode="markers+text", text=g["run"],
                        textposition="top center", name="adaptive" if adaptive else "fixed",
                        marker={"size": 12, "color": PALETTE[k], "symbol": "diamond" if adaptive else "circle"},
                        customdata=[_drill(base, run=r) for r in g["run"]],
                        hovertext=[f"{r} ({c}, vs {ref}): {a:.1%} at {tk:,.0f} tokens per item" for r, c, tk, a, ref in
                                   g[["run", "compute", "tokens per item", "agreement", "reference"]].itertuples(
                                       index=False)], hoverinfo="text")  # fmt: skip
    return fig
