"""Review tab: adjudicate annotators' disagreements, and (admins) a data set's guidelines and blind setting.

A reviewer (or an admin) loads the review queue of a data set (pairs where annotators disagree, and as
filters where a human disagrees with the model or with gold, or a label has a note), opens a pair, sees
the query, both responses, every annotator's labels and notes, the model's verdict and traces, gold, and
the pair's adjudication history, and sets the final label with a reason. Annotators get a refusal.
The rules are in :mod:`rrm_ui.services.review` (docs/review.md).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from rrm_ui.domain import Choice
from rrm_ui.services import annotation, review
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike

NO_RUN = "(none)"
CHOICES = {"A is better": Choice.A, "B is better": Choice.B, "tie": Choice.TIE, "both bad": Choice.BOTH_BAD}
CHOICE_TEXT = {"A": "A better", "B": "B better", "tie": "tie", "both_bad": "both bad"}
BLIND = {"auto (on when an item goes to more than one annotator)": None, "on": True, "off": False}
QUEUE_COLUMNS = ["pair", "item", "why", "humans", "model", "gold", "final"]


@dataclass(frozen=True)
class QueueView:
    choices: list[tuple[str, str]]  # (label, "item_db_id:i:j")
    table: pd.DataFrame
    message: str  # Markdown


def _require(ctx: AppContext, request: RequestLike | None) -> str:
    user = ctx.user(request)
    if not user.can_review:
        raise PermissionError(f"{user.name!r} is an annotator: only reviewers and admins adjudicate "
                              "(an admin makes a reviewer with rrm-ui users add NAME --reviewer)")  # fmt: skip
    return user.name


def _dataset(ctx: AppContext, name: str | None) -> int:
    info = ctx.repo.dataset(name) if name else None
    if info is None:
        raise ValueError("choose a data set")
    return info.id


def _run(ctx: AppContext, dataset_id: int, run: str | None) -> int | None:
    if not run or run == NO_RUN:
        return None
    found = [r for r in ctx.repo.runs(dataset_id) if r.name == run]
    if not found:
        raise ValueError(f"this data set has no run named {run!r}")
    return found[0].id


def _key(key: str | None) -> tuple[int, int, int]:
    try:
        item, i, j = (int(x) for x in (key or "").split(":"))
    except ValueError:
        raise ValueError("choose a pair from the queue") from None
    return item, i, j


def form_choices(ctx: AppContext, dataset: str | None) -> tuple[list[str], str | None, list[str], str]:
    """Data sets, the one shown, its runs and the default run (the latest)."""
    names = [d.name for d in ctx.repo.datasets()]
    keep = dataset if dataset in names else (names[0] if names else None)
    runs = [r.name for r in ctx.repo.runs(ctx.repo.dataset(keep).id)] if keep else []
    return names, keep, [NO_RUN, *runs], runs[-1] if runs else NO_RUN


def load_queue(
    ctx: AppContext,
    request: RequestLike | None,
    dataset: str | None,
    run: str | None,
    reasons: list[str] | None,
    include_adjudicated: bool = False,
) -> QueueView:
    _require(ctx, request)
    ds = _dataset(ctx, dataset)
    entries = review.review_queue(ctx.repo, ds, _run(ctx, ds, run), tuple(reasons or ("humans",)),
                                  include_adjudicated=bool(include_adjudicated))  # fmt: skip
    rows, choices = [], []
    for e in entries:
        key = f"{e.item_db_id}:{e.pair[0]}:{e.pair[1]}"
        ref = annotation.item_ref(str(dataset), e.ext_id)  # as every tab names the item
        label = f"item {ref} · responses {e.pair[0] + 1} and {e.pair[1] + 1}"
        choices.append((label, key))
        rows.append({
            "pair": key, "item": ref, "why": "; ".join(review.REASONS[r] for r in e.reasons),
            "humans": ", ".join(f"{a}: {CHOICE_TEXT.get(c, c)}" for a, c in e.human.items()),
            "model": CHOICE_TEXT.get(e.model, "") if e.model else "", "gold": CHOICE_TEXT.get(e.gold, "") if e.gold
            else "", "final": CHOICE_TEXT.get(e.final, "") if e.final else "",
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=QUEUE_COLUMNS)
    per = review.criterion_agreement(ctx.repo, ds)
    crit = "; ".join(
        f"{render.text_inline(r.criterion)} {r.agree}/{r.rater_pairs}"
        + (f" ({r.agreement:.0%})" if r.rater_pairs else "")
        for r in per.itertuples(index=False)
    )
    what = " or ".join(review.REASONS[r] for r in (reasons or ["humans"]))
    message = f"**{len(entries)} pairs** where {render.text_inline(what)}" + (
        "" if include_adjudicated else " (not yet adjudicated)") + "."  # fmt: skip
    if crit:
        message += f" Annotators agreeing per criterion (pairs of annotators on a shared pair): {crit}."
    return QueueView(choices, table, message)


def show_pair(
    ctx: AppContext, request: RequestLike | None, dataset: str | None, run: str | None, key: str | None
) -> str:
    """The pair as a reviewer sees it (HTML)."""
    _require(ctx, request)
    if not key:
        return ""
    ds = _dataset(ctx, dataset)
    item_id, i, j = _key(key)
    r = review.review_item(ctx.repo, item_id, (i, j), _run(ctx, ds, run))
    e = html.escape
    parts = [render.responses_grid([r.item.item.responses[i], r.item.item.responses[j]], query=r.item.item.query)]
    parts.append(f"<p>A is response {i + 1}, B is response {j + 1} of item {e(r.item.item.id)}. "
                 f"Gold: <b>{e(CHOICE_TEXT.get(r.gold, 'none') if r.gold else 'none')}</b>. "
                 f"Model: <b>{e(CHOICE_TEXT.get(r.model, 'no verdict') if r.model else 'no verdict')}</b>"
                 + (f" (votes: {e(', '.join(f'response {k + 1}: {v}' for k, v in sorted(r.votes.items())))})"
                    if r.votes else "") + ".</p>")  # fmt: skip
    earlier = ' class="rrm-history"'
    rows = "".join(
        f"<tr{'' if lb.latest else earlier}><td>{e(lb.annotator)}</td>"
        f"<td>{e(CHOICE_TEXT.get(lb.choice, lb.choice))}{'' if lb.latest else ' (earlier)'}</td>"
        f"<td>{e(lb.note or '')}</td><td>{'' if lb.guideline_version is None else lb.guideline_version}</td>"
        f"<td>{e(str(lb.created_at)[:19])}</td></tr>"
        for lb in r.labels
    )  # fmt: skip
    parts.append(
        "<h4>Labels</h4><table class='rrm-table'><tr><th>annotator</th><th>label</th><th>note</th>"
        f"<th>guidelines</th><th>at</th></tr>{rows or '<tr><td colspan=5>none</td></tr>'}</table>"
    )
    crit = ctx.repo.latest_criterion_labels(ds)
    crit = crit[(crit["item_id"] == item_id) & (crit[["pair_i", "pair_j"]].min(axis=1) == i)
                & (crit[["pair_i", "pair_j"]].max(axis=1) == j)] if not crit.empty else crit  # fmt: skip
    if not crit.empty:
        cells = "".join(
            f"<tr><td>{e(r.annotator)}</td><td>{e(r.criterion)}</td>"
            f"<td>{e(review.canonical(int(r.pair_i), int(r.pair_j), r.choice)[1])}</td></tr>"
            for r in crit.sort_values(["criterion", "annotator"]).itertuples(index=False)
        )  # fmt: skip
        parts.append("<h4>Criteria</h4><table class='rrm-table'><tr><th>annotator</th><th>criterion</th>"
                     f"<th>choice</th></tr>{cells}</table>")  # fmt: skip
    history = "".join(
        f"<tr><td>{e(a.reviewer)}</td><td>{e(CHOICE_TEXT.get(a.choice.value, a.choice.value))}</td>"
        f"<td>{e(a.reason)}</td><td>{e(str(a.created_at)[:19])}</td></tr>"
        for a in r.history
    )  # fmt: skip
    parts.append("<h4>Adjudications (the last one is final)</h4><table class='rrm-table'><tr><th>reviewer</th>"
                 f"<th>final label</th><th>reason</th><th>at</th></tr>"
                 f"{history or '<tr><td colspan=4>none yet</td></tr>'}</table>")  # fmt: skip
    if r.judgments:
        traces = []
        for n, jd in enumerate(r.judgments, 1):
            shown = f"response {jd.a + 1} shown first, response {jd.b + 1} second"
            verdict = jd.verdict.value if jd.verdict else "no verdict"
            traces.append(f"<details><summary>Trace {n}: {e(shown)}; verdict {e(verdict)} ({e(jd.status.value)})"
                          f"</summary>{render.trace_body(jd.reasoning, jd.answer)}</details>")  # fmt: skip
        parts.append("<h4>The model's traces of this pair</h4>" + "".join(traces))
    return "".join(parts)


def decide(
    ctx: AppContext,
    request: RequestLike | None,
    dataset: str | None,
    run: str | None,
    key: str | None,
    choice: str | None,
    reason: str | None,
) -> tuple[str, str]:
    """Store the final label of the pair; (message, the pair's view again)."""
    name = _require(ctx, request)
    item_id, i, j = _key(key)
    if choice not in CHOICES:
        raise ValueError("choose the final label")
    review.adjudicate(ctx.repo, name, item_id, (i, j), CHOICES[choice], reason or "")
    return (f"Saved: **{render.text_inline(choice)}** is the final label of this pair.",
            show_pair(ctx, request, dataset, run, key))  # fmt: skip


def show_bracket(
    ctx: AppContext, request: RequestLike | None, dataset: str | None, run: str | None, item_db_id: float | None
) -> str:
    """A list item's knockout as the run played it and as replayed with the reviewers' decisions, or its
    round robin's ratings as the run fit them and refit with those decisions (HTML). Overturning a match
    is adjudicating its pair (the key shown beside it)."""
    _require(ctx, request)
    ds = _dataset(ctx, dataset)
    run_id = _run(ctx, ds, run)
    if run_id is None or item_db_id is None:
        raise ValueError("choose the run that played the knockout and the item's id")
    row = ctx.repo.latest_result_row(run_id, int(item_db_id))
    if row is not None and row.get("strategy") == "round-robin":
        return _round_robin_html(review.review_round_robin(ctx.repo, int(item_db_id), run_id))
    b = review.review_bracket(ctx.repo, int(item_db_id), run_id)
    e = html.escape

    def table(replay, title: str) -> str:  # noqa: ANN001
        rows = []
        for rnd in replay.rounds:
            for rm in rnd:
                m = rm.match
                if m.j is None:
                    rows.append(
                        f"<tr><td>{m.round}</td><td>response {m.i + 1}: bye</td><td></td><td></td><td></td></tr>"
                    )
                    continue
                key = f"{b.item.db_id}:{min(m.i, m.j)}:{max(m.i, m.j)}"
                won = "no winner (first listed went on)" if m.winner is None else f"response {m.winner + 1}"
                rows.append(f"<tr><td>{m.round}</td><td>{m.i + 1} v {m.j + 1}</td><td>{e(won)}</td>"
                            f"<td>{e(rm.source)}</td><td><code>{e(key)}</code></td></tr>")  # fmt: skip
        for i, j in replay.pending:
            key = f"{b.item.db_id}:{min(i, j)}:{max(i, j)}"
            rows.append(f"<tr><td></td><td>{i + 1} v {j + 1}</td><td><b>to decide</b> (never compared)</td>"
                        f"<td></td><td><code>{e(key)}</code></td></tr>")  # fmt: skip
        ranking = ", ".join(str(k + 1) for k in replay.ranking) or "not yet: decide the pending match"
        head = "<tr><th>round</th><th>match</th><th>winner</th><th>decided by</th><th>pair</th></tr>"
        return f"<h4>{e(title)}</h4><table class='rrm-table'>{head}{''.join(rows)}</table><p>Ranking: {e(ranking)}</p>"

    over = ", ".join(f"{i + 1} v {j + 1}" for i, j in b.overturned) or "none"
    return (table(b.model, "As the run played it") + table(b.corrected, "With the reviewers' decisions")
            + f"<p>Matches overturned: {e(over)}. To overturn a match or decide a pending one, put its pair in "
            "the Pair box and save a final label.</p>")  # fmt: skip


def _round_robin_html(rr: review.RoundRobinReview) -> str:
    """A round robin's ratings as the run fit them and refit with the reviewers' decisions (HTML)."""
    e = html.escape

    def table(fit, title: str) -> str:  # noqa: ANN001
        head = ("<tr><th>rank</th><th>response</th><th>wins</th><th>Bradley–Terry</th><th>Elo</th>"
                "<th>Elo, the paper's</th></tr>")  # fmt: skip
        rows = []
        for rank, c in enumerate(fit.ranking, 1):
            paper = f"{fit.official_elo[c]:.1f}" if fit.official_elo else "—"
            cells = (rank, f"response {c + 1}", f"{fit.wins[c]:g}", f"{fit.bradley_terry[c]:.1f}", f"{fit.elo[c]:.0f}",
                     paper)  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in cells) + "</tr>")
        ranking = ", ".join(str(k + 1) for k in fit.ranking)
        return f"<h4>{e(title)}</h4><table class='rrm-table'>{head}{''.join(rows)}</table><p>Ranking: {e(ranking)}</p>"

    over = ", ".join(f"{i + 1} v {j + 1}" for i, j in rr.overturned) or "none"
    keys = ", ".join(f"<code>{rr.item.db_id}:{i}:{j}</code>" for i, j in rr.overturned)
    return (table(rr.model, "As the run rated it") + table(rr.corrected, "Refit with the reviewers' decisions")
            + f"<p>Matches overturned: {e(over)}{' (' + keys + ')' if keys else ''}. To overturn a match, put its "
            f"pair (<code>{rr.item.db_id}:I:J</code>) in the Pair box and save a final label.</p>")  # fmt: skip


