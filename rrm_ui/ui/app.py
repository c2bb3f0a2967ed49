"""The Gradio app: a banner saying what the model is doing, and one tab per job to be done.

``build(ctx)`` returns the ``gr.Blocks``; :func:`launch` adds the queue, login and static
files and starts the server. Each tab lives in :mod:`rrm_ui.ui.tabs` with its handlers as
plain functions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import gradio as gr
from starlette.middleware import Middleware

from rrm_ui.services.runtime import ModelState, ModelStatus
from rrm_ui.ui import render
from rrm_ui.ui.context import AppContext
from rrm_ui.ui.login_gate import LoginGate
from rrm_ui.ui.tabs import annotate, batch, dashboard, explorer, judge

STATIC = Path(__file__).resolve().parents[2] / "static"
BANNER_POLL_S = 2.0


def banner_html(state: ModelState) -> str:
    """What the top of every page says about the model."""
    if state.status == ModelStatus.READY:
        return render.banner("info", "Model ready", f"{state.model} on the {state.backend} backend.")
    if state.status == ModelStatus.LOADING:
        return render.banner(
            "info",
            "Loading the model…",
            f"{state.model} on the {state.backend} backend. Import, annotation, dashboards and export work already.",
        )
    fix = "" if state.fix in state.message else f" To judge, restart the app and {state.fix}."
    return render.banner(
        "error",
        f"The model {state.model} could not be loaded",
        f"{state.message}\n\nEverything that needs no model still works: import, annotation of pairs without a "
        f"verdict (plain preference collection), dashboards and export.{fix}",
    )


def whoami(ctx: AppContext, request: gr.Request) -> str:
    user = ctx.user(request)
    if not ctx.login:
        return "Single-user mode (no accounts): you are **local**, with admin rights."
    role = "admin" if user.is_admin else "annotator"
    return f"Logged in as **{render.text_inline(user.name)}** ({role}) · [log out](/logout)"


def build(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="rrm-ui", analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## rrm-ui · judging with Reward Reasoning Models", elem_id="title")
            who = gr.Markdown(elem_id="whoami")
        banner = gr.HTML(banner_html(ctx.runtime.model), elem_id="model-banner")
        poll = gr.Timer(BANNER_POLL_S)

        def refresh() -> dict[Any, Any]:
            state = ctx.runtime.model
            return {banner: banner_html(state), poll: gr.Timer(active=state.status == ModelStatus.LOADING)}

        poll.tick(refresh, None, [banner, poll], queue=False, show_progress="hidden")

        def who_fn(request: gr.Request) -> str:
            return whoami(ctx, request)

        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Judge", id="judge", elem_id="tab-judge"):
                history_fn, history = judge.render_tab(ctx)
            with gr.Tab("Annotate", id="annotate", elem_id="tab-annotate"):
                annotate.render_tab(ctx, demo)
            with gr.Tab("Batch", id="batch", elem_id="tab-batch"):
                batch.render_tab(ctx, demo)
            with gr.Tab("Dashboards", id="dashboards", elem_id="tab-dashboards") as dash_tab:
                dash = dashboard.render_tab(ctx)
            with gr.Tab("Explorer", id="explorer", elem_id="tab-explorer") as explorer_tab:
                exp = explorer.render_tab(ctx)
        explorer.wire_drill(ctx, exp, dash.drill_input, dash.drill_go, tabs)
        dash_fn, dash_in, dash_out = dash.refresh
        dash_tab.select(dash_fn, dash_in, dash_out, show_progress="minimal")
        explorer_tab.select(exp.explore_fn, [exp.extra, *exp.filters], exp.outputs, show_progress="minimal")
        demo.load(who_fn, None, who, queue=False)
        demo.load(history_fn, None, history, queue=False)
        demo.load(refresh, None, [banner, poll], queue=False)
    return demo


def launch(ctx: AppContext, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> Any:
    """Start the web server. With accounts in the database every page and API route needs a login."""
    from rrm_ui.services import accounts, uploads

    demo = build(ctx)
    # Model events share one concurrency group sized for the backend (see Runtime.ui_concurrency);
    # everything else (annotation, uploads, job controls) may run many at once.
    demo.queue(default_concurrency_limit=32)
    auth = None
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
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        footer_links=["api"],
        max_file_size=uploads.MAX_UPLOAD_BYTES,  # refused with 413 before it is written to disk
        app_kwargs={"middleware": [Middleware(LoginGate)]} if ctx.login else None,
    )
