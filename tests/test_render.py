"""rrm_ui.ui.render: untrusted text never becomes live markup, and the HTML says what it should.

Every public function gets a catalogue of XSS payloads; the output is *parsed* with the stdlib
HTML parser (which decodes entities the way a browser does) and checked against allow-lists of
elements and attributes, plus explicit bans on scripts, event handlers and dangerous URLs.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from rrm_ui.domain import ItemResult, Judgment, PairOutcome, Status, Verdict
from rrm_ui.ui.render import (
    StreamView,
    banner,
    markdown,
    progress_bar,
    ranking_table,
    readable,
    responses_grid,
    stream_panels,
    text_block,
    text_inline,
    verdict_card,
)

PAYLOADS = [
    "<script>alert(1)</script>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=JaVaScRiPt:alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](<javascript:alert(1)>)",
    "<javascript:alert(1)>",
    "![x](javascript:alert(1))",
    "[x](jav&#x09;ascript:alert(1))",
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="  javascript:alert(1)">x</a>',
    "[d](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<data:text/html,<script>alert(1)</script>>",
    "[v](vbscript:msgbox(1))",
    '<iframe src="https://evil.example/"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<style>body{display:none}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    '" onmouseover="alert(1)',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "&amp;lt;script&amp;gt;",
    '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    '<form action="javascript:alert(1)"><button formaction="javascript:alert(1)">x</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)"><base href="javascript:alert(1)//">',
    "<!--<script>alert(1)</script>--><![CDATA[<script>]]>",
    "\x00<script>alert(1)</script>",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "`</code><script>alert(1)</script>`",
    "| a |\n|---|\n| <script>alert(1)</script> |",
]

# what render.py may emit at all: anything else means input leaked into markup
ALLOWED_TAGS = {
    "div", "section", "header", "span", "details", "summary", "p", "br", "hr", "h1", "h2", "h3", "h4", "h5",
    "h6", "ul", "ol", "li", "strong", "em", "s", "del", "code", "pre", "blockquote", "a", "table", "thead",
    "tbody", "tr", "th", "td", "dl", "dt", "dd", "progress",
}  # fmt: skip
ALLOWED_ATTRS = {"class", "href", "title", "target", "rel", "start", "open", "role", "max", "value"}
BANNED_TAGS = {
    "script", "iframe", "object", "embed", "style", "svg", "math", "img", "link", "meta", "base", "form",
    "button", "input", "frame", "frameset", "applet", "template", "noscript", "body", "html",
}  # fmt: skip
# the only button allowed: the rendered / raw switch render.readable writes (exactly these attributes)
SWITCH = [
    {"type": "button", "class": "rrm-view-btn", "data-view": view, "aria-pressed": pressed}
    for view, pressed in (("rendered", "true"), ("raw", "false"))
]
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "poster", "background", "srcset"}
BAD_SCHEMES = ("javascript:", "data:", "vbscript:")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f]")


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.in_switch = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "button" and dict(attrs) in SWITCH:  # render.readable's own rendered / raw switch
            self.in_switch = True
            return
        if tag in BANNED_TAGS or tag not in ALLOWED_TAGS:
            self.problems.append(f"element <{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"event attribute {name}")
            if name == "style" or name == "srcdoc":
                self.problems.append(f"attribute {name}")
            if name not in ALLOWED_ATTRS and not name.startswith(("data-", "aria-")):
                self.problems.append(f"unexpected attribute {name}")
            cleaned = _INVISIBLE.sub("", value or "").lower()
            if name in URL_ATTRS and cleaned.startswith(BAD_SCHEMES):
                self.problems.append(f"{name}={value!r}")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self.in_switch = False

    def handle_data(self, data: str) -> None:
        if not self.in_switch:
            self.text.append(data)


def audit(out: str) -> _Audit:
    parser = _Audit()
    parser.feed(out)
    parser.close()
    assert not parser.problems, f"unsafe output: {parser.problems}\n{out}"
    return parser


def text_of(out: str) -> str:
    return "".join(audit(out).text)


def judgment(a: int, b: int, sample: int, verdict: Verdict | None, status: Status = Status.OK, **kw) -> Judgment:
    fields = dict(
        lenient_verdict=verdict,
        reasoning="I compare both.",
        answer="" if status is Status.TRUNCATED else r"\boxed{Assistant 1}",
        prompt_tokens=100,
        completion_tokens=200,
        reasoning_tokens=150,
        ttft_s=0.1,
        latency_s=2.5,
        finish_reason="length" if status is Status.TRUNCATED else "stop",
        seed=None,
    )
    fields.update(kw)
    return Judgment(a=a, b=b, sample=sample, verdict=verdict, status=status, **fields)


def pair(i: int, j: int, judgments: list[Judgment], *, position_consistent: bool | None = None) -> PairOutcome:
    votes: dict[int, int] = {}
    for jd in judgments:
        if jd.winner is not None:
            votes[jd.winner] = votes.get(jd.winner, 0) + 1
    vi, vj = votes.get(i, 0), votes.get(j, 0)
    winner = None if vi == vj else (i if vi > vj else j)
    invalid = sum(jd.winner is None for jd in judgments)
    return PairOutcome(i, j, winner, votes, invalid, position_consistent, len(judgments), None, tuple(judgments))


def item_result(pairs: list[PairOutcome], *, strategy: str = "pair", winner: int | None = None, **kw) -> ItemResult:
    if strategy == "pair":
        winner = pairs[0].winner
    ranking = kw.pop("ranking", () if winner is None else (winner, 1 - winner))
    return ItemResult("item-1", strategy, winner, ranking, tuple(pairs), "rrm", "1", "tiny", "fake", **kw)


def payload_result(p: str) -> ItemResult:
    judgments = [
        judgment(0, 1, 0, Verdict.A, reasoning=p, answer=p),
        judgment(1, 0, 0, None, Status.ERROR, reasoning=p, answer=p, error=p),
        judgment(0, 1, 1, None, Status.TRUNCATED, reasoning=p),
    ]
    return item_result([pair(0, 1, judgments)], strategy="pair")


# --------------------------------------------------------------------------- the XSS catalogue


@pytest.mark.parametrize("p", PAYLOADS)
def test_markdown_and_text_are_safe(p: str) -> None:
    audit(markdown(p))
    audit(markdown(f"# {p}\n\n- {p}\n\n> {p}\n\n| h |\n|---|\n| {p} |\n\n```\n{p}\n```\n"))
    assert text_of(text_block(p)) == p  # escaped text comes back verbatim
    audit(text_block(p, cls=p))


# a permissive Markdown renderer (raw HTML on), as a stand-in for whatever renders gr.Markdown
PERMISSIVE = MarkdownIt("commonmark", {"html": True}).enable("table")


@pytest.mark.parametrize("p", PAYLOADS)
def test_inline_text_in_markdown_is_inert(p: str) -> None:
    out = PERMISSIVE.render(f"Imported **{text_inline(p)}**: done")
    parsed = audit(out)
    assert [t for t, _ in parsed.tags] == ["p", "strong"]  # nothing formed but the caller's own markup
    flat = " ".join(p.replace("\x00", "\ufffd").split())
    assert "".join(parsed.text).strip() == f"Imported {flat}: done"
    audit(responses_grid([p, p, p], query=p))


@pytest.mark.parametrize("p", PAYLOADS)
def test_stream_panels_are_safe(p: str) -> None:
    live = StreamView(p, p, reasoning=p * 3, answer=p, tokens=5, elapsed_s=1.0, done=False)
    done = StreamView(p, p, p, p, 9, 2.0, True, status=p, verdict_label=p, error=p)
    ok = StreamView(p, p, p, p, 9, 2.0, True, status="ok", verdict_label=p)
    for tail in (None, 0, 3, 7, 10_000):
        out = stream_panels([live, done, ok], tail_chars=tail)
        parsed = audit(out)
        keys = [attrs["data-key"] for tag, attrs in parsed.tags if tag == "section"]
        assert keys == [p, p, p]


@pytest.mark.parametrize("p", PAYLOADS)
def test_cards_tables_banners_are_safe(p: str) -> None:
    result = payload_result(p)
    out = verdict_card(result, thinking_budget=64)
    assert p in text_of(out)  # shown as text, in the judgments table
    audit(verdict_card(item_result(list(result.pairs), strategy=p), show_judgments=False))
    audit(ranking_table(item_result(list(result.pairs), strategy=p, ratings={p: {0: 1.0}, "elo": {0: 1.0}})))
    audit(banner("error", p, p))
    audit(progress_bar(1, 2, label=p))
    audit(progress_bar(0, 0, label=p))


def test_the_audit_catches_live_markup() -> None:
    """The checker itself must fail on the things it exists to catch."""
    for bad in (
        "<script>x</script>",
        "<IMG SRC=x>",
        '<a href="jav&#x09;ascript:1">x</a>',
        '<a href=" DATA:text/html,x">x</a>',
        '<div onclick="x">',
        '<p style="x">',
    ):
        parser = _Audit()
        parser.feed(bad)
        assert parser.problems, bad


# --------------------------------------------------------------------------- Markdown


def test_markdown_renders_structure() -> None:
    src = (
        "# Title\n\nSome *em* and **strong** and `a < b`.\n\n- one\n- two\n\n"
        "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n```python\nif x < 3 and '<b>':\n    pass\n```\n\n"
        "[site](https://example.org) and <b>raw</b>"
    )
    out = markdown(src)
    parsed = audit(out)
    tags = [t for t, _ in parsed.tags]
    assert out.startswith('<div class="rrm-md">')
    for tag in ("h1", "em", "strong", "code", "ul", "li", "table", "th", "td", "pre", "a"):
        assert tag in tags, tag
    assert "b" not in tags  # raw HTML is text
    text = "".join(parsed.text)
    assert "<b>raw</b>" in text and "if x < 3 and '<b>':" in text and "a < b" in text
    assert "<pre><code>if x &lt; 3" in out
    link = next(attrs for t, attrs in parsed.tags if t == "a")
    assert link["href"] == "https://example.org"
    assert set(link["rel"].split()) == {"noopener", "noreferrer", "nofollow"}
    cells = [attrs.get("class") for t, attrs in parsed.tags if t in ("th", "td")]
    assert cells == ["rrm-align-left", "rrm-align-right"] * 2


def test_markdown_drops_dangerous_and_relative_links() -> None:
    parsed = audit(markdown("[a](javascript:alert(1)) [b](/logout) [c](mailto:x@example.org) ![i](http://x/t.png)"))
    hrefs = [attrs.get("href") for t, attrs in parsed.tags if t == "a"]
    assert "mailto:x@example.org" in hrefs
    assert not any(h and ("logout" in h or "javascript" in h) for h in hrefs)


# --------------------------------------------------------------------------- stream panels


def test_tail_truncation_and_full_text_when_done() -> None:
    reasoning = "".join(f"step {k}; " for k in range(200))
    live = StreamView("0-1:0", "Response 1 vs 2 · order 1→2 · sample 1", reasoning, "", 321, 4.0, False)
    out = stream_panels([live], tail_chars=100)
    hidden = len(reasoning) - 100
    assert f"… {hidden:,} earlier characters (shown in full when the judgment ends)" in text_of(out)
    assert reasoning[-100:] in text_of(out) and reasoning[:-100] not in text_of(out)
    assert 'data-key="0-1:0"' in out and 'data-done="0"' in out and 'data-tokens="321"' in out
    assert "streaming" in text_of(out) and "<details" in out and " open>" in out

    done = StreamView("0-1:0", "t", reasoning, r"\boxed{Assistant 1}", 400, 5.0, True, "ok", "Response 1")
    out = stream_panels([done], tail_chars=100)
    text = text_of(out)
    assert reasoning in text and "earlier characters" not in text
    assert r"\boxed{Assistant 1}" in text and "Response 1" in text and 'data-done="1"' in out

    short = stream_panels([StreamView("k", "t", "short", tokens=1, elapsed_s=0.5)], tail_chars=100)
    assert "earlier characters" not in short
    assert "No judgment is running" in text_of(stream_panels([]))


def test_stream_panel_shows_error_and_status() -> None:
    view = StreamView("k", "t", "x", "", 3, 1.0, True, status="error", error="ConnectError: refused")
    out = stream_panels([view])
    assert "rrm-badge--error" in out and "ConnectError: refused" in text_of(out)
    out = stream_panels([StreamView("k", "t", "x", "", 3, 1.0, True, status="truncated")])
    assert "truncated" in text_of(out) and "No text after </think>." in text_of(out)


# --------------------------------------------------------------------------- verdict card


def winner_attr(out: str) -> str | None:
    return next(attrs["data-winner"] for t, attrs in audit(out).tags if "rrm-verdict" in (attrs.get("class") or ""))


def test_verdict_card_states_winner_split_and_truncation() -> None:
    js = [
        judgment(0, 1, 0, Verdict.A),
        judgment(0, 1, 1, Verdict.A),
        judgment(0, 1, 2, None, Status.TRUNCATED),
        judgment(0, 1, 3, None, Status.TRUNCATED),
    ]
    out = verdict_card(item_result([pair(0, 1, js)]), thinking_budget=1024)
    text = text_of(out)
    assert winner_attr(out) == "1"
    assert "Response 1 is better" in text
    assert "2–0 for Response 1, 2 without a verdict" in text
    assert (
        "2 of 4 judgments were cut off by the thinking budget (1,024 tokens) before a verdict; raise the budget" in text
    )
    assert "2 truncated" in text
    assert "not tested (one order)" in text
    assert "600 reasoning tokens" in text


def test_verdict_card_consistency_tie_and_no_verdict() -> None:
    both = [judgment(0, 1, 0, Verdict.A), judgment(1, 0, 0, Verdict.B)]  # Response 1 both times
    out = verdict_card(item_result([pair(0, 1, both, position_consistent=True)]), elapsed_s=3.25)
    assert "consistent (both presentation orders agree)" in text_of(out) and "3.2 s" in text_of(out)

    flipped = [judgment(0, 1, 0, Verdict.A), judgment(1, 0, 0, Verdict.A)]  # the first shown wins twice
    out = verdict_card(item_result([pair(0, 1, flipped, position_consistent=False)]))
    assert winner_attr(out) == "tie"
    assert "flipped between orders" in text_of(out) and "1–1 (even)" in text_of(out)
    assert "favouring a position" in text_of(out)

    none = [judgment(0, 1, 0, None, Status.NO_VERDICT), judgment(0, 1, 1, None, Status.ERROR, error="boom")]
    out = verdict_card(item_result([pair(0, 1, none)]))
    text = text_of(out)
    assert winner_attr(out) == "none" and "No verdict" in text
    assert "1 of 2 judgments finished their reasoning without a boxed verdict" in text
    assert "1 of 2 judgments failed in the backend: boom" in text


# --------------------------------------------------------------------------- rankings


def test_ranking_table_round_robin() -> None:
    pairs = [
        pair(0, 1, [judgment(0, 1, 0, Verdict.B)]),
        pair(0, 2, [judgment(0, 2, 0, Verdict.A)]),
        pair(1, 2, [judgment(1, 2, 0, Verdict.A)]),
    ]
    ratings = {"elo": {1: 1032.0, 0: 1000.4, 2: 968.0}, "bradley_terry": {"1": 0.6, "0": 0.3, "2": 0.1}}
    out = ranking_table(item_result(pairs, strategy="round-robin", winner=1, ranking=(1, 0, 2), ratings=ratings))
    parsed = audit(out)
    rows = [attrs["data-response"] for t, attrs in parsed.tags if t == "tr" and "data-response" in attrs]
    assert rows == ["2", "1", "3"]
    text = "".join(parsed.text)
    assert "Elo" in text and "1032" in text and "Bradley–Terry" in text and "0.600" in text
    assert "Response 1 vs Response 2" in text and "3 matches" in text


def test_ranking_table_knockout_bracket_and_undecided() -> None:
    pairs = [pair(0, 1, [judgment(0, 1, 0, Verdict.A)]), pair(0, 2, [judgment(0, 2, 0, None, Status.TRUNCATED)])]
    bracket = (
        ({"round": 1, "i": 0, "j": 1, "winner": 0, "tiebreak": None}, {"round": 1, "i": 2, "j": None, "winner": 2}),
        ({"round": 2, "i": 0, "j": 2, "winner": 0, "tiebreak": "bracket_order"},),
    )
    out = ranking_table(item_result(pairs, strategy="knockout", winner=0, ranking=(0, 2, 1), bracket=bracket))
    text = text_of(out)
    assert "Round 1" in text and "Final" in text and "Response 3 (bye)" in text
    assert "no winner; Response 1 went on by bracket order" in text and "0–0 (+1 without a verdict)" in text
    assert "No winner: a match had no winner" in text
    assert "only the champion is decided" in text

    out = ranking_table(item_result(pairs, strategy="round-robin", winner=None, ranking=()))
    assert "no ranking" in text_of(out)


# --------------------------------------------------------------------------- progress, banners


def test_progress_bar_and_banner() -> None:
    parsed = audit(progress_bar(12, 10, label="Items judged"))
    bar = next(attrs for t, attrs in parsed.tags if t == "progress")
    assert bar["value"] == "10" and bar["max"] == "10" and bar["aria-valuenow"] == "10"
    assert "10 / 10 (100%)" in "".join(parsed.text)
    indeterminate = next(attrs for t, attrs in audit(progress_bar(0, 0, label="x")).tags if t == "progress")
    assert "value" not in indeterminate

    out = banner("warning", "Model loading", "RRM-7B <is> loading…")
    assert 'role="status"' in out and "rrm-banner--warning" in out
    assert "RRM-7B <is> loading…" in text_of(out)
    assert 'role="alert"' in banner("error", "t", "b")
    with pytest.raises(ValueError):
        banner("danger", "t", "b")  # type: ignore[arg-type]


def test_responses_grid() -> None:
    out = responses_grid(["# One", "*two*"], query="Which is better?")
    parsed = audit(out)
    cards = [attrs["data-response"] for t, attrs in parsed.tags if "data-response" in attrs]
    assert cards == ["1", "2"]
    text = "".join(parsed.text)
    assert "Query" in text and "Which is better?" in text and "Response 2" in text
    assert "h1" in [t for t, _ in parsed.tags] and "Query" not in text_of(responses_grid(["a", "b"]))


# --------------------------------------------------------------------------- text as the model saw it


class _Seen(HTMLParser):
    """The text a reader sees in rendered Markdown: ``<br>`` and block ends as line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        if tag == "span" and "rrm-math" in (dict(attrs).get("class") or ""):
            self.parts.append("⟦")  # KaTeX typesets the TeX inside: the delimiters are not shown

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self.parts.append("⟧")

    def handle_data(self, data: str) -> None:
        self.parts.append(data.replace("\n", ""))  # source newlines in HTML are not shown

    def seen(self, out: str) -> str:
        self.feed(out)
        self.close()
        return "".join(self.parts)


