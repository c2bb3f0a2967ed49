"""Safe HTML for ``gr.HTML`` components: Markdown, live reasoning panels, verdict cards, rankings.

Everything shown here is *untrusted*: the query, the responses and the model's reasoning
may contain markup meant to run in the browser.  The rules, relied on by every function:

- plain text goes through :func:`html.escape` (quotes included) before it touches markup,
  attribute values too;
- Markdown is rendered with raw HTML disabled and the result is cleaned again by ``nh3``
  with a small allow-list (no ``style``, no event attributes, only http/https/mailto links);
- no function emits inline ``style`` attributes or scripts; all looks come from
  ``static/app.css`` and its ``rrm-*`` classes.

Responses are numbered from 1 for people (``Response 1``); the domain indexes them from 0.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import nh3
from markdown_it import MarkdownIt

from rrm_ui.domain import ItemResult, Judgment, PairOutcome, Status, last_tries

__all__ = [
    "StreamView",
    "banner",
    "markdown",
    "progress_bar",
    "ranking_table",
    "responses_grid",
    "stream_panels",
    "text_block",
    "text_inline",
    "verdict_card",
]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _resp(idx: int) -> str:
    return f"Response {idx + 1}"


def _plural(n: int, word: str, words: str) -> str:
    return f"{n} {word if n == 1 else words}"


# --------------------------------------------------------------------------- Markdown and text

_MD = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).disable("image")
_ALIGN = {
    "text-align:left": "rrm-align-left",
    "text-align:center": "rrm-align-center",
    "text-align:right": "rrm-align-right",
}
_CELL_CLASSES = set(_ALIGN.values())
_CLEANER = nh3.Cleaner(
    tags={
        "p",
        "br",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "strong",
        "em",
        "s",
        "del",
        "code",
        "pre",
        "blockquote",
        "a",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    },
    clean_content_tags={"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript"},
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    allowed_classes={"th": _CELL_CLASSES, "td": _CELL_CLASSES},
    link_rel="noopener noreferrer nofollow",
    set_tag_attribute_values={"a": {"target": "_blank"}},
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",  # a relative link would point into this app
)


def markdown(text: str) -> str:
    """Render untrusted Markdown (CommonMark + tables) as sanitised HTML in ``<div class="rrm-md">``.

    Raw HTML in the source is shown as text, images are never loaded (``![a](u)`` becomes a plain link),
    table alignment becomes ``rrm-align-*`` classes instead of inline styles.
    """
    tokens = _MD.parse(text or "")
    for tok in tokens:
        if tok.type in ("th_open", "td_open") and tok.attrGet("style"):
            cls = _ALIGN.get(str(tok.attrGet("style")).replace(" ", ""))
            tok.attrs = {"class": cls} if cls else {}
    return f'<div class="rrm-md">{_CLEANER.clean(_MD.renderer.render(tokens, _MD.options, {}))}</div>'


def text_block(text: str, *, cls: str = "rrm-pre") -> str:
    """Plain text, escaped, in a ``<div>`` whose class keeps line breaks (``white-space: pre-wrap``)."""
    return f'<div class="{_e(cls)}">{_e(text or "")}</div>'


_MD_PUNCT = set("\\`*_{}[]()#+-.!|~^=:;?@$%'\",/")
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def text_inline(text: str) -> str:
    """Untrusted text made inert for embedding in a *Markdown* string (``gr.Markdown``), on one line.

    Markdown punctuation is backslash-escaped and ``& < >`` become entities, so no emphasis, link,
    code span or HTML tag can form; runs of whitespace (newlines included) become one space.
    """
    flat = " ".join((text or "").split())
    return "".join(_MD_ENTITY.get(c) or (f"\\{c}" if c in _MD_PUNCT else c) for c in flat)


def responses_grid(responses: Sequence[str], *, query: str | None = None) -> str:
    """The query (optional) and the responses side by side, each rendered as Markdown in a scroll box."""
    head = f'<div class="rrm-response rrm-query"><div class="rrm-response-title">Query</div>{markdown(query)}</div>'
    cards = "".join(
        f'<div class="rrm-response" data-response="{k}"><div class="rrm-response-title">Response {k}</div>'
        f"{markdown(r)}</div>"
        for k, r in enumerate(responses, 1)
    )
    return f'{head if query is not None else ""}<div class="rrm-responses">{cards}</div>'


# --------------------------------------------------------------------------- live stream panels


@dataclass(frozen=True)
class StreamView:
    """What one live panel shows: one sample of one ordered pair, while it streams and after."""

    key: str  # stable identity of the panel (e.g. "0-1:0"), written to data-key
    title: str  # e.g. "Response 1 vs 2 · order 1→2 · sample 1"
    reasoning: str = ""
    answer: str = ""
    tokens: int = 0
    elapsed_s: float = 0.0
    done: bool = False
    status: str | None = None  # ok | truncated | no_verdict | invalid | error | aborted
    verdict_label: str | None = None  # e.g. "Response 1"
    error: str | None = None


_STATUS_TEXT = {
    "ok": "verdict",
    "truncated": "truncated",
    "no_verdict": "no verdict",
    "invalid": "invalid verdict",
    "error": "error",
    "aborted": "aborted",
}


def _badge(view: StreamView) -> str:
    if not view.done:
        return '<span class="rrm-badge rrm-badge--streaming"><span class="rrm-dot"></span>streaming</span>'
    status = view.status if view.status in _STATUS_TEXT else "other"
    text = _STATUS_TEXT.get(status, view.status or "done")
    if status == "ok" and view.verdict_label:
        text = view.verdict_label
    return f'<span class="rrm-badge rrm-badge--{status}">{_e(text)}</span>'


def _panel(view: StreamView, tail_chars: int | None) -> str:
    reasoning = view.reasoning or ""
    note = ""
    if not view.done and tail_chars is not None and len(reasoning) > tail_chars:
        hidden = len(reasoning) - tail_chars
        reasoning = reasoning[hidden:] if tail_chars > 0 else ""
        note = (
            f'<div class="rrm-tail-note">… {hidden:,} earlier characters (shown in full when the judgment ends)</div>'
        )
    rate = f" · {view.tokens / view.elapsed_s:,.0f} tok/s" if view.elapsed_s > 0 and view.tokens else ""
    live = "" if view.done else " rrm-think--live"
    if view.answer:
        answer = text_block(view.answer, cls="rrm-pre rrm-answer")
    elif view.done:
        answer = '<div class="rrm-muted rrm-answer">No text after &lt;/think&gt;.</div>'
    else:
        answer = ""
    error = f'<div class="rrm-stream-error">{_e(view.error)}</div>' if view.error else ""
    return (
        f'<section class="rrm-stream" data-key="{_e(view.key)}" data-done="{int(view.done)}" '
        f'data-tokens="{int(view.tokens)}">'
        f'<header class="rrm-stream-head"><span class="rrm-stream-title">{_e(view.title)}</span>'
        f'<span class="rrm-stream-meta">{int(view.tokens):,} tokens · {view.elapsed_s:.1f} s{rate}</span>'
        f"{_badge(view)}</header>"
        f'<details class="rrm-think" open><summary>Thinking</summary>{note}'
        f'<div class="rrm-think-box{live}"><div class="rrm-pre">{_e(reasoning)}</div></div></details>'
        f"{answer}{error}</section>"
    )


def stream_panels(views: list[StreamView], *, tail_chars: int | None = None) -> str:
    """A responsive grid (1, 2 or 4 columns) of live reasoning panels, one per :class:`StreamView`.

    With ``tail_chars`` a panel that is still streaming shows only the last ``tail_chars``
    characters of its reasoning (cheap updates); finished panels always show everything.
    """
    if not views:
        return '<div class="rrm-stream-grid rrm-empty">No judgment is running.</div>'
    return f'<div class="rrm-stream-grid">{"".join(_panel(v, tail_chars) for v in views)}</div>'


# --------------------------------------------------------------------------- verdict card


def _count(votes: dict[Any, int], idx: int) -> int:
    """A vote or rating looked up by index, also when a JSON round trip turned the keys into strings."""
    return votes.get(idx, votes.get(str(idx), 0))


def _both_orders(pair: PairOutcome) -> bool:
    return len({(j.a, j.b) for j in pair.judgments}) > 1


def _tokens(judgments: list[Judgment]) -> str:
    reasoning = [j.reasoning_tokens for j in judgments if j.reasoning_tokens is not None]
    if reasoning:
        return f"{sum(reasoning):,} reasoning tokens"
    generated = [j.completion_tokens for j in judgments if j.completion_tokens is not None]
    return f"{sum(generated):,} generated tokens" if generated else "not reported"


def _warnings(counts: Counter[Status], total: int, budget: int | None, errors: list[str]) -> list[str]:
    """Plain sentences for every judgment that gave no verdict."""
    out = []
    if n := counts[Status.TRUNCATED]:
        limit = f" ({budget:,} tokens)" if budget else ""
        were = "was" if n == 1 else "were"
        out.append(
            f"{n} of {total} judgments {were} cut off by the thinking budget{limit} before a verdict; raise the budget."
        )
    if n := counts[Status.NO_VERDICT]:
        out.append(f"{n} of {total} judgments finished their reasoning without a boxed verdict.")
    if n := counts[Status.INVALID]:
        out.append(f"{n} of {total} judgments boxed something other than Assistant 1 or Assistant 2.")
    if n := counts[Status.ERROR]:
        detail = "; ".join(dict.fromkeys(errors))[:500]
        out.append(f"{n} of {total} judgments failed in the backend" + (f": {detail}" if detail else "."))
    return out


def _judgment_rows(judgments: list[Judgment]) -> str:
    rows = []
    for k, j in enumerate(judgments, 1):
        verdict = _resp(j.winner) if j.winner is not None else "—"
        tokens = j.completion_tokens if j.completion_tokens is not None else "—"
        body = text_block(j.reasoning) + (text_block(j.answer, cls="rrm-pre rrm-answer") if j.answer else "")
        if j.error:
            body += f'<div class="rrm-stream-error">{_e(j.error)}</div>'
        rows.append(
            f'<tr data-status="{_e(j.status.value)}"><td>{k}</td><td>{j.a + 1}→{j.b + 1}</td><td>{j.sample + 1}'
            f"{f' (try {j.attempt + 1})' if j.attempt else ''}</td>"
            f"<td>{_e(j.status.value.replace('_', ' '))}</td><td>{_e(verdict)}</td>"
            f"<td>{_e(tokens)}</td><td>{j.latency_s:.1f} s</td>"
            f'<td><details><summary>reasoning</summary><div class="rrm-think-box">{body}</div></details></td></tr>'
        )
    return (
        '<details class="rrm-judgments"><summary>All judgments</summary><div class="rrm-table-wrap">'
        '<table class="rrm-table"><thead><tr><th>#</th><th>Order</th><th>Sample</th><th>Status</th>'
        f"<th>Verdict</th><th>Tokens</th><th>Latency</th><th></th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></div></details>"
    )


def verdict_card(
    result: ItemResult,
    *,
    thinking_budget: int | None = None,
    elapsed_s: float | None = None,
    show_judgments: bool = True,
) -> str:
    """The decision about one item, stated plainly: winner, vote split, position consistency, cost.

    ``thinking_budget`` (max tokens) is quoted when judgments were truncated; ``elapsed_s`` is the
    wall time (else the longest judgment is reported); ``show_judgments`` adds a collapsed table of
    every judgment with its reasoning.  The root element has class ``rrm-verdict`` and
    ``data-winner`` = the 1-based winner, ``"tie"`` or ``"none"``.
    """
    tries = [j for p in result.pairs for j in p.judgments]
    judgments = last_tries(tries)  # a sample tried again after a transient failure counts once
    retried = len(tries) - len(judgments)
    total = len(judgments)
    invalid = sum(p.invalid_votes for p in result.pairs)
    indices = sorted({x for p in result.pairs for x in (p.i, p.j)})
    votes = result.votes
    valid = sum(votes.values())

    if result.winner is not None:
        state, data_winner = "decided", str(result.winner + 1)
        headline = f"{_resp(result.winner)} is " + ("better" if len(indices) <= 2 else "the best")
    elif valid:
        state, data_winner = "tie", "tie"
        headline = "Tie: the votes are split evenly" if len(indices) <= 2 else "Tie: no single response is on top"
    else:
        state, data_winner, headline = "none", "none", "No verdict: no judgment produced a valid verdict"

    if len(indices) == 2:
        i, j = indices
        hi, lo = (i, j) if _count(votes, i) >= _count(votes, j) else (j, i)
        split = f"{_count(votes, hi)}–{_count(votes, lo)}"
        split += f" for {_resp(hi)}" if _count(votes, hi) != _count(votes, lo) else " (even)"
    else:
        split = ", ".join(f"{_resp(x)}: {_count(votes, x)}" for x in indices)
    split += f", {invalid} without a verdict"

    if result.position_consistent is True:
        consistency = "consistent (both presentation orders agree)"
    elif result.position_consistent is False:
        consistency = "flipped between orders"
    elif any(_both_orders(p) for p in result.pairs):
        consistency = "undetermined (an order had no majority)"
    else:
        consistency = "not tested (one order)"

    latencies = [j.latency_s for j in judgments]
    if elapsed_s is not None:
        latency = f"{elapsed_s:.1f} s"
    else:
        latency = f"{max(latencies):.1f} s (longest judgment)" if latencies else "—"

    counts = Counter(j.status for j in judgments)
    parts = [f"{counts[s]} {_STATUS_TEXT[s.value]}" for s in Status if counts[s] and s is not Status.OK]
    status_text = f"{total}: {counts[Status.OK]} with a verdict" + "".join(f", {p}" for p in parts)
    if retried:
        status_text += f" ({retried} failed {'try' if retried == 1 else 'tries'} tried again)"
    warnings = _warnings(counts, total, thinking_budget, [j.error for j in judgments if j.error])
    if result.position_consistent is False:
        warnings.append(
            "The verdict changed when the responses were shown in the other order: "
            "the judge may be favouring a position."
        )

    facts = [
        ("Votes", split),
        ("Position consistency", consistency),
        ("Tokens", _tokens(judgments)),
        ("Latency", latency),
        ("Judgments", status_text),
    ]
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    warn = "".join(f'<p class="rrm-warn">{_e(w)}</p>' for w in warnings)
    return (
        f'<section class="rrm-verdict rrm-verdict--{state}" data-winner="{data_winner}">'
        f'<div class="rrm-verdict-kicker">Verdict · {_e(result.strategy)}</div>'
        f'<h3 class="rrm-verdict-winner">{_e(headline)}</h3>'
        f'<dl class="rrm-verdict-facts">{dl}</dl>{warn}'
        f"{_judgment_rows(tries) if show_judgments and tries else ''}</section>"
    )


# --------------------------------------------------------------------------- rankings


_RATING_NAMES = {"elo": ("Elo", "{:.0f}"), "bradley_terry": ("Bradley–Terry", "{:.3f}"), "wins": ("Wins", "{:g}")}


def _pair_votes(pair: PairOutcome | None) -> str:
    if pair is None:
        return "—"
    return f"{_count(pair.votes, pair.i)}–{_count(pair.votes, pair.j)}" + (
        f" (+{pair.invalid_votes} without a verdict)" if pair.invalid_votes else ""
    )


def ranking_table(result: ItemResult) -> str:
    """Ranking of a list item (3+ responses) with its ratings, then the matches that produced it.

    Knockout results get a bracket table (round, match, winner, votes); round-robin results a
    table of every pair.  Root element: ``<section class="rrm-ranking">``.
    """
    ratings = {k: v for k, v in result.ratings.items() if isinstance(v, dict)}
    cols = list(ratings)
    head = "".join(f"<th>{_e(_RATING_NAMES.get(c, (c, ''))[0])}</th>" for c in cols)
    rows = []
    for rank, idx in enumerate(result.ranking, 1):
        cells = []
        for c in cols:
            value = ratings[c].get(idx, ratings[c].get(str(idx)))
            fmt = _RATING_NAMES.get(c, (c, "{:.3g}"))[1]
            cells.append(f"<td>{_e(fmt.format(value)) if isinstance(value, int | float) else '—'}</td>")
        rows.append(f'<tr data-response="{idx + 1}"><td>{rank}</td><td>{_resp(idx)}</td>{"".join(cells)}</tr>')
    if rows:
        ranking = (
            f'<table class="rrm-table"><thead><tr><th>Rank</th><th>Response</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        ranking = '<p class="rrm-warn">No comparison produced a verdict, so there is no ranking.</p>'
    note = ""
    if result.bracket:
        note = (
            '<p class="rrm-muted">Knockout: only the champion is decided; responses knocked out in '
            "the same round were never compared with each other.</p>"
        )

    by_pair = {frozenset((p.i, p.j)): p for p in result.pairs}
    match_rows = []
    if result.bracket:
        for r, rnd in enumerate(result.bracket, 1):
            name = "Final" if r == len(result.bracket) else f"Round {r}"
            for m in rnd:
                i, j, w = m.get("i"), m.get("j"), m.get("winner")
                pair = by_pair.get(frozenset((i, j))) if isinstance(j, int) else None
                match = f"{_resp(i)} vs {_resp(j)}" if isinstance(j, int) else f"{_resp(i)} (bye)"
                tb = "tie, decided by bracket order" if m.get("tiebreak") else ""
                match_rows.append(
                    f"<tr><td>{_e(name)}</td><td>{_e(match)}</td>"
                    f"<td>{_e(_resp(w)) if isinstance(w, int) else '—'}</td>"
                    f"<td>{_e(_pair_votes(pair))}</td><td>{_e(tb)}</td></tr>"
                )
        mhead = "<th>Round</th><th>Match</th><th>Winner</th><th>Votes</th><th>Note</th>"
    else:
        for p in result.pairs:
            w = _resp(p.winner) if p.winner is not None else "tie"
            pc = {True: "consistent", False: "flipped", None: "—"}[p.position_consistent]
            match_rows.append(
                f"<tr><td>{_resp(p.i)} vs {_resp(p.j)}</td><td>{_e(w)}</td>"
                f"<td>{_e(_pair_votes(p))}</td><td>{pc}</td></tr>"
            )
        mhead = "<th>Pair</th><th>Winner</th><th>Votes</th><th>Position</th>"
    matches = ""
    if match_rows:
        matches = (
            f'<details class="rrm-matches" open><summary>{_plural(len(match_rows), "match", "matches")}</summary>'
            f'<div class="rrm-table-wrap"><table class="rrm-table"><thead><tr>{mhead}</tr></thead>'
            f"<tbody>{''.join(match_rows)}</tbody></table></div></details>"
        )
    return (
        f'<section class="rrm-ranking" data-strategy="{_e(result.strategy)}">'
        f'<div class="rrm-table-wrap">{ranking}</div>{note}{matches}</section>'
    )


# --------------------------------------------------------------------------- progress, banners


def progress_bar(done: int, total: int, *, label: str) -> str:
    """A labelled ``<progress>`` bar; ``total <= 0`` gives an indeterminate bar."""
    if total <= 0:
        return (
            f'<div class="rrm-progress"><div class="rrm-progress-label">{_e(label)}</div>'
            f'<progress aria-label="{_e(label)}"></progress></div>'
        )
    done = max(0, min(int(done), int(total)))
    pct = 100 * done / total
    return (
        f'<div class="rrm-progress" data-done="{done}" data-total="{int(total)}">'
        f'<div class="rrm-progress-label">{_e(label)} <span class="rrm-muted">{done:,} / {int(total):,} '
        f"({pct:.0f}%)</span></div>"
        f'<progress max="{int(total)}" value="{done}" aria-label="{_e(label)}" aria-valuemin="0" '
        f'aria-valuemax="{int(total)}" aria-valuenow="{done}"></progress></div>'
    )


def banner(kind: Literal["info", "warning", "error"], title: str, body: str) -> str:
    """A notice with an escaped title and body; errors are announced (``role="alert"``)."""
    if kind not in ("info", "warning", "error"):
        raise ValueError(f"banner kind must be info, warning or error, not {kind!r}")
    role = "alert" if kind == "error" else "status"
    return (
        f'<div class="rrm-banner rrm-banner--{kind}" role="{role}">'
        f'<strong class="rrm-banner-title">{_e(title)}</strong>'
        f'<div class="rrm-banner-body">{_e(body)}</div></div>'
    )
