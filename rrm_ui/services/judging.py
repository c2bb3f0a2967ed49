"""Judging a stored data set: every item's judgments and aggregate saved as soon as it is done.

Resuming: a run is identified by its name within the data set; items that already have a
result in that run are skipped, so a run started again continues where it stopped and never
judges an item twice. An item is written in one short transaction after it is judged (never
while the model streams), so an interruption loses at most the items in flight.

Items are stored as they finish (one long judgment holds back no other item's write), and the
results are handed on in input order or as they finish. The writes run in a worker thread, one
after the other in the order the items finished: the event loop that owns the model (live
streams, other jobs, vLLM's output handling) keeps running while a write waits for SQLite's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, overload

from rrm_ui.backends.base import Backend
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, ItemResult, JudgeSpec, RunInfo, Sampling, StoredItem
from rrm_ui.engine.judge import Judge, Observer
from rrm_ui.engine.runner import in_input_order, items_in_flight_for, judge_completed, ordered_window
from rrm_ui.protocol import JudgeFormat, describe, get_format
from rrm_ui.storage import Repository

# GenRequest.priority of interactive judging (the Judge tab, the Explorer's re-judge) and of everything else
# (batch jobs, rrm-ui judge, sweeps): on servers that schedule by priority (vLLM --scheduling-policy
# priority, the openai backend's priority_scheduling setting) lower runs first, so a user waiting for one
# judgment is served ahead of a job's queue
INTERACTIVE_PRIORITY = -1
BATCH_PRIORITY = 0


class ModelMismatch(ValueError):
    """The loaded model (or the judge format) is not the one a spec asks for."""


class PlannedItems(Sequence[StoredItem]):
    """The items a plan has to judge: their ids are kept, their texts read from the database a chunk
    at a time as they are iterated (a job over a large data set never holds every item's text)."""

    CHUNK = 256

    def __init__(self, repo: Repository, ids: list[int]) -> None:
        self.repo, self.ids = repo, ids

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, k: int) -> StoredItem: ...
    @overload
    def __getitem__(self, k: slice) -> PlannedItems: ...
    def __getitem__(self, k: int | slice) -> StoredItem | PlannedItems:
        if isinstance(k, slice):
            return PlannedItems(self.repo, self.ids[k])
        found = self.repo.items_by_id([self.ids[k]])
        if not found:
            raise LookupError(f"item {self.ids[k]} is no longer stored")
        return found[0]

    def __iter__(self) -> Iterator[StoredItem]:
        for start in range(0, len(self.ids), self.CHUNK):
            yield from self.repo.items_by_id(self.ids[start : start + self.CHUNK])


@dataclass(frozen=True)
class RunPlan:
    run: RunInfo
    created: bool
    todo: Sequence[StoredItem]  # a plan_run's: PlannedItems, read as they are judged
    already_done: int


# --- the run spec: built once, a Judge built from it in one place -------------------------------


def sampling_from(settings: Settings, **changes: Any) -> Sampling:
    """The settings' decoding with the given changes (``None`` keeps the setting)."""
    base = Sampling(temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens,
                    seed=settings.seed)  # fmt: skip
    return replace(base, **{k: v for k, v in changes.items() if v is not None})


def make_spec(
    backend: Backend,
    settings: Settings,
    *,
    compute: Compute,
    sampling: Sampling | None = None,
    strategy: str = "auto",
    judge: str | None = None,
) -> JudgeSpec:
    """The spec of judging on ``backend`` with these settings (``judge``: a format name, default the
    settings' ``judge_format``; ``sampling``: default the settings' decoding)."""
    fmt = get_format(judge or settings.judge_format)
    return _new_spec(fmt, backend, sampling or sampling_from(settings), compute, strategy)


def _new_spec(fmt: JudgeFormat, backend: Backend, sampling: Sampling, compute: Compute, strategy: str) -> JudgeSpec:
    """The spec of ``fmt`` on ``backend``. A scalar reward model (``fmt.scores``) takes no sampling and no
    compute settings (:mod:`rrm_ui.engine.scalar`: one score per response), so its spec holds the defaults of
    both: a temperature or a vote count that does not change a score does not split its runs or name them."""
    if fmt.scores:
        sampling, compute = Sampling(), Compute()
    return JudgeSpec(judge=fmt.name, judge_version=fmt.version, backend=backend.name, model=backend.model,
                     sampling=sampling, compute=compute, strategy=strategy)  # fmt: skip


def build_judge(
    spec: JudgeSpec,
    backend: Backend,
    settings: Settings,
    observer: Observer | None = None,
    *,
    priority: int = BATCH_PRIORITY,
) -> Judge:
    """The one place a :class:`Judge` is built: the spec's format, sampling and compute on ``backend``,
    the settings' requests in flight and retries, ``priority`` on its requests (``INTERACTIVE_PRIORITY``
    for a user waiting on the page). :class:`ModelMismatch` when the backend serves another model, or the
    registry has another version of the spec's format."""
    if (backend.name, backend.model) != (spec.backend, spec.model):
        raise ModelMismatch(
            f"this run needs the model {spec.model} on the {spec.backend} backend, but the app has "
            f"{backend.model} ({backend.name}) loaded; restart with that model to judge it"
        )
    try:
        fmt = get_format(spec.judge)
    except (KeyError, ValueError) as exc:
        raise ModelMismatch(f"this run needs the judge format {spec.judge!r}, which is not known here: {exc}") from None
    if fmt.version != spec.judge_version:
        raise ModelMismatch(f"this run needs the judge format {spec.judge} {spec.judge_version}, but this "
                            f"version of rrm-ui has {fmt.name} {fmt.version}")  # fmt: skip
    return Judge(backend, fmt, sampling=spec.sampling, compute=spec.compute, concurrency=settings.concurrency,
                 observer=observer, retries=settings.retries, retry_wait_s=settings.retry_wait_s,
                 priority=priority)  # fmt: skip


