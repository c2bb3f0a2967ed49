"""Batch tab: upload a file, start a judging job on the server, follow it, download the results.

Jobs run in the app process, not in the page: closing the browser does not stop them, and an
app restart continues them (see :mod:`rrm_ui.services.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from rrm_ui.domain import JobInfo, JobStatus
from rrm_ui.io.importers import PRESETS
from rrm_ui.io.readers import ImportFileError
from rrm_ui.services import cleanup, exports, uploads
from rrm_ui.services.runtime import ModelUnavailable
from rrm_ui.ui import controls, render
from rrm_ui.ui.context import AppContext, RequestLike

JOB_POLL_S = 1.0
STRATEGIES = ("auto", "knockout", "round-robin")
ACTIONS = ("pause", "resume", "cancel")
JOB_COLUMNS = ["job", "data set", "run", "status", "done", "total", "tokens/s", "errors", "owner", "message"]


@dataclass(frozen=True)
class UploadView:
    summary: str  # Markdown: type, detected format, or what is wrong
    rows: pd.DataFrame
    name: str
    needs_mapping: bool
    preset: str | None = None  # a preset whose fields the file has: chosen in the form for the user


# --- handlers ---------------------------------------------------------------------------------


def inspect_upload(path: str | None) -> UploadView:
    if not path:
        return UploadView("", pd.DataFrame(), "", False)
    p = uploads.preview(path, Path(path).name)
    if p.problem:
        fits = uploads.matching_presets(p.fields) if p.format is None and p.file_type is not None else []
        if fits:
            fields = ", ".join(uploads.mapping_fields(PRESETS[fits[0]]))
            return UploadView(
                f"**{render.text_inline(p.file_name)}**: {p.file_type} file whose fields match the preset "
                f"**{render.text_inline(fits[0])}** ({render.text_inline(fields)}); it is chosen below, press "
                "**Import**.",
                p.rows,
                p.suggested_name,
                True,
                fits[0],
            )
        return UploadView(
            f"**Cannot import as it is.** {render.text_inline(form_words(p.problem))}",
            p.rows,
            p.suggested_name,
            p.format is None and p.file_type is not None,
        )
    text = (
        f"**{render.text_inline(p.file_name)}**: {p.file_type} file, detected format **{p.format}**; first rows below."
    )
    return UploadView(text, p.rows, p.suggested_name, False)


# what the import's messages call the command line's flags, in the names of this form's fields
_FORM_WORDS = (
    ("(--map, or a preset", "(the Mapping box, or a Preset"),
    ("--map: ", "Mapping: "),
    ("--map needs", "the Mapping needs"),
    ("--map ", "the Mapping line "),
    ("--labels", "Label values"),
    ("--gold", "a gold= line in the Mapping"),
    ("--skip-invalid", "Skip invalid rows"),
    ("--name", "Data set name"),
    ("--preset", "Preset"),
    ("pass Label values", "give Label values"),
)


def form_words(message: str) -> str:
    """A message (plain text) with the CLI's flags named as the form's fields (``--labels``: Label values)."""
    for flag, field_name in _FORM_WORDS:
        message = message.replace(flag, field_name)
    return message


def check_mapping(path: str | None, preset: str, mapping: str, labels: str) -> str | None:
    """The chosen preset or mapping checked against the uploaded file's fields: what fits or is missing
    (Markdown), or None when there is nothing to check (no file, nothing chosen)."""
    if not path:
        return None
    try:
        m = uploads.mapping_from_text(preset or None, mapping, labels)
    except ValueError as e:
        return f"**The mapping cannot be used:** {render.text_inline(form_words(str(e)))}"
    if m is None or m.labels_only:
        return None
    p = uploads.preview(path, Path(path).name)
    if p.file_type is None:
        return None
    chosen = f"the preset **{render.text_inline(preset)}**" if preset else "this mapping"
    missing = uploads.missing_fields(m, p.fields)
    if missing:
        return (f"**The file lacks fields {chosen} reads:** {render.text_inline(', '.join(missing))} (it has "
                f"{render.text_inline(', '.join(p.fields))}).")  # fmt: skip
    return f"**{render.text_inline(p.file_name)}**: the file has every field {chosen} reads; press **Import**."


def import_file(
    ctx: AppContext, request: RequestLike | None, path: str | None, name: str, preset: str, mapping: str, labels: str
) -> str:
    return import_with_rejects(ctx, request, path, name, preset, mapping, labels, False)[0]


def import_with_rejects(
    ctx: AppContext,
    request: RequestLike | None,
    path: str | None,
    name: str,
    preset: str,
    mapping: str,
    labels: str,
    skip_invalid: bool,
) -> tuple[str, str | None]:
    """Import an upload: (the message, the rejects file to download when rows were skipped)."""
    ctx.user(request)
    if not path:
        return "Upload a file first.", None
    try:
        m = uploads.mapping_from_text(preset or None, mapping, labels)
        done = uploads.import_upload_with_rejects(
            ctx.repo, path, file_name=Path(path).name, name=name, mapping=m, skip_invalid=bool(skip_invalid)
        )
    except (ImportFileError, ValueError) as e:
        return f"**Not imported** (nothing was stored): {render.text_inline(form_words(str(e)))}", None
    info = done.info
    notes = "".join(f"\n- {render.text_inline(n)}" for n in info.notes)
    text = f"Imported **{render.text_inline(info.name)}**: {info.n_items} items.{notes}"
    return text + _rejects_note(done.rejects), _rejects_file(info.name, done.rejects)


def attach_file(
    ctx: AppContext,
    request: RequestLike | None,
    path: str | None,
    dataset: str | None,
    kind: str,
    codes: str,
    id_field: str,
    columns: str,
    annotator_field: str,
    label_field: str,
    verdict_field: str,
    run: str,
    skip_invalid: bool,
    pair_fields: str = "",
    ranking_field: str = "",
) -> tuple[str, str | None]:
    """Attach human labels or another judge's verdicts to a stored data set (admins: labels carry
    other people's names, and a run is seen by everyone)."""
    user = ctx.user(request)
    if not user.is_admin:
        return "**Not attached:** only an admin can attach labels or verdicts from a file.", None
    if not path:
        return "Upload the labels or verdicts file first.", None
    if not dataset:
        return "Choose the data set the file is about.", None
    try:
        done = uploads.attach_upload(
            ctx.repo, path, file_name=Path(path).name, dataset=dataset, kind=KINDS.get(kind, kind), codes=codes,
            id_field=id_field, annotator_columns=columns, annotator_field=annotator_field, label_field=label_field,
            verdict_field=verdict_field, run=run, skip_invalid=bool(skip_invalid), pair_fields=pair_fields or "",
            ranking_field=ranking_field or "",
        )  # fmt: skip
    except (ImportFileError, ValueError) as e:
        return f"**Not attached** (nothing was stored): {render.text_inline(str(e))}", None
    said = done.describe()
    text = render.text_inline(said[:1].upper() + said[1:]) + "."
    return text + _rejects_note(done.rejects), _rejects_file(f"{dataset}.{KINDS.get(kind, kind)}", done.rejects)


