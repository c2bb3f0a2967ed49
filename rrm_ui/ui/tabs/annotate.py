"""Annotate tab: the audit queue. One pair at a time, keyboard-first, blind mode for anchoring studies.

Blind mode: the model's verdict and reasoning stay hidden until the annotator has chosen; the
label is stored as blind, then the verdict is revealed and ``n`` moves on. Otherwise the
reasoning is shown beside the responses and choosing moves straight to the next item.
Keys (static/app.js): 1 A better, 2 B better, 3 tie, 4 both bad, n next, s skip, b back (reopen the
item labelled before, with its label, to change it: a new label row, the old one kept). A click on a
response panel chooses it as the A / B keys do.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

import gradio as gr

from rrm_ui.domain import Choice, QueueFilter, QueueProgress, QueueSpec
from rrm_ui.services import annotation, review
from rrm_ui.services.annotation import Task
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike

NO_RUN = "(none: collect preferences without a model verdict)"
NO_DATA = ("there is no data set yet: import one in the Batch tab (1 · Upload a data set), or judge something "
           "in the Judge tab (its items go to the data set judge-tab); then come back here")  # fmt: skip
FILTERS = {
    "Unlabelled items": QueueFilter.UNLABELLED,
    "Votes split": QueueFilter.VOTE_SPLIT,
    "Verdict flips between orders": QueueFilter.POSITION_INCONSISTENT,
    "Truncated judgments": QueueFilter.TRUNCATED,
    "No verdict": QueueFilter.NO_VERDICT,
}
CHOICES = {"A": Choice.A, "B": Choice.B, "tie": Choice.TIE, "both_bad": Choice.BOTH_BAD}
CHOICE_TEXT = {Choice.A: "A is better", Choice.B: "B is better", Choice.TIE: "tie", Choice.BOTH_BAD: "both bad"}
KEY_OF = {v: k for k, v in CHOICES.items()}


@dataclass
class Session:
    """This browser tab's place in the queue (kept in a ``gr.State``)."""

    spec: QueueSpec | None = None
    task: Task | None = None
    served_at: float = 0.0
    blind: bool = False
    labelled: bool = False  # the current task has been labelled (blind mode: now revealed)
    back: int = 0  # 0: the queue's item; k: the item labelled k items ago, reopened to change its label
    opened: bool = False  # the item was opened by its id (not claimed from the queue); n returns to the queue
    earlier: Choice | None = None  # back > 0: the label being changed
    chosen: Choice | None = None  # the choice just stored for this task (highlighted)


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
    chosen: str | None = None  # the key of the option to highlight (stored, or being changed)


# --- handlers ---------------------------------------------------------------------------------


def queue_spec(ctx: AppContext, dataset: str | None, run: str | None, flt: str, subset: str) -> QueueSpec:
    info = ctx.repo.dataset(dataset) if dataset else None
    if info is None:
        if not ctx.repo.datasets():
            raise ValueError(NO_DATA)
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


def guidelines_view(ctx: AppContext, request: RequestLike | None, dataset: str | None) -> str:
    """The data set's latest labelling guidelines (HTML, folded open); empty when it has none. A label made
    now records this version (labels.guideline_version)."""
    ctx.user(request)
    info = ctx.repo.dataset(dataset) if dataset else None
    found = review.guidelines(ctx.repo, info.id) if info else None
    if found is None:
        return ""
    return (f"<details class='rrm-guidelines' open><summary>Labelling guidelines, version {found.version}</summary>"
            f"{render.markdown(found.text)}</details>")  # fmt: skip


CRITERION_CHOICES = {"A": Choice.A, "B": Choice.B, "tie": Choice.TIE}


def criteria_of(ctx: AppContext, dataset: str | None) -> tuple[str, ...]:
    """The data set's criteria, labelled apart from the overall choice (docs/review.md)."""
    info = ctx.repo.dataset(dataset) if dataset else None
    return ctx.repo.dataset_criteria(info.id) if info else ()


