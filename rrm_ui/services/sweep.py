"""Compute sweeps: a data set judged over a grid of thinking budgets and vote counts (docs/sweep.md).

A sweep of budgets B1 < B2 < ... and vote counts v1 < v2 < ... is one ordinary run per budget, each
judged with the largest vote count (its own :class:`~rrm_ui.domain.JudgeSpec`, named by
:func:`~rrm_ui.services.judging.default_run_name`, so it resumes, shows in the dashboards and the report
like any run); the smaller vote counts are read from the same samples
(:mod:`rrm_ui.analysis.sweep`). Nothing marks the runs: a sweep is found from the runs themselves, as
the judge runs of a data set whose specs are equal but for the budget and the votes
(:func:`sweep_key`), so a run judged earlier by ``rrm-ui judge`` with the same settings joins it.

:func:`start_sweep` queues the runs as batch jobs of the app (:class:`~rrm_ui.services.jobs.JobManager`);
:func:`judge_sweep` judges them one after the other in this process (``rrm-ui sweep``), each held as a
job as ``rrm-ui judge --dataset`` holds its run; :func:`sweep_points` reads the points from storage.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from rrm_ui.analysis import sweep as figures
from rrm_ui.analysis.frames import GOLD, Frames
from rrm_ui.analysis.references import HUMANS, select_reference
from rrm_ui.backends.base import Backend
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, DatasetInfo, ItemResult, JobInfo, JudgeSpec, RunInfo, Sampling
from rrm_ui.engine.judge import Judge
from rrm_ui.services.jobs import JobManager, OutsideJob, worker_name
from rrm_ui.services.judging import RunPlan, build_judge, default_run_name, judge_and_store, plan_run
from rrm_ui.storage import Repository
from rrm_ui.storage.models import REJUDGE
from rrm_ui.storage.repo_jobs import JobConflict

#: "auto" reference: the humans' labels where the sweep's runs have decisive ones, else gold
AUTO = "auto"


def parse_grid(text: str | Sequence[int], what: str) -> tuple[int, ...]:
    """``"512, 1k, 2k"`` (commas or spaces; ``k`` = 1024) as sorted distinct whole numbers of at least 1;
    ValueError naming ``what`` and the entry that is not one."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
    else:
        values = []
        for part in (p for p in re.split(r"[,\s]+", text.strip()) if p):
            hit = re.fullmatch(r"(\d+)([kK]?)", part)
            if hit is None:
                raise ValueError(f"{what}: {part!r} is not a whole number (512, 1k = 1024, ...)")
            values.append(int(hit.group(1)) * (1024 if hit.group(2) else 1))
    if not values:
        raise ValueError(f"{what}: give at least one value (e.g. {'512, 1k, 2k' if 'budget' in what else '1, 2, 4'})")
    if min(values) < 1:
        raise ValueError(f"{what}: every value must be at least 1, not {min(values)}")
    return tuple(sorted(set(values)))


def sweep_compute(compute: Compute, votes: int) -> Compute:
    """``compute`` with ``votes`` per order (an adaptive budget left to its default: the sweep is fixed)."""
    if compute.adaptive:
        raise ValueError("a sweep judges fixed vote counts; adaptive compute stops on its own rule, so it has no "
                         "grid of votes: leave adaptive off")  # fmt: skip
    return Compute(**{**asdict(compute), "votes": int(votes), "budget": None})


def sweep_specs(base: JudgeSpec, budgets: Sequence[int], votes: Sequence[int]) -> list[JudgeSpec]:
    """One spec per budget (its ``max_tokens``), each with the largest vote count, smallest budget first."""
    top = max(votes)
    compute = sweep_compute(base.compute, top)
    return [replace(base, sampling=replace(base.sampling, max_tokens=int(b)), compute=compute)
            for b in sorted(set(budgets))]  # fmt: skip


