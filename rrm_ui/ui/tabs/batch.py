"""Batch tab: upload a file, start a judging job on the server, follow it, download the results.

Jobs run in the app process, not in the page: closing the browser does not stop them, and an
app restart continues them (see :mod:`rrm_ui.services.jobs`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from rrm_ui.domain import JobInfo, JobStatus
from rrm_ui.io.importers import PRESETS
from rrm_ui.io.readers import ImportFileError
from rrm_ui.services import exports, uploads
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


# --- handlers ---------------------------------------------------------------------------------


def inspect_upload(path: str | None) -> UploadView:
    if not path:
        return UploadView("", pd.DataFrame(), "", False)
    p = uploads.preview(path, Path(path).name)
    if p.problem:
        return UploadView(
            f"**Cannot import as it is.** {render.text_inline(p.problem)}",
            p.rows,
            p.suggested_name,
            p.format is None and p.file_type is not None,
        )
    text = (
        f"**{render.text_inline(p.file_name)}**: {p.file_type} file, detected format **{p.format}**; first rows below."
    )
    return UploadView(text, p.rows, p.suggested_name, False)


def import_file(
    ctx: AppContext, request: RequestLike | None, path: str | None, name: str, preset: str, mapping: str, labels: str
) -> str:
    ctx.user(request)
    if not path:
        return "Upload a file first."
    try:
        m = uploads.mapping_from_text(preset or None, mapping, labels)
        info = uploads.import_upload(ctx.repo, path, file_name=Path(path).name, name=name, mapping=m)
    except (ImportFileError, ValueError) as e:
        return f"**Not imported** (nothing was stored): {render.text_inline(str(e))}"
    notes = "".join(f"\n- {render.text_inline(n)}" for n in info.notes)
    return f"Imported **{render.text_inline(info.name)}**: {info.n_items} items.{notes}"


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
) -> str:
    user = ctx.user(request)
    info = ctx.repo.dataset(dataset) if dataset else None
    if info is None:
        return "Choose a data set first."
    compute = controls.compute_from_form(votes, swap, adaptive)
    try:
        job = ctx.jobs.start(
            info.id,
            compute=compute,
            sampling=ctx.runtime.sampling(max_tokens=int(budget)),
            strategy=strategy,
            owner=user.name,
            run_name=(run_name or "").strip() or None,
        )
    except (ValueError, ModelUnavailable) as e:
        return f"**Not started:** {render.text_inline(str(e))}"
    left = job.items_total - job.items_done
    return f"Started job {job.id} on run `{job.run_name}`: {left} items to judge ({job.items_done} already judged)."


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
            j.owner or "",
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
    ctx: AppContext, request: RequestLike | None, dataset: str | None, run: str | None, fmt: str, corrected: bool
) -> tuple[str | None, str]:
    """Write an export to a fresh temporary folder; an annotator's export holds only their own labels."""
    user = ctx.user(request)
    if not dataset:
        return None, "Choose a data set first."
    ext = {"csv": "csv", "parquet": "parquet", "trl-parquet": "parquet"}.get(fmt, "jsonl")
    out = Path(tempfile.mkdtemp(prefix="rrm-ui-export-")) / f"{uploads.safe_name(dataset)}.{fmt}.{ext}"
    filters = exports.ExportFilters(
        dataset=dataset, run=run or None, only_corrected=bool(corrected), annotator=None if user.is_admin else user.name
    )
    try:
        summary = exports.export(ctx.repo, fmt, out, filters)
    except ValueError as e:
        return None, f"**Not exported:** {render.text_inline(str(e))}"
    return str(out), render.text_inline(summary.describe().replace(str(out), out.name))


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
            preset = gr.Dropdown(["", *PRESETS], value="", label="Preset")
            mapping = gr.Textbox(
                label="Mapping, one per line",
                lines=3,
                placeholder="query=instruction+input\nresponses=output_1,output_2\nlabel=preference",
            )
            labels = gr.Textbox(label="Label values", placeholder="1=A,2=B,0=tie")
        do_import = gr.Button("Import", variant="primary", elem_id="batch-import")
        imported = gr.Markdown(elem_id="batch-imported")

    with gr.Accordion("2 · Judge it", open=True):
        with gr.Row():
            dataset = gr.Dropdown([], label="Data set", elem_id="batch-dataset", allow_custom_value=False)
            run_name = gr.Textbox(label="Run name (empty: named after the settings, so it can be continued)")
        with gr.Row():
            budget = controls.budget_slider(settings, "batch-budget")
            votes = gr.Slider(1, 8, value=1, step=1, label="Votes per order")
            swap = gr.Checkbox(label="Both orders")
            adaptive = gr.Checkbox(label="Adaptive")
            strategy = gr.Dropdown(list(STRATEGIES), value="auto", label="Lists")
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

    with gr.Accordion("3 · Download", open=True):
        with gr.Row():
            ex_dataset = gr.Dropdown([], label="Data set", elem_id="batch-ex-dataset")
            ex_run = gr.Dropdown([], label="Run (empty: the latest)", allow_custom_value=True)
            fmt = gr.Dropdown(list(exports.FORMATS), value="trl", label="Format", elem_id="batch-ex-format")
            corrected = gr.Checkbox(label="Only human-corrected labels")
        do_export = gr.Button("Export", elem_id="batch-export")
        exported = gr.Markdown(elem_id="batch-exported")
        out_file = gr.File(label="Download", interactive=False, elem_id="batch-download")
    timer = gr.Timer(JOB_POLL_S)

    def on_upload(path: str | None) -> dict:
        v = inspect_upload(path)
        return {summary: v.summary, rows: v.rows, name: v.name, mapping_box: gr.update(open=v.needs_mapping)}

    def refresh_datasets() -> dict:
        names = dataset_names(ctx)
        last = names[-1] if names else None
        return {dataset: gr.update(choices=names, value=last), ex_dataset: gr.update(choices=names, value=last)}

    def import_fn(path, nm, pr, mp, lb, request: gr.Request) -> dict:  # noqa: ANN001 - Gradio's values
        return {imported: import_file(ctx, request, path, nm, pr, mp, lb), **refresh_datasets()}

    def start_fn(ds, b, v, sw, ad, st, rn, request: gr.Request) -> str:  # noqa: ANN001
        return start_job(ctx, request, ds, b, v, sw, ad, st, rn)

    def poll_fn(request: gr.Request) -> dict:
        jobs = visible_jobs(ctx, request)
        return {table: jobs_table(jobs), progress: jobs_progress(jobs)}

    def action(name: str):  # noqa: ANN202
        def fn(j, request: gr.Request) -> str:  # noqa: ANN001
            return control(ctx, request, j, name)

        return fn

    def export_fn(ds, rn, f, c, request: gr.Request) -> dict:  # noqa: ANN001
        path, message = export_file(ctx, request, ds, rn, f, c)
        return {out_file: path, exported: message}

    # Named API endpoints: a script starts and follows jobs as the tab does (tests/test_app_kill.py).
    upload.upload(on_upload, upload, [summary, rows, name, mapping_box], api_name="batch_preview")
    do_import.click(
        import_fn, [upload, name, preset, mapping, labels], [imported, dataset, ex_dataset], api_name="batch_import"
    )

    def latest_fn(request: gr.Request) -> dict:
        jobs = visible_jobs(ctx, request)
        return {table: jobs_table(jobs), progress: jobs_progress(jobs), job_id: jobs[0].id if jobs else None}

    start.click(
        start_fn, [dataset, budget, votes, swap, adaptive, strategy, run_name], started, api_name="batch_start"
    ).then(latest_fn, None, [table, progress, job_id], show_progress="hidden", api_name="batch_latest")
    timer.tick(poll_fn, None, [table, progress], show_progress="hidden", api_name="batch_poll")
    pause.click(action("pause"), job_id, controlled, api_name="batch_pause")
    resume.click(action("resume"), job_id, controlled, api_name="batch_resume")
    cancel.click(action("cancel"), job_id, controlled, api_name="batch_cancel")
    ex_dataset.change(
        lambda ds: gr.update(choices=run_names(ctx, ds), value=None), ex_dataset, ex_run, api_name="batch_runs"
    )
    do_export.click(export_fn, [ex_dataset, ex_run, fmt, corrected], [out_file, exported], api_name="batch_export")
    demo.load(refresh_datasets, None, [dataset, ex_dataset], api_name="batch_datasets")
    demo.load(poll_fn, None, [table, progress], api_name="batch_jobs")
