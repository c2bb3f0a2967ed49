"""Judge tab: type a query and two or more responses, watch the reasoning stream, record your view.

Handlers are plain functions of the :class:`~rrm_ui.ui.context.AppContext` and the form's
values, so tests call them without a browser; :func:`render` only builds the components and
wires them to the handlers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from rrm_ui.domain import Choice, ItemResult
from rrm_ui.services import annotation
from rrm_ui.services import live as live_service
from rrm_ui.services.live import MAX_RESPONSES, LiveJudgment, LiveSnapshot, LiveState, StreamSnapshot
from rrm_ui.services.runtime import ModelUnavailable
from rrm_ui.ui import controls, render
from rrm_ui.ui.context import AppContext, RequestLike

UPDATE_INTERVAL_S = 0.25  # at most four updates per second per user: plenty for reading, light for the page
TAIL_CHARS = 4_000  # while streaming, each panel shows the newest text; the full text once it ends
STRATEGIES = {"auto (pair, or knockout for 3+)": "auto", "knockout": "knockout", "round-robin": "round-robin"}
AGREE, PREFER_OTHER, TIE, BOTH_BAD = "Agree with the model", "Prefer the other response", "Tie", "Both bad"


@dataclass(frozen=True)
class JudgeForm:
    query: str
    responses: list[str]
    budget: int
    votes: int
    swap: bool
    adaptive: bool
    strategy: str
    judge: str | None = None  # a judge format's name; None: the app's (--judge)
    order: str | None = None  # controls.ORDER_CHOICES' words; None: as listed
    stopping: str | None = None  # controls.STOPPING_CHOICES' words; None: the margin rule
    escalate: float | None = None  # adaptive escalation's cap in tokens; 0 or None: none


@dataclass(frozen=True)
class JudgeView:
    """Everything the tab shows about one judgment at one moment."""

    status: str  # a line of Markdown
    panels: str  # HTML: one panel per streamed comparison
    card: str  # HTML: the verdict card (and ranking for lists), empty while running
    running: bool
    label_choices: list[str]  # empty: nothing to label (running, stopped, failed)
    label_title: str = "Your view"  # for a list: names the pair the label is about
    pairs: tuple[tuple[str, str], ...] = ()  # a list's pairs as (words, "i:j"), the verdict's pair first


# --- handlers ---------------------------------------------------------------------------------


def start(ctx: AppContext, request: RequestLike | None, form: JudgeForm) -> LiveJudgment:
    """Start judging the form's item for this browser session (a previous one still running is stopped)."""
    user = ctx.user(request)
    item = live_service.validate_item(form.query, form.responses)
    escalate_to = controls.check_escalate(form.escalate, ctx.runtime.settings)
    compute = controls.compute_from_form(form.votes, form.swap, form.adaptive, form.order, form.stopping, escalate_to)
    sampling = ctx.runtime.sampling(max_tokens=controls.check_budget(form.budget, ctx.runtime.settings))
    judgment = LiveJudgment(
        ctx.runtime,
        item,
        compute=compute,
        sampling=sampling,
        strategy=STRATEGIES.get(form.strategy, form.strategy),
        annotator=user.name,
        judge=form.judge or None,
    )
    ctx.set_live(request, judgment)
    return judgment


def stream(ctx: AppContext, request: RequestLike | None, form: JudgeForm) -> Iterator[JudgeView]:
    """Start a judgment and yield a view of it a few times a second until it ends."""
    try:
        judgment = start(ctx, request, form)
    except (ValueError, ModelUnavailable, PermissionError) as e:
        yield JudgeView(f"**Cannot judge:** {render.text_inline(str(e))}", "", "", False, [])
        return
    try:
        while True:
            snap = judgment.snapshot()
            yield view(snap, budget=int(form.budget))
            if snap.state != LiveState.RUNNING:
                return
            time.sleep(UPDATE_INTERVAL_S)
    finally:
        # the page went away (or a new judgment replaced this one): do not keep the GPU busy for nobody
        if not judgment.finished:
            judgment.stop()


def stop(ctx: AppContext, request: RequestLike | None) -> str:
    judgment = ctx.live(request)
    if judgment is None or judgment.finished:
        return "Nothing is running."
    judgment.stop()
    return "Stopping: generation is being aborted on the backend."


