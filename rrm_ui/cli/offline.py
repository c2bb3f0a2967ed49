"""``rrm-ui offline``: a run judged by ``vllm run-batch`` instead of the live engine (docs/engine.md).

rrm-ui offline prepare [FILE] --dataset NAME [--run RUN] --model MODEL --out requests.jsonl [judge flags]
python -m vllm.entrypoints.openai.run_batch -i requests.jsonl -o outputs.jsonl --model MODEL
rrm-ui offline import outputs.jsonl --run RUN [--dataset NAME] [--skip-invalid]

or, on Ray Data (a cluster, or Ray on this machine) against OpenAI-compatible servers or a router:
rrm-ui offline ray requests.jsonl --url http://ROUTER:8000 --out outputs.jsonl [--concurrency N]
"""

from __future__ import annotations

import argparse
import sys

from rrm_ui.cli.options import add_backend_options, add_compute_options, compute_from, judges_epilog, settings_from

STRATEGIES = ("auto", "pair")


def _prepare(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args, database_url=args.db)
        compute = compute_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.backend not in (None, "auto") or args.endpoints:
        print("error: an offline batch is judged by vllm run-batch: --backend and --endpoint do not apply",
              file=sys.stderr)  # fmt: skip
        return 2
    if not settings.model:
        print("error: give --model: the model vllm run-batch will load (the same string for its --model)",
              file=sys.stderr)  # fmt: skip
        return 2
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import ensure_dataset
    from rrm_ui.services.judging import default_run_name, make_spec
    from rrm_ui.services.offline import BatchBackend, OfflineError, prepare
    from rrm_ui.storage.repository import RunMismatch

    repo = open_repository(settings)
    try:
        dataset = ensure_dataset(repo, args.input, args.dataset)
        spec = make_spec(BatchBackend(settings.model, settings.seed), settings, compute=compute,
                         strategy=args.strategy)  # fmt: skip
        run = args.run or default_run_name(dataset.name, spec)
        done = prepare(repo, settings, dataset.id, run, spec, args.out)
    except (OfflineError, RunMismatch, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "created" if done.created else "continuing"
    print(f"{verb} run {done.run.name!r} on data set {dataset.name!r}: wrote {done.requests} requests for "
          f"{done.items} items to {done.path} ({done.already_done} items already judged)", file=sys.stderr)  # fmt: skip
    print(f"next: python -m vllm.entrypoints.openai.run_batch -i {done.path} -o OUTPUT.jsonl --model {spec.model}\n"
          f"then: rrm-ui offline import OUTPUT.jsonl --run {done.run.name!r}", file=sys.stderr)  # fmt: skip
    return 0


def _import(args: argparse.Namespace) -> int:
    from rrm_ui.services import open_repository
    from rrm_ui.services.offline import OfflineError, import_outputs

    settings = settings_from(args, database_url=args.db)
    repo = open_repository(settings)
    try:
        done = import_outputs(repo, settings, args.run, args.file, dataset=args.dataset, skip_invalid=args.skip_invalid)
    except OfflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in done.skipped_lines:
        print(f"skipped: {problem}", file=sys.stderr)
    if done.skipped_items:
        print(f"skipped {len(done.skipped_items)} item(s): {', '.join(map(repr, done.skipped_items))}", file=sys.stderr)
    print(f"run {done.run.name!r}: stored {done.stored} items ({done.judgments} judgments, {done.error_judgments} "
          f"with an error); {done.already} already stored; {done.not_in_file} items of the run not judged yet "
          "and not in this file", file=sys.stderr)  # fmt: skip
    return 0


def _ray(args: argparse.Namespace) -> int:
    from rrm_ui.services.offline import OfflineError, judge_on_ray

    headers = {}
    for h in args.header or ():
        key, sep, value = h.partition(":")
        if not sep or not key.strip():
            print(f"error: --header expects NAME: VALUE, found {h!r}", file=sys.stderr)
            return 2
        headers[key.strip()] = value.strip()
    try:
        done = judge_on_ray(args.file, args.out, args.url, concurrency=args.concurrency, batch_size=args.batch_size,
                            max_retries=args.max_retries, headers=headers, address=args.ray_address)  # fmt: skip
    except OfflineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {done.answered + done.errors} of {done.requests} answers to {done.path} ({done.errors} with the "
          "server's error)", file=sys.stderr)  # fmt: skip
    if done.failure:
        print(f"error: Ray stopped before every request was answered: {done.failure}\n"
              f"the answers so far are in {done.path}: import them, then prepare the run again (only items "
              "without a result are written) and send the rest", file=sys.stderr)  # fmt: skip
        return 1
    print(f"next: rrm-ui offline import {done.path} --run RUN", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    o = sub.add_parser("offline", help="judge a run with vllm run-batch: write its requests, import the outputs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    osub = o.add_subparsers(dest="offline_command", required=True)
    p = osub.add_parser("prepare", help="write a run's requests as an OpenAI batch-input JSONL for vllm run-batch",
                        epilog=judges_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("input", nargs="?", help="a file to import as the data set first (see rrm-ui import --help)")
    p.add_argument("--dataset", help="the stored data set (with FILE: the name to import it under)")
    p.add_argument("--run", help="run name; preparing it again writes only the items without a result "
                                 "(default: from the settings)")  # fmt: skip
    p.add_argument("--out", required=True, help="the batch-input JSONL to write")
    p.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    add_backend_options(p)
    c = p.add_argument_group("compute")
    add_compute_options(c)
    c.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="pairs only: knockout and round robin need a round's results first")  # fmt: skip
    p.set_defaults(handler=_prepare)
    i = osub.add_parser("import", help="store the judgments of a vllm run-batch output JSONL in its run")
    i.add_argument("file", help="the output JSONL vllm run-batch wrote (-o)")
    i.add_argument("--run", required=True, help="the run the requests were prepared for")
    i.add_argument("--dataset", help="the run's data set (when several data sets have a run of that name)")
    i.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    i.add_argument("--skip-invalid", action="store_true",
                   help="store what is valid; report every line and item left out (default: all or "
                        "nothing)")  # fmt: skip
    i.set_defaults(handler=_import)
    r = osub.add_parser("ray", help="send a prepared batch through Ray Data to OpenAI-compatible servers; write "
                                    "the answers as vllm run-batch does")  # fmt: skip
    r.add_argument("file", help="the batch-input JSONL `rrm-ui offline prepare` wrote")
    r.add_argument("--url", required=True, help="the server or router: http://HOST:PORT, .../v1 or the full "
                                               "/v1/chat/completions URL")  # fmt: skip
    r.add_argument("--out", required=True, help="the batch-output JSONL to write (then: rrm-ui offline import)")
    r.add_argument("--concurrency", type=int, default=1, help="Ray actors sending requests (default 1)")
    r.add_argument("--batch-size", type=int, default=16, help="requests in flight per actor (default 16)")
    r.add_argument("--max-retries", type=int, default=3, help="tries again of a request answered 429 or 5xx "
                                                             "(default 3)")  # fmt: skip
    r.add_argument("--header", action="append", metavar="'NAME: VALUE'",
                   help="an HTTP header for every request (e.g. Authorization); repeatable")
    r.add_argument("--ray-address", help="a running Ray cluster to join (ray://HOST:10001 or auto; default: start "
                                         "Ray on this machine)")  # fmt: skip
    r.set_defaults(handler=_ray)
