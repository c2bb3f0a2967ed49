"""``rrm-ui serve``: the web app (also ``python app.py``).

The app starts at once on the configured database (SQLite ``db/rrm_ui.db`` by default) and
loads the model in the background; the page's banner says when it is ready or why it failed.
With no ``--model`` and no ``--endpoint`` it loads Reward-Reasoning/RRM-7B (vLLM on a GPU,
transformers otherwise). Jobs left running by an earlier app process continue.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from rrm_ui.cli.options import add_backend_options, settings_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "serve", help="start the web app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    s.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, help="port (default 7860)")
    s.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    s.add_argument("--overlap", type=int, help="annotators per item in the annotation queue (default 1)")
    add_backend_options(s)
    s.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(
            args, database_url=args.db, host=args.host, port=args.port, annotation_overlap=args.overlap
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from rrm_ui.services import accounts, open_repository
    from rrm_ui.services.jobs import JobManager
    from rrm_ui.services.runtime import Runtime, app_settings
    from rrm_ui.ui.app import launch
    from rrm_ui.ui.context import AppContext

    settings = app_settings(settings)
    repo = open_repository(settings)
    runtime = Runtime(settings, repo)
    runtime.load_model()
    jobs = JobManager(repo, runtime, lease_s=settings.job_lease_s, beat_s=settings.job_beat_s)
    jobs.recover()
    login = accounts.has_accounts(repo)
    ctx = AppContext(runtime, jobs, login=login, overlap=settings.annotation_overlap)
    print(
        f"rrm-ui: database {settings.database_url}; model {settings.model} ({settings.backend}) loading in the "
        f"background; {'login required' if login else 'single-user mode (no accounts)'}",
        file=sys.stderr,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    launch(ctx, host=settings.host, port=settings.port, block=False)
    print(f"rrm-ui: serving on http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    stop.wait()
    jobs.shutdown()
    runtime.close()
    return 0