def view(snap: LiveSnapshot, *, budget: int | None = None) -> JudgeView:
    running = snap.state == LiveState.RUNNING
    views = [_stream_view(s, snap.state) for s in snap.streams]
    panels = render.stream_panels(views, tail_chars=TAIL_CHARS if running else None, fold_done=not running)
    tokens = sum(v.tokens for v in views)
    if running:
        live_now = sum(1 for v in views if not v.done)
        status = f"Judging… {snap.elapsed_s:.1f} s · {live_now} streaming · {tokens:,} tokens so far"
        return JudgeView(status, panels, "", True, [])
    if snap.state == LiveState.STOPPED:
        status = f"**Stopped** after {snap.elapsed_s:.1f} s: generation was aborted; nothing was decided or stored."
        return JudgeView(status, panels, "", False, [])
    if snap.state == LiveState.FAILED or snap.result is None:
        return JudgeView(f"**Failed:** {render.text_inline(snap.error or 'unknown error')}", panels, "", False, [])
    result = snap.result
    card = render.verdict_card(result, thinking_budget=budget, elapsed_s=snap.elapsed_s)
    if len(result.ranking) > 2 or len(result.pairs) > 1:
        card += render.ranking_table(result)
    card += render.flip_view(render.flipped_traces(result))  # both orders' reasoning side by side
    stored = f"stored as {render.text_inline(annotation.item_ref(snap.dataset, snap.id))}" if snap.dataset else "stored"
    status = f"Done in {snap.elapsed_s:.1f} s · {tokens:,} tokens · {stored}"
    if snap.note:
        status += f" · {render.text_inline(snap.note)}"
    return JudgeView(status, panels, card, False, label_choices(snap), label_title(result), pair_choices(result))


def _responses(result: ItemResult) -> int:
    return len({x for p in result.pairs for x in (p.i, p.j)} | set(result.ranking))


def _is_final(result: ItemResult, pair: tuple[int, int]) -> bool:
    last = result.bracket[-1] if result.bracket else ()
    return len(last) == 1 and {last[0].get("i"), last[0].get("j")} == set(pair)


def pair_note(result: ItemResult, pair: tuple[int, int]) -> str:
    """Why this pair, in words: the verdict's own pair, or what the model said about these two."""
    if set(pair) == set(live_service.labelled_pair(result)):
        if _is_final(result, pair):
            return "the final: the verdict is about these two"
        return "the model's top two" if len(result.ranking) >= 2 else "the first two: the model ranked none"
    compared = next((p for p in result.pairs if {p.i, p.j} == set(pair)), None)
    if compared is not None:
        won = live_service.pair_outcome_winner(result, pair)
        if won is not None:
            return f"compared: Response {won + 1} is better"
        return "compared: a tie" if sum(compared.votes.get(k, 0) for k in pair) else "compared: no verdict"
    if result.winner in pair:
        return f"not compared; Response {result.winner + 1} won the list"
    return "the model did not compare these two"


def pair_key(pair: tuple[int, int]) -> str:
    return f"{pair[0]}:{pair[1]}"


def pair_of(result: ItemResult, key: str | None) -> tuple[int, int]:
    """The pair a menu value ("i:j") names; the verdict's pair when none is chosen. ValueError when the
    value is not two different responses of the judgment."""
    if not key:
        return live_service.labelled_pair(result)
    try:
        i, j = (int(x) for x in str(key).split(":"))
    except ValueError:
        raise ValueError(f"expected a pair as 'I:J' (response indices from 0), found {key!r}") from None
    n = _responses(result)
    if i == j or not (0 <= i < n and 0 <= j < n):
        raise ValueError(f"a pair is two different responses of the {n} judged, found Response {i + 1} and {j + 1}")
    return i, j


def pair_choices(result: ItemResult) -> tuple[tuple[str, str], ...]:
    """For a list: every pair of its responses, named, the one the verdict is about first; () for a pair."""
    n = _responses(result)
    if n <= 2:
        return ()
    first = live_service.labelled_pair(result)
    others = [(i, j) for i in range(n) for j in range(i + 1, n) if {i, j} != set(first)]
    return tuple((f"Response {i + 1} vs Response {j + 1} ({pair_note(result, (i, j))})", pair_key((i, j)))
                 for i, j in [first, *others])  # fmt: skip


def label_title(result: ItemResult, pair: tuple[int, int] | None = None) -> str:
    """What "Your view" asks about: for a list, the pair it names (by default the verdict's, e.g. the final)."""
    if _responses(result) <= 2:
        return "Your view"
    i, j = pair or live_service.labelled_pair(result)
    why = pair_note(result, (i, j))
    return f"Your view on Response {i + 1} vs Response {j + 1} ({why}; your label is about this pair)"


def label_choices(snap: LiveSnapshot, pair: tuple[int, int] | None = None) -> list[str]:
    if snap.result is None:
        return []
    pair = pair or live_service.labelled_pair(snap.result)
    if live_service.model_choice(snap.result, pair) is not None:
        return [AGREE, PREFER_OTHER, TIE, BOTH_BAD]
    return [f"Response {pair[0] + 1} is better", f"Response {pair[1] + 1} is better", TIE, BOTH_BAD]


