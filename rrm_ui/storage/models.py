"""The ORM tables. Append-only where history matters: a new label or re-judgment adds a row.

Views take the latest row (highest id) per key; earlier rows stay as history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rrm_ui.domain import NUL_STAND_IN

#: the job states in which a job owns its run (queued, running, paused), as SQL for the partial index
ACTIVE_JOB_SQL = "status IN ('queued', 'running', 'paused')"
#: ``runs.origin`` of an Explorer re-judge (its own run, tied to ``parent_run_id``)
REJUDGE = "rejudge"


class _NoNul(TypeDecorator[str]):
    """Text without NUL characters, the same on every database.

    PostgreSQL's text types cannot hold U+0000 (the insert fails with "text fields cannot contain NUL
    bytes"), and a model's output can contain one: a byte-level tokenizer decodes token ``<0x00>`` to
    it. Files are refused for NUL bytes when they are read (``io.readers``); text that arrives any
    other way (a generation, a JSON ``\\u0000`` escape) is stored with U+FFFD in the NUL's place on
    SQLite too, so both back ends keep the same text and a judgment reads back as it would on the other.
    """

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            return value.replace("\x00", NUL_STAND_IN)
        return value


class StoredText(_NoNul):
    impl = Text
    cache_ok = True


class StoredString(_NoNul):
    impl = String
    cache_ok = True


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(StoredString(200), unique=True)
    source: Mapped[str] = mapped_column(StoredText)
    format: Mapped[str] = mapped_column(StoredString(50))
    notes: Mapped[list[Any]] = mapped_column(default=list)
    # annotators blind to each other's labels and notes: None follows the app (on with an overlap above 1)
    blind: Mapped[bool | None] = mapped_column(Boolean)
    # names of the criteria labelled apart from the overall label (criterion_labels); None: none
    criteria: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("dataset_id", "ext_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    ext_id: Mapped[str] = mapped_column(StoredString(200))
    query: Mapped[str] = mapped_column(StoredText)
    responses: Mapped[list[Any]]
    n_responses: Mapped[int] = mapped_column(Integer)
    subset: Mapped[str | None] = mapped_column(StoredString(200), index=True)
    gold_tiers: Mapped[list[Any] | None]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_line: Mapped[int | None]


class Run(Base):
    """A judging run (a model with fixed settings over a data set) or an imported external judge."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(StoredString(200))
    kind: Mapped[str] = mapped_column(StoredString(20))  # judge | external
    backend: Mapped[str | None] = mapped_column(StoredString(50))
    model: Mapped[str | None] = mapped_column(StoredText)
    template: Mapped[str | None] = mapped_column(StoredString(50))
    template_version: Mapped[str | None] = mapped_column(StoredString(20))
    strategy: Mapped[str | None] = mapped_column(StoredString(20))
    sampling: Mapped[dict[str, Any]] = mapped_column(default=dict)
    compute: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # rejudge: an Explorer "Judge again" of items of ``parent_run_id`` (never a batch run's decision)
    origin: Mapped[str | None] = mapped_column(StoredString(20))
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Judgment(Base):
    """One generated sample: which responses in which order, the full trace, verdict and figures."""

    __tablename__ = "judgments"
    __table_args__ = (Index("ix_judgments_run_item", "run_id", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    a: Mapped[int]
    b: Mapped[int]
    sample: Mapped[int]
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")  # > 0: tried again after a failed try
    verdict: Mapped[str | None] = mapped_column(StoredString(1))
    lenient_verdict: Mapped[str | None] = mapped_column(StoredString(1))
    status: Mapped[str] = mapped_column(StoredString(20), index=True)
    reasoning: Mapped[str] = mapped_column(StoredText)
    answer: Mapped[str] = mapped_column(StoredText)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    ttft_s: Mapped[float | None] = mapped_column(Float)
    latency_s: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(StoredString(20))
    seed: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(StoredText)
    endpoint: Mapped[str | None] = mapped_column(StoredText)
    # budget forcing: the engine closed the thinking after forced_at generated tokens (docs/engine.md)
    forced_close: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    forced_at: Mapped[int | None]
    # a scalar reward model's score of response a and of response b (judge format scalar-rm); NULL otherwise
    score_a: Mapped[float | None] = mapped_column(Float)
    score_b: Mapped[float | None] = mapped_column(Float)
    # adaptive escalation: the thinking budget this judgment ran with, above the run's max_tokens; NULL otherwise
    escalated_to: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ItemResult(Base):
    """The aggregated decision of a run about an item (latest row wins)."""

    __tablename__ = "item_results"
    __table_args__ = (
        Index("ix_item_results_run_item", "run_id", "item_id"),
        # a batch job stores revision 0 only if none is there (two processes cannot both store it);
        # a re-judge of the same item in the same run adds the next revision (history)
        Index("uq_item_results_run_item_revision", "run_id", "item_id", "revision", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    revision: Mapped[int] = mapped_column(default=0, server_default="0")  # 0: the first result; then history
    strategy: Mapped[str] = mapped_column(StoredString(20))
    winner: Mapped[int | None]
    decision: Mapped[str] = mapped_column(StoredString(20))  # decided | tie | undecided
    ranking: Mapped[list[Any]] = mapped_column(default=list)
    votes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    position_consistent: Mapped[bool | None] = mapped_column(Boolean)
    pairs: Mapped[list[Any]] = mapped_column(default=list)
    ratings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    bracket: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(StoredString(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(StoredText)
    role: Mapped[str] = mapped_column(StoredString(20), default="annotator")  # annotator | reviewer | admin
    # raised when the password changes or the account is removed: older login sessions end
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Label(Base):
    """A human's view of one pair of an item; ``run_id`` is the run whose verdict they saw (if any)."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_item_pair", "item_id", "pair_i", "pair_j"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    pair_i: Mapped[int] = mapped_column(default=0)
    pair_j: Mapped[int] = mapped_column(default=1)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    choice: Mapped[str] = mapped_column(StoredString(10))  # A | B | tie | both_bad (A: pair_i better)
    agrees_with_model: Mapped[bool | None] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(StoredText)
    time_taken_s: Mapped[float | None] = mapped_column(Float)
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(StoredString(20), default="app")  # app | import
    guideline_version: Mapped[int | None]  # the data set's guidelines when the label was made (None: none)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Adjudication(Base):
    """A reviewer's final label of one pair of an item, with the reason. Append-only: the latest row per
    (item, pair) is the final label; earlier rows are its history."""

    __tablename__ = "adjudications"
    __table_args__ = (Index("ix_adjudications_item_pair", "item_id", "pair_i", "pair_j"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    pair_i: Mapped[int]
    pair_j: Mapped[int]
    choice: Mapped[str] = mapped_column(StoredString(10))  # A | B | tie | both_bad (A: pair_i better)
    reason: Mapped[str] = mapped_column(StoredText)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CriterionLabel(Base):
    """A human's label of one pair on one of the data set's criteria (A / B / tie). Append-only: the
    latest per (annotator, item, pair, criterion) counts. Apart from ``labels``: the overall label."""

    __tablename__ = "criterion_labels"
    __table_args__ = (Index("ix_criterion_labels_item_pair", "item_id", "pair_i", "pair_j"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    pair_i: Mapped[int]
    pair_j: Mapped[int]
    criterion: Mapped[str] = mapped_column(StoredString(50))
    choice: Mapped[str] = mapped_column(StoredString(10))  # A | B | tie (A: pair_i better on this criterion)
    guideline_version: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Guideline(Base):
    """One version of a data set's labelling guidelines (Markdown). Versions count 1, 2, ... per data set."""

    __tablename__ = "guidelines"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    version: Mapped[int]
    text: Mapped[str] = mapped_column(StoredText)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A judging job over a data set, with its progress (the app's batch tab runs these).

    The run holds the judge's settings (backend, model, sampling, compute, strategy); the job
    holds who started it, its state and its counters. ``active_s`` adds up the seconds it has
    been running, across pauses and app restarts, so tokens per second stay honest.
    """

    __tablename__ = "jobs"
    # one active job per run, enforced by the database (two processes racing both get here)
    __table_args__ = (
        Index("uq_jobs_one_active_per_run", "run_id", unique=True,
              sqlite_where=text(ACTIVE_JOB_SQL), postgresql_where=text(ACTIVE_JOB_SQL)),
    )  # fmt: skip
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    status: Mapped[str] = mapped_column(StoredString(20))  # queued | running | paused | done | failed | cancelled
    items_total: Mapped[int] = mapped_column(default=0)
    items_done: Mapped[int] = mapped_column(default=0)
    judgments_error: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(StoredText)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), index=True)
    bracket_seed: Mapped[int | None]
    worker: Mapped[str | None] = mapped_column(StoredString(200))  # None: the app; "cli host pid": rrm-ui judge
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the worker's last sign of life
    # an app worker's lease: after this, another app process may take the job over (None: rrm-ui judge,
    # whose heartbeat tells, or no worker)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    tokens: Mapped[int] = mapped_column(default=0)  # completion tokens generated by this job
    active_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class LoginSession(Base):
    """Which account a Gradio session belongs to (the login gate's check), shared by every app process."""

    __tablename__ = "login_sessions"
    session_hash: Mapped[str] = mapped_column(StoredString(200), primary_key=True)
    user_name: Mapped[str] = mapped_column(StoredString(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Assignment(Base):
    """An item handed to an annotator by the annotation queue (a claim that expires).

    While a claim is fresh, no other annotator is served the item beyond the configured
    overlap; the annotator who holds it gets the same item back after a page reload.
    """

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
