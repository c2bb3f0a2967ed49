"""Judging a stored data set: every item's judgments and aggregate saved as soon as it is done.

Resuming: a run is identified by its name within the data set; items that already have a
result in that run are skipped, so a run started again continues where it stopped and never
judges an item twice. An item is written in one short transaction after it is judged (never
while the model streams), so an interruption loses at most the items in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

from rrm_ui.domain import ItemResult, RunInfo, StoredItem
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_items
from rrm_ui.storage import Repository


@dataclass(frozen=True)
class RunPlan:
    run: RunInfo
    created: bool
    todo: list[StoredItem]
    already_done: int


def default_run_name(dataset: str, judge: Judge, strategy: str) -> str:
    """A name derived from the settings, so the same command resumes the same run."""
    return run_name(dataset, backend=judge.backend.name, model=judge.backend.model,
                    template=f"{judge.fmt.name}-{judge.fmt.version}", sampling=asdict(judge.sampling),
                    compute=asdict(judge.compute), strategy=strategy)  # fmt: skip


def run_name(
    dataset: str, *, backend: str, model: str, template: str, sampling: dict, compute: dict, strategy: str
) -> str:
    """``dataset:model-name:digest-of-the-settings``."""
    settings = {"backend": backend, "model": model, "template": template, "sampling": sampling, "compute": compute,
                "strategy": strategy}  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"{dataset}:{Path(model).name or backend}:{digest}"


def ensure_run(repo: Repository, dataset_id: int, run_name: str, judge: Judge, strategy: str) -> tuple[RunInfo, bool]:
    """The run ``run_name`` with this judge's settings (created if new; other settings are refused)."""
    return repo.get_or_create_run(
        dataset_id,
        run_name,
        backend=judge.backend.name,
        model=judge.backend.model,
        template=judge.fmt.name,
        template_version=judge.fmt.version,
        strategy=strategy,
        sampling=asdict(judge.sampling),
        compute=asdict(judge.compute),
    )


def plan_run(repo: Repository, dataset_id: int, run_name: str, judge: Judge, strategy: str) -> RunPlan:
    run, created = ensure_run(repo, dataset_id, run_name, judge, strategy)
    items = repo.items(dataset_id)
    done = repo.judged_item_ids(run.id)
    todo = [it for it in items if it.db_id not in done]
    return RunPlan(run, created, todo, len(items) - len(todo))


async def judge_and_store(
    repo: Repository, plan: RunPlan, judge: Judge, strategy: str, *, bracket_seed: int | None = 0
) -> AsyncIterator[ItemResult]:
    """Judge the plan's remaining items, saving each as it completes; yields the results in order."""
    by_ext = {it.item.id: it.db_id for it in plan.todo}
    async for result in judge_items(judge, [it.item for it in plan.todo], strategy, bracket_seed=bracket_seed):
        repo.save_result(plan.run.id, by_ext[result.id], result)
        yield result


__all__ = ["RunPlan", "default_run_name", "ensure_run", "judge_and_store", "plan_run", "run_name"]
