"""Reads for the dashboards and the explorer (a part of :class:`~rrm_ui.storage.repository.Repository`).

Everything comes back as DataFrames read in a handful of SQL statements: the latest aggregate
per (run, item), the latest label per (annotator, item, pair), and the judgments' figures
without their text. A dashboard over 100,000 judgments reads them once and aggregates in
pandas; :meth:`AnalyticsStore.data_version` tells a cache when something was written.
Text (reasoning traces, queries, responses) is read only for one item, or searched in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from sqlalchemy import JSON, Engine, Select, Text, case, cast, func, null, or_, select, type_coerce
from sqlalchemy import types as sa_types
from sqlalchemy.orm import Session

from rrm_ui.storage import models as m

T = TypeVar("T")
SEARCH_LIMIT = 20_000  # items a text search returns at most


@dataclass(frozen=True)
class AnalyticsFrames:
    """The raw material of every dashboard figure, one row per database row (text left out).

    - ``items``: id, dataset, ext_id, subset, n_responses, gold_tiers (list or None), preview
      (the first 160 characters of the query);
    - ``runs``: id, dataset_id, name, kind, backend, model, strategy, template (the judge format), compute
      (dict);
    - ``results``: the latest aggregate per (run, item): run_id, item_id, winner, decision,
      votes_0 and votes_1 (the votes for responses 0 and 1, NaN when none), position_consistent,
      and for list items only (None for a pair item) ranking, votes (dict, keys are response
      indices as strings) and pairs (the outcome of each comparison the run judged);
    - ``judgments``: id, run_id, item_id, a, b, sample, attempt, verdict, status, prompt_tokens,
      completion_tokens, reasoning_tokens, ttft_s, latency_s, finish_reason, forced_close (budget forcing
      closed the thinking), score_a and score_b (a scalar reward model's scores, NaN otherwise);
    - ``labels``: the latest label per (annotator, item, pair): id, annotator, item_id, pair_i,
      pair_j, run_id, choice, blind, source, has_note, time_taken_s, guideline_version;
    - ``adjudications``: the latest reviewer's decision per (item, pair): id, item_id, pair_i, pair_j,
      choice, reviewer;
    - ``seen``: per table (the names above), the sorted ids of every row the read saw, superseded
      results and labels included: what the next incremental read compares with;
    - ``changed``: after an incremental read, the names of the frames that got rows (None after a
      full read): what :func:`rrm_ui.analysis.frames.update` rebuilds.
    """

    items: pd.DataFrame
    runs: pd.DataFrame
    results: pd.DataFrame
    judgments: pd.DataFrame
    labels: pd.DataFrame
    adjudications: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ADJUDICATION_COLUMNS))
    seen: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    # the tables with rows the frames read ``since`` did not have (None: everything was read)
    changed: frozenset[str] | None = field(default=None, compare=False)

    @property
    def version(self) -> tuple[int, ...]:
        """The :meth:`AnalyticsStore.data_version` of the snapshot these frames were read in."""
        return tuple(v for name in _TABLES for v in _token(self.seen.get(name, _NO_IDS)))


class AnalyticsStore:
    """Mixin: needs the repository's ``engine`` and ``_query``."""

    if TYPE_CHECKING:
        engine: Engine

        def _query(self, fn: Callable[[Session], T]) -> T: ...

    def data_version(self) -> tuple[int, ...]:
        """Changes whenever an item, run, judgment, result, label or adjudication is committed: the highest id and
        the number of rows of each table (rows are append-only). The count catches a row that
        commits after one with a higher id, which PostgreSQL's sequences allow."""
        cols = []
        for name in _TABLES:
            t = _MODELS[name]
            cols += [select(func.coalesce(func.max(t.id), 0)).scalar_subquery(),
                     select(func.count(t.id)).scalar_subquery()]  # fmt: skip
        return self._query(lambda s: tuple(int(v) for v in s.execute(select(*cols)).one()))

    def analytics_frames(self, since: AnalyticsFrames | None = None) -> AnalyticsFrames:
        """All six frames; with ``since`` (frames read before), only the rows it has not seen are read.

        Rows are append-only, so the rows to read are those with an id above the highest seen, and
        those below it that committed after ``since`` was read (a PostgreSQL transaction may commit
        after one that took a higher id): the number of rows up to the highest id seen tells whether
        there are any, and only then are the ids themselves read and compared. A newer result or
        label (the higher id) replaces the one it supersedes. Everything is read in one snapshot.
        """
        if since is not None and not since.seen:
            since = None
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
            m.Run.template, m.Run.compute,
        )  # fmt: skip
        listed = m.Item.n_responses > 2  # a pair item's votes are two numbers read in SQL, not a JSON to decode

        def list_only(col: Any) -> Any:
            return type_coerce(case((listed, col), else_=null()), JSON)

        results = select(
            m.ItemResult.id,
            m.ItemResult.run_id, m.ItemResult.item_id, m.ItemResult.winner, m.ItemResult.decision,
            m.ItemResult.votes["0"].as_integer().label("votes_0"),
            m.ItemResult.votes["1"].as_integer().label("votes_1"), m.ItemResult.position_consistent,
            list_only(m.ItemResult.ranking).label("ranking"), list_only(m.ItemResult.votes).label("votes"),
            list_only(m.ItemResult.pairs).label("pairs"),
        ).join(m.Item, m.Item.id == m.ItemResult.item_id)  # fmt: skip
        judgments = select(
            m.Judgment.id, m.Judgment.run_id, m.Judgment.item_id, m.Judgment.a, m.Judgment.b, m.Judgment.sample,
            m.Judgment.attempt, m.Judgment.verdict, m.Judgment.status, m.Judgment.prompt_tokens,
            m.Judgment.completion_tokens, m.Judgment.reasoning_tokens, m.Judgment.ttft_s, m.Judgment.latency_s,
            m.Judgment.finish_reason, m.Judgment.forced_close, m.Judgment.score_a, m.Judgment.score_b,
        )  # fmt: skip
        labels = (
            select(
                m.Label.id, m.Annotator.name.label("annotator"), m.Label.item_id, m.Label.pair_i, m.Label.pair_j,
                m.Label.run_id, m.Label.choice, m.Label.blind, m.Label.source,
                (func.coalesce(func.length(m.Label.note), 0) > 0).label("has_note"), m.Label.time_taken_s,
                m.Label.guideline_version,  # agreement by guideline version (docs/review.md)
            )
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
        )  # fmt: skip
        adjudications = select(
            m.Adjudication.id, m.Adjudication.item_id, m.Adjudication.pair_i, m.Adjudication.pair_j,
            m.Adjudication.choice, m.Annotator.name.label("reviewer"),
        ).join(m.Annotator, m.Annotator.id == m.Adjudication.reviewer_id)  # fmt: skip
        latest_adjudication = select(func.max(m.Adjudication.id)).group_by(
            m.Adjudication.item_id, m.Adjudication.pair_i, m.Adjudication.pair_j
        )
        queries = {"items": items, "runs": runs, "results": results, "judgments": judgments, "labels": labels,
                   "adjudications": adjudications}  # fmt: skip
        conn_opts = {} if self.engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}
        dialect = self.engine.dialect.name
        with self.engine.connect().execution_options(**conn_opts) as conn, conn.begin():  # one snapshot
            late = _late_ids(conn, since) if since is not None else None
            if late is None:  # everything: the latest result per (run, item) and label per (annotator, item, pair)
                since = None
                queries["results"] = results.where(m.ItemResult.id.in_(latest_result))
                queries["labels"] = labels.where(m.Label.id.in_(latest_label))
                queries["adjudications"] = adjudications.where(m.Adjudication.id.in_(latest_adjudication))
                new = {name: _read(conn, q, dialect) for name, q in queries.items()}
                seen = {name: np.sort(new[name]["id"].to_numpy(np.int64)) for name in ("items", "runs", "judgments")}
                for name in ("results", "labels", "adjudications"):  # superseded rows included
                    ids = conn.execute(select(_MODELS[name].id)).scalars().all()
                    seen[name] = np.sort(np.asarray(ids, dtype=np.int64))
                return AnalyticsFrames(**new, seen=seen)
            new, seen = {}, {}
            for name, q in queries.items():  # every row not seen, superseded or not: the merge keeps the latest
                old, t = since.seen[name], _MODELS[name]
                top, low = _top(old), late[name]
                cond = t.id > top
                if len(low):
                    cond = or_(cond, t.id.between(int(low[0]), int(low[-1])))
                df = _read(conn, q.where(cond), dialect)
                if len(low):  # the window between the late ids may hold rows read before
                    df = df[~np.isin(df["id"].to_numpy(np.int64), old)]
                new[name] = df
                seen[name] = np.union1d(old, df["id"].to_numpy(np.int64)) if len(df) else old
        return AnalyticsFrames(
            items=_append(since.items, new["items"]),
            runs=_append(since.runs, new["runs"]),
            results=_append(since.results, new["results"], ["run_id", "item_id"]),
            judgments=_append(since.judgments, new["judgments"]),
            labels=_append(since.labels, new["labels"], ["annotator", "item_id", "pair_i", "pair_j"]),
            adjudications=_append(since.adjudications, new["adjudications"], ["item_id", "pair_i", "pair_j"]),
            seen=seen,
            changed=frozenset(name for name, df in new.items() if len(df)),
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


_TABLES = ("items", "runs", "results", "judgments", "labels", "adjudications")
_MODELS: dict[str, Any] = {"items": m.Item, "runs": m.Run, "results": m.ItemResult, "judgments": m.Judgment,
                           "labels": m.Label, "adjudications": m.Adjudication}  # fmt: skip
ADJUDICATION_COLUMNS = ["id", "item_id", "pair_i", "pair_j", "choice", "reviewer"]
_NO_IDS = np.zeros(0, dtype=np.int64)


def _top(ids: np.ndarray) -> int:
    return int(ids[-1]) if len(ids) else 0


def _token(ids: np.ndarray) -> tuple[int, int]:
    return _top(ids), len(ids)


def _late_ids(conn: Any, since: AnalyticsFrames) -> dict[str, np.ndarray] | None:
    """Per table, the ids at or below the highest id ``since`` saw that it did not see (rows that
    committed late); None when rows it saw are gone (not append-only: read everything again)."""
    # the rows at or below the highest id seen, as all rows less those above it: SQLite counts all rows
    # from its smallest index but an id range by walking the table's own pages (0.2 s at 100,000 judgments)
    counts = [q for n in _TABLES for q in (
        select(func.count()).select_from(_MODELS[n]).scalar_subquery(),
        select(func.count()).select_from(_MODELS[n]).where(_MODELS[n].id > _top(since.seen[n])).scalar_subquery(),
    )]  # fmt: skip
    totals = conn.execute(select(*counts)).one()
    found = [totals[2 * k] - totals[2 * k + 1] for k in range(len(_TABLES))]
    late = {}
    for name, n in zip(_TABLES, found, strict=True):
        old = since.seen[name]
        if n < len(old):
            return None
        if n == len(old):
            late[name] = _NO_IDS
            continue
        t = _MODELS[name]
        ids = np.asarray(conn.execute(select(t.id).where(t.id <= _top(old))).scalars().all(), dtype=np.int64)
        missing = np.setdiff1d(ids, old)
        if len(missing) != n - len(old):  # some row seen before is gone
            return None
        late[name] = missing
    return late


def _append(old: pd.DataFrame, new: pd.DataFrame, key: list[str] | None = None) -> pd.DataFrame:
    """``old`` with the rows of ``new``, in id order; with ``key``, the row with the highest id of each key."""
    if new.empty:
        return old
    both = pd.concat([old, new], ignore_index=True) if len(old) else new
    ids = both["id"].to_numpy()
    if len(ids) > 1 and (np.diff(ids) < 0).any():  # a row that committed late: back in id order
        both = both.sort_values("id", kind="stable")
    if key is not None:
        both = both.drop_duplicates(key, keep="last")
    return both.reset_index(drop=True)


READ_CHUNK = 20_000  # rows fetched and turned into columns at a time


def _read(conn: Any, q: Select[Any], dialect: str | None = None) -> pd.DataFrame:
    """A query's rows as a DataFrame, built column by column (several times faster than from rows).

    Each column's dtype follows its SQL type, whatever the rows hold, so that an empty frame or a
    column of NULLs is still numeric: integers ``int64`` (``float64`` when a value is NULL), floats
    ``float64``, booleans ``bool`` (``object`` when a value is NULL), times as pandas infers them, the
    rest ``object``. With ``dialect`` (and no time column) the rows are fetched from the driver's
    cursor as they come, without SQLAlchemy's per-value processing, and converted here by column.

    Rows are fetched :data:`READ_CHUNK` at a time and each chunk becomes columns before the next is
    fetched, so the rows as Python tuples never all exist at once (at a million judgments they took
    several times the frame's memory); short strings (``String`` columns of up to 32 characters: a
    status, a finish reason, a label's choice) are shared per distinct value instead of one object per row.
    """
    result = conn.execute(q)
    names = list(result.keys())
    types = [c.type for c in q.selected_columns]
    raw = dialect is not None and not any(isinstance(t, sa_types.DateTime) for t in types)
    fetch = result.cursor.fetchmany if raw else result.fetchmany
    decode = raw and dialect == "sqlite"  # SQLite's driver gives JSON as text and booleans as 0 / 1
    shared: list[dict[Any, Any] | None] = [{} if _short_string(t) else None for t in types]
    parts: list[list[pd.Series]] = [[] for _ in names]
    try:
        while rows := fetch(READ_CHUNK):
            for k, col in enumerate(zip(*rows, strict=True)):
                if (seen := shared[k]) is not None:
                    col = tuple(seen.setdefault(v, v) for v in col)
                parts[k].append(_column(col, types[k], decode))
            del rows
    finally:
        result.close()
    columns = {}
    for name, kind, chunks in zip(names, types, parts, strict=True):
        if not chunks:
            columns[name] = _column((), kind, decode)
        elif len(chunks) == 1:
            columns[name] = chunks[0]
        else:  # int64 and float64 (a NULL in one chunk) give float64, bool and object object: as one read would
            columns[name] = pd.concat(chunks, ignore_index=True)
    return pd.DataFrame(columns)


def _short_string(kind: Any) -> bool:
    """A ``String`` column (``StoredString`` included) of at most 32 characters: few distinct values."""
    impl = getattr(kind, "impl", kind)
    return isinstance(impl, sa_types.String) and not isinstance(impl, Text) and (impl.length or 33) <= 32


def _column(values: tuple[Any, ...], kind: Any, decode: bool = False) -> pd.Series:
    """One column with the dtype of its SQL type (see :func:`_read`)."""
    has_null = None in values
    if isinstance(kind, sa_types.Boolean):
        if decode and has_null:
            values = tuple(None if v is None else bool(v) for v in values)
        return pd.Series(values, dtype=object if has_null else bool)
    if isinstance(kind, sa_types.Integer):
        return pd.Series(values, dtype=np.float64 if has_null else np.int64)
    if isinstance(kind, sa_types.Float | sa_types.Numeric):
        return pd.Series(values, dtype=np.float64)
    if isinstance(kind, sa_types.DateTime) and values:
        return pd.Series(values)
    if decode and isinstance(kind, sa_types.JSON):
        values = tuple(None if v is None else json.loads(v) for v in values)
    return pd.Series(values, dtype=object)
