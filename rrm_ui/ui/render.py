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
from markdown_it.rules_inline import StateInline

from rrm_ui.domain import ItemResult, Judgment, PairOutcome, Status, Verdict, last_tries

__all__ = [
    "StreamView",
    "Trace",
    "banner",
    "flip_view",
    "flipped_traces",
    "markdown",
    "progress_bar",
    "ranking_table",
    "readable",
    "responses_grid",
    "stream_panels",
    "text_block",
    "text_inline",
    "trace_body",
    "truncation",
    "truncation_text",
    "verdict_card",
]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _resp(idx: int) -> str:
    return f"Response {idx + 1}"


def _plural(n: int, word: str, words: str) -> str:
    return f"{n} {word if n == 1 else words}"


# --------------------------------------------------------------------------- Markdown and text


def _escape_kept(state: StateInline, silent: bool) -> bool:
    """CommonMark's backslash escape, but the backslash stays in the text.

    ``\\*`` still stops emphasis (the ``*`` is plain text) and ``x^2\\,dx`` still shows its ``\\,``:
    the reader sees every character the model was given or wrote. A backslash before a line
    break is shown too, and the break is left to the ``newline`` rule.
    """
    pos = state.pos
    if state.src[pos] != "\\" or pos + 1 >= state.posMax:
        return False
    nxt = state.src[pos + 1]
    if nxt == "\n" or not (nxt.isascii() and not nxt.isalnum() and not nxt.isspace()):
        return False  # not an escape: markdown-it keeps the backslash as plain text
    if not silent:
        token = state.push("text_special", "", 0)
        token.content = token.markup = "\\" + nxt
        token.info = "escape"
    state.pos = pos + 2
    return True


MATH_MAX_CHARS = 5000  # a longer "formula" is left as text


def _closing_dollar(src: str, start: int, end: int) -> int:
    """The position of the ``$`` that closes inline math opened just before ``start``, or -1.

    Pandoc's rule, so that prices stay text: the opening ``$`` is followed by a non-space, the closing
    one follows a non-space and is not followed by a digit; an escaped ``\\$`` never closes.
    """
    k = start
    while True:
        k = src.find("$", k, end)
        if k < 0 or k - start > MATH_MAX_CHARS:
            return -1
        if src[k - 1] not in " \t\n\\" and not (k + 1 < end and src[k + 1].isdigit()):
            return k
        k += 1


def _math(state: StateInline, silent: bool) -> bool:
    """Math as reasoning models write it: ``$...$`` and ``\\(...\\)`` inline, ``$$...$$`` and ``\\[...\\]``
    displayed. The TeX becomes escaped text in ``<span class="rrm-math">``, which the page's KaTeX
    (``static/katex``, MathML output, no trust) typesets; nothing inside is read as Markdown."""
    src, pos, end = state.src, state.pos, state.posMax
    two = src[pos : pos + 2]
    if two == "$$":
        close, display, skip = src.find("$$", pos + 2, end), True, 2
    elif two in ("\\(", "\\["):
        close, display, skip = src.find("\\)" if two == "\\(" else "\\]", pos + 2, end), two == "\\[", 2
    elif src[pos] == "$" and pos + 1 < end and not src[pos + 1].isspace():
        close, display, skip = _closing_dollar(src, pos + 1, end), False, 1
    else:
        return False
    body = src[pos + skip : close] if close >= 0 else ""
    if close < 0 or not body.strip() or len(body) > MATH_MAX_CHARS:
        return False
    if not silent:
        token = state.push("math_inline", "", 0)
        token.content = body
        token.markup = src[pos : close + skip]
        token.meta = {"display": display}
    state.pos = close + skip
    return True


def _render_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    tok = tokens[idx]
    cls = "rrm-math rrm-math--display" if tok.meta.get("display") else "rrm-math"
    return f'<span class="{cls}">{_e(tok.content)}</span>'


# ``breaks``: a single newline is a line break, as the model wrote it (a poem keeps its lines);
# no ``entity`` rule: ``&amp;`` in a response is shown as ``&amp;``, not as ``&``.
_MD = (
    MarkdownIt("commonmark", {"html": False, "breaks": True})
    .enable(["table", "strikethrough"])
    .disable(["image", "entity"])
)
_MD.inline.ruler.at("escape", _escape_kept)
_MD.inline.ruler.before("escape", "math", _math)
_MD.add_render_rule("math_inline", _render_math)
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
        "span",
    },
    clean_content_tags={"script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript"},
    attributes={"a": {"href", "title"}, "ol": {"start"}},
    allowed_classes={"th": _CELL_CLASSES, "td": _CELL_CLASSES, "span": {"rrm-math", "rrm-math--display"}},
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


