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
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from rrm_ui.domain import (
    Account,
    DatasetInfo,
    HumanLabel,
    ImportedDataset,
    ImportedLabel,
    ImportedVerdict,
    Item,
    ItemResult,
    RunInfo,
    StoredItem,
    Verdict,
    last_tries,
)
from rrm_ui.storage import models as m
from rrm_ui.storage.repo_accounts import AccountStore
from rrm_ui.storage.repo_analytics import AnalyticsStore
from rrm_ui.storage.repo_annotation import AnnotationStore
from rrm_ui.storage.repo_jobs import JobStore
from rrm_ui.storage.repo_review import ReviewStore, item_guideline_version

T = TypeVar("T")
_CHUNK = 5_000  # rows per bulk insert statement


class DatasetExists(ValueError):
    pass


class RunMismatch(ValueError):
    pass


class Repository(AccountStore, AnnotationStore, ReviewStore, JobStore, AnalyticsStore):
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
            self._insert_labels(s, ids, ds.labels)
            if ds.external_run:
                self._insert_external(s, row.id, ids, ds.external_run, ds.external)
            return DatasetInfo(row.id, row.name, row.format, row.source, len(rows), tuple(ds.notes))

        return self._tx(write)

    def attach_labels(self, dataset_id: int, labels: Iterable[ImportedLabel]) -> int:
        """Append imported human labels to a stored data set's items, all or nothing; how many were stored."""
        labels = tuple(labels)

        def write(s: Session) -> int:
            ids = dict(s.execute(select(m.Item.ext_id, m.Item.id).where(m.Item.dataset_id == dataset_id)).all())
            return self._insert_labels(s, ids, labels)

        return self._tx(write)

    def attach_external_run(self, dataset_id: int, run: str, verdicts: Iterable[ImportedVerdict]) -> RunInfo:
        """Store another judge's verdicts as a new external run of a stored data set, all or nothing."""
        verdicts = tuple(verdicts)

        def write(s: Session) -> RunInfo:
            if s.scalar(select(m.Run.id).where(m.Run.dataset_id == dataset_id, m.Run.name == run)) is not None:
                raise DatasetExists(f"the data set has a run named {run!r} already; choose another run name")
            ids = dict(s.execute(select(m.Item.ext_id, m.Item.id).where(m.Item.dataset_id == dataset_id)).all())
            return _run_info(self._insert_external(s, dataset_id, ids, run, verdicts))

        return self._tx(write)

    def item_keys(self, dataset_id: int) -> list[tuple[str, int, dict[str, Any] | None, Any]]:
        """(ext_id, n_responses, metadata, gold_tiers) of every item of a data set, without their texts."""
        q = select(m.Item.ext_id, m.Item.n_responses, m.Item.meta, m.Item.gold_tiers).where(
            m.Item.dataset_id == dataset_id
        )
        return self._query(lambda s: [tuple(r) for r in s.execute(q)])

    def _insert_labels(self, s: Session, ids: dict[str, int], labels: tuple[ImportedLabel, ...]) -> int:
        if not labels:
            return 0
        annotators = {name: self._annotator_id(s, name) for name in {lb.annotator for lb in labels}}
        rows = [
            {"annotator_id": annotators[lb.annotator], "item_id": ids[lb.ext_id], "pair_i": lb.pair_i,
             "pair_j": lb.pair_j, "choice": lb.choice.value, "note": lb.note, "source": "import", "blind": False}
            for lb in labels
        ]  # fmt: skip
        for start in range(0, len(rows), _CHUNK):
            s.execute(insert(m.Label), rows[start : start + _CHUNK])
        return len(rows)

    @staticmethod
    def _insert_external(
        s: Session, dataset_id: int, ids: dict[str, int], name: str, verdicts: tuple[ImportedVerdict, ...]
    ) -> m.Run:
        run = m.Run(dataset_id=dataset_id, name=name, kind="external", strategy="pair")
        s.add(run)
        s.flush()
        sizes: dict[int, int] = {}
        if any(v.ranking is not None for v in verdicts):
            q = select(m.Item.id, m.Item.n_responses).where(m.Item.dataset_id == dataset_id)
            sizes = dict(s.execute(q).all())
        rows = [
            _external_ranking(run.id, ids[v.ext_id], v.ranking, sizes[ids[v.ext_id]])
            if v.ranking is not None
            else _external_result(run.id, ids[v.ext_id], v.choice.value if v.choice else None)
            for v in verdicts
        ]
        for start in range(0, len(rows), _CHUNK):
            s.execute(insert(m.ItemResult), rows[start : start + _CHUNK])
        return run

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

    def item_ids(self, dataset_id: int) -> list[int]:
        """The data set's item ids in :meth:`items` order, without the texts (a job's plan)."""
        q = select(m.Item.id).where(m.Item.dataset_id == dataset_id).order_by(m.Item.id)
        return self._query(lambda s: list(s.scalars(q)))

    def item_shapes(self, dataset_id: int) -> dict[int, tuple[str, int, tuple[Any, ...] | None]]:
        """Item id -> (ext_id, number of responses, gold tiers) of the data set, without the texts."""
        q = select(m.Item.id, m.Item.ext_id, m.Item.n_responses, m.Item.gold_tiers)
        q = q.where(m.Item.dataset_id == dataset_id).order_by(m.Item.id)
        return self._query(lambda s: {i: (ext, n, None if g is None else tuple(g)) for i, ext, n, g in s.execute(q)})

    def items_by_id(self, ids: Iterable[int]) -> list[StoredItem]:
        """The items with these ids, in the order given (ids not stored are left out); read a chunk at a time."""
        ids = list(ids)
        found: dict[int, StoredItem] = {}

        def read(s: Session, chunk: list[int]) -> None:
            q = select(m.Item.id, m.Item.ext_id, m.Item.query, m.Item.responses, m.Item.subset, m.Item.gold_tiers)
            for i, ext, query, resp, subset, gold in s.execute(q.where(m.Item.id.in_(chunk))):
                tiers = tuple(gold) if gold is not None else None
                found[i] = StoredItem(i, Item(ext, query, tuple(resp)), subset, tiers)

        for start in range(0, len(ids), 900):  # under SQLite's old limit of 999 parameters
            self._query(lambda s, c=ids[start : start + 900]: read(s, c))
        return [found[i] for i in ids if i in found]

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
            query = select(m.Dataset.id).where(m.Dataset.name == dataset_name)
            ds_id = s.scalar(query)
            if ds_id is None:  # two first items at once: one inserts, the other reads its row
                row = m.Dataset(name=dataset_name, source=source, format=fmt, notes=[])
                found, created = _insert_or_read(s, row, query)
                ds_id = row.id if created else found
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

    def get_or_create_run(
        self,
        dataset_id: int,
        name: str,
        *,
        origin: str | None = None,
        parent_run_id: int | None = None,
        **settings: Any,
    ) -> tuple[RunInfo, bool]:
        """The run ``name`` of the data set; created if new. Resuming with other settings is refused,
        as is continuing a re-judge run (``origin`` "rejudge") as anything else, and the reverse.

        Race-free: two processes creating the same run at once both get it (insert, and on the
        unique key's conflict read the row the other one wrote).
        """
        keys = ("backend", "model", "template", "template_version", "strategy", "sampling", "compute")

        def write(s: Session) -> tuple[RunInfo, bool]:
            query = select(m.Run).where(m.Run.dataset_id == dataset_id, m.Run.name == name)
            row = s.scalar(query)
            created = False
            if row is None:
                new = m.Run(dataset_id=dataset_id, name=name, kind="judge", origin=origin, parent_run_id=parent_run_id,
                            **{k: settings.get(k) for k in keys})  # fmt: skip
                row, created = _insert_or_read(s, new, query)
            if not created:
                changed = [k for k in keys if getattr(row, k) != settings.get(k)]
                marks = {"origin": origin, "parent_run_id": parent_run_id}
                changed += [k for k, v in marks.items() if getattr(row, k) != v]
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

    def items_judged_per_run(self, dataset_id: int) -> dict[int, int]:
        """run id -> how many distinct items of the data set have a result in that run."""
        q = (
            select(m.ItemResult.run_id, func.count(func.distinct(m.ItemResult.item_id)))
            .join(m.Run, m.Run.id == m.ItemResult.run_id)
            .where(m.Run.dataset_id == dataset_id)
            .group_by(m.ItemResult.run_id)
        )
        return self._query(lambda s: {run_id: n for run_id, n in s.execute(q)})

    def judged_item_ids(self, run_id: int) -> set[int]:
        return self._query(lambda s: set(s.scalars(select(m.ItemResult.item_id).where(m.ItemResult.run_id == run_id))))

    def save_result(self, run_id: int, item_db_id: int, result: ItemResult, *, first_only: bool = False) -> bool:
        """Every judgment of an item and its aggregate, in one short transaction; whether it was stored.

        A run keeps every result of an item (a re-judge adds the next ``revision``; readers take the
        latest). ``first_only`` (batch jobs, ``rrm-ui judge``): store it only as the item's first
        result in the run, ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (run, item, revision):
        when another process stored the item meanwhile, nothing (no judgment either) is stored and
        the answer is False.
        """
        judgments = [
            {**j.to_dict(), "run_id": run_id, "item_id": item_db_id} for pair in result.pairs for j in pair.judgments
        ]
        for j in judgments:
            j.pop("winner")
        row = {"run_id": run_id, "item_id": item_db_id, **result_row(result)}

        def write(s: Session) -> bool:
            if first_only:
                new = _insert_new(s, m.ItemResult).values(**row, revision=0).returning(m.ItemResult.id)
                if s.execute(new).first() is None:
                    return False
            else:
                mine = (m.ItemResult.run_id == run_id, m.ItemResult.item_id == item_db_id)
                while True:  # PostgreSQL: a concurrent re-judge may take the revision first
                    latest = s.scalar(select(func.max(m.ItemResult.revision)).where(*mine))
                    try:
                        with s.begin_nested():
                            s.execute(insert(m.ItemResult), [{**row, "revision": 0 if latest is None else latest + 1}])
                        break
                    except IntegrityError:
                        if s.scalar(select(func.max(m.ItemResult.revision)).where(*mine)) == latest:
                            raise  # not the revision: another constraint failed
            if judgments:
                s.execute(insert(m.Judgment), judgments)
            return True

        return self._tx(write)

    def save_first_result(self, run_id: int, item_db_id: int, result: ItemResult) -> bool:
        """:meth:`save_result` with ``first_only``: a batch job's write (nothing when the item has a result)."""
        return self.save_result(run_id, item_db_id, result, first_only=True)

    # --- annotators and labels ---------------------------------------------------------------

    def _annotator_id(self, s: Session, name: str) -> int:
        query = select(m.Annotator.id).where(m.Annotator.name == name)
        found = s.scalar(query)
        if found is not None:
            return found
        row = m.Annotator(name=name)
        found, created = _insert_or_read(s, row, query)
        return row.id if created else found

    def set_login(self, name: str, password_hash: str | None) -> Account:
        """Replace the password hash (``None``: no login) and end every login session of the account:
        its session epoch goes up, and the app refuses cookies issued under an older one."""
        return self._update_annotator(name, password_hash=password_hash, session_epoch=m.Annotator.session_epoch + 1)

    def session_epoch(self, name: str) -> int | None:
        """The account's session epoch; None when the name has no login (unknown, or no password)."""
        q = select(m.Annotator.session_epoch).where(m.Annotator.name == name, m.Annotator.password_hash.is_not(None))
        return self._query(lambda s: s.scalar(q))

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
                guideline_version=label.guideline_version
                if label.guideline_version is not None
                else item_guideline_version(s, label.item_db_id),
            )
            s.add(row)
            s.flush()
            return row.id

        return self._tx(write)

    # --- frames for analysis and export ------------------------------------------------------

    def frame(self, table: str, where: Iterable[Any] = ()) -> pd.DataFrame:
        """All rows of a table (optionally filtered) as a DataFrame, read in SQL, not row by row."""
        model = {t.__tablename__: t for t in (m.Dataset, m.Item, m.Run, m.Judgment, m.ItemResult, m.Annotator,
                                              m.Label, m.Job, m.Adjudication, m.Guideline,
                                              m.CriterionLabel)}[table]  # fmt: skip
        q = select(model.__table__)
        for cond in where:
            q = q.where(cond)
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    def latest_results(self, dataset_id: int, run_id: int | None = None) -> pd.DataFrame:
        """The latest aggregate per (run, item) of a data set's runs (``run_id``: of that run only)."""
        latest = (
            select(func.max(m.ItemResult.id).label("id"))
            .join(m.Item, m.Item.id == m.ItemResult.item_id)
            .where(m.Item.dataset_id == dataset_id)
            .group_by(m.ItemResult.run_id, m.ItemResult.item_id)
        )
        if run_id is not None:
            latest = latest.where(m.ItemResult.run_id == run_id)
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