def save_criteria(ctx: AppContext, request: RequestLike | None, session: Session, values: list[str | None]) -> str:
    """Store the per-criterion choices (A / B / tie, in the data set's criteria order) for the pair shown."""
    user = ctx.user(request)
    if session.task is None or session.spec is None:
        return "No item is shown."
    names = ctx.repo.dataset_criteria(session.spec.dataset_id)
    choices = {n: CRITERION_CHOICES[v] for n, v in zip(names, values, strict=False) if v in CRITERION_CHOICES}
    if not choices:
        return "Choose A, B or tie on a criterion first."
    try:
        review.label_criteria(ctx.repo, user.name, session.task.item.db_id, session.task.pair, choices)
    except ValueError as exc:
        return f"**Not saved:** {render.text_inline(str(exc))}"
    said = ", ".join(f"{n}: {c.value}" for n, c in choices.items())
    return f"Saved on this pair: {render.text_inline(said)}."


def runs_of(ctx: AppContext, dataset: str | None) -> tuple[list[str], str]:
    """The Run box's choices for a data set, and its default: the latest run, else none."""
    info = ctx.repo.dataset(dataset) if dataset else None
    names = [r.name for r in ctx.repo.runs(info.id)] if info else []
    return [NO_RUN, *names], names[-1] if names else NO_RUN


def pick_dataset(
    ctx: AppContext,
    request: RequestLike | None,
    session: Session,
    dataset: str | None,
    flt: str,
    subset: str,
    blind: bool,
) -> tuple[list[str], str, AnnotateView]:
    """A data set picked in the form: its runs, and the first item of its queue with the run the Run box
    will show (never the run still shown for the data set picked before)."""
    choices, run = runs_of(ctx, dataset)
    return choices, run, next_item(ctx, request, session, dataset, run, flt, subset, blind)


def form_choices(ctx: AppContext, dataset: str | None, run: str | None) -> tuple[list[str], str | None, list[str], str]:
    """The data set and run boxes brought up to date (a data set imported in the Batch tab appears):
    the choices, and the values shown kept where they still exist."""
    names = [d.name for d in ctx.repo.datasets()]
    keep = dataset if dataset in names else (names[0] if names else None)
    runs, default = runs_of(ctx, keep)
    return names, keep, runs, run if keep == dataset and run in runs else default


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
        said = render.text_inline(str(e))
        return _empty(Session(), f"**{said[:1].upper()}{said[1:]}.**")  # names keep their capitals
    task = annotation.next_task(ctx.repo, spec, user.name)
    fresh = Session(spec, task, time.monotonic(), bool(blind))
    if task is None:
        return _nothing_left(ctx, fresh, user.name, "")
    return _show(fresh, "")


def _nothing_left(ctx: AppContext, session: Session, annotator: str, said: str) -> AnnotateView:
    spec = session.spec
    assert spec is not None
    progress = ctx.repo.queue_progress(spec, annotator)
    text = f"{said} {why_empty(ctx, spec, progress)}".strip()
    return AnnotateView(_progress_text(progress), "", "", "", "", text, False, session)