POEM = "Roses are red,\nViolets are blue,\nSugar is sweet,\nAnd so are you."
MATH = r"The area is $\int_0^1 x^2\,dx = \frac{1}{3}$; \[ a \] \\ \*not emphasis\* 1\. &amp; &lt;b&gt; a\ b"


def _math_marked(text: str) -> str:
    """The text as the rendered view shows it: the two formulas of MATH as math, everything else as written."""
    return text.replace(r"$\int_0^1 x^2\,dx = \frac{1}{3}$", r"⟦\int_0^1 x^2\,dx = \frac{1}{3}⟧").replace(
        r"\[ a \]", "⟦ a ⟧"
    )


@pytest.mark.parametrize("text", [POEM, MATH, POEM + "\n" + MATH])
def test_markdown_shows_every_backslash_and_line_break_as_written(text: str) -> None:
    out = markdown(text)
    audit(out)
    assert _Seen().seen(out) == _math_marked(text)  # nothing eaten: escapes, entities and single newlines kept
    assert "<em>" not in out  # an escaped star still does not start emphasis
    grid = _Seen().seen(responses_grid([text, "other"], query=text))
    assert grid.count(_math_marked(text)) >= 2  # rendered views of the query and the response
    raw = re.findall(r'<div class="rrm-pre rrm-raw">(.*?)</div>', responses_grid([text, "other"], query=text), re.S)
    assert [html.unescape(r) for r in raw] == [text, text, "other"]  # the raw views: the exact text


