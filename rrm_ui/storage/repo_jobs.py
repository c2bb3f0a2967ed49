"""Batch jobs and their progress (a part of :class:`~rrm_ui.storage.repository.Repository`).

A job row holds who started a judging run in the app, its state and its counters; the run holds
the judge's settings. Counters are incremented in SQL (``items_done = items_done + 1``), one
short ``UPDATE`` per judged item, so concurrent readers always see a consistent row and no
read-modify-write race can lose an increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rrm_ui.domain import JobInfo, JobStatus
from rrm_ui.storage import models as m

T = TypeVar("T")

#: states in which a job still owns its run (it runs, waits to run, or can be resumed)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)
#: states a job never leaves
FINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)
#: a worker outside the app (``rrm-ui judge``) that has not beaten for this long has died
STALE_AFTER_S = 60.0
#: the jobs a worker may claim and keep claiming: waiting or running
CLAIMABLE = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobConflict(ValueError):
    """A second active job for a run that has one already."""


class JobStore:
    """Mixin: needs the repository's ``_tx``, ``_query`` and ``_annotator_id``."""

    _tx: Callable[..., Any]
    _query: Callable[..., Any]
    _annotator_id: Callable[[Session, str], int]

    def create_job(
        self,
        run_id: int,
        *,
        owner: str | None,
        items_total: int,
        bracket_seed: int | None,
        items_done: int = 0,
        status: JobStatus = JobStatus.QUEUED,
        worker: str | None = None,
        lease_s: float | None = None,
    ) -> JobInfo:
        """A new job for the run; refused (:class:`JobConflict`) while another job of the run is active.

        The database enforces it (a partial unique index on the run of active jobs), so two
        processes starting a job for one run at once get one job and one conflict. ``worker``
        names the worker that holds the job: an app process (with a lease of ``lease_s`` seconds,
        renewed by :meth:`renew_lease`) or ``rrm-ui judge`` (no lease; it beats while it holds the job).
        """

        def write(s: Session) -> JobInfo:
            active = _active(s, run_id)
            if active is not None:
                raise _conflict(active)
            row = m.Job(
                run_id=run_id,
                status=JobStatus(status).value,
                items_total=items_total,
                items_done=items_done,
                judgments_error=0,
                tokens=0,
                active_s=0.0,
                owner_id=self._annotator_id(s, owner) if owner is not None else None,
                bracket_seed=bracket_seed,
                worker=worker,
                heartbeat_at=m.utcnow() if worker is not None else None,
                lease_until=_until(lease_s) if worker is not None and lease_s is not None else None,
            )
            try:
                with s.begin_nested():
                    s.add(row)
                    s.flush()
            except IntegrityError:
                active = _active(s, run_id)  # the other process's job, committed meanwhile
                if active is None:
                    raise
                raise _conflict(active) from None
            return _one(s, row.id)

        return self._tx(write)

    def take_over_job(self, run_id: int, worker: str | None, *, stale_after_s: float = STALE_AFTER_S) -> JobInfo | None:
        """The run's active job, now held by ``worker`` (None: this app) and running, if nobody works on it:
        it is paused, or its outside worker stopped beating ``stale_after_s`` ago (a killed ``rrm-ui judge``).
        None when there is no such job: no active job, or one that a live worker (the app's queued or
        running job, a beating ``rrm-ui judge``) holds. A compare-and-set: of two takers, one wins.
        """
        cutoff = m.utcnow() - timedelta(seconds=stale_after_s)
        free = or_(
            and_(m.Job.status == JobStatus.PAUSED.value, ~_held(cutoff)),
            and_(m.Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]), m.Job.worker.is_not(None),
                 ~_held(cutoff)),
        )  # fmt: skip

        def write(s: Session) -> JobInfo | None:
            active = _active(s, run_id)
            if active is None:
                return None
            stmt = (
                update(m.Job)
                .where(m.Job.id == active.id, free)
                .values(status=JobStatus.RUNNING.value, worker=worker, message=None,
                        heartbeat_at=m.utcnow() if worker is not None else None, lease_until=None)
            )  # fmt: skip
            return _one(s, active.id) if s.execute(stmt).rowcount else None

        return self._tx(write)

    def active_job(self, run_id: int) -> JobInfo | None:
        """The run's active (queued, running or paused) job, if any."""

        def read(s: Session) -> JobInfo | None:
            active = _active(s, run_id)
            return None if active is None else _one(s, active.id)

        return self._query(read)

    def beat(self, job_id: int, worker: str) -> JobStatus | None:
        """An outside worker's sign of life; the job's state now (it stops when that is not running).

        None when the job is no longer ``worker``'s (the app took it over after a pause, say).
        """

        def write(s: Session) -> JobStatus | None:
            changed = s.execute(
                update(m.Job).where(m.Job.id == job_id, m.Job.worker == worker).values(heartbeat_at=m.utcnow())
            ).rowcount
            return JobStatus(s.scalar(select(m.Job.status).where(m.Job.id == job_id))) if changed else None

        return self._tx(write)

    def release_job(self, job_id: int, worker: str, status: JobStatus | str, message: str | None) -> bool:
        """An outside worker lets go of its job, leaving it in ``status`` (if it is still running) and
        the worker cleared either way. Returns whether the state was set (not when someone paused or
        cancelled the job meanwhile: their state stays)."""

        def write(s: Session) -> bool:
            mine = (m.Job.id == job_id, m.Job.worker == worker)
            changed = s.execute(
                update(m.Job).where(*mine, m.Job.status == JobStatus.RUNNING.value)
                .values(status=JobStatus(status).value, message=message)
            ).rowcount  # fmt: skip
            s.execute(update(m.Job).where(*mine).values(worker=None, heartbeat_at=None))
            return changed > 0

        return self._tx(write)

    def held_elsewhere(self, job_id: int, *, stale_after_s: float = STALE_AFTER_S, me: str | None = None) -> str | None:
        """The worker other than ``me`` that holds the job: an app process whose lease has not
        expired, or an ``rrm-ui judge`` that still beats; else None."""
        cutoff = m.utcnow() - timedelta(seconds=stale_after_s)
        q = select(m.Job.worker).where(m.Job.id == job_id, _held(cutoff))
        if me is not None:
            q = q.where(m.Job.worker != me)
        return self._query(lambda s: s.scalar(q))

    def requeue_job(
        self,
        job_id: int,
        *,
        stale_after_s: float = STALE_AFTER_S,
        worker: str | None = None,
        lease_s: float | None = None,
    ) -> bool:
        """Queue an active job for this app (a resume), held by ``worker`` with a lease of ``lease_s``:
        a compare-and-set that fails when the job is final, or another worker holds it (an app
        process whose lease has not expired, an ``rrm-ui judge`` that still beats)."""
        cutoff = m.utcnow() - timedelta(seconds=stale_after_s)
        stmt = (
            update(m.Job)
            .where(m.Job.id == job_id, m.Job.status.in_([a.value for a in ACTIVE]),
                   or_(~_held(cutoff), m.Job.worker == worker) if worker is not None else ~_held(cutoff))
            .values(status=JobStatus.QUEUED.value, message=None, worker=worker,
                    heartbeat_at=m.utcnow() if worker is not None else None,
                    lease_until=_until(lease_s) if worker is not None and lease_s is not None else None)
        )  # fmt: skip
        return self._tx(lambda s: s.execute(stmt).rowcount > 0)

    # --- app workers' leases ------------------------------------------------------------------

    def claimable_jobs(self) -> list[JobInfo]:
        """Queued or running jobs that no worker holds: none is named, or an app worker's lease expired
        (its process died or stopped renewing). Oldest first. ``rrm-ui judge``'s jobs are not among
        them: that command continues its own job (:meth:`take_over_job`)."""
        q = _select().where(m.Job.status.in_([c.value for c in CLAIMABLE]), _lease_free()).order_by(m.Job.id)
        return self._query(lambda s: [_info(r) for r in s.execute(q)])

    def claim_job(self, job_id: int, worker: str, lease_s: float, *, from_worker: str | None = None) -> bool:
        """``worker`` takes the queued or running job with a lease of ``lease_s`` seconds, if no worker
        holds it (see :meth:`claimable_jobs`), or, with ``from_worker``, if that (dead) worker still
        names it. A compare-and-set ``UPDATE``: of two processes claiming one job, one wins (on
        PostgreSQL the second waits for the first's row lock and then finds the row taken)."""
        free = m.Job.worker == from_worker if from_worker is not None else _lease_free()
        stmt = (
            update(m.Job)
            .where(m.Job.id == job_id, m.Job.status.in_([c.value for c in CLAIMABLE]), free)
            .values(worker=worker, heartbeat_at=m.utcnow(), lease_until=_until(lease_s))
        )
        return self._tx(lambda s: s.execute(stmt).rowcount > 0)

    def renew_lease(self, job_id: int, worker: str, lease_s: float) -> JobStatus | None:
        """An app worker's heartbeat: its lease runs ``lease_s`` seconds from now. The job's state
        (the worker stops unless it is queued or running: paused or cancelled by any process), or
        None when the job is no longer the worker's (its lease expired and another process took it)."""

        def write(s: Session) -> JobStatus | None:
            changed = s.execute(
                update(m.Job).where(m.Job.id == job_id, m.Job.worker == worker)
                .values(heartbeat_at=m.utcnow(), lease_until=_until(lease_s))
            ).rowcount  # fmt: skip
            return JobStatus(s.scalar(select(m.Job.status).where(m.Job.id == job_id))) if changed else None

        return self._tx(write)

    def release_lease(self, job_id: int, worker: str) -> bool:
        """An app worker lets go of its job (its state stays); whether it still held it."""
        stmt = (
            update(m.Job).where(m.Job.id == job_id, m.Job.worker == worker)
            .values(worker=None, heartbeat_at=None, lease_until=None)
        )  # fmt: skip
        return self._tx(lambda s: s.execute(stmt).rowcount > 0)

    def job(self, job_id: int) -> JobInfo | None:
        return self._query(lambda s: _one(s, job_id, missing_ok=True))

    def jobs(self, owner: str | None = None, dataset_id: int | None = None) -> list[JobInfo]:
        """Jobs, newest first; ``owner`` None lists everyone's."""
        q = _select().order_by(m.Job.id.desc())
        if owner is not None:
            q = q.where(m.Annotator.name == owner)
        if dataset_id is not None:
            q = q.where(m.Run.dataset_id == dataset_id)
        return self._query(lambda s: [_info(r) for r in s.execute(q)])

    def jobs_with_status(self, *statuses: JobStatus | str) -> list[JobInfo]:
        """Jobs in any of the given states, oldest first (the order to restart them in)."""
        q = _select().where(m.Job.status.in_([JobStatus(x).value for x in statuses])).order_by(m.Job.id)
        return self._query(lambda s: [_info(r) for r in s.execute(q)])

    def set_job_status(
        self,
        job_id: int,
        status: JobStatus | str,
        message: str | None = None,
        *,
        only_from: Iterable[JobStatus | str] | None = None,
        items_done: int | None = None,
        held_by: str | None = None,
    ) -> bool:
        """Set the state (and message, None clears it); with ``only_from``, only out of those states.

        Returns whether the row changed: a compare-and-set, so two threads moving the same job
        (a worker finishing, a user pausing) never overwrite each other's decision.
        ``items_done`` resets the counter to what the run's stored results say (on a restart).
        ``held_by``: only while that worker holds the job.
        """
        values: dict[str, Any] = {"status": JobStatus(status).value, "message": message}
        if items_done is not None:
            values["items_done"] = items_done
        stmt = update(m.Job).where(m.Job.id == job_id).values(**values)
        if only_from is not None:
            stmt = stmt.where(m.Job.status.in_([JobStatus(x).value for x in only_from]))
        if held_by is not None:
            stmt = stmt.where(m.Job.worker == held_by)
        return self._tx(lambda s: s.execute(stmt).rowcount > 0)

    def add_job_progress(
        self, job_id: int, *, items: int = 0, errors: int = 0, tokens: int = 0, active_s: float = 0.0
    ) -> None:
        """Add to the job's counters, atomically in SQL (one short UPDATE)."""
        stmt = (
            update(m.Job)
            .where(m.Job.id == job_id)
            .values(
                items_done=m.Job.items_done + items,
                judgments_error=m.Job.judgments_error + errors,
                tokens=m.Job.tokens + tokens,
                active_s=m.Job.active_s + active_s,
            )
        )
        self._tx(lambda s: s.execute(stmt))