KINDS = {"Human labels": "labels", "Another judge's verdicts": "verdicts"}


def _rejects_note(rejects: tuple) -> str:
    if not rejects:
        return ""
    shown = "".join(
        f"\n- {render.text_inline(f'{r.unit} {r.line}' if r.line else 'file')}"
        f"{render.text_inline(f', field {r.field!r}') if r.field else ''}: {render.text_inline(r.reason)}"
        for r in rejects[:10]
    )
    more = f"\n- … and {len(rejects) - 10} more (all of them in the rejects file)" if len(rejects) > 10 else ""
    head = f"**{len(rejects)} row(s) skipped** (download the rejects file: every one with its line and reason):"
    return f"\n\n{head}{shown}{more}"


def _rejects_file(name: str, rejects: tuple) -> str | None:
    if not rejects:
        return None
    from rrm_ui.services.datasets import write_rejects

    folder = cleanup.new_export_dir()  # removed after an hour, as exports are
    return str(write_rejects(folder / f"{uploads.safe_name(name)}.rejects.jsonl", rejects))


def dataset_names(ctx: AppContext) -> list[str]:
    return [d.name for d in ctx.repo.datasets()]


def start_job(
    ctx: AppContext,
    request: RequestLike | None,
    dataset: str | None,
    budget: float,
    votes: float,
    swap: bool,
    adaptive: bool,
    strategy: str,
    run_name: str,
    judge: str | None = None,
    order: str | None = None,
    stopping: str | None = None,
    escalate: float | None = None,
) -> str:
    user = ctx.user(request)
    info = ctx.repo.dataset(dataset) if dataset else None
    if info is None:
        return "Choose a data set first."
    try:
        escalate_to = controls.check_escalate(escalate, ctx.runtime.settings)
        compute = controls.compute_from_form(votes, swap, adaptive, order, stopping, escalate_to)
        job = ctx.jobs.start(
            info.id,
            compute=compute,
            sampling=ctx.runtime.sampling(max_tokens=controls.check_budget(budget, ctx.runtime.settings)),
            strategy=strategy,
            owner=user.name,
            run_name=(run_name or "").strip() or None,
            judge=judge or None,
        )
    except (ValueError, ModelUnavailable) as e:
        return f"**Not started:** {render.text_inline(str(e))}"
    left = job.items_total - job.items_done
    return (
        f"Started job {job.id} on run **{render.text_inline(job.run_name)}**: {left} items to judge "
        f"({job.items_done} already judged)."
    )


