"""The ``rrm-ui`` command.

rrm-ui dev tiny-model DIR                 build an offline random-weight model (wiring checks)
rrm-ui judge FILE --out OUT [options]     judge a JSONL file, write one result line per item
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rrm_ui.backends import BackendError, create_backend
from rrm_ui.cli.options import (
    add_backend_options,
    add_compute_options,
    add_strategy_options,
    bracket_seed_from,
    compute_from,
    judges_epilog,
    settings_from,
)
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ItemResult, JudgeSpec, Judgment, Status, check_escalation
from rrm_ui.engine.judge import Observer
from rrm_ui.engine.runner import judge_items
from rrm_ui.io.judge_input import InputError, read_items


def result_to_dict(result: ItemResult, spec: JudgeSpec) -> dict[str, Any]:
    """One output line: the result's own form (``ItemResult.to_dict``) with the run's spec beside it."""
    return {**result.to_dict(), "judge": spec.judge, "judge_version": spec.judge_version,
            "sampling": asdict(spec.sampling), "compute": spec.compute.to_dict()}  # fmt: skip


class Progress:
    """A terminal progress bar: items done, generated tokens per second, errors."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="item", disable=not enabled, dynamic_ncols=True)
        self.started = time.perf_counter()
        self.tokens = 0
        self.live_tokens = 0
        self.statuses: dict[str, int] = {}
        self._last = 0.0

    def on_delta(self, _update: object) -> None:
        self.live_tokens += 1
        now = time.perf_counter()
        if now - self._last > 0.5:
            self._last = now
            self._refresh()

    def on_judgment(self, _item_id: str, j: Judgment) -> None:
        self.tokens += j.completion_tokens or 0
        self.statuses[j.status.value] = self.statuses.get(j.status.value, 0) + 1

    def item_done(self) -> None:
        self.bar.update(1)
        self._refresh()

    def _refresh(self) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        tokens = max(self.tokens, self.live_tokens)
        self.bar.set_postfix(
            tok_s=f"{tokens / elapsed:.0f}",
            errors=self.statuses.get(Status.ERROR.value, 0),
            ok=self.statuses.get(Status.OK.value, 0),
            refresh=True,
        )

    def close(self) -> None:
        self.bar.close()


async def run_judge(args: argparse.Namespace, settings: Settings, compute: Compute) -> int:  # noqa: PLR0915
    store = bool(args.db or args.dataset)
    if not store and not args.out:
        print("error: give --out FILE, or --db / --dataset to store the judgments", file=sys.stderr)
        return 2
    if not store and not args.input:
        print("error: give an input FILE (or --dataset NAME with --db)", file=sys.stderr)
        return 2
    items = None
    if not store:
        try:
            items = read_items(args.input)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    repo = plan = None
    if store:
        from rrm_ui.services import open_repository
        from rrm_ui.services.datasets import ensure_dataset

        repo = open_repository(settings)
        try:
            dataset = ensure_dataset(repo, args.input, args.dataset)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    from rrm_ui.services.judging import build_judge, make_spec

    try:
        backend = create_backend(settings)
        await backend.start()
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    spec = make_spec(backend, settings, compute=compute, strategy=args.strategy)
    judge = build_judge(spec, backend, settings)
    results: Any
    held = None
    if store:
        from rrm_ui.services.jobs import OutsideJob, worker_name
        from rrm_ui.services.judging import default_run_name, judge_and_store, plan_run
        from rrm_ui.storage.repo_jobs import JobConflict
        from rrm_ui.storage.repository import RunMismatch

        run_name = args.run or default_run_name(dataset.name, spec)
        try:
            plan = plan_run(repo, dataset.id, run_name, spec)
            # one active job per run: the app (or another rrm-ui judge) never judges this run meanwhile
            held = OutsideJob.hold(repo, plan, worker_name(), bracket_seed=args.bracket_seed)
        except (RunMismatch, JobConflict) as exc:
            await backend.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        verb = "starting" if plan.created else "continuing"
        print(f"{verb} run {plan.run.name!r} on data set {dataset.name!r} as job #{held.job.id}: "
              f"{len(plan.todo)} items to judge, {plan.already_done} already judged", file=sys.stderr)  # fmt: skip
        results = judge_and_store(repo, plan, judge, args.strategy, bracket_seed=args.bracket_seed)
        total = len(plan.todo)
    else:
        results = judge_items(judge, items, args.strategy, bracket_seed=args.bracket_seed)
        total = len(items)
    progress = Progress(total, enabled=not args.quiet)
    judge.observer = Observer(on_delta=progress.on_delta, on_judgment=progress.on_judgment)
    out = None
    if args.out:
        out_path = Path(args.out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out = out_path.open("w", encoding="utf-8")

    def write(result: ItemResult) -> None:
        if out is not None:
            out.write(json.dumps(result_to_dict(result, spec), ensure_ascii=False) + "\n")
            out.flush()
        progress.item_done()

    try:
        if held is not None:
            job = await held.drain(results, write, "rrm-ui judge")
        else:
            async with contextlib.aclosing(results) as stream:  # closing it aborts the items in flight
                async for result in stream:
                    write(result)
    finally:
        progress.close()
        if out is not None:
            out.close()
        await backend.close()
    if held is not None and held.stopped_by is not None:
        why = job.message or "no reason given"
        print(f"stopped: job #{job.id} was {job.status.value} in the app ({why}); {job.items_done} of "
              f"{job.items_total} items are stored in run {plan.run.name!r}", file=sys.stderr)  # fmt: skip
        return 3
    summary = ", ".join(f"{k} {v}" for k, v in sorted(progress.statuses.items())) or "nothing to do"
    elapsed = time.perf_counter() - progress.started
    where = f"; wrote {args.out}" if args.out else ""
    stored = f"; stored in run {plan.run.name!r}" if plan is not None else ""
    print(f"judged {total} items in {elapsed:.1f}s ({summary}){stored}{where}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    j = sub.add_parser("judge", help="judge a JSONL file or a stored data set", description=__doc__,
                       epilog=judges_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    j.add_argument("input", nargs="?",
                   help='JSONL: {"id", "query", "responses": [...]} or {"id", "query", "response_a", "response_b"}; '
                        "with --db any importable file (see rrm-ui import --help)")  # fmt: skip
    j.add_argument("--out", help="output JSONL, one line per item")
    j.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db when --dataset is given)")
    j.add_argument("--dataset", help="judge this stored data set (with FILE: the name to import it under)")
    j.add_argument("--run", help="run name; the same name continues an interrupted run (default: from the settings)")
    add_backend_options(j)
    c = j.add_argument_group("compute")
    add_compute_options(c)
    add_strategy_options(c)
    j.add_argument("--quiet", action="store_true", help="no progress bar")
    j.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    bracket_seed_from(args)
    try:
        settings = settings_from(args, database_url=args.db)
        # built (and validated) before any model loads
        compute = compute_from(args)
        check_escalation(compute, settings.max_tokens)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_judge(args, settings, compute))
