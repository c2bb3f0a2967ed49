"""Batch judging jobs that run on the server: they survive the page closing and an app restart.

A job judges every item of a data set into one run (see :mod:`rrm_ui.services.judging`). Its
worker is a task on the runtime's model loop, so it goes on whoever watches; its state and
counters live in the ``jobs`` table, so any page (or another process) reads live progress from
the database, and :meth:`JobManager.recover` restarts what was running when the app stopped.

Why nothing is judged twice: each item's judgments and result are saved in one transaction as
soon as the item is done, and every (re)start plans from the run's stored results, skipping
judged items. Pausing or cancelling cancels the worker task and waits until it has ended:
items in flight are abandoned (their generation is aborted) and judged again on resume, and
once :meth:`~JobManager.pause` or :meth:`~JobManager.cancel` returns, no further result of the
job is written.

The manager's methods block (they talk to the database and wait for the loop); call them from
the web server's threads, never from the runtime's loop itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from rrm_ui.domain import Compute, JobInfo, JobStatus, RunInfo, Sampling, Status, last_tries
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import STRATEGIES
from rrm_ui.services.judging import RunPlan, default_run_name, judge_and_store, plan_run
from rrm_ui.services.runtime import ModelState, ModelStatus, ModelUnavailable
from rrm_ui.storage import Repository
from rrm_ui.storage.repo_jobs import ACTIVE, FINAL, JobConflict

T = TypeVar("T")
log = logging.getLogger(__name__)


class JobRuntime(Protocol):
    """What the manager needs of :class:`~rrm_ui.services.runtime.Runtime`."""

    loop: asyncio.AbstractEventLoop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]: ...

    def judge(self, compute: Compute, sampling: Sampling) -> Judge: ...

    @property
    def model(self) -> ModelState: ...


class ModelMismatch(ValueError):
    """The loaded model is not the one the job's run was judged with."""