def _active(s: Session, run_id: int) -> Any:
    return s.execute(
        select(m.Job.id, m.Job.status, m.Job.worker).where(
            m.Job.run_id == run_id, m.Job.status.in_([a.value for a in ACTIVE])
        )
    ).first()


def _conflict(active: Any) -> JobConflict:
    where = f", run by {active.worker}" if active.worker else ""
    return JobConflict(
        f"this run already has job #{active.id} ({active.status}{where}); resume or cancel it, "
        "or start a run with another name"
    )


def _beating(cutoff: Any) -> Any:
    return and_(m.Job.heartbeat_at.is_not(None), m.Job.heartbeat_at > cutoff)


def _held(cutoff: Any) -> Any:
    """A worker holds the job: an app worker whose lease runs, or an ``rrm-ui judge`` beating since ``cutoff``."""
    return and_(
        m.Job.worker.is_not(None),
        or_(and_(m.Job.lease_until.is_not(None), m.Job.lease_until > m.utcnow()),
            and_(m.Job.lease_until.is_(None), _beating(cutoff))),
    )  # fmt: skip


def _lease_free() -> Any:
    """No worker named, or an app worker whose lease has expired."""
    return or_(m.Job.worker.is_(None), and_(m.Job.lease_until.is_not(None), m.Job.lease_until <= m.utcnow()))


