"""The Dashboards tab's *Test-time scaling* section: a compute sweep's agreement against tokens spent.

:func:`sweep_view` is a plain function (tests call it without a browser): the sweeps of the scope's data
set (services/sweep.py finds them from the runs), the chosen one's points and chart (analysis/sweep.py).
:func:`render_section` adds the folded section to the Dashboards tab; like the tab's other folded
sections it computes nothing until it is opened, then follows the data set, the reference and Refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from rrm_ui.analysis import charts
from rrm_ui.analysis.explorer import Drill
from rrm_ui.analysis.references import HUMANS
from rrm_ui.services import sweep as sweeps
from rrm_ui.ui.context import AppContext, RequestLike

ALL = "(all data sets)"  # the Dashboards tab's own "all" (dashboard.ALL)
TITLE = "Test-time scaling: agreement against tokens spent (compute sweeps)"


@dataclass(frozen=True)
class SweepView:
    choices: list[tuple[str, str]]  # (menu label, sweep name), newest first
    chosen: str | None
    figure: go.Figure
    table: pd.DataFrame  # the points as shown
    note: str  # Markdown
    points: pd.DataFrame | None = None  # the points as computed (analysis.sweep.POINT_COLUMNS)


def sweep_view(ctx: AppContext, request: RequestLike | None, dataset: str | None, reference: str | None,
               chosen: str | None) -> SweepView:  # fmt: skip
    """The sweeps of ``dataset`` (None or all: every data set's) and the points of ``chosen`` (default the
    newest), scored against ``reference`` (humans: the humans' labels where the runs have decisive ones,
    else gold, as the chart's axis then says)."""
    ctx.user(request)
    found = sweeps.sweeps_of(ctx.repo, None if not dataset or dataset == ALL else dataset)
    choices = [(s.describe(), s.name) for s in found]
    pick = next((s for s in found if s.name == chosen), found[0] if found else None)
    if pick is None:
        why = ("no compute sweep in this scope: start one in the Batch tab (Compute sweep) or with rrm-ui sweep; "
               "runs of a data set that differ only in thinking budget and votes form one")  # fmt: skip
        return SweepView(choices, None, charts.empty(TITLE, why), pd.DataFrame(), "")
    ref = sweeps.AUTO if (reference or HUMANS) == HUMANS else reference
    points = sweeps.sweep_points(ctx.insights.frames(), pick, ref)
    figure = points.figure(Drill(dataset=pick.dataset.name))
    note = (f"**{len(pick.runs)} runs** (one per thinking budget; the fewer votes read from the same samples), "
            f"scored against **{points.reference}**; an even split of votes is undecided and agrees with nothing. "
            "Intervals: Wilson 95%. Tokens: completion tokens of the counted samples per pair "
            "(docs/sweep.md).")  # fmt: skip
    return SweepView(choices, pick.name, figure, points_table(points.table), note, points.table)


def points_table(t: pd.DataFrame) -> pd.DataFrame:
    """The points as the page shows them: the interval in one column, tokens rounded."""
    if t.empty:
        return pd.DataFrame(columns=["budget", "votes", "tokens per pair", "agreement", "references", "undecided",
                                     "truncated", "run"])  # fmt: skip
    return pd.DataFrame({
        "budget": t["budget"], "votes": t["votes"], "tokens per pair": t["tokens_per_pair"].round(1),
        "agreement": ["n/a" if n == 0 else f"{a:.1%} [{lo:.1%}, {hi:.1%}]" for a, lo, hi, n in
                      t[["agreement", "low", "high", "n"]].itertuples(index=False)],
        "references": t["n"], "undecided": t["undecided"],
        "truncated": ["" if pd.isna(x) else f"{x:.0%}" for x in t["truncated"]], "run": t["run"],
    })  # fmt: skip


def render_section(ctx: AppContext, dataset: gr.Dropdown, reference: gr.Dropdown, refresh: gr.Button) -> None:
    """The folded section, inside the Dashboards tab's layout; built when opened, then on the tab's changes."""
    with gr.Accordion(TITLE, open=False, elem_id="dash-sec-sweep") as section:
        gr.Markdown("Sequential (more thinking: the thinking budget, one vote) and parallel (more votes at one "
                    "budget) test-time compute on one chart, for your own data. A sweep is started in the **Batch** "
                    "tab (*Compute sweep*) or with `rrm-ui sweep`.")  # fmt: skip
        chosen = gr.Dropdown([], label="Sweep", elem_id="dash-sweep-choice")
        plot = gr.Plot(elem_id="dash-sweep", elem_classes=["rrm-chart"], show_label=False)
        note = gr.Markdown(elem_id="dash-sweep-note")
        table = gr.Dataframe(label="Points", interactive=False, wrap=True, elem_id="dash-table-sweep")
    opened = gr.State(False)
    outputs = [chosen, plot, note, table]

    def values(v: SweepView) -> list[Any]:
        return [gr.update(choices=v.choices, value=v.chosen), v.figure, v.note, v.table]

    def show(ds, ref, name, request: gr.Request) -> list[Any]:  # noqa: ANN001 - Gradio's values
        return values(sweep_view(ctx, request, ds, ref, name))

    def follow(ds, ref, name, is_open, request: gr.Request) -> list[Any]:  # noqa: ANN001
        if not is_open:
            return [gr.skip()] * len(outputs)  # folded: nothing computed
        return show(ds, ref, name, request)

    section.expand(lambda: True, None, opened, show_progress="hidden").then(
        show, [dataset, reference, chosen], outputs, show_progress="minimal")  # fmt: skip
    section.collapse(lambda: False, None, opened, show_progress="hidden")
    chosen.input(show, [dataset, reference, chosen], outputs, show_progress="minimal")
    for trigger in (refresh.click, dataset.input, reference.input):
        trigger(follow, [dataset, reference, chosen, opened], outputs, show_progress="minimal")


__all__ = ["SweepView", "points_table", "render_section", "sweep_view"]
