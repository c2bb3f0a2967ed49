"""The ``rrm-ui`` command.

rrm-ui dev tiny-model DIR                 build an offline random-weight model (wiring checks)
rrm-ui judge FILE --out OUT [options]     judge a JSONL file, write one result line per item
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rrm_ui.backends import BackendError, create_backend
from rrm_ui.cli.options import add_backend_options, settings_from
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ItemResult, Judgment, Sampling, Status
from rrm_ui.engine.judge import Judge, Observer
from rrm_ui.engine.runner import STRATEGIES, judge_items
from rrm_ui.io.judge_input import InputError, read_items
from rrm_ui.protocol import get_format


def result_to_dict(result: ItemResult, sampling: Sampling, compute: Compute) -> dict[str, Any]:
    """One output line: the decision, then every generated judgment with its trace and figures."""
    comparisons = []
    for pair in result.pairs:
        comparisons += [j.to_dict() for j in pair.judgments]
    return {
        "id": result.id,
        "strategy": result.strategy,
        "winner": result.winner,
        "ranking": list(result.ranking),
        "votes": {str(k): v for k, v in sorted(result.votes.items())},
        "position_consistent": result.position_consistent,
        "pairs": [p.to_dict() for p in result.pairs],
        "ratings": {name: {str(k): v for k, v in r.items()} for name, r in result.ratings.items()},
        "bracket": [list(rnd) for rnd in result.bracket],
        "comparisons": comparisons,
        "template": result.template,
        "template_version": result.template_version,
        "model": result.model,
        "backend": result.backend,
        "sampling": asdict(sampling),
        "compute": asdict(compute),
    }


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


async def run_judge(args: argparse.Namespace, settings: Settings, compute: Compute) -> int:
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
    fmt = get_format(settings.judge_format)
    sampling = Sampling(settings.temperature, settings.top_p, settings.max_tokens, settings.seed)
    try:
        backend = create_backend(settings)
        await backend.start()
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    judge = Judge(backend, fmt, sampling=sampling, compute=compute, concurrency=settings.concurrency,
                  retries=settings.retries, retry_wait_s=settings.retry_wait_s)  # fmt: skip
    results: Any
    if store:
        from rrm_ui.services.judging import default_run_name, judge_and_store, plan_run
        from rrm_ui.storage.repository import RunMismatch

        run_name = args.run or default_run_name(dataset.name, judge, args.strategy)
        try:
            plan = plan_run(repo, dataset.id, run_name, judge, args.strategy)
        except RunMismatch as exc:
            await backend.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        verb = "starting" if plan.created else "continuing"
        print(f"{verb} run {plan.run.name!r} on data set {dataset.name!r}: {len(plan.todo)} items to judge, "
              f"{plan.already_done} already judged", file=sys.stderr)  # fmt: skip
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
    try:
        async for result in results:
            if out is not None:
                out.write(json.dumps(result_to_dict(result, sampling, compute), ensure_ascii=False) + "\n")
                out.flush()
            progress.item_done()
    finally:
        progress.close()
        if out is not None:
            out.close()
        await backend.close()
    summary = ", ".join(f"{k} {v}" for k, v in sorted(progress.statuses.items())) or "nothing to do"
    elapsed = time.perf_counter() - progress.started
    where = f"; wrote {args.out}" if args.out else ""
    stored = f"; stored in run {plan.run.name!r}" if plan is not None else ""
    print(f"judged {total} items in {elapsed:.1f}s ({summary}){stored}{where}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    j = sub.add_parser("judge", help="judge a JSONL file or a stored data set", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    j.add_argument("input", nargs="?",
                   help='JSONL: {"id", "query", "responses": [...]} or {"id", "query", "response_a", "response_b"}; '
                        "with --db any importable file (see rrm-ui import --help)")  # fmt: skip
    j.add_argument("--out", help="output JSONL, one line per item")
    j.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db when --dataset is given)")
    j.add_argument("--dataset", help="judge this stored data set (with FILE: the name to import it under)")
    j.add_argument("--run", help="run name; the same name continues an interrupted run (default: from the settings)")
    add_backend_options(j)
    c = j.add_argument_group("compute")
    c.add_argument("--votes", type=int, default=1, help="samples per presentation order (majority vote)")
    c.add_argument("--swap", action="store_true", help="judge both orders; flag position-inconsistent pairs")
    c.add_argument("--adaptive", action="store_true",
                   help="one sample per order first, more only where they disagree, up to --budget")  # fmt: skip
    c.add_argument("--budget", type=int, default=8, help="adaptive: most samples per pair")
    c.add_argument("--margin", type=int, default=2, help="adaptive: stop when the leader is this many votes ahead")
    c.add_argument("--strategy", choices=STRATEGIES, default="auto",
                   help="auto: pair for two responses, knockout for more")  # fmt: skip
    c.add_argument(
        "--bracket-seed", type=int, default=0, help="knockout: shuffle seed for the bracket (-1: input order)"
    )
    j.add_argument("--quiet", action="store_true", help="no progress bar")
    j.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.bracket_seed is not None and args.bracket_seed < 0:
        args.bracket_seed = None
    try:
        settings = settings_from(args, database_url=args.db)
        # built (and validated) before any model loads
        compute = Compute(
            votes=args.votes, swap=args.swap, adaptive=args.adaptive, budget=args.budget, margin=args.margin
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_judge(args, settings, compute))
