"""Batch judging jobs that run on the server: they survive the page closing and an app restart.

A job judges every item of a data set into one run (see :mod:`rrm_ui.services.judging`). Its
worker is a task on the runtime's model loop, so it goes on whoever watches; its state and
counters live in the ``jobs`` table, so any page (or another process) reads live progress from
the database, and :meth:`JobManager.recover` restarts what was running when the app stopped.

Why nothing is judged twice: each item's judgments and result are saved in one transaction as
soon as the item is done, and every (re)start plans from the run's stored results, skipping
judged items. Several app processes on one database: a worker holds its job with a lease (its
worker id, a heartbeat and an expiry in the ``jobs`` row, renewed every ``job_beat_s``); a
process claims a job only when no lease runs (compare-and-set), so two processes never judge one
job; the beat reads the job's state, so a pause or cancel from any process stops the worker, which
then lets go of the lease (a resume elsewhere waits for that). A process whose lease expired (it
was killed) loses the job to the next sweep of another process (every ``job_lease_s`` / 2). As a
last guard the result of an item is stored only if the run has none (a unique key).

Pausing or cancelling cancels the worker task and waits until it has ended:
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
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar

from rrm_ui.domain import Compute, ItemResult, JobInfo, JobStatus, JudgeSpec, RunInfo, Sampling, Status, last_tries
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import STRATEGIES
from rrm_ui.services.judging import ModelMismatch, RunPlan, default_run_name, judge_and_store, plan_run
from rrm_ui.services.runtime import ModelState, ModelStatus, ModelUnavailable
from rrm_ui.storage import Repository
from rrm_ui.storage.repo_jobs import ACTIVE, FINAL, STALE_AFTER_S, JobConflict

T = TypeVar("T")
log = logging.getLogger(__name__)
#: how often an outside worker (rrm-ui judge) says it is alive and reads whether it was paused
BEAT_S = 10.0
#: an app worker's lease (seconds) and how often it renews it and reads the job's state (settings
#: job_lease_s and job_beat_s)
LEASE_S = 30.0
APP_BEAT_S = 2.0


class JobRuntime(Protocol):
    """What the manager needs of :class:`~rrm_ui.services.runtime.Runtime`."""

    loop: asyncio.AbstractEventLoop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]: ...

    def spec(self, compute: Compute, sampling: Sampling | None = None, strategy: str = "auto",
             judge: str | None = None) -> JudgeSpec: ...  # fmt: skip

    def judge_for(self, spec: JudgeSpec) -> Judge: ...

    @property
    def model(self) -> ModelState: ...


class JobManager:
    """Starts, pauses, resumes, cancels and recovers judging jobs; one per app."""

    def __init__(
        self,
        repo: Repository,
        runtime: JobRuntime,
        *,
        poll_s: float = 0.25,
        lease_s: float = LEASE_S,
        beat_s: float = APP_BEAT_S,
    ) -> None:
        if not 0 < beat_s < lease_s:
            raise ValueError(f"the job beat ({beat_s} s) must be shorter than the lease ({lease_s} s)")
        self.repo = repo
        self.runtime = runtime
        self._poll_s = poll_s
        self.lease_s, self.beat_s = lease_s, beat_s
        self.worker = app_worker_name()  # this process's id in the jobs it holds
        self._tasks: dict[int, asyncio.Task[None]] = {}  # job id -> worker; touched only on the loop
        self._lost: set[int] = set()  # jobs whose worker was stopped by its beat (another process's act)
        self._stopping: set[int] = set()  # jobs stopped here by pause/cancel: they let go of the lease themselves
        self._lock = threading.Lock()  # one control operation at a time (no two workers for a job)
        self._closing = threading.Event()

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
        judge: str | None = None,
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
        spec = self.runtime.spec(compute, sampling, strategy, judge=judge)  # judge: a format name
        judge_ = self.runtime.judge_for(spec)
        name = run_name or default_run_name(dataset.name, spec)
        with self._lock:
            plan = plan_run(self.repo, dataset_id, name, spec)
            try:
                job = self.repo.create_job(
                    plan.run.id,
                    owner=owner,
                    items_total=plan.already_done + len(plan.todo),
                    bracket_seed=bracket_seed,
                    items_done=plan.already_done,
                    worker=self.worker,
                    lease_s=self.lease_s,
                )
            except JobConflict as exc:
                raise JobConflict(f"run {name!r}: {exc}") from None
            self._launch(job.id, judge_, plan, strategy, bracket_seed)
        return self.progress(job.id)

    # --- controlling ---------------------------------------------------------------------------

    def pause(self, job_id: int, *, actor: str | None = None, is_admin: bool = False) -> JobInfo:
        """Stop the worker; items in flight are abandoned and judged again on resume."""
        with self._lock:
            job = self._controllable(job_id, actor, is_admin, "pause")
            if job.status is JobStatus.PAUSED:
                return job
            self._stop(job_id)
            try:  # the lease is let go once the state is set: no other process claims the job in between
                self._move(job_id, JobStatus.PAUSED, f"paused by {actor or 'the admin'}",
                           (JobStatus.QUEUED, JobStatus.RUNNING))  # fmt: skip
            finally:
                self.repo.release_lease(job_id, self.worker)
            self._wait_released(job_id)  # another process's worker stops at its next beat
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
            self._wait_released(job_id)  # a worker of another process paused just now lets go at its next beat
            self._not_held_elsewhere(job_id)
            run = self._run(job)
            judge = self._judge_for(run)
            # compare-and-set: an rrm-ui judge or another app process may have taken it meanwhile
            if not self.repo.requeue_job(job_id, worker=self.worker, lease_s=self.lease_s):
                self._not_held_elsewhere(job_id)
                now = self.progress(job_id).status
                raise ValueError(f"job #{job_id} is {now.value} now and cannot be resumed")
            try:  # planned once the job is ours: no other worker adds results meanwhile
                plan = plan_run(self.repo, job.dataset_id, run.name, judge, run.strategy or "auto")
                self._launch(job_id, judge, plan, run.strategy or "auto", job.bracket_seed)
            except BaseException:
                self.repo.release_lease(job_id, self.worker)
                raise
        return self.progress(job_id)

    def _not_held_elsewhere(self, job_id: int) -> None:
        worker = self.repo.held_elsewhere(job_id, me=self.worker)
        if worker is not None:
            beat = BEAT_S if worker.startswith("rrm-ui judge") else self.beat_s
            raise ValueError(f"job #{job_id} is being judged by {worker}; pause it (that stops within "
                             f"{beat:.0f} s) before resuming it here")  # fmt: skip

    def _wait_released(self, job_id: int) -> None:
        """Wait (up to three beats) while another app process's worker still holds the job."""
        deadline = time.monotonic() + 3 * self.beat_s
        while time.monotonic() < deadline:
            worker = self.repo.held_elsewhere(job_id, me=self.worker)
            if worker is None or worker.startswith("rrm-ui judge"):
                return
            time.sleep(min(self._poll_s, self.beat_s / 4))

    def cancel(self, job_id: int, *, actor: str | None = None, is_admin: bool = False) -> JobInfo:
        """Stop the job for good; what it judged so far stays in its run."""
        with self._lock:
            self._controllable(job_id, actor, is_admin, "cancel")
            self._stop(job_id)
            try:
                self._move(job_id, JobStatus.CANCELLED, f"cancelled by {actor or 'the admin'}", ACTIVE)
            finally:
                self.repo.release_lease(job_id, self.worker)
            self._wait_released(job_id)
        return self.progress(job_id)

    def recover(self) -> concurrent.futures.Future[list[JobInfo]]:
        """Give every job left running or queued (by an app restart) a new worker; call once at start.

        Returns at once; the work goes on in a background thread because it may wait for the
        model to load. The future holds the recovered jobs' states afterwards. A job whose run
        needs another model is paused with a message naming it; when the model failed to load,
        jobs stay queued with ``waiting for a model: <reason>``. Only jobs no worker holds are
        taken (a compare-and-set claim of the job's lease): a job another app process works on
        stays its; a job whose worker died on this machine is taken at once, elsewhere once its
        lease expired. Afterwards the same thread sweeps every ``job_lease_s`` / 2 for jobs whose
        lease expired (another app process was killed) and continues them, until :meth:`shutdown`.
        """
        self._not_on_loop()
        done: concurrent.futures.Future[list[JobInfo]] = concurrent.futures.Future()
        if self.runtime.model.status == ModelStatus.LOADING:
            for job in self.repo.claimable_jobs():
                if job.status is JobStatus.RUNNING:
                    self.repo.set_job_status(job.id, JobStatus.QUEUED, "waiting for the model to load",
                                             only_from=(JobStatus.RUNNING,))  # fmt: skip

        def work() -> None:
            try:
                done.set_result(self._recover())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                log.exception("recovering jobs failed")
                done.set_exception(exc)
                return
            while not self._closing.wait(self.lease_s / 2):
                try:
                    self._recover(at_start=False)
                except Exception:  # noqa: BLE001 - the next sweep tries again
                    log.exception("sweeping for jobs whose lease expired failed")

        threading.Thread(target=work, name="rrm-ui-job-recovery", daemon=True).start()
        return done

    def _claimable(self, at_start: bool) -> list[tuple[JobInfo, str | None]]:
        """Jobs to claim: (job, the dead worker it is taken from, or None when no lease runs). At start
        also the jobs of this machine's app processes that are gone (a restart after a kill); a sweep
        waits for their leases to expire."""
        found = {job.id: (job, None) for job in self.repo.claimable_jobs()}
        for job in self.repo.jobs_with_status(JobStatus.RUNNING, JobStatus.QUEUED) if at_start else ():
            if job.id not in found and job.worker is not None and self._dead_app_worker(job.worker):
                found[job.id] = (job, job.worker)
        return [found[k] for k in sorted(found)]

    def _dead_app_worker(self, worker: str) -> bool:
        """An app worker of this machine whose process is gone (or an earlier process with this pid)."""
        hit = re.fullmatch(r"rrm-ui app on (.+), pid (\d+), (\w+)", worker)
        if hit is None or hit.group(1) != socket.gethostname() or worker == self.worker:
            return False
        return int(hit.group(2)) == os.getpid() or not _pid_alive(int(hit.group(2)))

    def _recover(self, *, at_start: bool = True) -> list[JobInfo]:
        while (state := self.runtime.model).status == ModelStatus.LOADING:
            time.sleep(self._poll_s)
        if not at_start and state.status != ModelStatus.READY:
            return []  # a sweep: another process with a model may take them
        recovered = []
        for job, dead in self._claimable(at_start):
            with self._lock:
                if self._alive(job.id) or self._closing.is_set():
                    continue
                current = self.repo.job(job.id)  # a user may have acted on it meanwhile
                if current is None or current.status not in (JobStatus.RUNNING, JobStatus.QUEUED):
                    continue
                claimed = False
                try:
                    if state.status != ModelStatus.READY:
                        raise ModelUnavailable(state.message or "the model did not load")
                    run = self._run(job)
                    try:
                        judge = self._judge_for(run)
                    except ModelMismatch:
                        if not at_start:
                            continue  # a sweep leaves it to a process with the run's model
                        raise
                    if not self.repo.claim_job(job.id, self.worker, self.lease_s, from_worker=dead):
                        continue  # another process claimed it first
                    claimed = True
                    plan = plan_run(self.repo, job.dataset_id, run.name, judge, run.strategy or "auto")
                    self._move(job.id, JobStatus.QUEUED, None, (JobStatus.RUNNING, JobStatus.QUEUED))
                    self._launch(job.id, judge, plan, run.strategy or "auto", job.bracket_seed)
                    # a warning, so it reaches the app's stderr (the app configures no logging)
                    total = plan.already_done + len(plan.todo)
                    log.warning("job #%s continues %s: %d of %d items were judged before, %d to go", job.id,
                                "after a restart" if at_start else f"here after {job.worker or 'its worker'} stopped",
                                plan.already_done, total, len(plan.todo))  # fmt: skip
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
                    if claimed:
                        self.repo.release_lease(job.id, self.worker)
            recovered.append(self.progress(job.id))
        return recovered

    def shutdown(self, timeout: float = 30) -> None:
        """Stop every worker of this process and leave the jobs' states as they are (app exit).

        Jobs stay ``running`` in the database and their leases are let go, so :meth:`recover`
        continues them at the next start, or another app process's sweep at once.
        """
        self._closing.set()

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
        me = asyncio.current_task()
        assert me is not None
        beats = asyncio.get_running_loop().create_task(self._beat(job_id, me), name=f"rrm-ui-job-{job_id}-beat")
        try:
            started = await _unbroken(repo.set_job_status, job_id, JobStatus.RUNNING, None,
                                      only_from=(JobStatus.QUEUED, JobStatus.RUNNING),
                                      items_done=plan.already_done, held_by=self.worker)  # fmt: skip
            if not started:
                return  # paused or cancelled before it began, or no longer ours
            last = time.monotonic()
            # stored and counted as each item finishes: the job's order does not matter
            stored = judge_and_store(repo, plan, judge, strategy, bracket_seed=bracket_seed, in_order=False)
            async with contextlib.aclosing(stored) as results:  # a stop closes it, aborting items in flight
                async for result in results:
                    now = time.monotonic()
                    await _unbroken(repo.add_job_progress, job_id, items=1, active_s=now - last, **_counts(result))
                    last = now
            job = await asyncio.to_thread(self.progress, job_id)
            message = f"{job.items_done} items judged, {job.judgments_error} errors"
            await _unbroken(repo.set_job_status, job_id, JobStatus.DONE, message, only_from=(JobStatus.RUNNING,),
                            held_by=self.worker)  # fmt: skip
        except asyncio.CancelledError:
            if job_id in self._lost:  # stopped by its beat: another process paused, cancelled or took it
                self._lost.discard(job_id)
                log.warning("job #%s stopped here: it was paused, cancelled or taken over elsewhere", job_id)
                return
            raise  # paused, cancelled or shut down here: whoever stopped the worker sets the state
        except Exception as exc:  # noqa: BLE001 - the job records why it stopped
            log.exception("job #%s failed", job_id)
            await _unbroken(repo.set_job_status, job_id, JobStatus.FAILED, _describe(exc),
                            only_from=(JobStatus.QUEUED, JobStatus.RUNNING), held_by=self.worker)  # fmt: skip
        finally:
            beats.cancel()
            await asyncio.wait({beats})
            if job_id in self._stopping:
                self._stopping.discard(job_id)  # pause() or cancel() lets go once it has set the state
            else:
                await _unbroken(repo.release_lease, job_id, self.worker)

    async def _beat(self, job_id: int, work: asyncio.Task[None]) -> None:
        """Renew the job's lease every beat and read its state; stop ``work`` once the job is not
        queued or running any more (a pause or cancel from any process) or no longer ours."""
        while True:
            await asyncio.sleep(self.beat_s)
            try:
                status = await asyncio.to_thread(self.repo.renew_lease, job_id, self.worker, self.lease_s)
            except Exception:  # noqa: BLE001 - a database hiccup: the lease outlasts a few missed beats
                log.warning("job #%s: renewing its lease failed", job_id, exc_info=True)
                continue
            if status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                self._lost.add(job_id)
                work.cancel()
                return

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
            if task is not None and not task.done():
                self._stopping.add(job_id)
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
        """A judge of the run's stored spec on the loaded model (the model must be the run's)."""
        try:
            spec = JudgeSpec.from_run(run)
        except ValueError as exc:
            raise ModelMismatch(f"run {run.name!r} cannot be resumed: {exc}") from None
        return self.runtime.judge_for(spec)


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


