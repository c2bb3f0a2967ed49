"""Annotate tab: the audit queue. One pair at a time, keyboard-first, blind mode for anchoring studies.

Blind mode: the model's verdict and reasoning stay hidden until the annotator has chosen; the
label is stored as blind, then the verdict is revealed and ``n`` moves on. Otherwise the
reasoning is shown beside the responses and choosing moves straight to the next item.
Keys (static/app.js): 1 A better, 2 B better, 3 tie, 4 both bad, n next, s skip.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

import gradio as gr

from rrm_ui.domain import Choice, QueueFilter, QueueProgress, QueueSpec
from rrm_ui.services import annotation
from rrm_ui.services.annotation import Task
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike

NO_RUN = "(none: collect preferences without a model verdict)"
FILTERS = {
    "Unlabelled items": QueueFilter.UNLABELLED,
    "Votes split": QueueFilter.VOTE_SPLIT,
    "Verdict flips between orders": QueueFilter.POSITION_INCONSISTENT,
    "Truncated judgments": QueueFilter.TRUNCATED,
    "No verdict": QueueFilter.NO_VERDICT,
}
CHOICES = {"A": Choice.A, "B": Choice.B, "tie": Choice.TIE, "both_bad": Choice.BOTH_BAD}
CHOICE_TEXT = {Choice.A: "A is better", Choice.B: "B is better", Choice.TIE: "tie", Choice.BOTH_BAD: "both bad"}


@dataclass
class Session:
    """This browser tab's place in the queue (kept in a ``gr.State``)."""

    spec: QueueSpec | None = None
    task: Task | None = None
    served_at: float = 0.0
    blind: bool = False
    labelled: bool = False  # the current task has been labelled (blind mode: now revealed)


@dataclass(frozen=True)
class AnnotateView:
    progress: str
    query: str
    a: str
    b: str
    model: str
    status: str
    can_label: bool
    session: Session = field(compare=False)


# --- handlers ---------------------------------------------------------------------------------


def queue_spec(ctx: AppContext, dataset: str | None, run: str | None, flt: str, subset: str) -> QueueSpec:
    info = ctx.repo.dataset(dataset) if dataset else None
    if info is None:
        raise ValueError("choose a data set")
    run_id = None
    if run and run != NO_RUN:
        found = [r for r in ctx.repo.runs(info.id) if r.name == run]
        if not found:
            raise ValueError(f"data set {info.name!r} has no run named {run!r}")
        run_id = found[0].id
    queue_filter = FILTERS.get(flt, QueueFilter.UNLABELLED)
    if queue_filter != QueueFilter.UNLABELLED and run_id is None:
        raise ValueError(f"the filter {flt!r} needs a run whose verdicts are audited")
    return QueueSpec(info.id, run_id, queue_filter, (subset or "").strip() or None, ctx.overlap)


def next_item(
    ctx: AppContext,
    request: RequestLike | None,
    session: Session,
    dataset: str | None,
    run: str | None,
    flt: str,
    subset: str,
    blind: bool,
) -> AnnotateView:
    """Serve the next item of the queue chosen in the form (the same one again after a reload)."""
    user = ctx.user(request)
    try:
        spec = queue_spec(ctx, dataset, run, flt, subset)
    except ValueError as e:
        return _empty(Session(), f"**{render.text_inline(str(e)).capitalize()}.**")
    task = annotation.next_task(ctx.repo, spec, user.name)
    fresh = Session(spec, task, time.monotonic(), bool(blind))
    if task is None:
        progress = _progress_text(ctx.repo.queue_progress(spec, user.name))
        return AnnotateView(progress, "", "", "", "", "**Nothing left in this queue for you.**", False, fresh)
    return _show(fresh, "")