def load_settings(ctx: AppContext, request: RequestLike | None, dataset: str | None) -> tuple[str, str, str]:
    """(the latest guidelines' text, what they are, the blind setting's choice)."""
    ctx.user(request)
    ds = _dataset(ctx, dataset)
    g = ctx.repo.guidelines(ds)
    blind = ctx.repo.dataset_blind(ds)
    setting = next(k for k, v in BLIND.items() if v is blind)
    now = "on" if review.is_blind(ctx.repo, ds, ctx.overlap) else "off"
    about = (
        "No guidelines yet."
        if g is None
        else f"Version {g.version}" + (f" by {render.text_inline(g.author)}" if g.author else "") + "."
    ) + f" Blind to each other: now {now}."
    return (g.text if g else ""), about, setting


def save_settings(
    ctx: AppContext, request: RequestLike | None, dataset: str | None, text: str | None, blind: str | None
) -> str:
    """Admins: a new guidelines version (when the text changed) and the blind setting."""
    user = ctx.user(request)
    if not user.is_admin:
        raise PermissionError("only admins change a data set's guidelines and settings")
    name = dataset or ""
    ds = _dataset(ctx, name)
    actor = user.name if ctx.login else None
    saved = review.save_guidelines(ctx.repo, name, text or "", actor) if (text or "").strip() else None
    if blind in BLIND:
        review.set_blind(ctx.repo, name, BLIND[blind], actor)
    now = "on" if review.is_blind(ctx.repo, ds, ctx.overlap) else "off"
    return (f"Saved. Guidelines version {saved.version}." if saved else "Saved.") + f" Blind to each other: {now}."