def app_worker_name() -> str:
    """This app process as a job's worker: ``rrm-ui app on HOST, pid N, RANDOM`` (the random part tells
    a later process with the same pid, as in a restarted container, from this one)."""
    return f"rrm-ui app on {socket.gethostname()}, pid {os.getpid()}, {secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that id
    return True


def worker_name() -> str:
    """This process as an outside worker: ``rrm-ui judge on HOST, pid N``."""
    return f"rrm-ui judge on {socket.gethostname()}, pid {os.getpid()}"


def _alive_here(worker: str) -> bool:
    """False when ``worker`` names a process of this machine that is gone; True otherwise (alive, or
    on another machine, where only its heartbeat tells)."""
    found = re.fullmatch(r"rrm-ui judge on (.+), pid (\d+)", worker)
    if found is None or found.group(1) != socket.gethostname():
        return True
    try:
        os.kill(int(found.group(2)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process with that id
    return True


def _counts(result: ItemResult) -> dict[str, int]:
    """A judged item's errors (samples whose last try failed: a failed try tried again is no error)
    and tokens (every try's: a failed one cost tokens too)."""
    tries = [j for pair in result.pairs for j in pair.judgments]
    return {"errors": sum(j.status is Status.ERROR for j in last_tries(tries)),
            "tokens": sum(j.completion_tokens or 0 for j in tries)}  # fmt: skip


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _past(verb: str) -> str:
    return {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}.get(verb, verb + "d")


class OutsideJob:
    """The job ``rrm-ui judge --dataset`` holds while it judges a run, so that the app and another
    ``rrm-ui judge`` never judge the same run at once (one active job per run, in the database).

    :meth:`hold` creates the job, or takes over the run's paused job or one whose outside worker
    died (no beat for :data:`~rrm_ui.storage.repo_jobs.STALE_AFTER_S`), and refuses
    (:class:`JobConflict`) while the app or a live ``rrm-ui judge`` works on the run. While judging,
    :meth:`beat` every :data:`BEAT_S` and :meth:`add` per item keep the job alive and its counters
    current (the Batch tab shows them); both say when the job was paused or cancelled in the app,
    and the command stops. :meth:`release` leaves the job done, paused or failed.
    """

    def __init__(self, repo: Repository, job: JobInfo, worker: str) -> None:
        self.repo, self.job, self.worker = repo, job, worker
        self.stopped_by: JobStatus | None = None  # set when the app paused or cancelled the job
        self._last = time.monotonic()

    @classmethod
    def hold(cls, repo: Repository, plan: RunPlan, worker: str, *, bracket_seed: int | None) -> OutsideJob:
        total = plan.already_done + len(plan.todo)
        try:
            job = repo.create_job(plan.run.id, owner=None, items_total=total, bracket_seed=bracket_seed,
                                  items_done=plan.already_done, status=JobStatus.RUNNING, worker=worker)  # fmt: skip
        except JobConflict as conflict:
            active = repo.active_job(plan.run.id)
            dead = active is not None and active.worker is not None and not _alive_here(active.worker)
            # a killed rrm-ui judge on this machine is known dead at once; elsewhere, once it stops beating
            job = repo.take_over_job(plan.run.id, worker, **({"stale_after_s": 0.0} if dead else {}))
            if job is None:
                raise JobConflict(f"run {plan.run.name!r}: {conflict}") from None
            repo.set_job_status(job.id, JobStatus.RUNNING, None, only_from=(JobStatus.RUNNING,),
                                items_done=plan.already_done)  # fmt: skip
        return cls(repo, job, worker)

    def add(self, result: ItemResult) -> bool:
        """Count a judged item; False when the job was paused or cancelled meanwhile (stop judging)."""
        now = time.monotonic()
        self.repo.add_job_progress(self.job.id, items=1, active_s=now - self._last, **_counts(result))
        self._last = now
        return self.beat()

    def beat(self) -> bool:
        """Say the worker is alive; False when the job is no longer running here."""
        status = self.repo.beat(self.job.id, self.worker)
        if status is JobStatus.RUNNING:
            return True
        self.stopped_by = status or JobStatus.PAUSED
        return False

    def release(self, status: JobStatus, message: str | None) -> JobInfo:
        self.repo.release_job(self.job.id, self.worker, status, message)
        return self.repo.job(self.job.id) or self.job

    async def drain(self, results: AsyncIterator[ItemResult], on_result: Callable[[ItemResult], None],
                    who: str) -> JobInfo:  # fmt: skip
        """Consume a run's stored results while holding the job: ``on_result`` per item, :meth:`add` per
        item and :meth:`beat` every :data:`BEAT_S` (either stops the judging when the app paused or cancelled
        the job: :attr:`stopped_by`); the job is released done, paused (interrupted) or failed, with ``who``
        (``"rrm-ui judge"``) in its message. The job as released."""

        async def consume() -> None:
            async with contextlib.aclosing(results) as stream:  # closing it aborts the items in flight
                async for result in stream:
                    on_result(result)
                    if not await asyncio.to_thread(self.add, result):
                        return  # paused or cancelled in the app

        async def beat(consumer: asyncio.Task[None]) -> None:
            while True:
                await asyncio.sleep(BEAT_S)
                if not await asyncio.to_thread(self.beat):
                    consumer.cancel()
                    return

        consumer = asyncio.create_task(consume())
        beater = asyncio.create_task(beat(consumer))
        ending: tuple[JobStatus, str | None] = (JobStatus.FAILED, f"{who} stopped with an error")
        try:
            try:
                await consumer
            except asyncio.CancelledError:
                if self.stopped_by is None:
                    ending = (JobStatus.PAUSED, f"{who} was interrupted; run it again, or resume the job, to go on")
                    raise
            ending = (JobStatus.DONE, None)
        except Exception as exc:
            ending = (JobStatus.FAILED, f"{who} failed: {type(exc).__name__}: {exc}")
            raise
        finally:
            beater.cancel()
            if ending[0] is JobStatus.DONE and self.stopped_by is None:
                now = self.repo.job(self.job.id) or self.job
                ending = (JobStatus.DONE, f"{now.items_done} items judged, {now.judgments_error} errors")
            job = self.release(*ending)
        return job


__all__ = [
    "APP_BEAT_S",
    "BEAT_S",
    "LEASE_S",
    "STALE_AFTER_S",
    "JobManager",
    "JobRuntime",
    "ModelMismatch",
    "OutsideJob",
    "worker_name",
]