@pytest.mark.parametrize(
    ("source", "tex", "display"),
    [
        (r"so $x_1 + y_1$ holds", r"x_1 + y_1", False),
        (r"so \(a_b *c*\) holds", r"a_b *c*", False),
        ("so\n$$\na_b *c* < d\n$$\nholds", "\na_b *c* < d\n", True),
        (r"so \[\sum_{i=1}^n i\] holds", r"\sum_{i=1}^n i", True),
    ],
)
def test_math_is_kept_whole_for_katex_and_never_read_as_markdown(source: str, tex: str, display: bool) -> None:
    out = markdown(source)
    audit(out)
    spans = re.findall(r'<span class="(rrm-math[^"]*)">(.*?)</span>', out, re.S)
    assert [(c, html.unescape(t)) for c, t in spans] == [("rrm-math rrm-math--display" if display else "rrm-math", tex)]
    assert "<em>" not in out


@pytest.mark.parametrize(
    "source",
    ["costs $5 and $10", "a $ b $ c", r"\$x$ is escaped", "`$x$` in code", "x=$y$2", "$ $", "```\n$x$\n```"],
)
def test_dollars_that_are_not_math_stay_text(source: str) -> None:
    assert "rrm-math" not in markdown(source)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_inside_math_stay_text(payload: str) -> None:
    for source in (f"${payload}$", f"$$ {payload} $$", f"\\({payload}\\)"):
        audit(markdown(source))
        audit(readable(source))