def choose(ctx: AppContext, request: RequestLike | None, session: Session, key: str, note: str) -> AnnotateView:
    """Store the annotator's choice; blind mode reveals the verdict, otherwise the next item follows."""
    user = ctx.user(request)
    task = session.task
    if task is None or session.spec is None:
        return _empty(session, "Press **Next** to get an item.")
    if session.labelled:
        return _show(session, "Already saved; press **n** for the next item.")
    choice = CHOICES[key]
    annotation.submit(
        ctx.repo,
        task,
        user.name,
        choice,
        note=note,
        blind=session.blind,
        time_taken_s=round(time.monotonic() - session.served_at, 2),
    )
    said = f"Saved: {CHOICE_TEXT[choice]}."
    if session.blind:
        revealed = Session(session.spec, task, session.served_at, True, labelled=True)
        verdict = _model_summary(task)
        return _show(revealed, f"{said} {verdict} Press **n** for the next item.")
    following = annotation.next_task(ctx.repo, session.spec, user.name)
    nxt = Session(session.spec, following, time.monotonic(), False)
    if following is None:
        return AnnotateView(
            _progress_text(ctx.repo.queue_progress(session.spec, user.name)),
            "",
            "",
            "",
            "",
            f"{said} **Nothing left in this queue for you.**",
            False,
            nxt,
        )
    return _show(nxt, said)


def skip(ctx: AppContext, request: RequestLike | None, session: Session) -> AnnotateView:
    user = ctx.user(request)
    if session.task is None or session.spec is None:
        return _empty(session, "Nothing to skip.")
    if not session.labelled:
        annotation.skip(ctx.repo, session.task.item.db_id, user.name)
    following = annotation.next_task(ctx.repo, session.spec, user.name)
    nxt = Session(session.spec, following, time.monotonic(), session.blind)
    if following is None:
        return _empty(nxt, "**Nothing left in this queue for you.**")
    return _show(nxt, "Skipped.")


def advance(ctx: AppContext, request: RequestLike | None, session: Session, form: tuple) -> AnnotateView:
    """The ``n`` key and the Next button: a new queue from the form, or the next item after a label."""
    if session.spec is None or session.task is None or session.labelled:
        return next_item(ctx, request, session, *form)
    return _show(session, "Choose first (1–4), or skip (s).")


def _show(session: Session, status: str) -> AnnotateView:
    task = session.task
    assert task is not None
    i, j = task.pair
    item = task.item.item
    hidden = session.blind and not session.labelled
    if task.model is None:
        model = render.banner("info", "No model verdict", "Plain preference collection: no run is audited here.")
    elif hidden:
        model = render.banner("info", "Blind mode", "The model's verdict and reasoning appear once you have chosen.")
    else:
        model = _model_html(task)
    head = f"Item {task.item.item.id}" + (f" · subset {task.item.subset}" if task.item.subset else "")
    return AnnotateView(
        _progress_text(task.progress),
        f"<div class='rrm-ann-head'>{html.escape(head)}</div>{render.markdown(item.query)}",
        f"<h4>A · Response {i + 1}</h4>{render.markdown(item.responses[i])}",
        f"<h4>B · Response {j + 1}</h4>{render.markdown(item.responses[j])}",
        model,
        status,
        not session.labelled,
        session,
    )


def _empty(session: Session, status: str) -> AnnotateView:
    return AnnotateView("", "", "", "", "", status, False, session)


def _progress_text(p: QueueProgress) -> str:
    return f"**{p.done}** done · **{p.left}** left · {p.total} in this queue"


def _model_summary(task: Task) -> str:
    m = task.model
    if m is None:
        return ""
    i, j = task.pair
    if m.winner is None:
        return "The model reached no verdict on this pair."
    side = "A" if m.winner == i else "B"
    return f"The model preferred {side} (Response {m.winner + 1}), votes {m.votes.get(i, 0)}–{m.votes.get(j, 0)}."


def _model_html(task: Task) -> str:
    m = task.model
    assert m is not None
    flips = {True: "consistent across orders", False: "flips between orders", None: "one order only"}
    head = render.banner(
        "info", "The model's verdict", f"{_model_summary(task)} Position: {flips[m.position_consistent]}."
    )
    views = [
        render.StreamView(
            f"{jd.a}-{jd.b}:{jd.sample}" + (f".{jd.attempt}" if jd.attempt else ""),
            f"Response {jd.a + 1} shown first · sample {jd.sample + 1}"
            + (f" · try {jd.attempt + 1}" * bool(jd.attempt)),
            jd.reasoning,
            jd.answer,
            jd.completion_tokens or 0,
            jd.latency_s or 0.0,
            True,
            jd.status.value,
            None if jd.winner is None else f"Response {jd.winner + 1}",
            jd.error,
        )
        for jd in m.judgments
    ]
    return head + render.stream_panels(views)