def start_sweep(
    ctx: AppContext,
    request: RequestLike | None,
    dataset: str | None,
    budgets: str,
    votes: str,
    swap: bool,
    budget_mode: str,
    strategy: str,
    judge: str | None = None,
) -> str:
    """The Compute sweep form: one job per thinking budget, judged with the largest vote count (the smaller
    counts are read from its samples; services/sweep.py). Budgets and votes are checked as the Judge it
    form checks one (never clamped)."""
    from rrm_ui.domain import Compute
    from rrm_ui.services import sweep

    user = ctx.user(request)
    info = ctx.repo.dataset(dataset) if dataset else None
    if info is None:
        return "Choose a data set first."
    try:
        grid = [controls.check_budget(b, ctx.runtime.settings) for b in sweep.parse_grid(budgets or "", "budgets")]
        counts = [controls.check_votes(v) for v in sweep.parse_grid(votes or "", "votes")]
        compute = Compute(votes=max(counts), swap=bool(swap), budget_mode=budget_mode or "cutoff")
        jobs, notes = sweep.start_sweep(ctx.jobs, info.id, budgets=grid, votes=counts, compute=compute,
                                        sampling=ctx.runtime.sampling(), strategy=strategy, owner=user.name,
                                        judge=judge or None)  # fmt: skip
    except (ValueError, ModelUnavailable) as e:
        return f"**Sweep not started:** {render.text_inline(str(e))}"
    said = [f"job {j.id} (budget {b:,}): {j.items_total - j.items_done} items to judge" for b, j in jobs]
    text = (f"Started a sweep of {len(grid)} budgets x votes {', '.join(map(str, counts))} "
            f"({max(counts)} votes per order judged, the fewer read from the same samples): "
            f"{render.text_inline('; '.join(said)) or 'no job'}. Its chart: **Dashboards**, section "
            "*Test-time scaling*.")  # fmt: skip
    return text + "".join(f"\n- Not started: {render.text_inline(n)}" for n in notes)


def visible_jobs(ctx: AppContext, request: RequestLike | None) -> list[JobInfo]:
    user = ctx.user(request)
    return ctx.jobs.jobs(owner=None if user.is_admin else user.name)


def jobs_table(jobs: list[JobInfo]) -> pd.DataFrame:
    rows = [
        [
            j.id,
            j.dataset,
            j.run_name,
            j.status.value,
            j.items_done,
            j.items_total,
            "" if j.tokens_per_s is None else round(j.tokens_per_s, 1),
            j.judgments_error,
            j.owner or j.worker or "",  # a job rrm-ui judge holds: "rrm-ui judge on HOST, pid N"
            j.message or "",
        ]
        for j in jobs
    ]
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def jobs_progress(jobs: list[JobInfo]) -> str:
    """Progress bars of the jobs that are not finished (and the latest finished one)."""
    shown = [j for j in jobs if j.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)] or jobs[:1]
    parts = []
    for j in shown:
        rate = "" if j.tokens_per_s is None else f" · {j.tokens_per_s:,.0f} tokens/s"
        label = (
            f"Job {j.id} ({j.dataset}) {j.status.value}: {j.items_done}/{j.items_total} items{rate} · "
            f"{j.judgments_error} errors"
        )
        parts.append(render.progress_bar(j.items_done, j.items_total, label=label))
    return "".join(parts)