def why_empty(ctx: AppContext, spec: QueueSpec, p: QueueProgress) -> str:
    """Why the queue serves nothing, and what to do (Markdown, user data escaped)."""
    info = next((d for d in ctx.repo.datasets() if d.id == spec.dataset_id), None)
    name = render.text_inline(info.name if info else "this data set")
    run = next((r for r in ctx.repo.runs(spec.dataset_id) if r.id == spec.run_id), None)
    flt = next((k for k, v in FILTERS.items() if v == spec.filter), spec.filter.value)
    within = f" in the subset {render.text_inline(spec.subset)}" if spec.subset else ""
    if p.total == 0:
        if run is None:
            if spec.subset:
                return (f"**Nothing to label: {name} has no items{within}.** Check the subset's name (the "
                        "Explorer's Subset box lists them), or clear the subset.")  # fmt: skip
            return (f"**Nothing to label: {name} has no items.** Import a data set in the Batch tab, or "
                    "choose another.")  # fmt: skip
        rname = render.text_inline(run.name)
        if spec.filter == QueueFilter.UNLABELLED:
            return (f"**Nothing to label: the run {rname} has judged no item of {name}{within}.** Choose another "
                    "run, or none to label without a model verdict.")  # fmt: skip
        if run.kind == "external" and spec.filter != QueueFilter.NO_VERDICT:
            return (f"**The queue '{flt}' can never match the run {rname}:** it holds another judge's verdicts "
                    "without samples or traces. Choose the queue 'Unlabelled items' or 'No verdict'.")  # fmt: skip
        if spec.filter == QueueFilter.POSITION_INCONSISTENT and not (run.compute or {}).get("swap"):
            return (f"**The queue '{flt}' can never match the run {rname}:** it judged one presentation order "
                    "only, so no verdict can flip. Judge both orders (Batch tab, 'both orders'), or choose "
                    "another queue.")  # fmt: skip
        return (f"**No item{within} of the run {rname} is in the queue '{flt}'.** Choose another queue "
                "(e.g. 'Unlabelled items') or another run.")  # fmt: skip
    if p.done >= p.total:
        return (f"**You have labelled all {p.total} items of this queue.** Press **b** to review your last "
                "labels, or choose another queue or data set.")  # fmt: skip
    if p.left == 0:
        return (f"**Nothing left for you: the other {p.total - p.done} items of this queue already have "
                f"{_plural(spec.overlap, 'annotator')} each (the overlap).** To label them too, restart the app "
                "with a higher --overlap (setting annotation_overlap), or choose another queue.")  # fmt: skip
    return (f"**Nothing to serve right now: the {p.left} items left are being labelled by other annotators.** "
            "An item comes back if it is not labelled within 10 minutes; press **n** to ask again.")  # fmt: skip


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def choose(ctx: AppContext, request: RequestLike | None, session: Session, key: str, note: str) -> AnnotateView:
    """Store the annotator's choice; blind mode reveals the verdict, otherwise the next item follows."""
    user = ctx.user(request)
    task = session.task
    if task is None or session.spec is None:
        return _empty(session, "Press **Next** to get an item.")
    if session.labelled:
        return _show(session, "Already saved; press **n** for the next item, or **b** to change it.")
    choice = CHOICES[key]
    editing = session.back > 0
    annotation.submit(
        ctx.repo,
        task,
        user.name,
        choice,
        note=note,
        blind=session.blind and not editing,  # a label changed later was chosen with the verdict seen
        time_taken_s=round(time.monotonic() - session.served_at, 2),
    )
    said = f"Saved: {CHOICE_TEXT[choice]}."
    if editing:
        was = CHOICE_TEXT[session.earlier] if session.earlier else "?"
        said = (f"Changed item {render.text_inline(task.ref)}: {was} → {CHOICE_TEXT[choice]} "
                "(the earlier label stays in the history).")  # fmt: skip
    elif session.blind:
        revealed = Session(session.spec, task, session.served_at, True, labelled=True, chosen=choice)
        verdict = _model_summary(task)
        progress = ctx.repo.queue_progress(session.spec, user.name)  # counts this label at once
        return _show(revealed, f"{said} {verdict} Press **n** for the next item, **b** to change it.", progress)
    following = annotation.next_task(ctx.repo, session.spec, user.name)
    nxt = Session(session.spec, following, time.monotonic(), session.blind)
    if following is None:
        return _nothing_left(ctx, nxt, user.name, said)
    return _show(nxt, said)


