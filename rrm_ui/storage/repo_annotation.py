"""Accounts and the annotation queue (a part of :class:`~rrm_ui.storage.repository.Repository`).

Accounts are ``annotators`` rows; a row with a password hash is an account that can log in.
Rows without one come from imports (or local single-user mode) and can be given a password.
The hash is an opaque string here: :mod:`rrm_ui.services.accounts` makes and checks it.

The queue hands each annotator the next item of a data set as a *claim* (an ``assignments``
row). An item is *open* to an annotator when it matches the queue's filter, the annotator has
never labelled it (any pair, any run), and the annotators who labelled it plus the other
annotators holding a fresh claim on it (one not older than the ttl, whose holder has not
labelled it) are fewer than the queue's overlap. Among open items the annotator gets, in this
order: the item they already hold a fresh claim on (a page reload shows the same item), the
lowest item id they have not skipped, the item they skipped longest ago. A skip keeps a row with
``claimed_at`` at :data:`SKIPPED` (the epoch): it never counts as a claim, and only moves the
item behind the others for that annotator.

Claims are race-free: on SQLite a write transaction is ``BEGIN IMMEDIATE``, so claims are
serialized; on PostgreSQL a claim first locks its data set's row (``FOR NO KEY UPDATE``, which
does not block inserts that reference the data set), so claims on one data set are serialized
too and each reads, at READ COMMITTED, every claim committed before it. One lock per claim
means no deadlocks. Everything is chosen in SQL (subqueries), never by loading all items.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Integer, Select, and_, cast, delete, exists, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from rrm_ui.domain import (
    Account,
    Choice,
    HumanLabel,
    Item,
    Judgment,
    QueueFilter,
    QueueProgress,
    QueueSpec,
    Role,
    Status,
    StoredItem,
    Verdict,
)
from rrm_ui.storage import models as m

T = TypeVar("T")
SKIPPED = datetime(1970, 1, 1, tzinfo=UTC)  # ``claimed_at`` of a skipped item: never a fresh claim


class AccountExists(ValueError):
    pass


class AnnotationStore:
    """Mixin: needs the repository's ``_tx``, ``_query`` and ``_annotator_id``."""

    if TYPE_CHECKING:

        def _tx(self, fn: Callable[[Session], T]) -> T: ...

        def _query(self, fn: Callable[[Session], T]) -> T: ...

        def _annotator_id(self, s: Session, name: str) -> int: ...

    # --- accounts ----------------------------------------------------------------------------

    def account(self, name: str) -> Account | None:
        return self._query(lambda s: _maybe_account(s.scalar(select(m.Annotator).where(m.Annotator.name == name))))

    def accounts(self) -> list[Account]:
        """Every annotator, with or without a password, by name."""
        return self._query(lambda s: [_account(r) for r in s.scalars(select(m.Annotator).order_by(m.Annotator.name))])

    def has_accounts(self) -> bool:
        """Whether any annotator has a password (then the app asks for a login)."""
        q = select(exists().where(m.Annotator.password_hash.is_not(None)))
        return bool(self._query(lambda s: s.scalar(q)))

    def credentials(self, name: str) -> tuple[Account, str | None] | None:
        """The account and its stored password hash (for the accounts service only)."""

        def read(s: Session) -> tuple[Account, str | None] | None:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            return None if row is None else (_account(row), row.password_hash)

        return self._query(read)

    def save_account(self, name: str, password_hash: str, role: Role) -> Account:
        """Create an account, or give a password and role to an annotator that has no password.

        Raises :class:`AccountExists` when the name already has a password.
        """

        def write(s: Session) -> Account:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            if row is not None and row.password_hash is not None:
                raise AccountExists(f"an account named {name!r} exists already")
            if row is None:
                row = m.Annotator(name=name)
                s.add(row)
            row.password_hash, row.role = password_hash, role.value
            s.flush()
            return _account(row)

        try:
            return self._tx(write)
        except IntegrityError as exc:  # PostgreSQL: the same new name added at the same moment
            raise AccountExists(f"an account named {name!r} exists already") from exc

    def set_role(self, name: str, role: Role) -> Account:
        return self._update_annotator(name, role=role.value)

    def set_password_hash(self, name: str, password_hash: str | None) -> Account:
        """Replace the password hash; ``None`` disables the account's login."""
        return self._update_annotator(name, password_hash=password_hash)

    def _update_annotator(self, name: str, **values: Any) -> Account:
        def write(s: Session) -> Account:
            row = s.scalar(select(m.Annotator).where(m.Annotator.name == name))
            if row is None:
                raise ValueError(f"no annotator named {name!r}")
            for key, value in values.items():
                setattr(row, key, value)
            s.flush()
            return _account(row)

        return self._tx(write)

    # --- the queue ---------------------------------------------------------------------------

    def claim_next(self, spec: QueueSpec, annotator: str, *, ttl_s: float = 600) -> StoredItem | None:
        """Claim the next item of the queue for ``annotator`` (rules in the module docstring)."""

        def write(s: Session) -> StoredItem | None:
            _check_spec(s, spec)
            lock = select(m.Dataset.id).where(m.Dataset.id == spec.dataset_id).with_for_update(key_share=True)
            s.execute(lock)
            me = self._annotator_id(s, annotator)
            now = datetime.now(UTC)
            cutoff = now - timedelta(seconds=ttl_s)
            open_items = _open(spec, _dialect(s), me, cutoff)
            mine = select(m.Assignment.item_id, m.Assignment.id).where(m.Assignment.annotator_id == me)
            skipped = mine.where(m.Assignment.claimed_at == SKIPPED).subquery()
            held = mine.where(m.Assignment.claimed_at >= cutoff).with_only_columns(m.Assignment.item_id)
            for q in (
                open_items.where(m.Item.id.in_(held)).order_by(m.Item.id),
                open_items.where(m.Item.id.not_in(select(skipped.c.item_id))).order_by(m.Item.id),
                open_items.join(skipped, skipped.c.item_id == m.Item.id).order_by(skipped.c.id),  # oldest skip first
            ):
                item_id = s.scalar(q.limit(1))
                if item_id is not None:
                    _upsert_claim(s, item_id, me, now)
                    return _stored_item(s, item_id)
            return None

        return self._tx(write)

    def release(self, item_db_id: int, annotator: str) -> None:
        """Drop the annotator's claim on the item (after a label is stored)."""
        me = select(m.Annotator.id).where(m.Annotator.name == annotator).scalar_subquery()
        stmt = delete(m.Assignment).where(m.Assignment.item_id == item_db_id, m.Assignment.annotator_id == me)
        self._tx(lambda s: s.execute(stmt))

    def skip_item(self, item_db_id: int, annotator: str) -> None:
        """Let go of the item and serve it to this annotator again only after every other open item.

        The skip is a new row (delete, insert), so the row ids order this annotator's skips.
        """

        def write(s: Session) -> None:
            me = self._annotator_id(s, annotator)
            s.execute(delete(m.Assignment).where(m.Assignment.item_id == item_db_id, m.Assignment.annotator_id == me))
            s.add(m.Assignment(item_id=item_db_id, annotator_id=me, claimed_at=SKIPPED))

        self._tx(write)

    def queue_progress(self, spec: QueueSpec, annotator: str) -> QueueProgress:
        """total: items matching the queue; done: those the annotator labelled; left: those they
        have not labelled that have fewer labellers than the overlap (claims are not counted)."""

        def read(s: Session) -> QueueProgress:
            _check_spec(s, spec)
            me = s.scalar(select(m.Annotator.id).where(m.Annotator.name == annotator))
            rows = (
                _matching(spec, _dialect(s))
                .add_columns(_labelled_by(me).label("mine"), (_labellers() < spec.overlap).label("room"))
                .subquery()
            )
            done, left = func.count().filter(rows.c.mine), func.count().filter(~rows.c.mine, rows.c.room)
            total, done, left = s.execute(select(func.count(), done, left)).one()
            return QueueProgress(done=done or 0, left=left or 0, total=total or 0)

        return self._query(read)

    # --- what the annotation page shows ------------------------------------------------------

    def item(self, item_db_id: int) -> StoredItem | None:
        return self._query(lambda s: _stored_item(s, item_db_id))

    def latest_result_row(self, run_id: int, item_db_id: int) -> dict[str, Any] | None:
        """The run's latest aggregate for the item as plain values (``votes`` keyed by int)."""
        q = (
            select(m.ItemResult)
            .where(m.ItemResult.run_id == run_id, m.ItemResult.item_id == item_db_id)
            .order_by(m.ItemResult.id.desc())
            .limit(1)
        )

        def read(s: Session) -> dict[str, Any] | None:
            row = s.scalar(q)
            if row is None:
                return None
            return {
                "winner": row.winner,
                "decision": row.decision,
                "ranking": list(row.ranking or ()),
                "votes": {int(k): int(v) for k, v in (row.votes or {}).items()},
                "position_consistent": row.position_consistent,
                "pairs": list(row.pairs or ()),
            }

        return self._query(read)

    def pair_judgments(self, run_id: int, item_db_id: int, i: int, j: int) -> list[Judgment]:
        """Every judgment of the pair (both presentation orders) in the run, oldest first.

        A re-judged item keeps its earlier judgments, so they are listed too.
        """
        pair = or_(and_(m.Judgment.a == i, m.Judgment.b == j), and_(m.Judgment.a == j, m.Judgment.b == i))
        q = (
            select(m.Judgment)
            .where(m.Judgment.run_id == run_id, m.Judgment.item_id == item_db_id, pair)
            .order_by(m.Judgment.id)
        )
        return self._query(lambda s: [_judgment(r) for r in s.scalars(q)])

    def labels_of(
        self, *, item_db_id: int | None = None, dataset_id: int | None = None, annotator: str | None = None
    ) -> list[tuple[int, datetime, HumanLabel]]:
        """Labels (id, created_at, label) of an item or a data set, optionally of one annotator, oldest first."""
        q = select(m.Label, m.Annotator.name).join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
        if item_db_id is not None:
            q = q.where(m.Label.item_id == item_db_id)
        if dataset_id is not None:
            q = q.join(m.Item, m.Item.id == m.Label.item_id).where(m.Item.dataset_id == dataset_id)
        if annotator is not None:
            q = q.where(m.Annotator.name == annotator)
        q = q.order_by(m.Label.id)
        return self._query(lambda s: [(r.id, r.created_at, _label(r, name)) for r, name in s.execute(q)])