def control(ctx: AppContext, request: RequestLike | None, job_id: float | None, action: str) -> str:
    user = ctx.user(request)
    if not job_id:
        return "Give a job number."
    if action not in ACTIONS:
        return f"Unknown action {action!r}."
    try:
        job = getattr(ctx.jobs, action)(int(job_id), actor=user.name, is_admin=user.is_admin)
    except (ValueError, LookupError, PermissionError, ModelUnavailable) as e:
        return f"**Cannot {action} job {int(job_id)}:** {render.text_inline(str(e))}"
    return f"Job {job.id} is {job.status.value}."


def export_file(
    ctx: AppContext,
    request: RequestLike | None,
    dataset: str | None,
    run: str | None,
    fmt: str,
    corrected: bool,
    fill: str | None = "model",
) -> tuple[str | None, str]:
    """Write an export to a fresh temporary folder; an annotator's export holds only their own labels.
    ``fill``: what decides pairs no reviewer adjudicated and no human labelled (exports.FILL_FROM)."""
    user = ctx.user(request)
    if not dataset:
        return None, "Choose a data set first."
    out = cleanup.new_export_dir() / export_name(dataset, fmt)  # removed after an hour (services/cleanup.py)
    filters = exports.ExportFilters(
        dataset=dataset,
        run=run or None,
        only_corrected=bool(corrected),
        annotator=None if user.is_admin else user.name,
        fill_from=fill or "model",
    )
    try:
        summary = exports.export(ctx.repo, fmt, out, filters)
    except ValueError as e:
        return None, f"**Not exported:** {render.text_inline(str(e))}"
    if summary.written == 0:  # a 0-byte download says nothing: say why instead
        out.unlink(missing_ok=True)
        return None, f"**Nothing to download:** {render.text_inline(empty_export_reason(summary, fmt, filters))}"
    return str(out), render.text_inline(summary.describe().replace(str(out), out.name))


def export_name(dataset: str, fmt: str) -> str:
    """The download's file name: the data set, the format, the extension (``x.csv``, ``x.trl.jsonl``)."""
    ext = {"csv": "csv", "parquet": "parquet", "trl-parquet": "parquet"}.get(fmt, "jsonl")
    kind = fmt.removesuffix(f"-{ext}")
    return f"{uploads.safe_name(dataset)}.{ext}" if kind == ext else f"{uploads.safe_name(dataset)}.{kind}.{ext}"


SKIP_REASONS = {
    "not_corrected": "had no human label that corrects the model (untick 'Only human-corrected labels')",
    "no_disagreement": "had no disagreement with the model",
    "no_decision": "had neither a human label nor a model verdict",
    "humans_disagree": "had annotators who disagree with each other",
    "tie": "were ties (a preference row needs a chosen and a rejected response)",
    "both_bad": "were labelled both bad (no response to choose)",
}


def empty_export_reason(summary: exports.ExportSummary, fmt: str, filters: exports.ExportFilters) -> str:
    """Why an export came out with no rows, and what would give it some."""
    mine = " (your own labels: an annotator exports only those)" if filters.annotator else ""
    if fmt in ("csv", "parquet"):
        where = f"run {summary.run!r}" if summary.run else "any run"
        return f"0 rows: {filters.dataset!r} has no judgments in {where}. Judge it first (2 · Judge it)."
    if summary.skipped:
        parts = "; ".join(f"{n} {SKIP_REASONS.get(k, k)}" for k, n in sorted(summary.skipped.items()))
        todo = ""
        if summary.skipped["no_decision"]:
            todo = (" Label them in the Annotate tab, or judge the data set (2 · Judge it), or fill the rest from "
                    "gold if it has gold.")  # fmt: skip
        return f"0 rows: of the {summary.considered} pairs considered{mine}, {parts}.{todo}"
    return (f"0 rows: {filters.dataset!r} has no human labels{mine} and no judged run to export. Label it in the "
            "Annotate tab or judge it (2 · Judge it) first.")  # fmt: skip


def run_names(ctx: AppContext, dataset: str | None) -> list[str]:
    info = ctx.repo.dataset(dataset) if dataset else None
    return [] if info is None else [r.name for r in ctx.repo.runs(info.id)]


# --- components -------------------------------------------------------------------------------