def back(ctx: AppContext, request: RequestLike | None, session: Session) -> AnnotateView:
    """The ``b`` key and the Back button: reopen the item labelled one further back, with its label, to change it."""
    user = ctx.user(request)
    if session.spec is None:
        return _empty(session, "Nothing to go back to yet: choose a data set.")
    steps = session.back + 1
    found = annotation.previous(ctx.repo, session.spec, user.name, steps)
    if found is None:
        text = "Nothing earlier to go back to." if steps == 1 else "That was your first label in this data set."
        if session.task is None:
            return _empty(session, text)
        return _show(session, text)
    label = found.label.label
    reopened = Session(session.spec, found.task, time.monotonic(), session.blind, back=steps, earlier=label.choice)
    when = found.label.created_at.strftime("%H:%M")
    return _show(
        reopened,
        f"**Back {steps}:** your label here was **{CHOICE_TEXT[label.choice]}** ({when}). Choose again to change "
        "it (a new label; the old one stays in the history), **b** to go further back, **n** to return to the queue.",
    )


def open_ref(
    ctx: AppContext,
    request: RequestLike | None,
    session: Session,
    ref: str,
    dataset: str | None,
    run: str | None,
    flt: str,
    subset: str,
    blind: bool,
) -> tuple[str | None, list[str], str | None, AnnotateView]:
    """The item box: open the item ``ref`` names (``DATA SET / ITEM ID`` as every tab shows it, or a bare
    id of the chosen data set) to label it, outside the queue's order (not claimed). An item of another
    data set switches the form to that data set (and its latest run). Returns (data set, its runs, run, view).
    """
    user = ctx.user(request)
    runs, _ = runs_of(ctx, dataset)
    if not (ref or "").strip():
        return dataset, runs, run, _keep(session, "Type an item as **data set / item id** (as the tabs show it).")
    try:
        name, _item = annotation.find_item(ctx.repo, ref, dataset)
        if name != dataset:  # the form follows the item: its data set, and that data set's latest run
            dataset, (runs, run) = name, runs_of(ctx, name)
        spec = queue_spec(ctx, dataset, run, flt, subset)
        task = annotation.open_item(ctx.repo, spec, ref, user.name)
    except ValueError as e:
        said = render.text_inline(str(e))
        return dataset, runs, run, _keep(session, f"**Cannot open: {said}.**")
    opened = Session(spec, task, time.monotonic(), bool(blind), opened=True)
    return dataset, runs, run, _show(opened, f"Opened **{render.text_inline(task.ref)}** by its id: choose to "
                                             "label it; **n** returns to the queue.")  # fmt: skip


def _keep(session: Session, status: str) -> AnnotateView:
    """The item on screen stays (with a new status line); none on screen: an empty view."""
    return _show(session, status) if session.task is not None else _empty(session, status)


def skip(ctx: AppContext, request: RequestLike | None, session: Session) -> AnnotateView:
    user = ctx.user(request)
    if session.task is None or session.spec is None:
        return _empty(session, "Nothing to skip.")
    if not session.labelled and session.back == 0 and not session.opened:
        annotation.skip(ctx.repo, session.task.item.db_id, user.name)
    following = annotation.next_task(ctx.repo, session.spec, user.name)
    nxt = Session(session.spec, following, time.monotonic(), session.blind)
    if following is None:
        return _nothing_left(ctx, nxt, user.name, "")
    return _show(nxt, "Skipped.")


def advance(ctx: AppContext, request: RequestLike | None, session: Session, form: tuple) -> AnnotateView:
    """The ``n`` key and the Next button: a new queue from the form, or the next item after a label."""
    if session.spec is None or session.task is None or session.labelled or session.back or session.opened:
        return next_item(ctx, request, session, *form)
    return _show(session, "Choose first (1–4), or skip (s).")