def readable(text: str, *, cls: str = "") -> str:
    """Untrusted text with a rendered / raw switch: Markdown with math (:func:`markdown`) first, and the
    exact text, escaped, a click away (``static/app.js`` switches ``data-view``; without script the
    rendered view stays). ``cls`` is added to the root (e.g. ``rrm-trace-text``)."""
    return (
        f'<div class="rrm-readable {_e(cls)}" data-view="rendered"><div class="rrm-view-switch" role="group" '
        'aria-label="how to show this text"><button type="button" class="rrm-view-btn" data-view="rendered" '
        'aria-pressed="true">rendered</button><button type="button" class="rrm-view-btn" data-view="raw" '
        f'aria-pressed="false">raw</button></div><div class="rrm-view rrm-view--rendered">{markdown(text)}</div>'
        f'<div class="rrm-view rrm-view--raw">{text_block(text, cls="rrm-pre rrm-raw")}</div></div>'
    )


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


def responses_grid(responses: Sequence[str], *, query: str | None = None, marked: dict[int, str] | None = None) -> str:
    """The query (optional) and the responses side by side, each rendered as Markdown in a scroll box with
    a rendered / raw switch. ``marked``: response index -> a tag for its title (``{2: "A"}``), marked cards
    get ``rrm-response--marked``."""
    marked = marked or {}
    title = '<div class="rrm-response-title">Query</div>'
    head = f'<div class="rrm-response rrm-query">{title}{readable(query or "")}</div>'
    cards = "".join(
        f'<div class="rrm-response{" rrm-response--marked" if k - 1 in marked else ""}" data-response="{k}">'
        f'<div class="rrm-response-title">Response {k}{" · " + _e(marked[k - 1]) if k - 1 in marked else ""}</div>'
        f"{readable(r)}</div>"
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
    finish_reason: str | None = None  # the backend's: tells a cut by the budget ("length") from a stop ("stop")
    scores: str | None = None  # a scalar reward model's judgment (scores_line): shown instead of the thinking


_TRUNCATED_TEXT = {"budget": "cut by the budget", "stop": "stopped while thinking", "unknown": "truncated"}
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
    elif status == "truncated":
        text = _TRUNCATED_TEXT[truncation(view.finish_reason, None, None)]
    return f'<span class="rrm-badge rrm-badge--{status}">{_e(text)}</span>'


def _panel(view: StreamView, tail_chars: int | None, fold_done: bool = False) -> str:
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
    if view.answer and view.done:
        answer = readable(view.answer, cls="rrm-answer")
    elif view.answer:
        answer = text_block(view.answer, cls="rrm-pre rrm-answer")
    elif view.done:
        answer = '<div class="rrm-muted rrm-answer">No text after &lt;/think&gt;.</div>'
    else:
        answer = ""
    error = f'<div class="rrm-stream-error">{_e(view.error)}</div>' if view.error else ""
    # while streaming, plain text (cheap, and half-written Markdown would jump); once done, the switch
    thinking = readable(reasoning, cls="rrm-trace-text") if view.done else f'<div class="rrm-pre">{_e(reasoning)}</div>'
    head = (
        f'<span class="rrm-stream-title">{_e(view.title)}</span>'
        f'<span class="rrm-stream-meta">{int(view.tokens):,} tokens · {view.elapsed_s:.1f} s{rate}</span>'
        f"{_badge(view)}"
    )
    body = (
        f'<details class="rrm-think" open><summary>Thinking</summary>{note}'
        f'<div class="rrm-think-box{live}">{thinking}</div></details>'
        f"{answer}{error}"
    )
    if view.scores:  # a scalar reward model writes no text: its scores are the judgment
        body = f'<div class="rrm-scores">{_e(view.scores)}</div>{error}'
    start = (
        f'<section class="rrm-stream" data-key="{_e(view.key)}" data-done="{int(view.done)}" '
        f'data-tokens="{int(view.tokens)}">'
    )
    if fold_done and view.done:
        fold = f'<details class="rrm-stream-fold"><summary class="rrm-stream-head">{head}</summary>{body}</details>'
        return f"{start}{fold}</section>"
    return f'{start}<header class="rrm-stream-head">{head}</header>{body}</section>'


def stream_panels(views: list[StreamView], *, tail_chars: int | None = None, fold_done: bool = False) -> str:
    """A responsive grid (1, 2 or 4 columns) of live reasoning panels, one per :class:`StreamView`.

    With ``tail_chars`` a panel that is still streaming shows only the last ``tail_chars``
    characters of its reasoning (cheap updates); finished panels always show everything.
    ``fold_done``: a finished panel is one line (its title, tokens and verdict) that opens on a click.
    """
    if not views:
        return '<div class="rrm-stream-grid rrm-empty">No judgment is running.</div>'
    return f'<div class="rrm-stream-grid">{"".join(_panel(v, tail_chars, fold_done) for v in views)}</div>'


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


def truncation(finish_reason: str | None, completion_tokens: int | None, budget: int | None) -> str:
    """Why a judgment never closed its reasoning: ``budget`` (the backend stopped it at max tokens,
    ``finish_reason=length``), ``stop`` (the model ended by itself inside the thinking) or ``unknown``
    (another or no finish reason; with none reported, reaching the budget counts as ``budget``)."""
    if finish_reason == "length":
        return "budget"
    if finish_reason == "stop":
        return "stop"
    if finish_reason is None and budget and completion_tokens is not None and completion_tokens >= budget:
        return "budget"
    return "unknown"


def _cut(j: Judgment, budget: int | None) -> str:
    """:func:`truncation` of a judgment, at its own budget when adaptive escalation raised it."""
    return truncation(j.finish_reason, j.completion_tokens, j.escalated_to or budget)


def truncation_text(finish_reason: str | None, completion_tokens: int | None, budget: int | None) -> str:
    """A truncated judgment's status in words: ``cut by the budget``, ``stopped while thinking`` or ``truncated``."""
    return _TRUNCATED_TEXT[truncation(finish_reason, completion_tokens, budget)]


def _warnings(judgments: list[Judgment], budget: int | None, errors: list[str]) -> list[str]:
    """Plain sentences for every judgment that gave no verdict."""
    counts = Counter(j.status for j in judgments)
    total = len(judgments)
    out = []
    cut = Counter(_cut(j, budget) for j in judgments if j.status is Status.TRUNCATED)
    if n := cut["budget"]:
        # adaptive escalation: those cut at a raised budget are named, and the cap is what to raise
        raised = [j.escalated_to for j in judgments if j.status is Status.TRUNCATED and j.escalated_to
                  and _cut(j, budget) == "budget"]  # fmt: skip
        parts = [f"{budget:,} tokens"] if budget else []
        if raised:
            parts.append(f"raised to {max(raised):,} for {len(raised)} of them")
        limit = f" ({', '.join(parts)})" if parts else ""
        were = "was" if n == 1 else "were"
        advice = "raise the budget or the adaptive cap" if raised else "raise the budget"
        out.append(f"{n} of {total} judgments {were} cut off by the thinking budget{limit} before a verdict; {advice}.")
    if n := cut["stop"]:
        out.append(
            f"{n} of {total} judgments stopped by themselves inside the thinking (the model ended its output "
            "without closing </think>), so there is no verdict; a larger budget would not change that."
        )
    if n := cut["unknown"]:
        reasons = sorted({j.finish_reason or "none reported" for j in judgments if j.status is Status.TRUNCATED
                          and _cut(j, budget) == "unknown"})  # fmt: skip
        out.append(f"{n} of {total} judgments ended before closing </think> (finish reason: {', '.join(reasons)}).")
    if n := counts[Status.NO_VERDICT]:
        out.append(f"{n} of {total} judgments finished their reasoning without a boxed verdict.")
    if n := counts[Status.INVALID]:
        out.append(f"{n} of {total} judgments boxed something other than Assistant 1 or Assistant 2.")
    if n := counts[Status.ERROR]:
        detail = "; ".join(dict.fromkeys(errors))[:500]
        out.append(f"{n} of {total} judgments failed in the backend" + (f": {detail}" if detail else "."))
    return out


def trace_body(reasoning: str | None, answer: str | None) -> str:
    """A stored judgment's reasoning and its answer after ``</think>``, each with the rendered / raw switch."""
    return readable(reasoning or "", cls="rrm-trace-text") + (readable(answer, cls="rrm-answer") if answer else "")


@dataclass(frozen=True)
class Trace:
    """One judgment as the flip view shows it: the order (a shown first), its verdict, its text."""

    a: int
    b: int
    winner: int | None  # the response index it chose, or None
    reasoning: str
    answer: str = ""


def flip_view(traces: Sequence[Trace]) -> str:
    """A pair whose verdict changed with the presentation order: one trace of each order side by side,
    both verdicts on top, the lines both traces share folded once and the two columns starting where
    they first differ. Empty when the traces do not cover both orders of one pair."""
    orders: dict[tuple[int, int], Trace] = {}
    for t in traces:
        orders.setdefault((t.a, t.b), t)  # the first sample of each order
    pairs = [(k, (k[1], k[0])) for k in orders if (k[1], k[0]) in orders and k[0] < k[1]]
    if not pairs:
        return ""
    first, second = orders[pairs[0][0]], orders[pairs[0][1]]
    lines1, lines2 = (first.reasoning or "").split("\n"), (second.reasoning or "").split("\n")
    same = 0
    while same < min(len(lines1), len(lines2)) and lines1[same] == lines2[same]:
        same += 1
    shared = ""
    if same:
        lines = "The first line is" if same == 1 else f"The first {same} lines are"
        shared = (f'<details class="rrm-flip-shared"><summary>{lines} the same in both orders</summary>'
                  f"{text_block(chr(10).join(lines1[:same]))}</details>")  # fmt: skip

    def column(t: Trace, rest: list[str]) -> str:
        verdict = _resp(t.winner) if t.winner is not None else "no verdict"
        where = f"from line {same + 1}, where the orders part" if same else "from the start"
        return (
            f'<div class="rrm-flip-col" data-order="{t.a + 1}-{t.b + 1}"><div class="rrm-flip-head">'
            f"<strong>{_resp(t.a)} shown first</strong> · verdict: <strong>{_e(verdict)}</strong></div>"
            f'<div class="rrm-muted">{_e(where)}</div>{readable(chr(10).join(rest), cls="rrm-trace-text")}'
            f"{readable(t.answer, cls='rrm-answer') if t.answer else ''}</div>"
        )

    return (
        f'<section class="rrm-flip"><div class="rrm-flip-title">The verdict flips with the order: '
        f"{_resp(first.a)} first → {_e(_resp(first.winner) if first.winner is not None else 'no verdict')}; "
        f"{_resp(second.a)} first → {_e(_resp(second.winner) if second.winner is not None else 'no verdict')}"
        f'</div>{shared}<div class="rrm-flip-cols">{column(first, lines1[same:])}{column(second, lines2[same:])}'
        "</div></section>"
    )


def flipped_traces(result: ItemResult) -> list[Trace]:
    """The judgments of the first pair of the result whose verdict flipped with the order."""
    for p in result.pairs:
        if p.position_consistent is False:
            tried = last_tries(list(p.judgments))
            return [Trace(j.a, j.b, j.winner, j.reasoning or "", j.answer or "") for j in tried]
    return []


def _judgment_rows(judgments: list[Judgment], budget: int | None) -> str:
    rows = []
    for k, j in enumerate(judgments, 1):
        status = j.status.value.replace("_", " ")
        if j.status is Status.TRUNCATED:
            status = f"truncated: {_TRUNCATED_TEXT[_cut(j, budget)]}"
        if j.escalated_to is not None:  # adaptive escalation ran it with a larger thinking budget than the run's
            status += f" (thinking budget raised to {j.escalated_to} tokens)"
        if j.forced_close:  # budget forcing closed the thinking: not a natural close, not a cut-off
            status += f" (thinking closed by the budget at {j.forced_at} tokens)" if j.forced_at is not None else (
                " (thinking closed by the budget)")  # fmt: skip
        verdict = _resp(j.winner) if j.winner is not None else "—"
        tokens = j.completion_tokens if j.completion_tokens is not None else "—"
        line = scores_line(j)
        body = trace_body(j.reasoning, j.answer) if line is None else f'<div class="rrm-scores">{_e(line)}</div>'
        if j.error:
            body += f'<div class="rrm-stream-error">{_e(j.error)}</div>'
        rows.append(
            f'<tr data-status="{_e(j.status.value)}"><td>{k}</td><td>{j.a + 1}→{j.b + 1}</td><td>{j.sample + 1}'
            f"{f' (try {j.attempt + 1})' if j.attempt else ''}</td>"
            f"<td>{_e(status)}</td><td>{_e(verdict)}</td>"
            f"<td>{_e(tokens)}</td><td>{j.latency_s:.1f} s</td>"
            f'<td><details><summary>reasoning</summary><div class="rrm-think-box">{body}</div></details></td></tr>'
        )
    return (
        '<details class="rrm-judgments"><summary>All judgments</summary><div class="rrm-table-wrap">'
        '<table class="rrm-table"><thead><tr><th>#</th><th>Order</th><th>Sample</th><th>Status</th>'
        f"<th>Verdict</th><th>Tokens</th><th>Latency</th><th></th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></div></details>"
    )


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def scores_line(j: Judgment) -> str | None:
    """A scalar reward model's judgment as one line, the score of each response; None for a generative one."""
    if j.score_a is None and j.score_b is None:
        return None
    return f"scores: {_resp(j.a)} {_score(j.score_a)}, {_resp(j.b)} {_score(j.score_b)}"


def response_scores(judgments: Sequence[Judgment]) -> dict[int, float]:
    """Each response's score from a scalar reward model's judgments (empty for a generative judge)."""
    out: dict[int, float] = {}
    for j in judgments:
        for idx, value in ((j.a, j.score_a), (j.b, j.score_b)):
            if value is not None:
                out[idx] = value
    return out


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

    scores = response_scores(judgments)  # a scalar reward model: its scores are what there is to show
    if result.winner is not None:
        state, data_winner = "decided", str(result.winner + 1)
        headline = f"{_resp(result.winner)} is " + ("better" if len(indices) <= 2 else "the best")
    elif valid or any(j.verdict is Verdict.TIE for j in judgments):  # split votes, or the judge said tie
        state, data_winner = "tie", "tie"
        said = "the scores are equal" if scores else "the votes are split evenly" if valid else "the judge said tie"
        headline = f"Tie: {said}" if len(indices) <= 2 else "Tie: no single response is on top"
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

    if scores:
        consistency = "not applicable (one score per response, whatever the order)"
    elif result.position_consistent is True:
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
    forced = sum(1 for j in judgments if j.forced_close)
    if forced:
        status_text += f"; {forced} with the thinking closed by the budget (budget forcing)"
    warnings = _warnings(judgments, thinking_budget, [j.error for j in judgments if j.error])
    if result.position_consistent is False:
        warnings.append(
            "The verdict changed when the responses were shown in the other order: "
            "the judge may be favouring a position."
        )
    for m in _tied_matches(result):
        warnings.append(
            f"Knockout: {_resp(m['i'])} vs {_resp(m['j'])} had no winner (a tie or no valid verdict); "
            f"{_resp(m.get('advanced', m.get('winner')))} went on only by bracket order, so no response is "
            "decided as the best."
        )

    facts = [
        *([("Scores", ", ".join(f"{_resp(x)}: {_score(scores.get(x))}" for x in indices))] if scores else []),
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
        f"{_judgment_rows(tries, thinking_budget) if show_judgments and tries else ''}</section>"
    )


# --------------------------------------------------------------------------- rankings


_RATING_NAMES = {"score": ("Score (reward model)", "{:.4g}"),
                 "elo": ("Elo", "{:.0f}"), "bradley_terry": ("Bradley–Terry", "{:.3f}"), "wins": ("Wins", "{:g}"),
                 "official_elo": ("Elo, the paper's (evalica)", "{:.1f}")}  # fmt: skip


def _pair_votes(pair: PairOutcome | None) -> str:
    if pair is None:
        return "—"
    return f"{_count(pair.votes, pair.i)}–{_count(pair.votes, pair.j)}" + (
        f" (+{pair.invalid_votes} without a verdict)" if pair.invalid_votes else ""
    )


def _tied_matches(result: ItemResult) -> list[dict[str, Any]]:
    """The knockout matches without a winner whose first-listed entrant went on by bracket order."""
    return [m for rnd in result.bracket for m in rnd if m.get("tiebreak") and isinstance(m.get("j"), int)]


def ranking_table(result: ItemResult) -> str:
    """Ranking of a list item (3+ responses) with its ratings, then the matches that produced it.

    Knockout results get a bracket table (round, match, winner, votes); round-robin results a
    table of every pair.  Root element: ``<section class="rrm-ranking">``.
    """
    ratings = {k: v for k, v in result.ratings.items() if isinstance(v, dict)}
    scores = response_scores([j for p in result.pairs for j in p.judgments])
    if scores:  # a scalar reward model: each response's score beside its rank
        ratings = {"score": scores, **ratings}
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
            f'<table class="rrm-table rrm-ranking-table"><thead><tr><th>Rank</th><th>Response</th>{head}</tr></thead>'
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
        if _tied_matches(result):
            note += (
                '<p class="rrm-warn">No winner: a match had no winner and its first-listed response went on '
                "by bracket order, so this order is not a decision.</p>"
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
                tb = ""
                if m.get("tiebreak"):  # stored before format 2 with the advanced entrant as "winner"
                    w, tb = None, f"no winner; {_resp(m.get('advanced', m.get('winner')))} went on by bracket order"
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