def sweep_key(spec: JudgeSpec) -> str:
    """What the runs of one sweep share: a digest of the spec without the budget and the votes."""
    d = spec.to_dict()
    d["sampling"] = {k: v for k, v in d["sampling"].items() if k != "max_tokens"}
    d["compute"] = {k: v for k, v in d["compute"].items() if k not in ("votes", "budget")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def sweep_name(dataset: str, spec: JudgeSpec) -> str:
    """``dataset:judge:model:sweep-DIGEST``, as a run is named ``dataset:judge:model:DIGEST``."""
    return f"{dataset}:{spec.judge}:{Path(spec.model).name or spec.backend}:sweep-{sweep_key(spec)}"


@dataclass(frozen=True)
class SweepRun:
    budget: int
    votes: int  # the run's votes per order: the largest count read from it
    run: RunInfo


@dataclass(frozen=True)
class Sweep:
    name: str
    dataset: DatasetInfo
    spec: JudgeSpec  # the first run's (budget and votes are the runs' own)
    runs: tuple[SweepRun, ...]  # one per budget, smallest first

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(r.budget for r in self.runs)

    def describe(self) -> str:
        """``NAME: budgets 32, 128 x votes up to 3 (force, both orders, T 0.6)``: the menu's label."""
        c, s = self.spec.compute, self.spec.sampling
        votes = sorted({r.votes for r in self.runs})
        extra = ", both orders" if c.swap else ", shuffled order" if getattr(c, "order", "given") == "shuffled" else ""
        return (f"{self.name}: budgets {', '.join(f'{b:,}' for b in self.budgets)} x votes up to "
                f"{'/'.join(map(str, votes))} ({c.budget_mode}{extra}, T {s.temperature:g})")  # fmt: skip

    def frame(self) -> pd.DataFrame:
        """The runs as :func:`rrm_ui.analysis.sweep.sweep_points` reads them."""
        runs = self.runs
        return pd.DataFrame({"run_id": [r.run.id for r in runs], "run": [r.run.name for r in runs],
                             "budget": [r.budget for r in runs], "votes": [r.votes for r in runs]})  # fmt: skip


def _spec_of(run: RunInfo) -> JudgeSpec | None:
    if run.kind != "judge" or run.origin == REJUDGE:
        return None
    try:
        spec = JudgeSpec.from_run(run)
    except (ValueError, TypeError):
        return None
    return None if spec.compute.adaptive else spec


def find_sweeps(repo: Repository, dataset: DatasetInfo) -> list[Sweep]:
    """The data set's sweeps: its judge runs (not re-judges, not adaptive) grouped by :func:`sweep_key`,
    at each budget the run with the most votes (the latest of equals); only groups with two points or
    more (two budgets, or one budget with two votes or more). Newest sweep first."""
    groups: dict[str, dict[int, tuple[JudgeSpec, RunInfo]]] = {}
    for run in repo.runs(dataset.id):
        spec = _spec_of(run)
        if spec is None:
            continue
        at = groups.setdefault(sweep_key(spec), {})
        old = at.get(spec.sampling.max_tokens)
        if old is None or spec.compute.votes >= old[0].compute.votes:
            at[spec.sampling.max_tokens] = (spec, run)
    found = []
    for by_budget in groups.values():
        runs = tuple(SweepRun(b, s.compute.votes, r) for b, (s, r) in sorted(by_budget.items()))
        if len(runs) > 1 or runs[0].votes > 1:
            spec = by_budget[runs[0].budget][0]
            found.append(Sweep(sweep_name(dataset.name, spec), dataset, spec, runs))
    return sorted(found, key=lambda s: -max(r.run.id for r in s.runs))


def sweeps_of(repo: Repository, dataset: str | None = None) -> list[Sweep]:
    """The sweeps of the data set named ``dataset`` (None: of every data set), newest first."""
    sets = [d for d in repo.datasets() if dataset is None or d.name == dataset]
    found = [s for d in sets for s in find_sweeps(repo, d)]
    return sorted(found, key=lambda s: -max(r.run.id for r in s.runs))


def grid_sweep(repo: Repository, dataset: DatasetInfo, specs: Sequence[JudgeSpec]) -> Sweep:
    """The sweep of exactly these specs' runs (named by default_run_name; those not created yet left out)."""
    runs = {r.name: r for r in repo.runs(dataset.id)}
    members = tuple(SweepRun(s.sampling.max_tokens, s.compute.votes, runs[name]) for s in specs
                    if (name := default_run_name(dataset.name, s)) in runs)  # fmt: skip
    return Sweep(sweep_name(dataset.name, specs[0]), dataset, specs[0], members)


@dataclass(frozen=True)
class SweepPoints:
    sweep: Sweep
    reference: str  # the reference the points are scored against (auto resolved)
    table: pd.DataFrame  # analysis.sweep.POINT_COLUMNS

    def figure(self, base: Any = None) -> Any:
        from rrm_ui.analysis.explorer import Drill

        return figures.sweep_figure(self.table, reference=_reference_words(self.reference),
                                    base=base or Drill(dataset=self.sweep.dataset.name))  # fmt: skip


def sweep_points(frames: Frames, sweep: Sweep, reference: str = AUTO,
                 votes: Sequence[int] | None = None) -> SweepPoints:  # fmt: skip
    """The sweep's points from the stored judgments (``frames``: :meth:`Insights.frames`), scored against
    ``reference`` (humans, majority, gold, adjudicated, an annotator, or auto: humans where the runs have
    decisive human labels, else gold); ``votes``: the counts to read (None: 1, 2, 4, ... and each run's
    votes, :func:`rrm_ui.analysis.sweep.doubling`)."""
    ids = [r.run.id for r in sweep.runs]
    refs = frames.refs[frames.refs["run_id"].isin(ids)]
    if reference == AUTO:
        reference = HUMANS if select_reference(refs, HUMANS)["decisive"].any() else GOLD
    chosen = select_reference(refs, reference)
    judgments = frames.judgments[frames.judgments["run_id"].isin(ids)]
    return SweepPoints(sweep, reference, figures.sweep_points(judgments, chosen, sweep.frame(), votes))


def _reference_words(reference: str) -> str:
    return {HUMANS: "humans", GOLD: "gold", "majority": "the human majority",
            "adjudicated": "the adjudicated labels"}.get(reference, f"annotator {reference}")  # fmt: skip


# --- judging ------------------------------------------------------------------------------------


def start_sweep(
    jobs: JobManager,
    dataset_id: int,
    *,
    budgets: Sequence[int],
    votes: Sequence[int],
    compute: Compute,
    sampling: Sampling,
    strategy: str,
    owner: str | None,
    judge: str | None = None,
    bracket_seed: int | None = 0,
) -> tuple[list[tuple[int, JobInfo]], list[str]]:
    """Queue one batch job per budget (smallest first), each judged with the largest vote count: (budget,
    job) for each job started, and a note per budget that could not start (its run has an active job already). Raises
    ValueError for a bad grid or adaptive compute, ModelUnavailable while no model is loaded."""
    budgets, votes = parse_grid(budgets, "budgets"), parse_grid(votes, "votes")
    c = sweep_compute(compute, max(votes))
    started, notes = [], []
    for b in budgets:
        try:
            job = jobs.start(dataset_id, compute=c, sampling=replace(sampling, max_tokens=b), strategy=strategy,
                             owner=owner, judge=judge, bracket_seed=bracket_seed)  # fmt: skip
            started.append((b, job))
        except JobConflict as exc:
            notes.append(f"budget {b:,}: {exc}")
    return started, notes


@dataclass(frozen=True)
class JudgedRun:
    spec: JudgeSpec
    run: RunInfo
    judged: int  # items judged now
    already_done: int
    seconds: float
    job: JobInfo


class SweepStopped(RuntimeError):
    """The job of one of the sweep's runs was paused or cancelled in the app (the sweep stops there)."""


async def judge_sweep(
    repo: Repository,
    backend: Backend,
    settings: Settings,
    dataset: DatasetInfo,
    specs: Sequence[JudgeSpec],
    *,
    bracket_seed: int | None = 0,
    on_run: Callable[[JudgeSpec, RunInfo, int, int], None] | None = None,
    on_item: Callable[[ItemResult], None] | None = None,
) -> list[JudgedRun]:
    """Judge each spec's run in turn on the started ``backend`` (one model load for the whole grid), each
    held as a job (:class:`~rrm_ui.services.jobs.OutsideJob`: the app shows it, and never judges the run
    meanwhile) and stored as its items finish; a run already judged is left as it is. ``on_run(spec, run,
    todo, already_done)`` before each run, ``on_item(result)`` after each stored item. Raises
    :class:`SweepStopped` when a run's job was paused or cancelled in the app, JobConflict (a run another
    worker holds) or RunMismatch before judging that run."""
    done = []
    for spec in specs:
        plan = plan_run(repo, dataset.id, default_run_name(dataset.name, spec), spec)
        held = OutsideJob.hold(repo, plan, worker_name(), bracket_seed=bracket_seed)
        if on_run is not None:
            on_run(spec, plan.run, len(plan.todo), plan.already_done)
        started = time.perf_counter()
        judged, job = await _judge_held(repo, plan, held, build_judge(spec, backend, settings), spec.strategy,
                                        bracket_seed, on_item)  # fmt: skip
        if held.stopped_by is not None:
            raise SweepStopped(f"job #{job.id} of run {plan.run.name!r} was {job.status.value} in the app "
                               f"({job.message or 'no reason given'}); {job.items_done} of {job.items_total} items "
                               "are stored")  # fmt: skip
        done.append(JudgedRun(spec, plan.run, judged, plan.already_done, time.perf_counter() - started, job))
    return done


async def _judge_held(
    repo: Repository,
    plan: RunPlan,
    held: OutsideJob,
    judge: Judge,
    strategy: str,
    bracket_seed: int | None,
    on_item: Callable[[ItemResult], None] | None,
) -> tuple[int, JobInfo]:
    """One run judged and stored while its job is held (beats, progress, the app's pause or cancel), as
    ``rrm-ui judge --dataset`` does; the items judged and the job as released."""
    judged = 0

    def count(result: ItemResult) -> None:
        nonlocal judged
        judged += 1
        if on_item is not None:
            on_item(result)

    results = judge_and_store(repo, plan, judge, strategy, bracket_seed=bracket_seed, in_order=False)
    job = await held.drain(results, count, "rrm-ui sweep")
    return judged, job


__all__ = [
    "AUTO",
    "JudgedRun",
    "Sweep",
    "SweepPoints",
    "SweepRun",
    "SweepStopped",
    "find_sweeps",
    "grid_sweep",
    "judge_sweep",
    "parse_grid",
    "start_sweep",
    "sweep_compute",
    "sweep_key",
    "sweep_name",
    "sweep_points",
    "sweep_specs",
    "sweeps_of",
]
