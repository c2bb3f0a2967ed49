"""The ORM tables. Append-only where history matters: a new label or re-judgment adds a row.

Views take the latest row (highest id) per key; earlier rows stay as history.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(50))
    notes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("dataset_id", "ext_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    ext_id: Mapped[str] = mapped_column(String(200))
    query: Mapped[str] = mapped_column(Text)
    responses: Mapped[list[Any]]
    n_responses: Mapped[int] = mapped_column(Integer)
    subset: Mapped[str | None] = mapped_column(String(200), index=True)
    gold_tiers: Mapped[list[Any] | None]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source_line: Mapped[int | None]


class Run(Base):
    """A judging run (a model with fixed settings over a data set) or an imported external judge."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # judge | external
    backend: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(50))
    template_version: Mapped[str | None] = mapped_column(String(20))
    strategy: Mapped[str | None] = mapped_column(String(20))
    sampling: Mapped[dict[str, Any]] = mapped_column(default=dict)
    compute: Mapped[dict[str, Any]] = mapped_column(default=dict)
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
    verdict: Mapped[str | None] = mapped_column(String(1))
    lenient_verdict: Mapped[str | None] = mapped_column(String(1))
    status: Mapped[str] = mapped_column(String(20), index=True)
    reasoning: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    reasoning_tokens: Mapped[int | None]
    ttft_s: Mapped[float | None] = mapped_column(Float)
    latency_s: Mapped[float | None] = mapped_column(Float)
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    seed: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    endpoint: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ItemResult(Base):
    """The aggregated decision of a run about an item (latest row wins)."""

    __tablename__ = "item_results"
    __table_args__ = (Index("ix_item_results_run_item", "run_id", "item_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    strategy: Mapped[str] = mapped_column(String(20))
    winner: Mapped[int | None]
    decision: Mapped[str] = mapped_column(String(20))  # decided | tie | undecided
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
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20), default="annotator")  # annotator | admin
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
    choice: Mapped[str] = mapped_column(String(10))  # A | B | tie | both_bad (A: pair_i better)
    agrees_with_model: Mapped[bool | None] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(Text)
    time_taken_s: Mapped[float | None] = mapped_column(Float)
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(20), default="app")  # app | import
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A judging job over a data set, with its progress (the app's batch tab runs these).

    The run holds the judge's settings (backend, model, sampling, compute, strategy); the job
    holds who started it, its state and its counters. ``active_s`` adds up the seconds it has
    been running, across pauses and app restarts, so tokens per second stay honest.
    """

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # queued | running | paused | done | failed | cancelled
    items_total: Mapped[int] = mapped_column(default=0)
    items_done: Mapped[int] = mapped_column(default=0)
    judgments_error: Mapped[int] = mapped_column(default=0)
    message: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("annotators.id"), index=True)
    bracket_seed: Mapped[int | None]
    tokens: Mapped[int] = mapped_column(default=0)  # completion tokens generated by this job
    active_s: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


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