def _show(session: Session, status: str, progress: QueueProgress | None = None) -> AnnotateView:
    task = session.task
    assert task is not None
    i, j = task.pair
    item = task.item.item
    hidden = session.blind and not session.labelled and not session.back  # a reopened item was seen already
    if task.model is None:
        model = render.banner("info", "No model verdict", "Plain preference collection: no run is audited here.")
    elif hidden:
        model = render.banner("info", "Blind mode", "The model's verdict and reasoning appear once you have chosen.")
    else:
        model = _model_html(task)
    head = f"Item {task.ref}" + (f" · subset {task.item.subset}" if task.item.subset else "")
    if session.back:
        head += f" · reopened ({session.back} back)"
    elif session.opened:
        head += " · opened by its id"
    query = (f"<div class='rrm-ann-head'>{html.escape(head)}</div>"
             f"<div class='rrm-response-title'>Query</div>{render.readable(item.query)}")  # fmt: skip
    n = len(item.responses)
    if n > 2:
        query += (
            f"<div class='rrm-note rrm-ann-pair'>This list has {n} responses; the question is about Response {i + 1} "
            f"(A) and Response {j + 1} (B): {html.escape(task.why)}.</div>"
            f"<details class='rrm-ann-all'><summary>All {n} responses</summary>"
            f"{render.responses_grid(list(item.responses), marked={i: 'A', j: 'B'})}</details>"
        )
    chosen = session.chosen or session.earlier
    return AnnotateView(
        _progress_text(progress or task.progress),
        query,
        f"<div class='rrm-response-title'>A · Response {i + 1}</div>{render.readable(item.responses[i])}",
        f"<div class='rrm-response-title'>B · Response {j + 1}</div>{render.readable(item.responses[j])}",
        model,
        status,
        not session.labelled,
        session,
        KEY_OF[chosen] if chosen else None,
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
    both_orders = len({(jd.a, jd.b) for jd in m.judgments}) > 1
    position = {True: "consistent across orders", False: "flips between orders"}.get(
        m.position_consistent, "undetermined (an order had no majority)" if both_orders else "one order only"
    )
    head = render.banner("info", "The model's verdict", f"{_model_summary(task)} Position: {position}.")
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
            jd.finish_reason,
            render.scores_line(jd),
        )
        for jd in m.judgments
    ]
    return head + render.stream_panels(views)


# --- components -------------------------------------------------------------------------------


