"""Adjudications, labelling guidelines and the per-data-set blind setting (a part of
:class:`~rrm_ui.storage.repository.Repository`).

Adjudications are append-only like labels: the latest row per (item, pair) is the final label, the
earlier ones its history. Guidelines are versioned per data set (1, 2, ...): saving text adds a
version, never edits one; a label records the version current when it was stored
(:func:`current_guideline_version`, used by ``Repository.add_label``). Who may adjudicate or edit
guidelines is the services' business (:mod:`rrm_ui.services.review`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rrm_ui.domain import Adjudication, Choice, Guidelines
from rrm_ui.storage import models as m

T = TypeVar("T")


class CriteriaStore:
    """Mixin (part of :class:`ReviewStore`): a data set's criteria and the labels on them."""

    if TYPE_CHECKING:
        engine: Any

        def _tx(self, fn: Callable[[Session], T]) -> T: ...

        def _query(self, fn: Callable[[Session], T]) -> T: ...

        def _annotator_id(self, s: Session, name: str) -> int: ...

    def dataset_criteria(self, dataset_id: int) -> tuple[str, ...]:
        found = self._query(lambda s: s.scalar(select(m.Dataset.criteria).where(m.Dataset.id == dataset_id)))
        return tuple(found or ())

    def set_dataset_criteria(self, dataset_id: int, names: tuple[str, ...]) -> None:
        def write(s: Session) -> None:
            row = s.get(m.Dataset, dataset_id)
            if row is None:
                raise ValueError(f"no data set with id {dataset_id}")
            row.criteria = list(names) or None

        self._tx(write)

    def add_criterion_labels(
        self, annotator: str, item_db_id: int, pair: tuple[int, int], choices: dict[str, Choice]
    ) -> list[int]:
        """Append one row per criterion (one transaction), with the guideline version current now."""

        def write(s: Session) -> list[int]:
            who = self._annotator_id(s, annotator)
            version = item_guideline_version(s, item_db_id)
            rows = [
                m.CriterionLabel(annotator_id=who, item_id=item_db_id, pair_i=pair[0], pair_j=pair[1], criterion=c,
                                 choice=ch.value, guideline_version=version)
                for c, ch in choices.items()
            ]  # fmt: skip
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

        return self._tx(write)

    def latest_criterion_labels(self, dataset_id: int) -> pd.DataFrame:
        """The latest criterion label per (annotator, item, pair, criterion), with the annotator's name."""
        cl = m.CriterionLabel
        latest = (
            select(func.max(cl.id))
            .join(m.Item, m.Item.id == cl.item_id)
            .where(m.Item.dataset_id == dataset_id)
            .group_by(cl.annotator_id, cl.item_id, cl.pair_i, cl.pair_j, cl.criterion)
        )
        q = (
            select(cl.__table__, m.Annotator.name.label("annotator"))
            .join(m.Annotator, m.Annotator.id == cl.annotator_id)
            .where(cl.id.in_(latest))
        )
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)


