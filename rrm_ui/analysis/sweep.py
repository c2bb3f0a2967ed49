"""A compute sweep: agreement with the reference against the tokens spent, over thinking budgets and votes.

A sweep is a set of runs of one data set whose specs differ only in the thinking budget
(``Sampling.max_tokens``) and the votes per order (``Compute.votes``): one run per budget, judged with
the largest vote count. A smaller vote count ``v`` is read from the same samples: the samples numbered
below ``v`` of each ordered pair (votes 1 = sample 0, votes 2 = samples 0 and 1, ...; with both orders,
those of each order), which are the samples a run with ``v`` votes and the same seed draws. So a grid of
B budgets x V vote counts costs B runs.

For each (budget, votes) point (:func:`sweep_points`):

- **agreement** with the decisive references (A / B) on the pairs the run compared, with the Wilson
  interval of :func:`~rrm_ui.analysis.metrics.wilson`; the majority of the counted samples' last tries
  decides; an even split (or no valid vote) is ``none``, which agrees with no reference (the
  dashboards' rule for an undecided pair: :mod:`rrm_ui.analysis.frames`, and
  :func:`~rrm_ui.analysis.compute.accuracy_by_votes`'s for its prefixes);
- **tokens per pair**: the completion tokens of the counted samples (every try: a failed try cost
  tokens too) summed per compared pair, averaged over the pairs the run judged.

:func:`sweep_figure` draws them on one chart (tokens on a log axis): the *sequential* series (one vote,
budget by budget) and, from each budget's one-vote point, its *parallel* series (more votes at that budget).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from rrm_ui.analysis.charts import PALETTE, _drill, _fig, _pct_errors, empty
from rrm_ui.analysis.explorer import Drill
from rrm_ui.analysis.metrics import wilson

POINT_COLUMNS = ["budget", "votes", "run", "pairs", "tokens_per_pair", "n", "agree", "agreement", "low", "high",
                 "undecided", "truncated"]  # fmt: skip
_KEYS = ["item_id", "i", "j"]


def sweep_points(
    judgments: pd.DataFrame,
    refs: pd.DataFrame,
    runs: pd.DataFrame,
    vote_counts: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per (budget, votes): see the module docstring. Columns :data:`POINT_COLUMNS`.

    ``judgments``: :attr:`~rrm_ui.analysis.frames.Frames.judgments` (``run_id``, ``item_id``, ``i``, ``j``,
    ``sample``, ``choice``, ``retried``, ``completion_tokens``, ``status``); ``refs``: the reference's rows
    of :attr:`~rrm_ui.analysis.frames.Frames.refs` (``decisive``, ``ref_choice``); ``runs``: the sweep's
    runs, one per budget (``run_id``, ``run``, ``budget``, ``votes``: the run's votes per order).
    ``vote_counts``: the counts to read (each at most a run's votes; larger ones are left out for that
    run); None: :func:`doubling` of the run's votes (1, 2, 4, ... and the run's votes). A run without
    judgments has no points. ``undecided``: compared pairs whose counted samples have no majority (a tie
    or no valid vote); ``truncated``: the share of the counted samples' last tries that were cut off by
    the budget.
    """
    rows: list[dict[str, Any]] = []
    decisive = refs[refs["decisive"]][["run_id", *_KEYS, "ref_choice"]]
    for run in runs.sort_values("budget").itertuples(index=False):
        mine = judgments[judgments["run_id"] == run.run_id]
        ref = decisive[decisive["run_id"] == run.run_id]
        counts = doubling(int(run.votes)) if vote_counts is None else sorted({int(v) for v in vote_counts})
        for v in counts:
            if v > int(run.votes):
                continue
            counted = mine[mine["sample"] < v]
            pairs = counted.groupby(_KEYS).size()
            if pairs.empty:
                continue  # a run not judged yet has no point
            tokens = counted["completion_tokens"].fillna(0).groupby([counted[k] for k in _KEYS]).sum()
            votes = counted[~counted["retried"]]
            lead = pd.Series(np.select([votes["choice"] == "A", votes["choice"] == "B"], [1, -1], 0),
                             index=votes.index).groupby([votes[k] for k in _KEYS]).sum()  # fmt: skip
            choice = pd.Series(np.select([lead > 0, lead < 0], ["A", "B"], "none"), index=lead.index, name="choice")
            scored = ref.merge(choice.reset_index(), on=_KEYS)
            agree = int((scored["choice"] == scored["ref_choice"]).sum())
            e = wilson(agree, len(scored))
            rows.append({
                "budget": int(run.budget), "votes": v, "run": run.run, "pairs": len(pairs),
                "tokens_per_pair": float(tokens.mean()) if len(tokens) else math.nan,
                "n": len(scored), "agree": agree, "agreement": e.value, "low": e.low, "high": e.high,
                "undecided": int((choice == "none").sum()),
                "truncated": float((votes["status"] == "truncated").mean()) if len(votes) else math.nan,
            })  # fmt: skip
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def doubling(votes: int) -> list[int]:
    """1, 2, 4, ... up to ``votes``, and ``votes`` itself: the counts a sweep reads when none are given."""
    counts = [1 << k for k in range(votes.bit_length()) if 1 << k <= votes]
    return sorted({*counts, votes})