def test_verdict_card_tells_a_cut_by_the_budget_from_a_stop_inside_the_thinking() -> None:
    js = [
        judgment(0, 1, 0, None, Status.TRUNCATED, finish_reason="length", completion_tokens=512),
        judgment(0, 1, 1, None, Status.TRUNCATED, finish_reason="length", completion_tokens=512),
        judgment(0, 1, 2, None, Status.TRUNCATED, finish_reason="stop", completion_tokens=232),
        judgment(0, 1, 3, Verdict.A),
    ]
    out = verdict_card(item_result([pair(0, 1, js)]), thinking_budget=512)
    text = text_of(out)
    assert "2 of 4 judgments were cut off by the thinking budget (512 tokens) before a verdict" in text
    assert "3 of 4" not in text  # the one that stopped by itself is not blamed on the budget
    assert "1 of 4 judgments stopped by themselves inside the thinking" in text
    assert "truncated: cut by the budget" in text and "truncated: stopped while thinking" in text
    # an old judgment with no finish reason: at the budget it was cut, below it nobody knows
    old = [
        judgment(0, 1, 0, None, Status.TRUNCATED, finish_reason=None, completion_tokens=512),
        judgment(0, 1, 1, None, Status.TRUNCATED, finish_reason=None, completion_tokens=100),
    ]
    text = text_of(verdict_card(item_result([pair(0, 1, old)]), thinking_budget=512))
    assert "1 of 2 judgments was cut off by the thinking budget" in text
    assert "1 of 2 judgments ended before closing </think> (finish reason: none reported)" in text
    # the live panels' badges say the same
    panels = text_of(stream_panels([
        StreamView("k1", "t", "r", "", 512, 1.0, True, "truncated", finish_reason="length"),
        StreamView("k2", "t", "r", "", 232, 1.0, True, "truncated", finish_reason="stop"),
    ]))  # fmt: skip
    assert "cut by the budget" in panels and "stopped while thinking" in panels