# --- components -------------------------------------------------------------------------------


def render_tab(ctx: AppContext, demo: gr.Blocks) -> None:
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", elem_id="ann-dataset")
        run = gr.Dropdown([NO_RUN], value=NO_RUN, label="Run whose verdicts are audited", elem_id="ann-run")
        flt = gr.Dropdown(list(FILTERS), value=next(iter(FILTERS)), label="Queue", elem_id="ann-filter")
        subset = gr.Textbox(label="Subset (optional)", elem_id="ann-subset")
        blind = gr.Checkbox(label="Blind: choose before seeing the model", elem_id="ann-blind")
    progress = gr.Markdown(elem_id="ann-progress")
    query = gr.HTML(elem_id="ann-query")
    with gr.Row(equal_height=False):
        a = gr.HTML(elem_id="ann-resp-a", elem_classes=["rrm-response"])
        b = gr.HTML(elem_id="ann-resp-b", elem_classes=["rrm-response"])
    with gr.Row():
        buttons = {
            "A": gr.Button("A is better  [1]", elem_id="ann-A", interactive=False),
            "B": gr.Button("B is better  [2]", elem_id="ann-B", interactive=False),
            "tie": gr.Button("Tie  [3]", elem_id="ann-tie", interactive=False),
            "both_bad": gr.Button("Both bad  [4]", elem_id="ann-both_bad", interactive=False),
        }
        nxt = gr.Button("Next  [n]", variant="primary", elem_id="ann-next")
        skp = gr.Button("Skip  [s]", elem_id="ann-skip")
    note = gr.Textbox(label="Note (optional, saved with your choice)", elem_id="ann-note")
    status = gr.Markdown(elem_id="ann-status")
    model = gr.HTML(elem_id="ann-model")
    state = gr.State(Session())
    form = [dataset, run, flt, subset, blind]
    outputs = [progress, query, a, b, model, status, note, state, *buttons.values()]

    def out(v: AnnotateView, clear_note: bool = True) -> list:
        enabled = [gr.update(interactive=v.can_label) for _ in buttons]
        return [
            v.progress,
            v.query,
            v.a,
            v.b,
            v.model,
            v.status,
            "" if clear_note else gr.update(),
            v.session,
            *enabled,
        ]

    def next_fn(s: Session, ds, rn, fl, sb, bl, request: gr.Request) -> list:  # noqa: ANN001
        return out(advance(ctx, request, s, (ds, rn, fl, sb, bl)))

    def start_fn(s: Session, ds, rn, fl, sb, bl, request: gr.Request) -> list:  # noqa: ANN001
        return out(next_item(ctx, request, s, ds, rn, fl, sb, bl))

    def choose_fn(key: str):  # noqa: ANN202
        def fn(s: Session, nt: str, request: gr.Request) -> list:
            return out(choose(ctx, request, s, key, nt))

        return fn

    def skip_fn(s: Session, request: gr.Request) -> list:
        return out(skip(ctx, request, s))

    def datasets_fn() -> dict:
        names = [d.name for d in ctx.repo.datasets()]
        return gr.update(choices=names, value=names[0] if names else None)

    def runs_fn(ds: str | None) -> dict:
        info = ctx.repo.dataset(ds) if ds else None
        names = [r.name for r in ctx.repo.runs(info.id)] if info else []
        return gr.update(choices=[NO_RUN, *names], value=names[-1] if names else NO_RUN)

    # Named API endpoints (docs/app.md, "The API"): a script or a load test labels as a browser does.
    nxt.click(next_fn, [state, *form], outputs, api_name="annotate_next")
    for key, button in buttons.items():
        button.click(choose_fn(key), [state, note], outputs, api_name=f"annotate_choose_{key}")
    skp.click(skip_fn, state, outputs, api_name="annotate_skip")
    for n, control in enumerate(form):  # a changed queue starts from its first item
        control.input(start_fn, [state, *form], outputs, api_name="annotate_start",
                      api_visibility="public" if n == 0 else "private")  # fmt: skip
    dataset.change(runs_fn, dataset, run, api_name="annotate_runs")
    demo.load(datasets_fn, None, dataset, api_name="annotate_datasets")