class JobManager:
    """Starts, pauses, resumes, cancels and recovers judging jobs; one per app."""

    def __init__(self, repo: Repository, runtime: JobRuntime, *, poll_s: float = 0.25) -> None:
        self.repo = repo
        self.runtime = runtime
        self._poll_s = poll_s
        self._tasks: dict[int, asyncio.Task[None]] = {}  # job id -> worker; touched only on the loop
        self._lock = threading.Lock()  # one control operation at a time (no two workers for a job)

    # --- starting ------------------------------------------------------------------------------

    def start(
        self,
        dataset_id: int,
        *,
        compute: Compute,
        sampling: Sampling,
        strategy: str,
        owner: str | None,
        run_name: str | None = None,
        bracket_seed: int | None = 0,
    ) -> JobInfo:
        """Start judging the data set's items into a new run, or continue the run ``run_name``.

        Raises :class:`ModelUnavailable` while no model is loaded, ``ValueError`` for an unknown
        data set or strategy, a run with other settings, or a run that has an active job already.
        """
        self._not_on_loop()
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
        dataset = next((d for d in self.repo.datasets() if d.id == dataset_id), None)
        if dataset is None:
            raise ValueError(f"no data set with id {dataset_id}")
        judge = self.runtime.judge(compute, sampling)
        name = run_name or default_run_name(dataset.name, judge, strategy)
        with self._lock:
            plan = plan_run(self.repo, dataset_id, name, judge, strategy)
            try:
                job = self.repo.create_job(
                    plan.run.id,
                    owner=owner,
                    items_total=plan.already_done + len(plan.todo),
                    bracket_seed=bracket_seed,
                    items_done=plan.already_done,
                )
            except JobConflict as exc:
                raise JobConflict(f"run {name!r}: {exc}") from None
            self._launch(job.id, judge, plan, strategy, bracket_seed)
        return self.progress(job.id)

    # --- controlling ---------------------------------------------------------------------------

    def pause(self, job_id: int, *, actor: str | None = None, is_admin: bool = False) -> JobInfo:
        """Stop the worker; items in flight are abandoned and judged again on resume."""
        with self._lock:
            job = self._controllable(job_id, actor, is_admin, "pause")
            if job.status is JobStatus.PAUSED:
                return job
            self._stop(job_id)
            self._move(
                job_id, JobStatus.PAUSED, f"paused by {actor or 'the admin'}", (JobStatus.QUEUED, JobStatus.RUNNING)
            )
        return self.progress(job_id)

    def resume(self, job_id: int, *, actor: str | None = None, is_admin: bool = False) -> JobInfo:
        """Continue a paused (or waiting) job with a new worker, from the run's stored results.

        Raises :class:`ModelUnavailable` while no model is loaded and :class:`ModelMismatch`
        when the loaded model is not the run's.
        """
        with self._lock:
            job = self._controllable(job_id, actor, is_admin, "resume")
            if self._alive(job_id):
                raise ValueError(f"job #{job_id} is running already")
            run = self._run(job)
            judge = self._judge_for(run)
            plan = plan_run(self.repo, job.dataset_id, run.name, judge, run.strategy or "auto")
            self._move(job_id, JobStatus.QUEUED, None, ACTIVE)
            self._launch(job_id, judge, plan, run.strategy or "auto", job.bracket_seed)
        return self.progress(job_id)

    def cancel(self, job_id: int, *, actor: str | None = None, is_admin: bool = False) -> JobInfo:
        """Stop the job for good; what it judged so far stays in its run."""
        with self._lock:
            self._controllable(job_id, actor, is_admin, "cancel")
            self._stop(job_id)
            self._move(job_id, JobStatus.CANCELLED, f"cancelled by {actor or 'the admin'}", ACTIVE)
        return self.progress(job_id)

    def recover(self) -> concurrent.futures.Future[list[JobInfo]]:
        """Give every job left running or queued (by an app restart) a new worker; call once at start.

        Returns at once; the work goes on in a background thread because it may wait for the
        model to load. The future holds the recovered jobs' states afterwards. A job whose run
        needs another model is paused with a message naming it; when the model failed to load,
        jobs stay queued with ``waiting for a model: <reason>``.
        """
        self._not_on_loop()
        done: concurrent.futures.Future[list[JobInfo]] = concurrent.futures.Future()
        if self.runtime.model.status == ModelStatus.LOADING:
            for job in self.repo.jobs_with_status(JobStatus.RUNNING):
                self.repo.set_job_status(job.id, JobStatus.QUEUED, "waiting for the model to load",
                                         only_from=(JobStatus.RUNNING,))  # fmt: skip

        def work() -> None:
            try:
                done.set_result(self._recover())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                log.exception("recovering jobs failed")
                done.set_exception(exc)

        threading.Thread(target=work, name="rrm-ui-job-recovery", daemon=True).start()
        return done

    def _recover(self) -> list[JobInfo]:
        while (state := self.runtime.model).status == ModelStatus.LOADING:
            time.sleep(self._poll_s)
        recovered = []
        for job in self.repo.jobs_with_status(JobStatus.RUNNING, JobStatus.QUEUED):
            with self._lock:
                if self._alive(job.id):
                    continue
                current = self.repo.job(job.id)  # a user may have acted on it meanwhile
                if current is None or current.status not in (JobStatus.RUNNING, JobStatus.QUEUED):
                    continue
                try:
                    if state.status != ModelStatus.READY:
                        raise ModelUnavailable(state.message or "the model did not load")
                    run = self._run(job)
                    judge = self._judge_for(run)
                    plan = plan_run(self.repo, job.dataset_id, run.name, judge, run.strategy or "auto")
                    self._move(job.id, JobStatus.QUEUED, None, (JobStatus.RUNNING, JobStatus.QUEUED))
                    self._launch(job.id, judge, plan, run.strategy or "auto", job.bracket_seed)
                    # a warning, so it reaches the app's stderr (the app configures no logging)
                    total = plan.already_done + len(plan.todo)
                    log.warning("job #%s continues after a restart: %d of %d items were judged before, %d to go",
                                job.id, plan.already_done, total, len(plan.todo))  # fmt: skip
                except ModelUnavailable as exc:
                    self.repo.set_job_status(job.id, JobStatus.QUEUED, f"waiting for a model: {exc}",
                                             only_from=(JobStatus.RUNNING, JobStatus.QUEUED))  # fmt: skip
                except ModelMismatch as exc:
                    self.repo.set_job_status(job.id, JobStatus.PAUSED, str(exc),
                                             only_from=(JobStatus.RUNNING, JobStatus.QUEUED))  # fmt: skip
                except Exception as exc:  # noqa: BLE001 - one broken job must not keep the others down
                    log.exception("recovering job #%s failed", job.id)
                    self.repo.set_job_status(job.id, JobStatus.FAILED, f"could not restart: {_describe(exc)}",
                                             only_from=(JobStatus.RUNNING, JobStatus.QUEUED))  # fmt: skip
            recovered.append(self.progress(job.id))
        return recovered

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every worker of this process and leave the jobs' states as they are (app exit).

        Jobs stay ``running`` in the database, so :meth:`recover` continues them at the next start.
        """

        async def stop_all() -> None:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

        with self._lock:
            self._call(stop_all, timeout)

    # --- reading -------------------------------------------------------------------------------

    def progress(self, job_id: int) -> JobInfo:
        """The job as it stands in the database now."""
        job = self.repo.job(job_id)
        if job is None:
            raise LookupError(f"no job #{job_id}")
        return job

    def jobs(self, owner: str | None = None, dataset_id: int | None = None) -> list[JobInfo]:
        """Jobs, newest first; ``owner`` None lists everyone's."""
        return self.repo.jobs(owner, dataset_id)

    def running(self, job_id: int) -> bool:
        """Whether this process has a live worker for the job."""
        return self._alive(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> JobInfo:
        """Block until the job's worker in this process ends (or ``timeout``); the job as it stands then."""

        async def wait_task() -> None:
            task = self._tasks.get(job_id)
            if task is not None:
                await asyncio.wait({task}, timeout=timeout)

        self._call(wait_task, None if timeout is None else timeout + 5)
        return self.progress(job_id)

    # --- the worker ----------------------------------------------------------------------------

    async def _work(self, job_id: int, judge: Judge, plan: RunPlan, strategy: str, bracket_seed: int | None) -> None:
        repo = self.repo
        try:
            started = await _unbroken(repo.set_job_status, job_id, JobStatus.RUNNING, None,
                                      only_from=(JobStatus.QUEUED, JobStatus.RUNNING),
                                      items_done=plan.already_done)  # fmt: skip
            if not started:
                return  # paused or cancelled before it began
            last = time.monotonic()
            stored = judge_and_store(repo, plan, judge, strategy, bracket_seed=bracket_seed)
            async with contextlib.aclosing(stored) as results:  # a stop closes it, aborting items in flight
                async for result in results:
                    now = time.monotonic()
                    tries = [j for pair in result.pairs for j in pair.judgments]
                    await _unbroken(
                        repo.add_job_progress,
                        job_id,
                        items=1,
                        errors=sum(j.status is Status.ERROR for j in last_tries(tries)),  # a failed try tried again
                        tokens=sum(j.completion_tokens or 0 for j in tries),  # is no error, but it cost tokens
                        active_s=now - last,
                    )
                    last = now
            job = await asyncio.to_thread(self.progress, job_id)
            message = f"{job.items_done} items judged, {job.judgments_error} errors"
            await _unbroken(repo.set_job_status, job_id, JobStatus.DONE, message, only_from=(JobStatus.RUNNING,))
        except asyncio.CancelledError:
            raise  # paused, cancelled or shut down: whoever stopped the worker sets the state
        except Exception as exc:  # noqa: BLE001 - the job records why it stopped
            log.exception("job #%s failed", job_id)
            await _unbroken(repo.set_job_status, job_id, JobStatus.FAILED, _describe(exc),
                            only_from=(JobStatus.QUEUED, JobStatus.RUNNING))  # fmt: skip

    def _launch(self, job_id: int, judge: Judge, plan: RunPlan, strategy: str, bracket_seed: int | None) -> None:
        async def spawn() -> None:
            old = self._tasks.get(job_id)
            if old is not None and not old.done():
                raise RuntimeError(f"job #{job_id} has a worker already")
            task = asyncio.get_running_loop().create_task(
                self._work(job_id, judge, plan, strategy, bracket_seed), name=f"rrm-ui-job-{job_id}"
            )
            self._tasks[job_id] = task
            task.add_done_callback(lambda t: self._forget(job_id, t))

        self._call(spawn)

    def _forget(self, job_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("job #%s worker ended with an error", job_id, exc_info=task.exception())

    def _stop(self, job_id: int, timeout: float = 60) -> None:
        """Cancel the job's worker and wait until it has really ended (no result is written after)."""

        async def stop() -> None:
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
                await asyncio.wait({task})

        self._call(stop, timeout)

    def _alive(self, job_id: int) -> bool:
        async def alive() -> bool:
            task = self._tasks.get(job_id)
            return task is not None and not task.done()

        return self._call(alive)

    # --- helpers -------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = 60) -> T:
        """Run ``fn()`` on the runtime's loop and wait for it."""
        self._not_on_loop()
        return self.runtime.submit(fn()).result(timeout)

    def _not_on_loop(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.runtime.loop:
            raise RuntimeError("JobManager's methods block: call them from another thread, not the model loop")

    def _controllable(self, job_id: int, actor: str | None, is_admin: bool, verb: str) -> JobInfo:
        job = self.progress(job_id)
        if actor is not None and not is_admin and job.owner != actor:
            whose = f"{job.owner}'s" if job.owner else "the admin's"
            raise PermissionError(f"job #{job_id} is {whose}; only its owner or an admin can {verb} it")
        if job.status in FINAL:
            raise ValueError(f"job #{job_id} is {job.status.value} already and cannot be {_past(verb)}")
        return job

    def _move(self, job_id: int, status: JobStatus, message: str | None, only_from: tuple[JobStatus, ...]) -> None:
        if not self.repo.set_job_status(job_id, status, message, only_from=only_from):
            now = self.progress(job_id).status
            raise ValueError(f"job #{job_id} is {now.value} now and cannot be made {status.value}")

    def _run(self, job: JobInfo) -> RunInfo:
        run = next((r for r in self.repo.runs(job.dataset_id) if r.id == job.run_id), None)
        if run is None:
            raise LookupError(f"the run of job #{job.id} is gone")
        return run

    def _judge_for(self, run: RunInfo) -> Judge:
        """A judge with the run's settings on the loaded model; the model must be the run's."""
        judge = self.runtime.judge(Compute(**run.compute), Sampling(**run.sampling))
        if (judge.backend.name, judge.backend.model) != (run.backend, run.model):
            raise ModelMismatch(
                f"this job needs the model {run.model} on the {run.backend} backend, but the app has "
                f"{judge.backend.model} ({judge.backend.name}) loaded; restart the app with that model to resume it"
            )
        if (judge.fmt.name, judge.fmt.version) != (run.template, run.template_version):
            raise ModelMismatch(
                f"this job needs the judge format {run.template} {run.template_version}, but the app uses "
                f"{judge.fmt.name} {judge.fmt.version}"
            )
        return judge


async def _unbroken(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking write in a thread; if the task is cancelled meanwhile, let the write finish first.

    A thread cannot be interrupted: without this, a cancelled worker would end while its last
    write is still under way, and the write would land after pause() or cancel() returned.
    """
    write: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait({write})
        raise


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _past(verb: str) -> str:
    return {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}.get(verb, verb + "d")


__all__ = ["JobManager", "JobRuntime", "ModelMismatch"]