def test_verdict_card_tells_a_forced_close_from_a_natural_one_and_a_cut_off() -> None:
    """Budget forcing (issue 16): a judgment whose thinking the budget closed kept its verdict and says so,
    apart from the natural close and the truncation beside it."""
    js = [
        judgment(0, 1, 0, Verdict.A, forced_close=True, forced_at=512),
        judgment(0, 1, 1, Verdict.A),
        judgment(0, 1, 2, None, Status.TRUNCATED, finish_reason="length", completion_tokens=512),
    ]
    text = text_of(verdict_card(item_result([pair(0, 1, js)]), thinking_budget=512))
    assert "1 with the thinking closed by the budget (budget forcing)" in text
    assert "ok (thinking closed by the budget at 512 tokens)" in text
    assert text.count("thinking closed by the budget at") == 1  # the natural close and the cut-off are not
    assert "truncated: cut by the budget" in text


def test_a_flip_shows_both_orders_side_by_side_from_where_they_part() -> None:
    from rrm_ui.ui.render import Trace, flip_view

    shared = "Both answers address the question.\nLet me compare them."
    first = Trace(0, 1, 0, shared + "\nThe first one, $x^2$, is right.", "Assistant 1")
    second = Trace(1, 0, 1, shared + "\nThe one shown first is more detailed.", "Assistant 1")
    out = flip_view([first, second, Trace(0, 1, 1, "another sample")])
    audit(out)
    text = _Seen().seen(out)
    assert "Response 1 first → Response 1; Response 2 first → Response 2" in text  # both verdicts on top
    assert "The first 2 lines are the same in both orders" in text
    cols = re.findall(r'<div class="rrm-flip-col" data-order="(\d-\d)">(.*?)</div></div></div>', out, re.S)
    assert [c for c, _ in cols] == ["1-2", "2-1"]
    raw = [html.unescape(r) for r in re.findall(r'<div class="rrm-pre rrm-raw">(.*?)</div>', out, re.S)]
    assert "The first one, $x^2$, is right." in raw and "The one shown first is more detailed." in raw
    assert not any("Let me compare" in r for r in raw)  # the shared lines once, above the columns
    assert flip_view([first]) == ""  # one order only: nothing to put side by side


