"""Safe HTML for the explorer's item view: the runs' decisions, every stored trace, the labels.

The same rules as :mod:`rrm_ui.ui.render` (every piece of text escaped, no inline styles).
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from rrm_ui.services.annotation import item_ref
from rrm_ui.ui.render import Trace, flip_view, responses_grid, trace_body, truncation_text

CHOICE_TEXT = {"A": "first better", "B": "second better", "tie": "tie", "both_bad": "both bad", "none": "no decision"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = "{:,.0f}", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    return fmt.format(value) + unit


def _pair(i: Any, j: Any) -> str:
    return f"Response {int(i) + 1} vs {int(j) + 1}"


def item_view(detail: Any) -> str:
    """The item (query, responses side by side, gold), then one section per run, then the labels."""
    item = detail.item
    gold = ""
    if detail.gold_tiers is not None:
        gold = f'<div class="rrm-note rrm-gold">{_e(gold_text(detail.gold_tiers))}</div>'
    ref = item_ref(detail.dataset, item.id)  # as every tab names the item
    head = (f'<div class="rrm-item-head" data-item="{_e(detail.item_db_id)}">Item {_e(ref)}'
            f"{' · subset ' + _e(detail.subset) if detail.subset else ''}</div>")  # fmt: skip
    return head + responses_grid(list(item.responses), query=item.query) + gold + labels_table(detail.labels)


def gold_text(tiers: Any) -> str:
    """The gold label in words: "Gold: Response 1 is better", "Gold: a tie", or a list's best and its tiers."""
    tiers = [int(t) for t in tiers]
    best = [k for k, t in enumerate(tiers) if t == min(tiers)]
    if len(tiers) == 2:
        return (
            "Gold: a tie (both responses are as good)" if len(best) == 2 else f"Gold: Response {best[0] + 1} is better"
        )
    order = ", ".join(f"Response {k + 1}: tier {t}" for k, t in enumerate(tiers))
    if len(best) == len(tiers):
        return f"Gold: all {len(tiers)} responses are as good"
    top = (f"Response {best[0] + 1} is the best" if len(best) == 1
           else "Responses " + ", ".join(str(k + 1) for k in best) + " share the best tier")  # fmt: skip
    return f"Gold: {top} (lower tier is better: {order})"


def runs_view(detail: Any) -> str:
    """Each run's decision about the item and every sample it drew, with its trace."""
    if detail.results.empty and detail.judgments.empty:
        return '<div class="rrm-note">No run has judged this item yet.</div>'
    parts = []
    for _, r in detail.results.iterrows():
        js = detail.judgments[detail.judgments["run_id"] == r["run_id"]]
        parts.append(_run_section(r, js))
    return "".join(parts)


def _run_section(r: pd.Series, js: pd.DataFrame) -> str:
    choice = r.get("model_choice")
    if not isinstance(choice, str):  # a list whose top two this run never compared
        choice = "not compared"
    pair = _pair(r["pair_i"], r["pair_j"])
    votes = "" if pd.isna(r.get("split")) else f" · votes {_e(r['split'])}"
    flip = {True: " · verdict flips with the order", False: " · same verdict in both orders"}.get(
        None if pd.isna(r.get("position_consistent")) else bool(r["position_consistent"]), ""
    )
    summary = (f'<div class="rrm-run-head" data-run="{_e(r["run"])}"><b>{_e(r["run"])}</b> · {_e(r["mode"])} · '
               f"{_e(pair)}: {_e(CHOICE_TEXT.get(str(choice), choice))}{votes}{_e(flip)}</div>")  # fmt: skip
    flips = ""
    consistent = r.get("position_consistent")
    if consistent is not None and not pd.isna(consistent) and not bool(consistent):  # the verdict flipped
        traces = [
            Trace(int(j.a), int(j.b), {"A": int(j.a), "B": int(j.b)}.get(j.verdict),
                  j.reasoning if isinstance(j.reasoning, str) else "", j.answer if isinstance(j.answer, str) else "")
            for j in js.itertuples(index=False)
            if {int(j.a), int(j.b)} == {int(r["pair_i"]), int(r["pair_j"])}
        ]  # fmt: skip
        flips = flip_view(traces)
    return f'<section class="rrm-run">{summary}{flips}{traces_table(js)}</section>'


