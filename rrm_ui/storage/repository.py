"""The repository: the only module that opens a database session.

Every method is one short transaction. Nothing is overwritten: judgments, results and labels
are appended, and readers take the latest row. Writes on SQLite use ``BEGIN IMMEDIATE`` (see
:mod:`rrm_ui.storage.db`) and are retried if the busy timeout still runs out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from rrm_ui.domain import (
    DatasetInfo,
    HumanLabel,
    ImportedDataset,
    Item,
    ItemResult,
    RunInfo,
    StoredItem,
)
from rrm_ui.storage import models as m
from rrm_ui.storage.repo_analytics import AnalyticsStore
from rrm_ui.storage.repo_annotation import AnnotationStore
from rrm_ui.storage.repo_jobs import JobStore

T = TypeVar("T")
_CHUNK = 5_000  # rows per bulk insert statement


class DatasetExists(ValueError):
    pass


class RunMismatch(ValueError):
    pass


class Repository(AnnotationStore, JobStore, AnalyticsStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(rrm_write=True), expire_on_commit=False)

    # --- transactions ------------------------------------------------------------------------

    def _tx(self, fn: Callable[[Session], T], *, attempts: int = 5) -> T:
        """Run ``fn`` in one write transaction; retry when SQLite's busy timeout ran out."""
        for attempt in range(attempts):
            try:
                with self._write.begin() as session:
                    return fn(session)
            except OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _query(self, fn: Callable[[Session], T]) -> T:
        with self._read() as session:
            return fn(session)

    # --- data sets and items -----------------------------------------------------------------

    def create_dataset(self, ds: ImportedDataset) -> DatasetInfo:
        """Store a whole import (items, human labels, an external judge's verdicts) or nothing."""

        def write(s: Session) -> DatasetInfo:
            if s.scalar(select(m.Dataset.id).where(m.Dataset.name == ds.name)) is not None:
                raise DatasetExists(f"a data set named {ds.name!r} exists already; choose another --name")
            row = m.Dataset(name=ds.name, source=ds.source, format=ds.format, notes=list(ds.notes))
            s.add(row)
            s.flush()
            rows = [
                {
                    "dataset_id": row.id,
                    "ext_id": it.ext_id,
                    "query": it.query,
                    "responses": list(it.responses),
                    "n_responses": len(it.responses),
                    "subset": it.subset,
                    "gold_tiers": list(it.gold_tiers) if it.gold_tiers is not None else None,
                    "meta": it.metadata,
                    "source_line": it.source_line,
                }
                for it in ds.items
            ]
            for start in range(0, len(rows), _CHUNK):
                s.execute(insert(m.Item), rows[start : start + _CHUNK])
            ids = dict(s.execute(select(m.Item.ext_id, m.Item.id).where(m.Item.dataset_id == row.id)).all())
            if ds.labels:
                annotators = {name: self._annotator_id(s, name) for name in {lb.annotator for lb in ds.labels}}
                label_rows = [
                    {"annotator_id": annotators[lb.annotator], "item_id": ids[lb.ext_id], "pair_i": 0, "pair_j": 1,
                     "choice": lb.choice.value, "source": "import", "blind": False}
                    for lb in ds.labels
                ]  # fmt: skip
                for start in range(0, len(label_rows), _CHUNK):
                    s.execute(insert(m.Label), label_rows[start : start + _CHUNK])
            if ds.external_run:
                run = m.Run(dataset_id=row.id, name=ds.external_run, kind="external", strategy="pair")
                s.add(run)
                s.flush()
                result_rows = [_external_result(run.id, ids[v.ext_id], v.choice.value) for v in ds.external]
                for start in range(0, len(result_rows), _CHUNK):
                    s.execute(insert(m.ItemResult), result_rows[start : start + _CHUNK])
            return DatasetInfo(row.id, row.name, row.format, row.source, len(rows), tuple(ds.notes))

        return self._tx(write)

    def dataset(self, name: str) -> DatasetInfo | None:
        def read(s: Session) -> DatasetInfo | None:
            row = s.scalar(select(m.Dataset).where(m.Dataset.name == name))
            return None if row is None else self._dataset_info(s, row)

        return self._query(read)

    def datasets(self) -> list[DatasetInfo]:
        return self._query(
            lambda s: [self._dataset_info(s, r) for r in s.scalars(select(m.Dataset).order_by(m.Dataset.id))]
        )

    @staticmethod
    def _dataset_info(s: Session, row: m.Dataset) -> DatasetInfo:
        n = s.scalar(select(func.count(m.Item.id)).where(m.Item.dataset_id == row.id)) or 0
        return DatasetInfo(row.id, row.name, row.format, row.source, n, tuple(row.notes or ()))

    def items(self, dataset_id: int) -> list[StoredItem]:
        def read(s: Session) -> list[StoredItem]:
            q = select(m.Item.id, m.Item.ext_id, m.Item.query, m.Item.responses, m.Item.subset, m.Item.gold_tiers)
            q = q.where(m.Item.dataset_id == dataset_id).order_by(m.Item.id)
            return [
                StoredItem(i, Item(ext, query, tuple(resp)), subset, tuple(gold) if gold is not None else None)
                for i, ext, query, resp, subset, gold in s.execute(q)
            ]

        return self._query(read)

    def add_item(
        self,
        dataset_name: str,
        item: Item,
        *,
        meta: dict[str, Any] | None = None,
        fmt: str = "live",
        source: str = "typed in the app",
    ) -> tuple[int, int]:
        """Append one item to a data set, created on first use (the Judge tab's typed-in items).

        Returns the data set's id and the new item's id.
        """

        def write(s: Session) -> tuple[int, int]:
            ds_id = s.scalar(select(m.Dataset.id).where(m.Dataset.name == dataset_name))
            if ds_id is None:
                row = m.Dataset(name=dataset_name, source=source, format=fmt, notes=[])
                s.add(row)
                s.flush()
                ds_id = row.id
            n = s.scalar(select(func.count(m.Item.id)).where(m.Item.dataset_id == ds_id)) or 0
            item_row = m.Item(
                dataset_id=ds_id,
                ext_id=item.id,
                query=item.query,
                responses=list(item.responses),
                n_responses=len(item.responses),
                meta=meta or {},
                source_line=n + 1,
            )
            s.add(item_row)
            s.flush()
            return ds_id, item_row.id

        return self._tx(write)

    def item(self, item_db_id: int) -> StoredItem | None:
        def read(s: Session) -> StoredItem | None:
            row = s.get(m.Item, item_db_id)
            if row is None:
                return None
            gold = tuple(row.gold_tiers) if row.gold_tiers is not None else None
            return StoredItem(row.id, Item(row.ext_id, row.query, tuple(row.responses)), row.subset, gold)

        return self._query(read)

    # --- runs and results --------------------------------------------------------------------

    def get_or_create_run(self, dataset_id: int, name: str, **settings: Any) -> tuple[RunInfo, bool]:
        """The run ``name`` of the data set; created if new. Resuming with other settings is refused."""
        keys = ("backend", "model", "template", "template_version", "strategy", "sampling", "compute")

        def write(s: Session) -> tuple[RunInfo, bool]:
            row = s.scalar(select(m.Run).where(m.Run.dataset_id == dataset_id, m.Run.name == name))
            created = row is None
            if row is None:
                row = m.Run(dataset_id=dataset_id, name=name, kind="judge", **{k: settings.get(k) for k in keys})
                s.add(row)
                s.flush()
            else:
                changed = [k for k in keys if getattr(row, k) != settings.get(k)]
                if row.kind != "judge" or changed:
                    raise RunMismatch(
                        f"run {name!r} exists with other settings ({', '.join(changed) or row.kind}); "
                        "use the same settings to continue it, or another --run name"
                    )
            return _run_info(row), created

        return self._tx(write)

    def runs(self, dataset_id: int | None = None) -> list[RunInfo]:
        q = select(m.Run).order_by(m.Run.id)
        if dataset_id is not None:
            q = q.where(m.Run.dataset_id == dataset_id)
        return self._query(lambda s: [_run_info(r) for r in s.scalars(q)])

    def judged_item_ids(self, run_id: int) -> set[int]:
        return self._query(lambda s: set(s.scalars(select(m.ItemResult.item_id).where(m.ItemResult.run_id == run_id))))

    def save_result(self, run_id: int, item_db_id: int, result: ItemResult) -> None:
        """Every judgment of an item and its aggregate, in one short transaction."""
        judgments = [
            {**j.to_dict(), "run_id": run_id, "item_id": item_db_id} for pair in result.pairs for j in pair.judgments
        ]
        for j in judgments:
            j.pop("winner")
        row = {"run_id": run_id, "item_id": item_db_id, **result_row(result)}

        def write(s: Session) -> None:
            if judgments:
                s.execute(insert(m.Judgment), judgments)
            s.execute(insert(m.ItemResult), [row])

        self._tx(write)

    # --- annotators and labels ---------------------------------------------------------------

    def _annotator_id(self, s: Session, name: str) -> int:
        found = s.scalar(select(m.Annotator.id).where(m.Annotator.name == name))
        if found is not None:
            return found
        row = m.Annotator(name=name)
        s.add(row)
        s.flush()
        return row.id

    def add_label(self, label: HumanLabel) -> int:
        def write(s: Session) -> int:
            row = m.Label(
                annotator_id=self._annotator_id(s, label.annotator),
                item_id=label.item_db_id,
                pair_i=label.pair_i,
                pair_j=label.pair_j,
                run_id=label.run_id,
                choice=label.choice.value,
                agrees_with_model=label.agrees_with_model,
                note=label.note,
                time_taken_s=label.time_taken_s,
                blind=label.blind,
            )
            s.add(row)
            s.flush()
            return row.id

        return self._tx(write)

    # --- frames for analysis and export ------------------------------------------------------

    def frame(self, table: str, where: Iterable[Any] = ()) -> pd.DataFrame:
        """All rows of a table (optionally filtered) as a DataFrame, read in SQL, not row by row."""
        model = {t.__tablename__: t for t in (m.Dataset, m.Item, m.Run, m.Judgment, m.ItemResult, m.Annotator,
                                              m.Label, m.Job)}[table]  # fmt: skip
        q = select(model.__table__)
        for cond in where:
            q = q.where(cond)
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    def latest_results(self, dataset_id: int) -> pd.DataFrame:
        """The latest aggregate per (run, item) of a data set's runs."""
        latest = (
            select(func.max(m.ItemResult.id).label("id"))
            .join(m.Item, m.Item.id == m.ItemResult.item_id)
            .where(m.Item.dataset_id == dataset_id)
            .group_by(m.ItemResult.run_id, m.ItemResult.item_id)
        )
        q = select(m.ItemResult.__table__).where(m.ItemResult.id.in_(latest))
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    def latest_labels(self, dataset_id: int) -> pd.DataFrame:
        """The latest label per (annotator, item, pair) of a data set, with the annotator's name."""
        latest = (
            select(func.max(m.Label.id))
            .join(m.Item, m.Item.id == m.Label.item_id)
            .where(m.Item.dataset_id == dataset_id)
            .group_by(m.Label.annotator_id, m.Label.item_id, m.Label.pair_i, m.Label.pair_j)
        )
        q = (
            select(m.Label.__table__, m.Annotator.name.label("annotator"))
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
            .where(m.Label.id.in_(latest))
        )
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)