def render_tab(ctx: AppContext, demo: gr.Blocks) -> None:
    settings = ctx.runtime.settings
    with gr.Accordion("1 · Upload a data set", open=True):
        with gr.Row():
            upload = gr.File(
                label="Data file (JSONL, JSON, CSV, TSV, Parquet; .gz too)",
                type="filepath",
                file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet", ".gz"],
                elem_id="batch-file",
            )
            with gr.Column():
                summary = gr.Markdown(elem_id="batch-summary")
                name = gr.Textbox(label="Data set name", elem_id="batch-name")
        rows = gr.Dataframe(label="First rows", interactive=False, wrap=True, elem_id="batch-preview")
        with gr.Accordion("Field mapping (for files whose format is not detected)", open=False) as mapping_box:
            preset = gr.Dropdown(["", *PRESETS], value="", label="Preset", elem_id="batch-preset")
            mapping = gr.Textbox(
                label="Mapping, one per line",
                lines=3,
                placeholder="query=instruction+input\nresponses=output_1,output_2\nlabel=preference",
            )
            labels = gr.Textbox(label="Label values", placeholder="1=A,2=B,0=tie")
            gr.Markdown(
                "Fields may be paths: `bon_best.answer`, `loser_list[].answer` (every element; the other fields of "
                "each object are kept per response), `answers[0].text`. A list of messages as the query is "
                "flattened into turns. `gold=first-beats-rest` (or `gold=in-order`) takes gold from the order of "
                "the responses."
            )
        skip_invalid = gr.Checkbox(
            label="Skip invalid rows (import the valid ones; every skipped row is listed with its line and reason)",
            elem_id="batch-skip-invalid",
        )
        do_import = gr.Button("Import", variant="primary", elem_id="batch-import")
        imported = gr.Markdown(elem_id="batch-imported")
        rejects_out = gr.File(label="Rejected rows", interactive=False, visible=True, elem_id="batch-rejects")

    with gr.Accordion("Attach human labels or another judge's verdicts to a stored data set", open=False):
        with gr.Row():
            at_file = gr.File(
                label="Labels or verdicts file (JSONL, JSON, CSV, TSV, Parquet; .gz too)",
                type="filepath",
                file_types=[".jsonl", ".json", ".csv", ".tsv", ".parquet", ".gz"],
                elem_id="attach-file",
            )
            with gr.Column():
                at_dataset = gr.Dropdown([], label="Data set", elem_id="attach-dataset")
                at_kind = gr.Radio(list(KINDS), value="Human labels", label="The file holds", elem_id="attach-kind")
                at_id = gr.Textbox(value="id", label="Id field (joins the file to the data set's items)")
                at_codes = gr.Textbox(
                    label="Codes",
                    placeholder="1=A,2=B,0=tie (labels); 1=A,2=B,Tie=tie,garbage=none (verdicts)",
                    elem_id="attach-codes",
                )
        with gr.Row():
            at_columns = gr.Textbox(
                label="Annotator columns (labels, wide form): COLUMN=NAME, one per line",
                lines=2, placeholder="annotator1=ann1\nannotator2=ann2", elem_id="attach-columns",
            )  # fmt: skip
            at_ann_field = gr.Textbox(label="or Annotator field (long form)")
            at_label_field = gr.Textbox(label="and Label field (long form)")
        with gr.Row():
            at_verdict_field = gr.Textbox(value="verdict", label="Verdict field (verdicts)")
            at_run = gr.Textbox(label="Run name of the other judge (verdicts)", elem_id="attach-run")
            at_skip = gr.Checkbox(label="Skip invalid rows (ids the data set lacks, unknown codes)")
        with gr.Row():
            at_pair = gr.Textbox(label="List items, labels: Pair fields (I_FIELD,J_FIELD: 0-based indices)")
            at_ranking = gr.Textbox(label="List items, verdicts: Ranking field (indices, best first)")
        do_attach = gr.Button("Attach", variant="primary", elem_id="attach-button")
        attached = gr.Markdown(elem_id="attach-result")
        at_rejects = gr.File(label="Rejected rows", interactive=False, elem_id="attach-rejects")

    with gr.Accordion("2 · Judge it", open=True):
        with gr.Row():
            dataset = gr.Dropdown([], label="Data set", elem_id="batch-dataset", allow_custom_value=False)
            run_name = gr.Textbox(label="Run name (empty: named after the settings, so it can be continued)")
        with gr.Row():
            budget = controls.budget_input(settings, "batch-budget")
            votes = controls.votes_input("batch-votes")
            swap = gr.Checkbox(label="Both orders")
            adaptive = gr.Checkbox(label="Adaptive")
            strategy = gr.Dropdown(list(STRATEGIES), value="auto", label="Lists")
            judge_format = controls.judge_menu(settings, "batch-judge")
        with gr.Row():
            order = controls.order_menu("batch-order")
            stopping = controls.stopping_menu("batch-stopping")
            escalate = controls.escalate_input("batch-escalate")
        start = gr.Button("Start job", variant="primary", elem_id="batch-start")
        started = gr.Markdown(elem_id="batch-started")
        progress = gr.HTML(elem_id="batch-progress")
        table = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, wrap=True, elem_id="batch-jobs")
        with gr.Row():
            job_id = gr.Number(label="Job", precision=0, elem_id="batch-job-id")
            pause = gr.Button("Pause", elem_id="batch-pause")
            resume = gr.Button("Resume", elem_id="batch-resume")
            cancel = gr.Button("Cancel", variant="stop", elem_id="batch-cancel")
        controlled = gr.Markdown(elem_id="batch-control")
        with gr.Accordion("Compute sweep: agreement against tokens over thinking budgets x votes", open=False):
            gr.Markdown("One job per thinking budget on the data set above (with its *Both orders*, *Lists* and "
                        "*Judge format*), each judged with the most votes; the fewer votes are read from the same "
                        "samples. The chart is in **Dashboards**, section *Test-time scaling* "
                        "(docs/sweep.md).")  # fmt: skip
            with gr.Row():
                sw_budgets = gr.Textbox(value="512, 1k, 2k, 4k, 8k", label="Thinking budgets (tokens; k = 1024)",
                                        elem_id="sweep-budgets")  # fmt: skip
                sw_votes = gr.Textbox(value="1, 2, 4, 8", label="Votes per order", elem_id="sweep-votes")
                sw_mode = gr.Radio(["cutoff", "force"], value="cutoff", elem_id="sweep-mode",
                                   label="At the budget: cut off (no verdict) or force the close")  # fmt: skip
            sw_start = gr.Button("Start sweep", elem_id="sweep-start")
            sw_started = gr.Markdown(elem_id="sweep-started")

    with gr.Accordion("3 · Download", open=True):
        with gr.Row():
            ex_dataset = gr.Dropdown([], label="Data set", elem_id="batch-ex-dataset")
            ex_run = gr.Dropdown(
                [], label="Run (empty: the main run, the one that judged the most items)", allow_custom_value=True
            )
            fmt = gr.Dropdown(list(exports.FORMATS), value="trl", label="Format", elem_id="batch-ex-format")
            corrected = gr.Checkbox(label="Only human-corrected labels")
            fill = gr.Dropdown([(v, k) for k, v in exports.FILL_FROM.items()], value="model",
                               label="Fill the rest from (pairs no reviewer adjudicated and no human labelled)",
                               elem_id="batch-ex-fill")  # fmt: skip
        do_export = gr.Button("Export", elem_id="batch-export")
        exported = gr.Markdown(elem_id="batch-exported")
        out_file = gr.File(label="Download", interactive=False, elem_id="batch-download")
    timer = gr.Timer(JOB_POLL_S)

    def on_upload(path: str | None) -> dict:
        v = inspect_upload(path)
        return {summary: v.summary, rows: v.rows, name: v.name, mapping_box: gr.update(open=v.needs_mapping),
                preset: v.preset or ""}  # fmt: skip

    def recheck_fn(path, pr, mp, lb) -> Any:  # noqa: ANN001 - Gradio's values
        said = check_mapping(path, pr, mp, lb)
        return gr.update() if said is None else said

    def cleared_fn(message: str) -> Any:
        return "" if message.startswith("Imported") else gr.update()  # the upload's old error goes

    def refresh_datasets() -> dict:
        names = dataset_names(ctx)
        last = names[-1] if names else None
        return {
            dataset: gr.update(choices=names, value=last),
            ex_dataset: gr.update(choices=names, value=last),
            at_dataset: gr.update(choices=names, value=last),
        }

    def import_fn(path, nm, pr, mp, lb, sk, request: gr.Request) -> dict:  # noqa: ANN001 - Gradio's values
        message, rejected = import_with_rejects(ctx, request, path, nm, pr, mp, lb, sk)
        return {imported: message, rejects_out: rejected, **refresh_datasets()}

    def attach_fn(path, ds, kind, codes, idf, cols, af, lf, vf, run, sk, pf, rf, request: gr.Request) -> dict:  # noqa: ANN001
        message, rejected = attach_file(ctx, request, path, ds, kind, codes, idf, cols, af, lf, vf, run, sk, pf, rf)
        return {attached: message, at_rejects: rejected}

    def start_fn(ds, b, v, sw, ad, st, rn, jf, od, sp, es, request: gr.Request) -> str:  # noqa: ANN001
        return start_job(ctx, request, ds, b, v, sw, ad, st, rn, jf, od, sp, es)

    def poll_fn(request: gr.Request) -> dict:
        jobs = visible_jobs(ctx, request)
        return {table: jobs_table(jobs), progress: jobs_progress(jobs)}

    def action(name: str):  # noqa: ANN202
        def fn(j, request: gr.Request) -> str:  # noqa: ANN001
            return control(ctx, request, j, name)

        return fn

    def export_fn(ds, rn, f, c, fl, request: gr.Request) -> dict:  # noqa: ANN001
        path, message = export_file(ctx, request, ds, rn, f, c, fl)
        return {out_file: path, exported: message}

    # Named API endpoints: a script starts and follows jobs as the tab does (tests/test_app_kill.py).
    upload.upload(on_upload, upload, [summary, rows, name, mapping_box, preset], api_name="batch_preview")
    for box in (preset, mapping, labels):  # a preset or mapping chosen: checked against the file at once
        box.change(recheck_fn, [upload, preset, mapping, labels], summary, queue=False, show_progress="hidden")
    do_import.click(
        import_fn,
        [upload, name, preset, mapping, labels, skip_invalid],
        [imported, rejects_out, dataset, ex_dataset, at_dataset],
        api_name="batch_import",
    ).then(cleared_fn, imported, summary, queue=False, show_progress="hidden")
    do_attach.click(
        attach_fn,
        [at_file, at_dataset, at_kind, at_codes, at_id, at_columns, at_ann_field, at_label_field, at_verdict_field,
         at_run, at_skip, at_pair, at_ranking],
        [attached, at_rejects],
        api_name="batch_attach",
    )  # fmt: skip

    def latest_fn(request: gr.Request) -> dict:
        jobs = visible_jobs(ctx, request)
        return {table: jobs_table(jobs), progress: jobs_progress(jobs), job_id: jobs[0].id if jobs else None}

    start.click(
        start_fn,
        [dataset, budget, votes, swap, adaptive, strategy, run_name, judge_format, order, stopping, escalate],
        started,
        api_name="batch_start",
    ).then(latest_fn, None, [table, progress, job_id], show_progress="hidden", api_name="batch_latest")
    timer.tick(poll_fn, None, [table, progress], show_progress="hidden", api_name="batch_poll")

    def sweep_fn(ds, b, v, sw, mode, st, jf, request: gr.Request) -> str:  # noqa: ANN001
        return start_sweep(ctx, request, ds, b, v, sw, mode, st, jf)

    sw_start.click(
        sweep_fn, [dataset, sw_budgets, sw_votes, swap, sw_mode, strategy, judge_format], sw_started,
        api_name="batch_sweep",
    ).then(latest_fn, None, [table, progress, job_id], show_progress="hidden")  # fmt: skip
    pause.click(action("pause"), job_id, controlled, api_name="batch_pause")
    resume.click(action("resume"), job_id, controlled, api_name="batch_resume")
    cancel.click(action("cancel"), job_id, controlled, api_name="batch_cancel")
    ex_dataset.change(
        lambda ds: gr.update(choices=run_names(ctx, ds), value=None), ex_dataset, ex_run, api_name="batch_runs"
    )
    do_export.click(export_fn, [ex_dataset, ex_run, fmt, corrected, fill], [out_file, exported],
                    api_name="batch_export")  # fmt: skip
    demo.load(refresh_datasets, None, [dataset, ex_dataset, at_dataset], api_name="batch_datasets")
    demo.load(poll_fn, None, [table, progress], api_name="batch_jobs")