# --- queue SQL -----------------------------------------------------------------------------------


def _check_spec(s: Session, spec: QueueSpec) -> None:
    if spec.overlap < 1:
        raise ValueError("overlap must be at least 1")
    if spec.run_id is None:
        if spec.filter is not QueueFilter.UNLABELLED:
            raise ValueError(f"the filter {spec.filter.value!r} needs a run whose verdicts it looks at")
        return
    if s.scalar(select(m.Run.dataset_id).where(m.Run.id == spec.run_id)) != spec.dataset_id:
        raise ValueError(f"run {spec.run_id} is not a run of data set {spec.dataset_id}")


def _dialect(s: Session) -> str:
    return s.get_bind().dialect.name


def _matching(spec: QueueSpec, dialect: str) -> Select[Any]:
    """Ids of the data set's items that the queue's subset, run and filter select."""
    q = select(m.Item.id).where(m.Item.dataset_id == spec.dataset_id)
    if spec.subset is not None:
        q = q.where(m.Item.subset == spec.subset)
    if spec.run_id is None:
        return q
    # with a run, only items it has a result for, joined to the latest one (found per item through
    # the (run_id, item_id) index: SQLite re-runs an ``IN (SELECT max(id) ... GROUP BY)`` per row)
    latest = select(func.max(m.ItemResult.id)).where(m.ItemResult.run_id == spec.run_id,
                                                     m.ItemResult.item_id == m.Item.id)  # fmt: skip
    r = aliased(m.ItemResult, name="latest")
    q = q.join(r, and_(r.item_id == m.Item.id, r.id == latest.scalar_subquery()))
    match spec.filter:
        case QueueFilter.VOTE_SPLIT:
            return q.where(_responses_with_votes(r.votes, dialect) > 1)
        case QueueFilter.POSITION_INCONSISTENT:
            return q.where(r.position_consistent.is_(False))
        case QueueFilter.TRUNCATED:
            return q.where(exists().where(m.Judgment.run_id == spec.run_id, m.Judgment.item_id == m.Item.id,
                                          m.Judgment.status == Status.TRUNCATED.value))  # fmt: skip
        case QueueFilter.NO_VERDICT:
            return q.where(r.decision != "decided")
    return q