def _external_result(run_id: int, item_id: int, choice: str) -> dict[str, Any]:
    """An external judge's verdict on a pair as an item result (A: the first response won)."""
    winner = {"A": 0, "B": 1}.get(choice)
    return {
        "run_id": run_id,
        "item_id": item_id,
        "strategy": "pair",
        "winner": winner,
        "decision": "decided" if winner is not None else "tie",
        "ranking": [] if winner is None else [winner, 1 - winner],
        "votes": {},
        "pairs": [],
        "ratings": {},
        "bracket": [],
    }


def result_row(result: ItemResult) -> dict[str, Any]:
    """The ``item_results`` columns of an aggregate (without run and item ids)."""
    return {
        "strategy": result.strategy,
        "winner": result.winner,
        "decision": _decision(result),
        "ranking": list(result.ranking),
        "votes": {str(k): v for k, v in result.votes.items()},
        "position_consistent": result.position_consistent,
        "pairs": [p.to_dict() for p in result.pairs],
        "ratings": {k: {str(i): v for i, v in r.items()} for k, r in result.ratings.items()},
        "bracket": [list(rnd) for rnd in result.bracket],
    }


def _decision(result: ItemResult) -> str:
    """decided: a winner; tie: valid votes but no majority; undecided: no valid verdict at all."""
    if result.winner is not None:
        return "decided"
    if any(sum(p.votes.values()) > 0 for p in result.pairs):
        return "tie"
    return "undecided"


def _run_info(row: m.Run) -> RunInfo:
    return RunInfo(
        id=row.id,
        dataset_id=row.dataset_id,
        name=row.name,
        kind=row.kind,
        backend=row.backend,
        model=row.model,
        template=row.template,
        template_version=row.template_version,
        strategy=row.strategy,
        sampling=dict(row.sampling or {}),
        compute=dict(row.compute or {}),
    )
