"""The figures of the operators' metrics (``GET /metrics``, :mod:`rrm_ui.services.metrics`).

A handful of aggregate SQL statements in one read transaction: counts and sums computed by the
database, never rows loaded into Python, so a scrape holds no more than a few numbers per job and
data set. Everything is read from the shared database, so every app process reports the same
figures.

The judgments' figures (counts by status, tokens, the latency histogram) would scan the whole
judgments table at every scrape (seconds at a million rows). Judgments are only ever appended,
so :class:`JudgmentTotals` keeps the sums of the rows up to an id, and a scrape adds the rows
after it: the rows older than ``settle_s`` (default 5 minutes) are added to the kept sums for
good, the newer ones are summed again at each scrape. Settling only old rows keeps a row that a
slower transaction commits after a higher id out of harm's way (a row is written in one short
transaction; the clocks of the app processes must agree to within ``settle_s``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from rrm_ui.domain import JobStatus
from rrm_ui.storage import models as m
from rrm_ui.storage.repo_jobs import ACTIVE

if TYPE_CHECKING:
    from rrm_ui.storage.repository import Repository

#: upper bounds (seconds) of the judgment latency histogram's buckets; a judgment thinks for seconds
#: to minutes (8192 new tokens at 20 to 100 tokens/s)
LATENCY_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: judgments older than this are added to the kept totals for good
SETTLE_S = 300.0


@dataclass
class JudgmentTotals:
    """Sums over the judgments with ``id <= upto``; kept by a process between scrapes (thread-safe)."""

    upto: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0])  # prompt, completion, reasoning
    latency_count: int = 0
    latency_sum_s: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, s: Session, after: int, upto: int | None) -> None:
        """Add the judgments with ``after < id <= upto`` (``upto`` None: all after)."""
        j = m.Judgment
        where = [j.id > after] + ([j.id <= upto] if upto is not None else [])
        for status, n in s.execute(select(j.status, func.count()).where(*where).group_by(j.status)):
            self.by_status[str(status)] += int(n)
        latency = j.latency_s
        row = s.execute(
            select(
                func.coalesce(func.sum(j.prompt_tokens), 0),
                func.coalesce(func.sum(j.completion_tokens), 0),
                func.coalesce(func.sum(j.reasoning_tokens), 0),
                func.count(latency),
                func.coalesce(func.sum(latency), 0.0),
                *(func.coalesce(func.sum(case((latency <= b, 1), else_=0)), 0) for b in LATENCY_BUCKETS_S),
            ).where(*where)
        ).one()
        prompt, completion, reasoning, n_latency, sum_latency, *cumulative = row
        self.tokens = [t + int(x) for t, x in zip(self.tokens, (prompt, completion, reasoning), strict=True)]
        self.latency_count += int(n_latency)
        self.latency_sum_s += float(sum_latency)
        self.buckets = [b + int(c) for b, c in zip(self.buckets, cumulative, strict=True)]

    def take(self, other: JudgmentTotals) -> None:
        self.upto, self.by_status, self.tokens = other.upto, other.by_status, other.tokens
        self.latency_count, self.latency_sum_s, self.buckets = other.latency_count, other.latency_sum_s, other.buckets

    def copy(self) -> JudgmentTotals:
        return JudgmentTotals(self.upto, Counter(self.by_status), list(self.tokens), self.latency_count,
                              self.latency_sum_s, list(self.buckets))  # fmt: skip


@dataclass(frozen=True)
class ActiveJob:
    job_id: int
    run: str
    status: str
    items_done: int
    items_total: int
    tokens: int


@dataclass(frozen=True)
class Figures:
    jobs_by_status: dict[str, int]  # every JobStatus, 0 included
    active_jobs: list[ActiveJob]  # queued, running or paused, by id
    judgments_by_status: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    latency_buckets: list[tuple[float, int]]  # (upper bound, judgments at or under it), cumulative
    latency_count: int  # judgments with a latency
    latency_sum_s: float
    labels: int
    queue_depth: dict[str, int]  # data set name -> items with fewer labellers than the overlap
    claims: int  # items claimed now by an annotator who has not labelled them yet


def operator_figures(
    repo: Repository,
    *,
    overlap: int,
    claim_ttl_s: float,
    totals: JudgmentTotals | None = None,
    settle_s: float = SETTLE_S,
) -> Figures:
    """Read every figure in one read transaction of ``repo``.

    ``overlap``: how many annotators label each item (the app's ``annotation_overlap``);
    ``claim_ttl_s``: how long an annotation queue's claim holds (claims older than this are free);
    ``totals``: the judgments' sums kept from earlier scrapes, brought up to date here (None: all
    judgments are summed now)."""
    if totals is None:
        return repo._query(lambda s: _read(s, overlap, claim_ttl_s, JudgmentTotals(), settle_s))
    with totals.lock:
        return repo._query(lambda s: _read(s, overlap, claim_ttl_s, totals, settle_s))


def _read(s: Session, overlap: int, claim_ttl_s: float, kept: JudgmentTotals, settle_s: float) -> Figures:
    now = datetime.now(UTC)
    by_status = dict.fromkeys((st.value for st in JobStatus), 0)
    by_status.update(dict(s.execute(select(m.Job.status, func.count()).group_by(m.Job.status)).all()))
    active = [
        ActiveJob(
            job_id=r.id,
            run=r.name,
            status=r.status,
            items_done=r.items_done or 0,
            items_total=r.items_total or 0,
            tokens=r.tokens or 0,
        )
        for r in s.execute(
            select(m.Job.id, m.Run.name, m.Job.status, m.Job.items_done, m.Job.items_total, m.Job.tokens)
            .join(m.Run, m.Run.id == m.Job.run_id)
            .where(m.Job.status.in_([a.value for a in ACTIVE]))
            .order_by(m.Job.id)
        )
    ]
    # the judgments: settle the rows old enough for good, then sum the newer ones for this scrape
    settled_cutoff = now - timedelta(seconds=settle_s)
    settle: Any = s.scalar(
        select(func.max(m.Judgment.id)).where(m.Judgment.id > kept.upto, m.Judgment.created_at < settled_cutoff)
    )
    base = kept.copy()
    if settle is not None:
        base.add(s, base.upto, settle)
        base.upto = settle
    now_totals = base.copy()
    now_totals.add(s, base.upto, None)
    labels = s.scalar(select(func.count()).select_from(m.Label)) or 0
    labellers = (
        select(m.Label.item_id, func.count(func.distinct(m.Label.annotator_id)).label("n"))
        .group_by(m.Label.item_id)
        .subquery()
    )
    room = case((func.coalesce(labellers.c.n, 0) < overlap, 1), else_=0)
    depth = s.execute(
        select(m.Dataset.name, func.coalesce(func.sum(case((m.Item.id.is_(None), 0), else_=room)), 0))
        .select_from(m.Dataset)
        .outerjoin(m.Item, m.Item.dataset_id == m.Dataset.id)
        .outerjoin(labellers, labellers.c.item_id == m.Item.id)
        .group_by(m.Dataset.name)
    ).all()
    cutoff = now - timedelta(seconds=claim_ttl_s)
    holder_labelled = (
        select(m.Label.id)
        .where(m.Label.item_id == m.Assignment.item_id, m.Label.annotator_id == m.Assignment.annotator_id)
        .exists()
    )
    claims = s.scalar(
        select(func.count(func.distinct(m.Assignment.item_id))).where(
            m.Assignment.claimed_at >= cutoff, ~holder_labelled
        )
    )
    kept.take(base)  # every read succeeded: keep the newly settled sums
    return Figures(
        jobs_by_status=by_status,
        active_jobs=active,
        judgments_by_status={k: n for k, n in now_totals.by_status.items() if n},
        prompt_tokens=now_totals.tokens[0],
        completion_tokens=now_totals.tokens[1],
        reasoning_tokens=now_totals.tokens[2],
        latency_buckets=list(zip(LATENCY_BUCKETS_S, now_totals.buckets, strict=True)),
        latency_count=now_totals.latency_count,
        latency_sum_s=now_totals.latency_sum_s,
        labels=int(labels),
        queue_depth={str(name): int(n) for name, n in depth},
        claims=int(claims or 0),
    )