def test_finished_panels_fold_to_one_line() -> None:
    from rrm_ui.ui.render import StreamView

    views = [StreamView("0-1:0", "Response 1 vs 2", "thinking", "answer", 12, 1.0, True, "ok", "Response 1"),
             StreamView("1-0:0", "Response 2 vs 1", "still", "", 3, 0.5, False)]  # fmt: skip
    out = stream_panels(views, fold_done=True)
    audit(out)
    done, live = out.split('data-key="1-0:0"')
    assert '<details class="rrm-stream-fold"><summary class="rrm-stream-head">' in done
    assert "rrm-stream-fold" not in live  # a panel still streaming stays open


def test_the_judge_tabs_view_names_the_pair_of_a_list() -> None:
    from rrm_ui.ui.tabs import judge

    p01, p02 = pair(0, 1, [judgment(0, 1, 0, Verdict.B)]), pair(0, 2, [judgment(0, 2, 0, Verdict.B)])
    p12 = pair(1, 2, [judgment(1, 2, 0, Verdict.B)])
    robin = ItemResult("i", "round-robin", 2, (2, 1, 0), (p01, p02, p12), "rrm", "1", "m", "test")
    assert judge.label_title(robin).startswith("Your view on Response 3 vs Response 2 (the model's top two")
    assert judge.label_title(item_result([p01])) == "Your view"


