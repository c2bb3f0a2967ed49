"""Reads for the dashboards and the explorer (a part of :class:`~rrm_ui.storage.repository.Repository`).

Everything comes back as DataFrames read in a handful of SQL statements: the latest aggregate
per (run, item), the latest label per (annotator, item, pair), and the judgments' figures
without their text. A dashboard over 100,000 judgments reads them once and aggregates in
pandas; :meth:`AnalyticsStore.data_version` tells a cache when something was written.
Text (reasoning traces, queries, responses) is read only for one item, or searched in SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, Select, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from rrm_ui.storage import models as m

T = TypeVar("T")
SEARCH_LIMIT = 20_000  # items a text search returns at most


@dataclass(frozen=True)
class AnalyticsFrames:
    """The raw material of every dashboard figure, one row per database row (text left out).

    - ``items``: id, dataset, ext_id, subset, n_responses, gold_tiers (list or None), preview
      (the first 160 characters of the query);
    - ``runs``: id, dataset_id, name, kind, backend, model, strategy, compute (dict);
    - ``results``: the latest aggregate per (run, item): run_id, item_id, winner, decision,
      ranking, votes (dict, keys are response indices as strings), position_consistent;
    - ``judgments``: id, run_id, item_id, a, b, sample, attempt, verdict, status, prompt_tokens,
      completion_tokens, reasoning_tokens, ttft_s, latency_s, finish_reason;
    - ``labels``: the latest label per (annotator, item, pair): id, annotator, item_id, pair_i,
      pair_j, run_id, choice, blind, source, has_note, time_taken_s.
    """

    items: pd.DataFrame
    runs: pd.DataFrame
    results: pd.DataFrame
    judgments: pd.DataFrame
    labels: pd.DataFrame


class AnalyticsStore:
    """Mixin: needs the repository's ``engine`` and ``_query``."""

    if TYPE_CHECKING:
        engine: Engine

        def _query(self, fn: Callable[[Session], T]) -> T: ...

    def data_version(self) -> tuple[int, ...]:
        """Changes whenever an item, run, judgment, result or label is added (rows are append-only)."""
        tables = (m.Item, m.Run, m.Judgment, m.ItemResult, m.Label)
        q = select(*(select(func.coalesce(func.max(t.id), 0)).scalar_subquery() for t in tables))
        return self._query(lambda s: tuple(int(v) for v in s.execute(q).one()))

    def analytics_frames(self, since: AnalyticsFrames | None = None) -> AnalyticsFrames:
        """All five frames; with ``since`` (frames read before), only rows added after it are read.

        Rows are append-only, so new rows are those with a higher id; a newer result or label
        replaces the one it supersedes. That holds where ids are handed out in commit order:
        SQLite, whose writers are serialized. Elsewhere (PostgreSQL sequences may commit out of
        order) ``since`` is ignored and everything is read again.
        """
        if since is not None and self.engine.dialect.name != "sqlite":
            since = None
        after = {name: _max_id(getattr(since, name)) for name in _TABLES} if since is not None else {}
        latest_result = select(func.max(m.ItemResult.id)).group_by(m.ItemResult.run_id, m.ItemResult.item_id)
        latest_label = select(func.max(m.Label.id)).group_by(
            m.Label.annotator_id, m.Label.item_id, m.Label.pair_i, m.Label.pair_j
        )
        items = (
            select(
                m.Item.id, m.Dataset.name.label("dataset"), m.Item.ext_id, m.Item.subset, m.Item.n_responses,
                m.Item.gold_tiers, func.substr(m.Item.query, 1, 160).label("preview"),
            )
            .join(m.Dataset, m.Dataset.id == m.Item.dataset_id)
        )  # fmt: skip
        runs = select(
            m.Run.id, m.Run.dataset_id, m.Run.name, m.Run.kind, m.Run.backend, m.Run.model, m.Run.strategy,
            m.Run.compute,
        )  # fmt: skip
        results = select(
            m.ItemResult.id,
            m.ItemResult.run_id, m.ItemResult.item_id, m.ItemResult.winner, m.ItemResult.decision,
            m.ItemResult.ranking, m.ItemResult.votes, m.ItemResult.position_consistent,
        )  # fmt: skip
        judgments = select(
            m.Judgment.id, m.Judgment.run_id, m.Judgment.item_id, m.Judgment.a, m.Judgment.b, m.Judgment.sample,
            m.Judgment.attempt, m.Judgment.verdict, m.Judgment.status, m.Judgment.prompt_tokens,
            m.Judgment.completion_tokens, m.Judgment.reasoning_tokens, m.Judgment.ttft_s, m.Judgment.latency_s,
            m.Judgment.finish_reason,
        )  # fmt: skip
        labels = (
            select(
                m.Label.id, m.Annotator.name.label("annotator"), m.Label.item_id, m.Label.pair_i, m.Label.pair_j,
                m.Label.run_id, m.Label.choice, m.Label.blind, m.Label.source,
                (func.coalesce(func.length(m.Label.note), 0) > 0).label("has_note"), m.Label.time_taken_s,
            )
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
        )  # fmt: skip
        if since is None:  # the latest result per (run, item) and label per (annotator, item, pair)
            results = results.where(m.ItemResult.id.in_(latest_result))
            labels = labels.where(m.Label.id.in_(latest_label))
        else:  # every row added since, superseded or not: the merge below keeps the latest
            results = results.where(m.ItemResult.id > after["results"])
            labels = labels.where(m.Label.id > after["labels"])
            items = items.where(m.Item.id > after["items"])
            runs = runs.where(m.Run.id > after["runs"])
            judgments = judgments.where(m.Judgment.id > after["judgments"])
        with self.engine.connect() as conn, conn.begin():  # one snapshot for all five reads
            new = AnalyticsFrames(
                items=_read(conn, items),
                runs=_read(conn, runs),
                results=_read(conn, results),
                judgments=_read(conn, judgments),
                labels=_read(conn, labels),
            )
        if since is None:
            return new
        return AnalyticsFrames(
            items=_append(since.items, new.items),
            runs=_append(since.runs, new.runs),
            results=_append(since.results, new.results, ["run_id", "item_id"]),
            judgments=_append(since.judgments, new.judgments),
            labels=_append(since.labels, new.labels, ["annotator", "item_id", "pair_i", "pair_j"]),
        )

    def search_items(self, text: str, item_ids: list[int] | None = None) -> set[int]:
        """Items whose query, responses or any reasoning trace contains ``text`` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        def like(col: Any) -> Any:
            # SQLite's LIKE already ignores ASCII case (lower() would not fold other letters either)
            if self.engine.dialect.name == "sqlite":
                return col.like(pattern, escape="\\")
            return col.ilike(pattern, escape="\\")

        in_items = select(m.Item.id).where(or_(like(m.Item.query), like(cast(m.Item.responses, Text))))
        in_traces = select(m.Judgment.item_id).where(or_(like(m.Judgment.reasoning), like(m.Judgment.answer)))
        if item_ids is not None:
            in_items = in_items.where(m.Item.id.in_(item_ids))
            in_traces = in_traces.where(m.Judgment.item_id.in_(item_ids))
        q = in_items.union(in_traces).limit(SEARCH_LIMIT)
        return self._query(lambda s: {int(r) for r in s.scalars(q)})

    def item_judgments(self, item_db_id: int) -> pd.DataFrame:
        """Every judgment of an item in every run, with the run's name, oldest first (text included)."""
        q = (
            select(m.Judgment.__table__, m.Run.name.label("run"), m.Run.kind.label("run_kind"))
            .join(m.Run, m.Run.id == m.Judgment.run_id)
            .where(m.Judgment.item_id == item_db_id)
            .order_by(m.Judgment.id)
        )
        with self.engine.connect() as conn:
            return _read(conn, q)

    def item_labels(self, item_db_id: int) -> pd.DataFrame:
        """Every label of an item (history included), with annotator names, oldest first."""
        q = (
            select(m.Label.__table__, m.Annotator.name.label("annotator"), m.Run.name.label("run"))
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
            .outerjoin(m.Run, m.Run.id == m.Label.run_id)
            .where(m.Label.item_id == item_db_id)
            .order_by(m.Label.id)
        )
        with self.engine.connect() as conn:
            return _read(conn, q)


_TABLES = ("items", "runs", "results", "judgments", "labels")


def _max_id(df: pd.DataFrame) -> int:
    return int(df["id"].max()) if len(df) else 0


def _append(old: pd.DataFrame, new: pd.DataFrame, key: list[str] | None = None) -> pd.DataFrame:
    """``old`` with the rows of ``new``; with ``key``, a new row replaces the old one with the same key."""
    if new.empty:
        return old
    both = pd.concat([old, new], ignore_index=True) if len(old) else new
    if key is not None:
        both = both.drop_duplicates(key, keep="last")
    return both.reset_index(drop=True)


def _read(conn: Any, q: Select[Any]) -> pd.DataFrame:
    """A query's rows as a DataFrame, built column by column (several times faster than from rows)."""
    result = conn.execute(q)
    names = list(result.keys())
    rows = result.fetchall()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return pd.DataFrame({name: pd.Series(col, dtype=object if not col else None) for name, col in
                         zip(names, columns, strict=True)})  # fmt: skip
