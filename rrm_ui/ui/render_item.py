"""Safe HTML for the explorer's item view: the runs' decisions, every stored trace, the labels.

The same rules as :mod:`rrm_ui.ui.render` (every piece of text escaped, no inline styles).
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from rrm_ui.ui.render import responses_grid, text_block

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
        tiers = ", ".join(f"Response {k + 1}: tier {t}" for k, t in enumerate(detail.gold_tiers))
        gold = f'<div class="rrm-note">Gold (lower tier is better): {_e(tiers)}</div>'
    head = (f'<div class="rrm-item-head" data-item="{_e(detail.item_db_id)}">Item {_e(item.id)} · data set '
            f"{_e(detail.dataset)}{' · subset ' + _e(detail.subset) if detail.subset else ''}</div>")  # fmt: skip
    return head + responses_grid(list(item.responses), query=item.query) + gold + labels_table(detail.labels)


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
    pair = _pair(r["pair_i"], r["pair_j"])
    votes = "" if pd.isna(r.get("split")) else f" · votes {_e(r['split'])}"
    flip = {True: " · verdict flips with the order", False: " · same verdict in both orders"}.get(
        None if pd.isna(r.get("position_consistent")) else bool(r["position_consistent"]), ""
    )
    summary = (f'<div class="rrm-run-head" data-run="{_e(r["run"])}"><b>{_e(r["run"])}</b> · {_e(r["mode"])} · '
               f"{_e(pair)}: {_e(CHOICE_TEXT.get(str(choice), choice))}{votes}{_e(flip)}</div>")  # fmt: skip
    return f'<section class="rrm-run">{summary}{traces_table(js)}</section>'


def traces_table(js: pd.DataFrame) -> str:
    if js.empty:
        return '<div class="rrm-note">An external judge: no traces stored.</div>'
    rows = []
    for k, j in enumerate(js.itertuples(index=False), 1):
        verdict = {"A": int(j.a) + 1, "B": int(j.b) + 1}.get(j.verdict)
        body = text_block(j.reasoning) + (text_block(j.answer, cls="rrm-pre rrm-answer") if j.answer else "")
        if isinstance(j.error, str) and j.error:
            body += f'<div class="rrm-stream-error">{_e(j.error)}</div>'
        attempt = int(getattr(j, "attempt", 0) or 0)
        sample = f"{int(j.sample) + 1}" + (f" (try {attempt + 1})" if attempt else "")
        rows.append(
            f'<tr data-status="{_e(j.status)}" data-judgment="{_e(j.id)}"><td>{k}</td><td>{int(j.a) + 1}→'
            f"{int(j.b) + 1}</td><td>{sample}</td><td>{_e(str(j.status).replace('_', ' '))}</td>"
            f"<td>{'Response ' + str(verdict) if verdict else '—'}</td><td>{_num(j.reasoning_tokens)}</td>"
            f"<td>{_num(j.completion_tokens)}</td><td>{_num(j.ttft_s, '{:.2f}', ' s')}</td>"
            f"<td>{_num(j.latency_s, '{:.1f}', ' s')}</td>"
            f'<td><details class="rrm-trace"><summary>trace</summary><div class="rrm-think-box">{body}</div>'
            "</details></td></tr>"
        )  # fmt: skip
    return (
        '<div class="rrm-table-wrap"><table class="rrm-table rrm-traces"><thead><tr><th>#</th><th>Order</th>'
        "<th>Sample</th><th>Status</th><th>Verdict</th><th>Reasoning tokens</th><th>Tokens</th><th>First token</th>"
        f"<th>Latency</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
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