def choose_pair(ctx: AppContext, request: RequestLike | None, key: str | None) -> tuple[str, list[str]]:
    """The pair menu changed: (the title that names the pair, its label choices)."""
    ctx.user(request)
    judgment = ctx.live(request)
    snap = judgment.snapshot() if judgment is not None else None
    if snap is None or snap.result is None:
        return "Your view", []
    pair = pair_of(snap.result, key)
    return label_title(snap.result, pair), label_choices(snap, pair)


def choice_of(snap: LiveSnapshot, label: str, pair: tuple[int, int] | None = None) -> Choice:
    """The stored choice (A: the pair's first response better) for what the user picked."""
    assert snap.result is not None
    pair = pair or live_service.labelled_pair(snap.result)
    model = live_service.model_choice(snap.result, pair)
    fixed = {
        TIE: Choice.TIE,
        BOTH_BAD: Choice.BOTH_BAD,
        f"Response {pair[0] + 1} is better": Choice.A,
        f"Response {pair[1] + 1} is better": Choice.B,
    }
    if label in fixed:
        return fixed[label]
    if model is None or label not in (AGREE, PREFER_OTHER):
        raise ValueError(f"choose one of: {', '.join(label_choices(snap, pair))}")
    return model if label == AGREE else (Choice.B if model == Choice.A else Choice.A)


def save_label(
    ctx: AppContext, request: RequestLike | None, label: str | None, note: str, pair: str | None = None
) -> str:
    """Store the user's view on ``pair`` ("i:j" from the pair menu; default the verdict's pair)."""
    user = ctx.user(request)
    judgment = ctx.live(request)
    if judgment is None:
        return "Judge something first."
    snap = judgment.snapshot()
    if not label:
        return "Pick one of the choices first."
    if snap.result is None:
        return "Not saved: only a finished judgment can be labelled (a stopped or failed one decided nothing)"
    try:
        chosen = pair_of(snap.result, pair)
        live_service.label_live(ctx.runtime, snap, choice_of(snap, label, chosen), note, user.name, chosen)
    except ValueError as e:
        return f"Not saved: {render.text_inline(str(e))}"
    on = f" on Response {chosen[0] + 1} vs Response {chosen[1] + 1}" if _responses(snap.result) > 2 else ""
    return f"Saved your label ({render.text_inline(label)}){on} as {render.text_inline(user.name)}."


def recent(ctx: AppContext, request: RequestLike | None) -> pd.DataFrame:
    user = ctx.user(request)
    return live_service.recent(ctx.runtime.repo, user.name, everyone=user.is_admin)


def _stream_view(s: StreamSnapshot, state: LiveState) -> render.StreamView:
    j = s.judgment
    title = f"Response {s.a + 1} vs {s.b + 1} · {s.a + 1} shown first · sample {s.sample + 1}"
    if s.attempt:
        title += f" · try {s.attempt + 1} (the server failed before)"
    if j is None:
        status = "aborted" if state in (LiveState.STOPPED, LiveState.FAILED) else None
        return render.StreamView(
            f"{s.a}-{s.b}:{s.sample}",
            title,
            s.reasoning,
            s.answer,
            s.pieces,
            s.elapsed_s,
            state != LiveState.RUNNING,
            status,
        )
    verdict = None if j.winner is None else f"Response {j.winner + 1}"
    return render.StreamView(
        f"{s.a}-{s.b}:{s.sample}",
        title,
        j.reasoning,
        j.answer,
        j.completion_tokens if j.completion_tokens is not None else s.pieces,
        j.latency_s or s.elapsed_s,
        True,
        j.status.value,
        verdict,
        j.error,
        j.finish_reason,
        render.scores_line(j),
    )


# --- components -------------------------------------------------------------------------------