def _insert_new(s: Session, model: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` of the session's database (SQLite or PostgreSQL)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model).on_conflict_do_nothing()


def _insert_or_read(s: Session, row: Any, query: Any) -> tuple[Any, bool]:
    """Insert ``row`` in a savepoint, or, when a unique key says another transaction inserted it
    first, read that one with ``query``: (the row or what ``query`` selects, whether it was inserted).

    On PostgreSQL the insert waits for that transaction and fails once it commits; the read then
    sees its row (READ COMMITTED). SQLite's ``BEGIN IMMEDIATE`` serialises writers, so there the
    conflict cannot happen; the code path is the same.
    """
    try:
        with s.begin_nested():
            s.add(row)
            s.flush()
    except IntegrityError:
        found = s.scalar(query)
        if found is None:
            raise  # not a duplicate: another constraint failed
        return found, False
    return row, True


def _external_result(run_id: int, item_id: int, choice: str | None) -> dict[str, Any]:
    """An external judge's verdict on a pair as an item result (A: the first response won).

    A tie is decision ``tie``; no verdict at all (the judge failed to answer: ``choice`` None)
    is ``undecided``, as for a run of rrm-ui's own whose samples all failed.
    """
    winner = {"A": 0, "B": 1}.get(choice or "")
    return {
        "run_id": run_id,
        "item_id": item_id,
        "strategy": "pair",
        "winner": winner,
        "decision": "decided" if winner is not None else ("tie" if choice == "tie" else "undecided"),
        "ranking": [] if winner is None else [winner, 1 - winner],
        "votes": {},
        "pairs": [],
        "ratings": {},
        "bracket": [],
    }


def _external_ranking(run_id: int, item_id: int, ranking: tuple[int, ...], n: int) -> dict[str, Any]:
    """An external judge's ranking of a list item of ``n`` responses: a full ranking states every pair,
    so each pair's outcome is stored (winner from the order, no votes: no samples were seen). An
    empty ranking (the judge gave none) stores every pair without a winner: undecided."""
    place = {r: k for k, r in enumerate(ranking)}
    pairs = [
        {"i": i, "j": j, "winner": (i if place[i] < place[j] else j) if ranking else None, "votes": {},
         "invalid_votes": 0 if ranking else 1, "position_consistent": None, "samples_spent": 0,
         "adaptive_reason": "external ranking"}
        for i in range(n) for j in range(i + 1, n)
    ]  # fmt: skip
    return {
        "run_id": run_id,
        "item_id": item_id,
        "strategy": "ranking",
        "winner": ranking[0] if ranking else None,
        "decision": "decided" if ranking else "undecided",
        "ranking": list(ranking),
        "votes": {},
        "pairs": pairs,
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
    """decided: a winner; tie: valid votes but no majority, or the judge said tie (a format that can tie, a
    scalar reward model's equal scores); undecided: no verdict at all."""
    if result.winner is not None:
        return "decided"
    if any(sum(p.votes.values()) > 0 for p in result.pairs):
        return "tie"
    if any(j.verdict is Verdict.TIE for p in result.pairs for j in last_tries(p.judgments)):
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
        origin=row.origin,
        parent_run_id=row.parent_run_id,
    )