def judge_choices() -> list[tuple[str, str]]:
    """The judge formats a user can choose, as ``(menu label, name)``: each name with its one-line
    description, in the registry's order (the menus of the Judge, Batch and Explorer tabs)."""
    return [(f"{name}: {text}" if text else name, name) for name, text in describe()]


def judge_spec(judge: Judge, strategy: str) -> JudgeSpec:
    """The spec a judge judges with, under ``strategy``."""
    return _new_spec(judge.fmt, judge.backend, judge.sampling, judge.compute, strategy)


def _spec(spec: JudgeSpec | Judge, strategy: str | None) -> JudgeSpec:
    if isinstance(spec, JudgeSpec):
        if strategy is not None and strategy != spec.strategy:
            raise ValueError(f"strategy {strategy!r} given beside a spec with strategy {spec.strategy!r}")
        return spec
    return judge_spec(spec, strategy or "auto")


def default_run_name(dataset: str, spec: JudgeSpec | Judge, strategy: str | None = None) -> str:
    """A name derived from the spec, so the same settings resume the same run (a Judge with its
    strategy is read as its spec)."""
    s = _spec(spec, strategy)
    return run_name(dataset, backend=s.backend, model=s.model, template=f"{s.judge}-{s.judge_version}",
                    sampling=asdict(s.sampling), compute=s.compute.to_dict(), strategy=s.strategy,
                    judge=s.judge)  # fmt: skip


def run_name(
    dataset: str,
    *,
    backend: str,
    model: str,
    template: str,
    sampling: dict,
    compute: dict,
    strategy: str,
    judge: str | None = None,
) -> str:
    """``dataset:judge:model-name:digest-of-the-settings`` (``judge``: default the format name in
    ``template``, which is ``name-version``)."""
    settings = {"backend": backend, "model": model, "template": template, "sampling": sampling, "compute": compute,
                "strategy": strategy}  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    judge = judge or template.rsplit("-", 1)[0]
    return f"{dataset}:{judge}:{Path(model).name or backend}:{digest}"


def ensure_run(
    repo: Repository,
    dataset_id: int,
    run_name: str,
    spec: JudgeSpec | Judge,
    strategy: str | None = None,
    *,
    origin: str | None = None,
    parent_run_id: int | None = None,
) -> tuple[RunInfo, bool]:
    """The run ``run_name`` with this spec (created if new; a run of another spec is refused: the
    stored columns are the spec's, so comparing them is comparing the specs)."""
    s = _spec(spec, strategy)
    return repo.get_or_create_run(dataset_id, run_name, origin=origin, parent_run_id=parent_run_id,
                                  **s.run_columns())  # fmt: skip


def plan_run(
    repo: Repository, dataset_id: int, run_name: str, spec: JudgeSpec | Judge, strategy: str | None = None
) -> RunPlan:
    """The run (created if new) and the data set's items without a result in it, in id order: ids only,
    the texts read as the items are judged (:class:`PlannedItems`)."""
    run, created = ensure_run(repo, dataset_id, run_name, spec, strategy)
    ids = repo.item_ids(dataset_id)
    done = repo.judged_item_ids(run.id)
    todo = [i for i in ids if i not in done]
    return RunPlan(run, created, PlannedItems(repo, todo), len(ids) - len(todo))


async def judge_and_store(
    repo: Repository,
    plan: RunPlan,
    judge: Judge,
    strategy: str,
    *,
    bracket_seed: int | None = 0,
    in_order: bool = True,
    items_in_flight: int | None = None,
) -> AsyncIterator[ItemResult]:
    """Judge the plan's remaining items and store each as soon as it finishes (in a thread).

    Yields the stored results in input order (``in_order``, for an output file), else as they
    finish. As many items are open as keep the backend full (``runner.items_in_flight_for``).
    """
    ids: list[int] = []  # the db id of each item handed to the judge, by input index

    def items() -> Iterator[Any]:  # read as the judge takes them (PlannedItems: a chunk at a time)
        for it in plan.todo:
            ids.append(it.db_id)
            yield it.item

    async def stored() -> AsyncIterator[tuple[int, ItemResult]]:
        limit = max(1, items_in_flight or items_in_flight_for(judge))
        window = ordered_window(limit) if in_order else None
        completed = judge_completed(judge, items(), strategy, items_in_flight=limit,
                                    bracket_seed=bracket_seed, window=window)  # fmt: skip
        async with contextlib.aclosing(completed) as stream:
            async for index, result in stream:
                await off_loop(repo.save_first_result, plan.run.id, ids[index], result)
                yield index, result

    if in_order:
        async with contextlib.aclosing(in_input_order(stored())) as results:
            async for result in results:
                yield result
    else:
        async with contextlib.aclosing(stored()) as results:
            async for _, result in results:
                yield result


T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking write in a thread; if the caller is cancelled meanwhile, the write still ends first.

    A thread cannot be interrupted: without the wait, a stopped job could return while its last
    write is still under way, and the write would land after the stop.
    """
    write: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait({write})
        raise


__all__ = [
    "BATCH_PRIORITY",
    "INTERACTIVE_PRIORITY",
    "ModelMismatch",
    "PlannedItems",
    "RunPlan",
    "build_judge",
    "default_run_name",
    "ensure_run",
    "judge_and_store",
    "judge_choices",
    "judge_spec",
    "make_spec",
    "off_loop",
    "plan_run",
    "run_name",
    "sampling_from",
]
