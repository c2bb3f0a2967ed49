"""``rrm-ui sweep``: judge a stored data set over a grid of thinking budgets and vote counts.

rrm-ui sweep --dataset NAME --budgets 512,1k,2k,4k,8k --votes 1,2,4,8 [FILE] [--db URL] [options]

One run per budget (its --max-tokens), each judged with the largest vote count; the smaller vote
counts are read from the same samples (votes 1 = sample 0 of each order, votes 2 = samples 0 and 1,
...), so the grid costs one run per budget. Each run is an ordinary run named from its settings:
running the command again continues it, and the runs show in the Dashboards tab (section
"Test-time scaling") and in rrm-ui report. Prints agreement with the reference (Wilson 95%
interval) and the completion tokens spent per pair at every (budget, votes) point (docs/sweep.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
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

# Compute's fields the sweep sets itself (votes: the grid) or refuses (adaptive has no grid of votes)
SKIPPED = ("votes", "adaptive", "budget", "margin", "stopping", "confidence")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="judge a data set over a grid of thinking budgets and vote counts",
                       description=__doc__, epilog=judges_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("input", nargs="?", help="a file to import first as --dataset (any importable file)")
    p.add_argument(
        "--dataset", required=True, help="the stored data set to judge (with FILE: the name to import it as)"
    )
    p.add_argument("--db", help="database URL (default sqlite:///db/rrm_ui.db)")
    g = p.add_argument_group("the grid")
    g.add_argument("--budgets", required=True,
                   help="thinking budgets (max new tokens), e.g. 512,1k,2k,4k,8k (k = 1024)")  # fmt: skip
    g.add_argument("--votes", dest="vote_counts", default="1,2,4,8",
                   help="votes per order to read, e.g. 1,2,4,8 (default 1,2,4,8)")  # fmt: skip
    g.add_argument("--reference", default="auto",
                   help="score against humans, majority, gold, adjudicated or an annotator's name (default auto: "
                        "humans where the runs have decisive human labels, else gold)")  # fmt: skip
    g.add_argument("--report-only", action="store_true",
                   help="judge nothing: print the points of the runs stored so far (no model is loaded)")  # fmt: skip
    g.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    add_backend_options(p)
    c = p.add_argument_group("compute (the same for every point)")
    add_compute_options(c, skip=SKIPPED)
    add_strategy_options(c)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from rrm_ui.services.sweep import parse_grid, sweep_compute

    bracket_seed_from(args)
    try:
        if getattr(args, "max_tokens", None) is not None:
            raise ValueError("a sweep's thinking budgets are --budgets; leave out --max-tokens")
        budgets, votes = parse_grid(args.budgets, "--budgets"), parse_grid(args.vote_counts, "--votes")
        settings = settings_from(args, database_url=args.db)
        compute = sweep_compute(compute_from(args), max(votes))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_sweep(args, settings, compute, budgets, votes))


async def run_sweep(args: argparse.Namespace, settings: Any, compute: Any, budgets: tuple[int, ...],
                    votes: tuple[int, ...]) -> int:  # fmt: skip
    from rrm_ui.cli.judge import Progress
    from rrm_ui.services import open_repository
    from rrm_ui.services.datasets import ensure_dataset
    from rrm_ui.services.insights import Insights
    from rrm_ui.services.judging import make_spec
    from rrm_ui.services.sweep import SweepStopped, grid_sweep, judge_sweep, sweep_points, sweep_specs
    from rrm_ui.storage.repo_jobs import JobConflict
    from rrm_ui.storage.repository import RunMismatch

    repo = open_repository(settings)
    try:
        dataset = ensure_dataset(repo, args.input, args.dataset)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        backend = create_backend(settings)
        if not args.report_only:
            await backend.start()
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    specs = sweep_specs(make_spec(backend, settings, compute=compute, strategy=args.strategy), budgets, votes)
    started = time.perf_counter()
    judged: list[Any] = []
    bar: list[Any] = []

    def on_run(spec: Any, run: Any, todo: int, done: int) -> None:
        for old in bar:
            old.close()
        bar.clear()
        print(f"budget {spec.sampling.max_tokens:,} x {spec.compute.votes} votes: run {run.name!r}, {todo} items to "
              f"judge, {done} already judged", file=sys.stderr)  # fmt: skip
        bar.append(Progress(todo, enabled=not args.quiet))

    try:
        if not args.report_only:
            judged = await judge_sweep(repo, backend, settings, dataset, specs, bracket_seed=args.bracket_seed,
                                       on_run=on_run, on_item=lambda _r: bar[-1].item_done())  # fmt: skip
    except (RunMismatch, JobConflict, SweepStopped) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, SweepStopped) else 2
    finally:
        for old in bar:
            old.close()
        if not args.report_only:
            await backend.close()
    wall = time.perf_counter() - started
    sweep = grid_sweep(repo, dataset, specs)
    if not sweep.runs:
        print(f"error: no run of this sweep is stored yet on {dataset.name!r}; run it without --report-only",
              file=sys.stderr)  # fmt: skip
        return 2
    points = sweep_points(Insights(repo).frames(), sweep, args.reference, votes)
    if args.format == "json":
        out = {
            "sweep": sweep.name, "dataset": dataset.name, "reference": points.reference,
            "budgets": list(budgets), "votes": list(votes),
            "runs": [{"run": j.run.name, "budget": j.spec.sampling.max_tokens, "votes": j.spec.compute.votes,
                      "judged": j.judged, "already_judged": j.already_done, "seconds": round(j.seconds, 3)}
                     for j in judged],
            "seconds": round(wall, 3),
            "points": [{k: _plain(v) for k, v in row.items()} for row in points.table.to_dict("records")],
        }  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        print(table(points.table, points.reference))
    for j in judged:
        print(f"budget {j.spec.sampling.max_tokens:,}: {j.judged} items judged in {j.seconds:.1f}s "
              f"({j.already_done} already judged) -> run {j.run.name!r}", file=sys.stderr)  # fmt: skip
    if judged:
        print(f"sweep {sweep.name!r}: {len(judged)} runs in {wall:.1f}s", file=sys.stderr)
    return 0


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def table(points: Any, reference: str) -> str:
    """The points as a plain-text table, one line per (budget, votes)."""
    head = f"{'budget':>8} {'votes':>5} {'tokens/pair':>11} {'agreement with ' + reference:>34} {'n':>5} " \
           f"{'undecided':>9} {'truncated':>9}"  # fmt: skip
    lines = [head]
    for r in points.itertuples(index=False):
        agree = "n/a" if r.n == 0 else f"{r.agreement:.1%} [{r.low:.1%}, {r.high:.1%}]"
        trunc = "" if r.truncated != r.truncated else f"{r.truncated:.0%}"
        lines.append(f"{r.budget:>8,} {r.votes:>5} {r.tokens_per_pair:>11,.1f} {agree:>34} {r.n:>5} "
                     f"{r.undecided:>9} {trunc:>9}")  # fmt: skip
    return "\n".join(lines)