def _log_ticks(values: pd.Series) -> list[float]:
    """1-2-5 ticks over the values' range (plotly's own log ticks label 2, 3, ... without their decade)."""
    lo, hi = float(values.min()), float(values.max())
    ticks = [m * 10**e for e in range(math.floor(math.log10(max(lo, 1e-9))) - 1, math.ceil(math.log10(max(hi, 1))) + 1)
             for m in (1, 2, 5)]  # fmt: skip
    inside = [t for t in ticks if lo / 1.5 <= t <= hi * 1.5]
    return inside or [lo, hi]


def sweep_figure(points: pd.DataFrame, *, reference: str, title: str | None = None,
                 base: Drill | None = None) -> go.Figure:  # fmt: skip
    """Agreement (%, Wilson 95% intervals) against tokens per pair (log axis), sequential and parallel on
    one chart: the *sequential* line joins the fewest-votes point of every budget (more thinking); from
    each budget's point a dotted *parallel* line goes through its vote counts (more samples), the largest
    budget's drawn solid. A point's click lists its run in the explorer."""
    title = title or f"Test-time scaling: agreement with {reference} against tokens spent"
    pts = points[points["n"] > 0].sort_values(["budget", "votes"])
    if pts.empty:
        return empty(title, f"no sweep point has a decisive {reference} reference")
    base = base or Drill()
    ticks = _log_ticks(pts["tokens_per_pair"])
    fig = _fig(title, "completion tokens per pair (log scale)", f"agreement with {reference} (%)",
               xaxis_type="log", xaxis_tickvals=ticks, xaxis_ticktext=[f"{t:,g}" for t in ticks],
               yaxis_range=[0, 105], height=420, legend={"orientation": "h", "y": -0.25})  # fmt: skip

    def hover(g: pd.DataFrame) -> list[str]:
        return [f"budget {b:,} tokens, {v} vote{'s' if v != 1 else ''} per order<br>agreement {a:.1%} "
                f"[{lo:.1%}, {hi:.1%}] (n={n})<br>{t:,.0f} tokens per pair · {u} undecided · {tr:.0%} truncated"
                for b, v, a, lo, hi, n, t, u, tr in g[["budget", "votes", "agreement", "low", "high", "n",
                                                       "tokens_per_pair", "undecided", "truncated"]].itertuples(
                    index=False)]  # fmt: skip

    budgets = sorted(pts["budget"].unique())
    for k, (budget, g) in enumerate(pts.groupby("budget", sort=True)):
        if len(g) < 2:
            continue
        top = budget == budgets[-1]
        fig.add_scatter(x=g["tokens_per_pair"], y=g["agreement"] * 100, mode="lines+markers+text",
                        name=f"parallel: votes at budget {budget:,}", text=[f"{v}v" for v in g["votes"]],
                        textposition="bottom right", error_y=_pct_errors(g, "agreement", "low", "high"),
                        line={"color": PALETTE[(k + 1) % len(PALETTE)], "dash": "solid" if top else "dot",
                              "width": 2 if top else 1.2},
                        customdata=[_drill(base, run=r) for r in g["run"]], hovertext=hover(g),
                        hoverinfo="text")  # fmt: skip
    first = pts.sort_values("votes").groupby("budget", sort=True).head(1).sort_values("budget")
    fewest = int(first["votes"].min())
    fig.add_scatter(x=first["tokens_per_pair"], y=first["agreement"] * 100, mode="lines+markers+text",
                    name=f"sequential: thinking budget, {fewest} vote{'s' if fewest != 1 else ''}",
                    text=[f"{b:,}" for b in first["budget"]], textposition="top left",
                    error_y=_pct_errors(first, "agreement", "low", "high"),
                    line={"color": PALETTE[0], "width": 3}, marker={"size": 9},
                    customdata=[_drill(base, run=r) for r in first["run"]], hovertext=hover(first),
                    hoverinfo="text")  # fmt: skip
    return fig


__all__ = ["POINT_COLUMNS", "doubling", "sweep_figure", "sweep_points"]