# --- components -------------------------------------------------------------------------------


def _errors(fn):  # noqa: ANN001, ANN202
    """Refusals and bad input as a Gradio error message (``functools.wraps``: Gradio reads the signature
    to pass the ``gr.Request``)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except (PermissionError, ValueError) as exc:
            raise gr.Error(str(exc)) from exc

    return wrapped


def render_tab(ctx: AppContext) -> tuple:
    """Build the tab; returns (refresh function, inputs, outputs) for when the tab is shown."""
    gr.Markdown("Adjudicate where annotators disagree: the final label, with a reason, goes first into every "
                "export. Reviewers and admins only (docs/review.md).")  # fmt: skip
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", elem_id="rv-dataset")
        run = gr.Dropdown([NO_RUN], value=NO_RUN, label="Model run", elem_id="rv-run")
        reasons = gr.CheckboxGroup([(v, k) for k, v in review.REASONS.items()], value=["humans"],
                                   label="Pairs where", elem_id="rv-reasons")  # fmt: skip
        include = gr.Checkbox(label="include adjudicated", elem_id="rv-include")
    load = gr.Button("Load the queue", elem_id="rv-load")
    message = gr.Markdown(elem_id="rv-message")
    table = gr.Dataframe(pd.DataFrame(columns=QUEUE_COLUMNS), interactive=False, elem_id="rv-table")
    # "item:i:j"; a script may name a pair the queue does not list (docs/app.md, The API)
    pair = gr.Dropdown([], label="Pair to review", elem_id="rv-pair", allow_custom_value=True)
    view = gr.HTML(elem_id="rv-view")
    with gr.Row():
        choice = gr.Radio(list(CHOICES), label="Final label", elem_id="rv-choice")
        reason = gr.Textbox(label="Reason (required)", lines=2, elem_id="rv-reason", scale=3)
    save = gr.Button("Save the final label", variant="primary", elem_id="rv-save")
    saved = gr.Markdown(elem_id="rv-saved")
    with gr.Accordion("Tournament of a list item (knockout or round robin): overturn a match", open=False):
        with gr.Row():
            bracket_item = gr.Number(label="Item id (the database id, as in the Explorer)", precision=0,
                                     elem_id="rv-bracket-item")  # fmt: skip
            show_bracket_btn = gr.Button("Show the bracket or ratings", elem_id="rv-bracket-show")
        bracket_view = gr.HTML(elem_id="rv-bracket")
    with gr.Accordion("Guidelines and blind setting (admins)", open=False):
        about = gr.Markdown(elem_id="rv-about")
        text = gr.Textbox(label="Guidelines (Markdown); saving changed text adds a version", lines=10,
                          elem_id="rv-guidelines")  # fmt: skip
        blind = gr.Radio(list(BLIND), value=next(iter(BLIND)), label="Annotators blind to each other",
                         elem_id="rv-blind")  # fmt: skip
        save_settings_btn = gr.Button("Save guidelines and setting", elem_id="rv-save-settings")
        settings_msg = gr.Markdown(elem_id="rv-settings-msg")

    def refresh(ds: str | None):  # noqa: ANN202
        names, keep, runs, default = form_choices(ctx, ds)
        return gr.update(choices=names, value=keep), gr.update(choices=runs, value=default)

    def pick_dataset(ds: str | None, request: gr.Request):  # noqa: ANN202
        _, _, runs, default = form_choices(ctx, ds)
        txt, info, setting = load_settings(ctx, request, ds) if ds else ("", "", next(iter(BLIND)))
        return gr.update(choices=runs, value=default), txt, info, setting

    @_errors
    def load_fn(ds, rn, rs, inc, request: gr.Request):  # noqa: ANN001, ANN202
        q = load_queue(ctx, request, ds, rn, rs, inc)
        first = q.choices[0][1] if q.choices else None
        return q.message, q.table, gr.update(choices=q.choices, value=first), show_pair(ctx, request, ds, rn, first)

    @_errors
    def show_fn(ds, rn, key, request: gr.Request):  # noqa: ANN001, ANN202
        return show_pair(ctx, request, ds, rn, key)

    @_errors
    def save_fn(ds, rn, key, ch, rsn, request: gr.Request):  # noqa: ANN001, ANN202
        msg, shown = decide(ctx, request, ds, rn, key, ch, rsn)
        return msg, shown, ""

    @_errors
    def bracket_fn(ds, rn, it, request: gr.Request):  # noqa: ANN001, ANN202
        return show_bracket(ctx, request, ds, rn, it)

    @_errors
    def settings_fn(ds, txt, bl, request: gr.Request):  # noqa: ANN001, ANN202
        return save_settings(ctx, request, ds, txt, bl)

    dataset.change(pick_dataset, [dataset], [run, text, about, blind])  # also when the tab fills the menu
    load.click(load_fn, [dataset, run, reasons, include], [message, table, pair, view], api_name="review_queue")
    pair.input(show_fn, [dataset, run, pair], [view])
    save.click(save_fn, [dataset, run, pair, choice, reason], [saved, view, reason], api_name="review_decide")
    show_bracket_btn.click(bracket_fn, [dataset, run, bracket_item], [bracket_view], api_name="review_bracket")
    save_settings_btn.click(settings_fn, [dataset, text, blind], [settings_msg], api_name="review_settings")
    return refresh, [dataset], [dataset, run]
