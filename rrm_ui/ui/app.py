"""The Gradio app: a banner saying what the model is doing, and one tab per job to be done.

``build(ctx)`` returns the ``gr.Blocks``; :func:`launch` adds the queue, login and static
files and starts the server. Each tab lives in :mod:`rrm_ui.ui.tabs` with its handlers as
plain functions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rrm_ui.services import cleanup, metrics
from rrm_ui.services import runtime as runtime_service
from rrm_ui.services.runtime import ModelState, ModelStatus
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext, RequestLike
from rrm_ui.ui.login_gate import LoginGate
from rrm_ui.ui.tabs import annotate, batch, dashboard, explorer, judge, review

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[2] / "static"
BANNER_POLL_S = 2.0


def restart_command(argv: list[str], model: str) -> str:
    """The command that started this app with ``--model`` set to ``model`` (the other options kept)."""
    head = ["python3", "app.py"] if argv and argv[0].endswith("app.py") else ["rrm-ui"]
    rest, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--model":
            skip = True
        elif not arg.startswith("--model="):
            rest.append(arg)
    return shlex.join([*head, *rest, "--model", model])


def banner_html(state: ModelState, argv: list[str] | None = None) -> str:
    """What the top of every page says about the model (``argv``: the app's command line, for the restart
    commands of the banner that says the model could not be loaded)."""
    if state.status == ModelStatus.READY and not state.usable:
        return render.banner(
            "warning",
            f"The model server does not answer with {state.model}",
            "\n\n".join(state.problems) + "\n\nJudging waits for a server and tries again; this banner "
            "updates by itself. Import, annotation, dashboards and export work meanwhile.",
        )
    if state.status == ModelStatus.READY:
        notes = "".join(f"\n\n{p}" for p in state.problems)  # e.g. one replica of several is down
        return render.banner("info", "Model ready", f"{state.model} on the {state.backend} backend.{notes}")
    if state.status == ModelStatus.LOADING:
        return render.banner(
            "info",
            "Loading the model…",
            f"{state.model} on the {state.backend} backend. Import, annotation, dashboards and export work already.",
        )
    fix = "" if state.fix in state.message else f" To judge, restart the app and {state.fix}."
    argv = sys.argv if argv is None else argv
    restart = (
        f"\n\nTo judge, restart with a model directory:\n  {restart_command(argv, 'PATH')}\nor, for a wiring check "
        f"(a random model, its verdicts are noise):\n  rrm-ui dev tiny-model ./tiny-model && "
        f"{restart_command(argv, './tiny-model')}"
    )
    return render.banner(
        "error",
        f"The model {state.model} could not be loaded",
        f"{state.message}\n\nEverything that needs no model still works: import, annotation of pairs without a "
        f"verdict (plain preference collection), dashboards and export.{fix}{restart}",
    )


DEMO_NOTE = (
    "No GPU or no model? The **demo judge** is a tiny model trained here on the CPU in a few minutes to "
    "write RRM-style reasoning and a boxed verdict with a known position bias (docs/demo-judge.md): every "
    "judgment is complete and streams, but **its verdicts are not about quality**. Runs and verdict cards "
    "name it as the demo judge."
)


def build_demo(ctx: AppContext, request: RequestLike | None, progress: Any = None, *, steps: int | None = None) -> str:
    """The banner's button: an admin trains (or finds) the demo judge and loads it in place of the model that
    failed; what to say afterwards (Markdown)."""
    user = ctx.user(request)
    if not user.is_admin:
        raise PermissionError("only an admin may load a model for everyone")
    path = runtime_service.build_and_use_demo_judge(ctx.runtime, progress, steps=steps)
    state = ctx.runtime.model
    if state.status == ModelStatus.FAILED:
        return f"The demo judge was built in `{path}` but could not be loaded: {render.text_inline(state.message)}"
    return (f"**The demo judge is loaded** (`{path}`): judge a pair in the Judge tab. Its verdicts follow a "
            "documented distribution, not quality.")


def whoami(ctx: AppContext, request: gr.Request) -> str:
    user = ctx.user(request)
    if not ctx.login:
        return "Single-user mode (no accounts): you are **local**, with admin rights."
    role = "admin" if user.is_admin else "reviewer" if user.is_reviewer else "annotator"
    return f"Logged in as **{render.text_inline(user.name)}** ({role}) · [log out](/logout)"


def build(ctx: AppContext) -> gr.Blocks:
    # Gradio removes the uploads and downloads this app put in its cache once a day old, every hour
    delete_cache = (int(cleanup.CLEAN_EVERY_S), int(cleanup.UPLOAD_MAX_AGE_S))
    with gr.Blocks(title="rrm-ui", analytics_enabled=False, delete_cache=delete_cache) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## rrm-ui · judging with Reward Reasoning Models", elem_id="title")
            who = gr.Markdown(elem_id="whoami")
        banner = gr.HTML(banner_html(ctx.runtime.model), elem_id="model-banner")
        poll = gr.Timer(BANNER_POLL_S)
        # no model: one click trains the demo judge on CPU and loads it (an admin's choice, for everyone)
        with gr.Row(visible=ctx.runtime.model.status == ModelStatus.FAILED, elem_id="demo-row") as demo_row:
            demo_btn = gr.Button("Build and load the demo judge", elem_id="demo-build", variant="primary",
                                 scale=0, min_width=260)  # fmt: skip
            demo_msg = gr.Markdown(DEMO_NOTE, elem_id="demo-msg")

        def refresh() -> dict[Any, Any]:
            state = ctx.runtime.model
            watching = state.status == ModelStatus.LOADING or bool(state.problems)
            return {banner: banner_html(state), poll: gr.Timer(active=watching),
                    demo_row: gr.Row(visible=state.status == ModelStatus.FAILED)}  # fmt: skip

        poll.tick(refresh, None, [banner, poll, demo_row], queue=False, show_progress="hidden")

        def demo_fn(request: gr.Request, progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
            try:
                said = build_demo(ctx, request, lambda f, m: progress(f, desc=m))
            except (PermissionError, RuntimeError, ValueError) as exc:
                raise gr.Error(str(exc)) from None
            state = ctx.runtime.model
            return {banner: banner_html(state), demo_msg: said,
                    demo_row: gr.Row(visible=state.status == ModelStatus.FAILED)}  # fmt: skip

        demo_btn.click(demo_fn, None, [banner, demo_msg, demo_row], api_name="build_demo_judge")

        def who_fn(request: gr.Request) -> str:
            return whoami(ctx, request)

        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Judge", id="judge", elem_id="tab-judge"):
                history_fn, history = judge.render_tab(ctx)
            with gr.Tab("Annotate", id="annotate", elem_id="tab-annotate") as annotate_tab:
                annotate_refresh = annotate.render_tab(ctx, demo)
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                batch.render_tab(ctx, demo)
            with gr.Tab("Dashboards", id="dashboards", elem_id="tab-dashboards") as dash_tab:
                dash = dashboard.render_tab(ctx)
            with gr.Tab("Explorer", id="explorer", elem_id="tab-explorer") as explorer_tab:
                exp = explorer.render_tab(ctx)
            with gr.Tab("Review", id="review", elem_id="tab-review") as review_tab:
                review_refresh = review.render_tab(ctx)
        review_tab.select(*review_refresh, queue=False, show_progress="hidden")  # data sets imported meanwhile
        annotate_tab.select(*annotate_refresh, queue=False, show_progress="hidden")  # data sets imported meanwhile
        explorer.wire_drill(ctx, exp, dash.drill_input, dash.drill_go, tabs)
        dash_fn, dash_in, dash_out = dash.refresh
        dash_tab.select(dash_fn, dash_in, dash_out, show_progress="minimal")
        explorer_tab.select(exp.explore_fn, [exp.extra, *exp.filters], exp.outputs, show_progress="minimal")
        demo.load(who_fn, None, who, queue=False)
        demo.load(history_fn, None, history, queue=False)
        demo.load(refresh, None, [banner, poll, demo_row], queue=False)
    return demo


def metrics_route(ctx: AppContext) -> Route:
    """``GET /metrics``: the operators' metrics in the Prometheus text format (services/metrics.py),
    read from the database in a thread. The login gate decides who may read it."""

    totals = metrics.JudgmentTotals()  # the judgments' sums, kept between scrapes

    async def page(request: Request) -> Response:
        body = await asyncio.to_thread(metrics.exposition, ctx.repo, overlap=ctx.overlap, totals=totals)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return Route(LoginGate.METRICS, page, methods=["GET"])


def _warm_dashboards(ctx: AppContext) -> None:
    try:
        dashboard.warm(ctx)
    except Exception:  # the page is then made on the first visit, which reports what is wrong
        log.warning("could not prepare the dashboards at start", exc_info=True)


def launch(ctx: AppContext, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Start the web server. With accounts in the database every page and API route needs a login."""
    from rrm_ui.services import accounts, uploads

    demo = build(ctx)
    # the Dashboards tab's first page, made while the server starts (at 100,000 judgments reading and
    # deriving everything takes seconds; docs/benchmarks.md)
    threading.Thread(target=_warm_dashboards, args=(ctx,), name="rrm-ui-dashboard-warm", daemon=True).start()
    # old exports, and uploads an earlier (killed) run left in Gradio's cache: now, then every hour
    cleanup.Cleaner(cleanup.app_targets(demo.GRADIO_CACHE)).start()
    # Model events share one concurrency group sized for the backend (see Runtime.ui_concurrency);
    # everything else (annotation, uploads, job controls) may run many at once.
    demo.queue(default_concurrency_limit=32)
    auth = None
    # sessions end when an account's password changes or it is removed; failed logins slow down
    gate = Middleware(LoginGate, session_epoch=functools.partial(accounts.session_epoch, ctx.repo),
                      throttle=accounts.LoginThrottle(),
                      metrics_token=ctx.runtime.settings.metrics_token,
                      session_owner=functools.partial(accounts.session_owner, ctx.repo))  # fmt: skip
    if ctx.login:

        async def auth(name: str, password: str) -> bool:
            # Gradio awaits this on its event loop: the scrypt check (about 30 ms of CPU) and the
            # database read go to a thread, so thirty people logging in at once stall nobody else.
            found = await asyncio.to_thread(accounts.authenticate, ctx.repo, name, password)
            return found is not None

    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        auth_message="rrm-ui: log in with the account an admin made for you (rrm-ui users add NAME).",
        css_paths=[STATIC / "app.css"],
        js=(STATIC / "app.js").read_text(),
        head=f"<script>{(STATIC / 'katex' / 'katex.min.js').read_text()}</script>",  # math (static/app.js)
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        footer_links=["api"],
        max_file_size=uploads.MAX_UPLOAD_BYTES,  # refused with 413 before it is written to disk
        app_kwargs={"routes": [metrics_route(ctx)], **({"middleware": [gate]} if ctx.login else {})},
    )