def test_verdict_card_names_the_raised_budget_of_an_escalated_judgment() -> None:
    """Adaptive escalation: a judgment run at a raised thinking budget says so, and with no finish reason
    reported it counts as cut off by its own budget, not the run's."""
    js = [
        judgment(0, 1, 0, None, Status.TRUNCATED, finish_reason="length", completion_tokens=100),
        judgment(0, 1, 1, Verdict.B, escalated_to=200),
        judgment(0, 1, 2, None, Status.TRUNCATED, finish_reason=None, completion_tokens=400, escalated_to=400),
        judgment(0, 1, 3, None, Status.TRUNCATED, finish_reason=None, completion_tokens=150, escalated_to=400),
    ]
    text = text_of(verdict_card(item_result([pair(0, 1, js)]), thinking_budget=100))
    assert "ok (thinking budget raised to 200 tokens)" in text
    assert "truncated: cut by the budget (thinking budget raised to 400 tokens)" in text
    # 150 of a raised 400: not at its budget, so not "cut by the budget" (at the run's 100 it would be)
    assert ("2 of 4 judgments were cut off by the thinking budget (100 tokens, raised to 400 for 1 of them) "
            "before a verdict; raise the budget or the adaptive cap.") in text  # fmt: skip
    assert "1 of 4 judgments ended before closing </think> (finish reason: none reported)" in text
