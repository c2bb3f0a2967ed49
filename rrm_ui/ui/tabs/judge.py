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

from rrm_ui.domain import Choice
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


@dataclass(frozen=True)
class JudgeView:
    """Everything the tab shows about one judgment at one moment."""

    status: str  # a line of Markdown
    panels: str  # HTML: one panel per streamed comparison
    card: str  # HTML: the verdict card (and ranking for lists), empty while running
    running: bool
    label_choices: list[str]  # empty: nothing to label (running, stopped, failed)


# --- handlers ---------------------------------------------------------------------------------


def start(ctx: AppContext, request: RequestLike | None, form: JudgeForm) -> LiveJudgment:
    """Start judging the form's item for this browser session (a previous one still running is stopped)."""
    user = ctx.user(request)
    item = live_service.validate_item(form.query, form.responses)
    compute = controls.compute_from_form(form.votes, form.swap, form.adaptive)
    sampling = ctx.runtime.sampling(max_tokens=int(form.budget))
    judgment = LiveJudgment(
        ctx.runtime,
        item,
        compute=compute,
        sampling=sampling,
        strategy=STRATEGIES.get(form.strategy, form.strategy),
        annotator=user.name,
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
    panels = render.stream_panels(views, tail_chars=TAIL_CHARS if running else None)
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
    status = f"Done in {snap.elapsed_s:.1f} s · {tokens:,} tokens · stored (item #{snap.item_db_id})"
    return JudgeView(status, panels, card, False, label_choices(snap))


def label_choices(snap: LiveSnapshot) -> list[str]:
    if snap.result is None:
        return []
    pair = live_service.labelled_pair(snap.result)
    if live_service.model_choice(snap.result, pair) is not None:
        return [AGREE, PREFER_OTHER, TIE, BOTH_BAD]
    return [f"Response {pair[0] + 1} is better", f"Response {pair[1] + 1} is better", TIE, BOTH_BAD]


def choice_of(snap: LiveSnapshot, label: str) -> Choice:
    """The stored choice (A: the pair's first response better) for what the user picked."""
    assert snap.result is not None
    pair = live_service.labelled_pair(snap.result)
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
        raise ValueError(f"choose one of: {', '.join(label_choices(snap))}")
    return model if label == AGREE else (Choice.B if model == Choice.A else Choice.A)


def save_label(ctx: AppContext, request: RequestLike | None, label: str | None, note: str) -> str:
    user = ctx.user(request)
    judgment = ctx.live(request)
    if judgment is None:
        return "Judge something first."
    snap = judgment.snapshot()
    if not label:
        return "Pick one of the choices first."
    try:
        live_service.label_live(ctx.runtime, snap, choice_of(snap, label), note, user.name)
    except ValueError as e:
        return f"Not saved: {e}"
    return f"Saved your label ({label}) as {user.name}."


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
            budget = controls.budget_slider(settings, "judge-budget")
            votes = gr.Slider(1, 8, value=1, step=1, label="Votes per order", elem_id="judge-votes")
            swap = gr.Checkbox(label="Judge both presentation orders", value=False, elem_id="judge-swap")
            adaptive = gr.Checkbox(label="Adaptive: more votes only where they disagree", value=False)
            strategy = gr.Radio(list(STRATEGIES), value=next(iter(STRATEGIES)), label="For 3+ responses")
            with gr.Row():
                go = gr.Button("Judge", variant="primary", elem_id="judge-go")
                halt = gr.Button("Stop", variant="stop", elem_id="judge-stop")
    status = gr.Markdown(elem_id="judge-status")
    preview = gr.HTML(elem_id="judge-preview")
    panels = gr.HTML(elem_id="judge-panels")
    card = gr.HTML(elem_id="judge-card")
    with gr.Group(visible=False, elem_id="judge-label-box") as label_box:
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

    def run(q, b, v, sw, ad, st, n, r1, r2, r3, r4, r5, r6, r7, r8, request: gr.Request):  # noqa: ANN001, ANN202
        texts = [r1, r2, r3, r4, r5, r6, r7, r8]
        form = JudgeForm(q, texts[: int(n)], b, v, sw, ad, st)
        responses = [t for t in form.responses if t.strip()]
        shown_html = render.responses_grid(responses, query=q) if len(responses) >= 2 else ""
        for jv in stream(ctx, request, form):
            yield {
                status: jv.status,
                preview: shown_html,
                panels: jv.panels,
                card: jv.card,
                label_box: gr.update(visible=bool(jv.label_choices)),
                label: gr.update(choices=jv.label_choices, value=None),
                saved: "",
            }

    event = go.click(
        run,
        [query, budget, votes, swap, adaptive, strategy, shown, *boxes],
        [status, preview, panels, card, label_box, label, saved],
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

    def save_fn(lb, nt, request: gr.Request):  # noqa: ANN001, ANN202
        return save_label(ctx, request, lb, nt), recent(ctx, request)

    save.click(save_fn, [label, note], [saved, history])
    return history_fn, history