def _until(lease_s: float) -> Any:
    return m.utcnow() + timedelta(seconds=lease_s)


def _select() -> Select[Any]:
    return (
        select(m.Job, m.Run.name.label("run_name"), m.Run.dataset_id, m.Dataset.name.label("dataset"),
               m.Annotator.name.label("owner"))
        .join(m.Run, m.Run.id == m.Job.run_id)
        .join(m.Dataset, m.Dataset.id == m.Run.dataset_id)
        .outerjoin(m.Annotator, m.Annotator.id == m.Job.owner_id)
    )  # fmt: skip


def _one(s: Session, job_id: int, *, missing_ok: bool = False) -> JobInfo | None:
    row = s.execute(_select().where(m.Job.id == job_id)).first()
    if row is None:
        if missing_ok:
            return None
        raise LookupError(f"no job #{job_id}")
    return _info(row)


def _info(row: Any) -> JobInfo:
    job: m.Job = row[0]
    return JobInfo(
        id=job.id,
        run_id=job.run_id,
        run_name=row.run_name,
        dataset_id=row.dataset_id,
        dataset=row.dataset,
        status=JobStatus(job.status),
        items_total=job.items_total,
        items_done=job.items_done,
        judgments_error=job.judgments_error,
        tokens=job.tokens,
        active_s=job.active_s,
        message=job.message,
        owner=row.owner,
        bracket_seed=job.bracket_seed,
        created_at=job.created_at,
        updated_at=job.updated_at,
        worker=job.worker,
        heartbeat_at=job.heartbeat_at,
    )