def _responses_with_votes(votes: Any, dialect: str) -> Any:
    """How many responses of a ``votes`` JSON object ({index: count}) got at least one vote."""
    each = (func.json_each_text if dialect == "postgresql" else func.json_each)(votes).table_valued("key", "value")
    return select(func.count()).select_from(each).where(cast(each.c.value, Integer) > 0).scalar_subquery()


def _labelled_by(me: int | None) -> ColumnElement[bool]:
    """The item (``items.id`` of the enclosing query) has a label by this annotator (any pair, any run)."""
    if me is None:
        return false()
    return exists().where(m.Label.item_id == m.Item.id, m.Label.annotator_id == me)


def _labellers() -> Any:
    """How many different annotators labelled the item."""
    return select(func.count(func.distinct(m.Label.annotator_id))).where(m.Label.item_id == m.Item.id).scalar_subquery()


def _other_claims(me: int, cutoff: datetime) -> Any:
    """Fresh claims on the item by other annotators who have not labelled it yet."""
    holder_labelled = exists().where(m.Label.item_id == m.Assignment.item_id,
                                     m.Label.annotator_id == m.Assignment.annotator_id)  # fmt: skip
    return (
        select(func.count())
        .select_from(m.Assignment)
        .where(m.Assignment.item_id == m.Item.id, m.Assignment.annotator_id != me, m.Assignment.claimed_at >= cutoff)
        .where(~holder_labelled)
        .scalar_subquery()
    )