def render_tab(ctx: AppContext) -> None:
    settings = ctx.runtime.settings
    with gr.Row():
        with gr.Column(scale=3):
            query = gr.Textbox(
                label="Query", lines=4, placeholder="The user's question or instruction", elem_id="judge-query"
            )
            boxes = [
                gr.Textbox(label=f"Response {k + 1}", lines=5, visible=k < 2, elem_id=f"judge-response-{k + 1}")
                for k in range(MAX_RESPONSES)
            ]
            shown = gr.State(2)
            with gr.Row():
                add = gr.Button("Add a response", size="sm", elem_id="judge-add")
                remove = gr.Button("Remove the last", size="sm", elem_id="judge-remove")
        with gr.Column(scale=2):
            budget = controls.budget_input(settings, "judge-budget")
            votes = controls.votes_input("judge-votes")
            swap = gr.Checkbox(label="Judge both presentation orders", value=False, elem_id="judge-swap")
            adaptive = gr.Checkbox(label="Adaptive: more votes only where they disagree", value=False)
            with gr.Row():
                order = controls.order_menu("judge-order")
                stopping = controls.stopping_menu("judge-stopping")
            escalate = controls.escalate_input("judge-escalate")
            strategy = gr.Radio(list(STRATEGIES), value=next(iter(STRATEGIES)), label="For 3+ responses")
            judge_format = controls.judge_menu(settings, "judge-format")
            with gr.Row():
                go = gr.Button("Judge", variant="primary", elem_id="judge-go")
                halt = gr.Button("Stop", variant="stop", elem_id="judge-stop", interactive=False)
    status = gr.Markdown(elem_id="judge-status")
    card = gr.HTML(elem_id="judge-card")  # the verdict first, above the panels, once the judgment ends
    preview = gr.HTML(elem_id="judge-preview")
    panels = gr.HTML(elem_id="judge-panels")
    with gr.Group(visible=False, elem_id="judge-label-box") as label_box:
        pair_menu = gr.Dropdown([], label="Which pair", visible=False, elem_id="judge-pair")
        label = gr.Radio([], label="Your view", elem_id="judge-label")
        note = gr.Textbox(label="Note (optional)", lines=1, elem_id="judge-note")
        save = gr.Button("Save my label", elem_id="judge-save")
    saved = gr.Markdown(elem_id="judge-saved")
    with gr.Accordion("Your recent judgments", open=False):
        history = gr.Dataframe(interactive=False, wrap=True, elem_id="judge-history")

    def resize(n: int, delta: int) -> list:
        n = max(2, min(MAX_RESPONSES, n + delta))
        return [n, *[gr.update(visible=k < n) for k in range(MAX_RESPONSES)]]

    add.click(lambda n: resize(n, 1), shown, [shown, *boxes], queue=False)
    remove.click(lambda n: resize(n, -1), shown, [shown, *boxes], queue=False)

    assert MAX_RESPONSES == 8  # run() below names its eight response boxes (Gradio injects `request` by name)

    def run(q, b, v, sw, ad, od, sp, es, st, jf, n, r1, r2, r3, r4, r5, r6, r7, r8, request: gr.Request):  # noqa: ANN001, ANN202
        texts = [r1, r2, r3, r4, r5, r6, r7, r8]
        form = JudgeForm(q, texts[: int(n)], b, v, sw, ad, st, jf, od, sp, es)
        responses = [t for t in form.responses if t.strip()]
        shown_html = render.responses_grid(responses, query=q) if len(responses) >= 2 else ""
        for jv in stream(ctx, request, form):
            yield {
                status: jv.status,
                preview: shown_html,
                panels: jv.panels,
                card: jv.card,
                label_box: gr.update(visible=bool(jv.label_choices)),
                label: gr.update(choices=jv.label_choices, value=None, label=jv.label_title),
                pair_menu: gr.update(
                    choices=list(jv.pairs), value=jv.pairs[0][1] if jv.pairs else None, visible=bool(jv.pairs)
                ),
                saved: "",
                halt: gr.update(interactive=jv.running),  # Stop only while something runs
            }

    event = go.click(
        run,
        [query, budget, votes, swap, adaptive, order, stopping, escalate, strategy, judge_format, shown, *boxes],
        [status, preview, panels, card, label_box, label, pair_menu, saved, halt],
        concurrency_limit=ctx.runtime.ui_concurrency,
        concurrency_id="model",
        show_progress="hidden",
    )

    def history_fn(request: gr.Request) -> pd.DataFrame:
        return recent(ctx, request)

    def stop_fn(request: gr.Request) -> str:
        return stop(ctx, request)

    event.then(history_fn, None, history)
    halt.click(stop_fn, None, saved)  # queued: only queued events carry the session that started the judgment

    def save_fn(lb, nt, pr, request: gr.Request):  # noqa: ANN001, ANN202
        return save_label(ctx, request, lb, nt, pr), recent(ctx, request)

    def pair_fn(pr, request: gr.Request):  # noqa: ANN001, ANN202
        title, choices = choose_pair(ctx, request, pr)
        return gr.update(choices=choices, value=None, label=title), ""

    pair_menu.input(pair_fn, pair_menu, [label, saved])
    save.click(save_fn, [label, note, pair_menu], [saved, history])
    return history_fn, history