def _score(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not math.isnan(value) else "—"


def traces_table(js: pd.DataFrame) -> str:
    if js.empty:
        return '<div class="rrm-note">An external judge: no traces stored.</div>'
    rows = []
    for k, j in enumerate(js.itertuples(index=False), 1):
        verdict = {"A": int(j.a) + 1, "B": int(j.b) + 1}.get(j.verdict)
        shown = f"Response {verdict}" if verdict else ("Tie" if j.verdict == "T" else "—")
        answer = j.answer if isinstance(j.answer, str) else None
        body = trace_body(j.reasoning if isinstance(j.reasoning, str) else "", answer)
        scores = [getattr(j, name, None) for name in ("score_a", "score_b")]
        if any(isinstance(x, float) and not math.isnan(x) for x in scores):  # a scalar reward model: no trace
            body = (f'<div class="rrm-scores">scores: Response {int(j.a) + 1} {_score(scores[0])}, '
                    f"Response {int(j.b) + 1} {_score(scores[1])}</div>")  # fmt: skip
        if isinstance(j.error, str) and j.error:
            body += f'<div class="rrm-stream-error">{_e(j.error)}</div>'
        attempt = int(getattr(j, "attempt", 0) or 0)
        status = str(j.status).replace("_", " ")
        if j.status == "truncated":  # cut by the budget, or stopped inside the thinking
            finish = getattr(j, "finish_reason", None)
            tokens = j.completion_tokens if pd.notna(j.completion_tokens) else None
            status += ": " + truncation_text(finish if isinstance(finish, str) else None, tokens, None)
        sample = f"{int(j.sample) + 1}" + (f" (try {attempt + 1})" if attempt else "")
        rows.append(
            f'<tr data-status="{_e(j.status)}" data-judgment="{_e(j.id)}"><td>{k}</td><td>{int(j.a) + 1}→'
            f"{int(j.b) + 1}</td><td>{sample}</td><td>{_e(status)}</td>"
            f"<td>{shown}</td><td>{_num(j.reasoning_tokens)}</td>"
            f"<td>{_num(j.completion_tokens)}</td><td>{_num(j.ttft_s, '{:.2f}', ' s')}</td>"
            f"<td>{_num(j.latency_s, '{:.1f}', ' s')}</td></tr>"
            # the trace in a full-width row of its own, folded (not squeezed into a narrow cell)
            f'<tr class="rrm-trace-row"><td colspan="9"><details class="rrm-trace"><summary>Trace #{k}: Response '
            f"{int(j.a) + 1} shown first, sample {_e(sample)}</summary><div class=\"rrm-think-box\">{body}</div>"
            "</details></td></tr>"
        )  # fmt: skip
    return (
        '<div class="rrm-table-wrap"><table class="rrm-table rrm-traces"><thead><tr><th>#</th><th>Order</th>'
        "<th>Sample</th><th>Status</th><th>Verdict</th><th>Reasoning tokens</th><th>Tokens</th><th>First token</th>"
        f"<th>Latency</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def labels_table(labels: pd.DataFrame) -> str:
    if labels.empty:
        return '<div class="rrm-note">No human label yet.</div>'
    rows = []
    for lab in labels.itertuples(index=False):
        rows.append(
            f"<tr><td>{_e(lab.annotator)}</td><td>{_e(_pair(lab.pair_i, lab.pair_j))}</td>"
            f"<td>{_e(CHOICE_TEXT.get(lab.choice, lab.choice))}</td>"
            f"<td>{_e(lab.run) if isinstance(lab.run, str) else '—'}</td><td>{'yes' if lab.blind else 'no'}</td>"
            f"<td>{_num(lab.time_taken_s, '{:.0f}', ' s')}</td><td>{_e(lab.note) if isinstance(lab.note, str) else ''}"
            f"</td><td>{_e(str(lab.created_at)[:19])}</td></tr>"
        )  # fmt: skip
    return (
        '<div class="rrm-labels"><div class="rrm-response-title">Human labels (history included, newest last)</div>'
        '<div class="rrm-table-wrap"><table class="rrm-table"><thead><tr><th>Annotator</th><th>Pair</th>'
        "<th>Choice</th><th>Verdict seen</th><th>Blind</th><th>Time</th><th>Note</th><th>When</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></div>"
    )