def render_tab(ctx: AppContext, demo: gr.Blocks) -> tuple:
    with gr.Row():
        dataset = gr.Dropdown([], label="Data set", elem_id="ann-dataset")
        run = gr.Dropdown([NO_RUN], value=NO_RUN, label="Run whose verdicts are audited", elem_id="ann-run")
        flt = gr.Dropdown(list(FILTERS), value=next(iter(FILTERS)), label="Queue", elem_id="ann-filter")
        subset = gr.Textbox(label="Subset (optional)", elem_id="ann-subset")
        blind = gr.Checkbox(label="Blind: choose before seeing the model", elem_id="ann-blind")
        goto = gr.Textbox(label="Open an item (data set / item id)", placeholder="e.g. llmbar / row-3",
                          elem_id="ann-goto")  # fmt: skip
    progress = gr.Markdown(elem_id="ann-progress")
    guidelines = gr.HTML(elem_id="ann-guidelines")  # the data set's labelling guidelines (docs/review.md)
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
        bck = gr.Button("Back  [b]", elem_id="ann-back")
    note = gr.Textbox(label="Note (optional, saved with your choice)", elem_id="ann-note")
    with gr.Accordion("Criteria (apart from the overall choice)", open=True, visible=False) as crit_box:
        crit_radios = [gr.Radio(list(CRITERION_CHOICES), visible=False, elem_id=f"ann-criterion-{k}")
                       for k in range(review.MAX_CRITERIA)]  # fmt: skip
        crit_save = gr.Button("Save the criteria", elem_id="ann-criteria-save")
        crit_status = gr.Markdown(elem_id="ann-criteria-status")
    status = gr.Markdown(elem_id="ann-status")
    model = gr.HTML(elem_id="ann-model")
    state = gr.State(Session())
    form = [dataset, run, flt, subset, blind]
    outputs = [progress, query, a, b, model, status, note, state, *buttons.values()]

    def out(v: AnnotateView, clear_note: bool = True) -> list:
        enabled = [gr.update(interactive=v.can_label, elem_classes=["rrm-chosen"] if k == v.chosen else [])
                   for k in buttons]  # fmt: skip
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

    def back_fn(s: Session, request: gr.Request) -> list:
        return out(back(ctx, request, s))

    def refresh_fn(ds: str | None = None, rn: str | None = None) -> list:
        names, keep, runs, run_value = form_choices(ctx, ds, rn)
        return [gr.update(choices=names, value=keep), gr.update(choices=runs, value=run_value)]

    def show_fn(s: Session, ds, rn, fl, sb, bl, request: gr.Request) -> list:  # noqa: ANN001
        """The tab shown: the boxes read again, and the queue started if this page has no item yet."""
        names, keep, runs, run_value = form_choices(ctx, ds, rn)
        boxes = [gr.update(choices=names, value=keep), gr.update(choices=runs, value=run_value)]
        if s.task is not None and keep == ds and run_value == rn:
            return [*boxes, *(gr.update() for _ in outputs)]
        return [*boxes, *out(next_item(ctx, request, s, keep, run_value, fl, sb, bl))]

    def pick_fn(s: Session, ds, fl, sb, bl, request: gr.Request) -> list:  # noqa: ANN001
        runs, run_value, view = pick_dataset(ctx, request, s, ds, fl, sb, bl)
        return [gr.update(choices=runs, value=run_value), *out(view)]

    def goto_fn(s: Session, ref, ds, rn, fl, sb, bl, request: gr.Request) -> list:  # noqa: ANN001
        keep, runs, run_value, view = open_ref(ctx, request, s, ref, ds, rn, fl, sb, bl)
        return [gr.update(value=keep), gr.update(choices=runs, value=run_value), *out(view)]

    def guidelines_fn(ds: str | None, request: gr.Request) -> list:
        names = criteria_of(ctx, ds)
        radios = [gr.update(visible=k < len(names), label=names[k] if k < len(names) else "", value=None)
                  for k in range(review.MAX_CRITERIA)]  # fmt: skip
        return [guidelines_view(ctx, request, ds), gr.update(visible=bool(names)), *radios]

    def criteria_fn(s: Session, c0, c1, c2, c3, c4, c5, request: gr.Request) -> list:  # noqa: ANN001
        said = save_criteria(ctx, request, s, [c0, c1, c2, c3, c4, c5])  # review.MAX_CRITERIA radios
        saved = said.startswith("Saved")  # cleared once stored: never carried over to the next item
        return [said, *(gr.update(value=None) if saved else gr.update() for _ in crit_radios)]

    dataset.change(guidelines_fn, [dataset], [guidelines, crit_box, *crit_radios], queue=False, show_progress="hidden")
    crit_save.click(criteria_fn, [state, *crit_radios], [crit_status, *crit_radios], api_name="annotate_criteria")
    # Named API endpoints (docs/app.md, "The API"): a script or a load test labels as a browser does.
    nxt.click(next_fn, [state, *form], outputs, api_name="annotate_next")
    for key, button in buttons.items():
        button.click(choose_fn(key), [state, note], outputs, api_name=f"annotate_choose_{key}")
    skp.click(skip_fn, state, outputs, api_name="annotate_skip")
    goto.submit(goto_fn, [state, goto, *form], [dataset, run, *outputs], api_name="annotate_open")
    bck.click(back_fn, state, outputs, api_name="annotate_back")
    # a changed queue starts from its first item; a new data set brings its runs in the same event
    dataset.input(pick_fn, [state, dataset, flt, subset, blind], [run, *outputs], api_name="annotate_pick")
    # always_last: a subset typed fast is served as it ends, not as it began. The subset listens to .change:
    # Gradio's Textbox sends .input on key presses only, not on Backspace, a cut or a paste (nothing sets it
    # from the server, so .change is the user's edits).
    for n, control in enumerate(form[1:]):
        listen = control.change if control is subset else control.input
        listen(start_fn, [state, *form], outputs, api_name="annotate_start", trigger_mode="always_last",
               api_visibility="public" if n == 0 else "private")  # fmt: skip
    demo.load(refresh_fn, None, [dataset, run], api_name="annotate_datasets")
    # app.py: on showing the tab, the data sets imported in Batch meanwhile, and the queue's first item
    return show_fn, [state, *form], [dataset, run, *outputs]