class ReviewStore(CriteriaStore):
    """Mixin: needs the repository's ``_tx``, ``_query``, ``_annotator_id`` and ``engine``."""

    if TYPE_CHECKING:
        engine: Any

        def _tx(self, fn: Callable[[Session], T]) -> T: ...

        def _query(self, fn: Callable[[Session], T]) -> T: ...

        def _annotator_id(self, s: Session, name: str) -> int: ...

    # --- adjudications -----------------------------------------------------------------------

    def add_adjudication(self, adj: Adjudication) -> int:
        """Append a final label for the pair; returns its id. The pair is stored as given (i, j)."""

        def write(s: Session) -> int:
            if s.get(m.Item, adj.item_db_id) is None:
                raise ValueError(f"no item with id {adj.item_db_id}")
            row = m.Adjudication(
                item_id=adj.item_db_id, pair_i=adj.pair_i, pair_j=adj.pair_j, choice=adj.choice.value,
                reason=adj.reason, reviewer_id=self._annotator_id(s, adj.reviewer),
            )  # fmt: skip
            s.add(row)
            s.flush()
            return row.id

        return self._tx(write)

    def adjudications_of(self, *, item_db_id: int | None = None, dataset_id: int | None = None) -> list[Adjudication]:
        """Every adjudication of an item or a data set, oldest first (the history)."""
        q = select(m.Adjudication, m.Annotator.name).join(m.Annotator, m.Annotator.id == m.Adjudication.reviewer_id)
        if item_db_id is not None:
            q = q.where(m.Adjudication.item_id == item_db_id)
        if dataset_id is not None:
            q = q.join(m.Item, m.Item.id == m.Adjudication.item_id).where(m.Item.dataset_id == dataset_id)
        q = q.order_by(m.Adjudication.id)
        return self._query(lambda s: [_adjudication(r, name) for r, name in s.execute(q)])

    def latest_adjudications(self, dataset_id: int) -> pd.DataFrame:
        """The latest adjudication per (item, pair as stored) of a data set, with the reviewer's name."""
        latest = (
            select(func.max(m.Adjudication.id))
            .join(m.Item, m.Item.id == m.Adjudication.item_id)
            .where(m.Item.dataset_id == dataset_id)
            .group_by(m.Adjudication.item_id, m.Adjudication.pair_i, m.Adjudication.pair_j)
        )
        q = (
            select(m.Adjudication.__table__, m.Annotator.name.label("reviewer"))
            .join(m.Annotator, m.Annotator.id == m.Adjudication.reviewer_id)
            .where(m.Adjudication.id.in_(latest))
        )
        with self.engine.connect() as conn:
            return pd.read_sql(q, conn)

    # --- guidelines --------------------------------------------------------------------------

    def save_guidelines(self, dataset_id: int, text: str, author: str | None) -> Guidelines:
        """Add the next version of the data set's guidelines (1 for the first).

        Two writers at once: the unique (data set, version) key refuses the second insert, which is
        tried again with the next number.
        """

        def write(s: Session) -> Guidelines:
            if s.get(m.Dataset, dataset_id) is None:
                raise ValueError(f"no data set with id {dataset_id}")
            version = (current_guideline_version(s, dataset_id) or 0) + 1
            row = m.Guideline(dataset_id=dataset_id, version=version, text=text,
                              author_id=None if author is None else self._annotator_id(s, author))  # fmt: skip
            s.add(row)
            s.flush()
            return Guidelines(dataset_id, version, text, author, row.created_at)

        for attempt in range(5):
            try:
                return self._tx(write)
            except IntegrityError:  # PostgreSQL: another version was saved at the same moment
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def guidelines(self, dataset_id: int, version: int | None = None) -> Guidelines | None:
        """One version of the data set's guidelines (default: the latest); None when there is none."""
        q = (
            select(m.Guideline, m.Annotator.name)
            .outerjoin(m.Annotator, m.Annotator.id == m.Guideline.author_id)
            .where(m.Guideline.dataset_id == dataset_id)
        )
        q = q.where(m.Guideline.version == version) if version is not None else q
        q = q.order_by(m.Guideline.version.desc()).limit(1)

        def read(s: Session) -> Guidelines | None:
            row = s.execute(q).first()
            return None if row is None else _guidelines(row[0], row[1])

        return self._query(read)

    def guideline_history(self, dataset_id: int) -> list[Guidelines]:
        """Every version of the data set's guidelines, oldest first."""
        q = (
            select(m.Guideline, m.Annotator.name)
            .outerjoin(m.Annotator, m.Annotator.id == m.Guideline.author_id)
            .where(m.Guideline.dataset_id == dataset_id)
            .order_by(m.Guideline.version)
        )
        return self._query(lambda s: [_guidelines(r, name) for r, name in s.execute(q)])

    # --- blind to each other ------------------------------------------------------------------

    def dataset_blind(self, dataset_id: int) -> bool | None:
        """The data set's blind setting as stored: True, False, or None (follow the app's default)."""
        return self._query(lambda s: s.scalar(select(m.Dataset.blind).where(m.Dataset.id == dataset_id)))

    def set_dataset_blind(self, dataset_id: int, blind: bool | None) -> None:
        def write(s: Session) -> None:
            row = s.get(m.Dataset, dataset_id)
            if row is None:
                raise ValueError(f"no data set with id {dataset_id}")
            row.blind = blind

        self._tx(write)


def current_guideline_version(s: Session, dataset_id: int) -> int | None:
    """The data set's latest guideline version in this session (None: no guidelines yet)."""
    return s.scalar(select(func.max(m.Guideline.version)).where(m.Guideline.dataset_id == dataset_id))


def item_guideline_version(s: Session, item_db_id: int) -> int | None:
    """The latest guideline version of the item's data set."""
    dataset = select(m.Item.dataset_id).where(m.Item.id == item_db_id).scalar_subquery()
    return s.scalar(select(func.max(m.Guideline.version)).where(m.Guideline.dataset_id == dataset))


def _adjudication(r: m.Adjudication, reviewer: str) -> Adjudication:
    return Adjudication(r.item_id, r.pair_i, r.pair_j, Choice(r.choice), r.reason, reviewer, r.id, r.created_at)


def _guidelines(r: m.Guideline, author: str | None) -> Guidelines:
    return Guidelines(r.dataset_id, r.version, r.text, author, r.created_at)