def _open(spec: QueueSpec, dialect: str, me: int, cutoff: datetime) -> Select[Any]:
    return _matching(spec, dialect).where(~_labelled_by(me), _labellers() + _other_claims(me, cutoff) < spec.overlap)


def _upsert_claim(s: Session, item_id: int, me: int, at: datetime) -> None:
    values = {"item_id": item_id, "annotator_id": me, "claimed_at": at}
    dialect = _dialect(s)
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(m.Assignment).values(values)
        s.execute(stmt.on_conflict_do_update(index_elements=["item_id", "annotator_id"], set_={"claimed_at": at}))
        return
    row = s.scalar(select(m.Assignment).where(m.Assignment.item_id == item_id, m.Assignment.annotator_id == me))
    if row is None:
        s.add(m.Assignment(**values))
    else:
        row.claimed_at = at


# --- rows to domain types ------------------------------------------------------------------------


def _account(row: m.Annotator) -> Account:
    return Account(row.id, row.name, Role(row.role), row.password_hash is not None)


def _maybe_account(row: m.Annotator | None) -> Account | None:
    return None if row is None else _account(row)


def _stored_item(s: Session, item_id: int) -> StoredItem | None:
    row = s.get(m.Item, item_id)
    if row is None:
        return None
    gold = tuple(row.gold_tiers) if row.gold_tiers is not None else None
    return StoredItem(row.id, Item(row.ext_id, row.query, tuple(row.responses)), row.subset, gold)


def _judgment(r: m.Judgment) -> Judgment:
    return Judgment(
        a=r.a, b=r.b, sample=r.sample,
        verdict=Verdict(r.verdict) if r.verdict else None,
        status=Status(r.status),
        lenient_verdict=Verdict(r.lenient_verdict) if r.lenient_verdict else None,
        reasoning=r.reasoning, answer=r.answer,
        prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens, reasoning_tokens=r.reasoning_tokens,
        ttft_s=r.ttft_s, latency_s=r.latency_s if r.latency_s is not None else 0.0,
        finish_reason=r.finish_reason, seed=r.seed, error=r.error, endpoint=r.endpoint, attempt=r.attempt,
    )  # fmt: skip


def _label(r: m.Label, annotator: str) -> HumanLabel:
    return HumanLabel(
        annotator=annotator, item_db_id=r.item_id, choice=Choice(r.choice), pair_i=r.pair_i, pair_j=r.pair_j,
        run_id=r.run_id, agrees_with_model=r.agrees_with_model, note=r.note, time_taken_s=r.time_taken_s,
        blind=bool(r.blind),
    )  # fmt: skip
