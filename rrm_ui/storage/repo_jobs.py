"""Batch jobs and their progress (a part of :class:`~rrm_ui.storage.repository.Repository`).

A job row holds who started a judging run in the app, its state and its counters; the run holds
the judge's settings. Counters are incremented in SQL (``items_done = items_done + 1``), one
short ``UPDATE`` per judged item, so concurrent readers always see a consistent row and no
read-modify-write race can lose an increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from rrm_ui.domain import JobInfo, JobStatus
from rrm_ui.storage import models as m

T = TypeVar("T")

#: states in which a job still owns its run (it runs, waits to run, or can be resumed)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED)
#: states a job never leaves
FINAL = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


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
    ) -> JobInfo:
        """A new job for the run; refused (:class:`JobConflict`) while another job of the run is active."""

        def write(s: Session) -> JobInfo:
            active = s.execute(
                select(m.Job.id, m.Job.status).where(
                    m.Job.run_id == run_id, m.Job.status.in_([a.value for a in ACTIVE])
                )
            ).first()
            if active is not None:
                raise JobConflict(
                    f"this run already has job #{active.id} ({active.status}); resume or cancel it, "
                    "or start a run with another name"
                )
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
            )
            s.add(row)
            s.flush()
            return _one(s, row.id)

        return self._tx(write)

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
    ) -> bool:
        """Set the state (and message, None clears it); with ``only_from``, only out of those states.

        Returns whether the row changed: a compare-and-set, so two threads moving the same job
        (a worker finishing, a user pausing) never overwrite each other's decision.
        ``items_done`` resets the counter to what the run's stored results say (on a restart).
        """
        values: dict[str, Any] = {"status": JobStatus(status).value, "message": message}
        if items_done is not None:
            values["items_done"] = items_done
        stmt = update(m.Job).where(m.Job.id == job_id).values(**values)
        if only_from is not None:
            stmt = stmt.where(m.Job.status.in_([JobStatus(x).value for x in only_from]))
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
    )
