"""The annotation queue (a part of :class:`~rrm_ui.storage.repository.Repository`); accounts are in
:mod:`rrm_ui.storage.repo_accounts`.

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

The lowest open item is found by walking the data set's ids in steps (:func:`_first_in_id_order`), from a
floor kept per (queue, annotator) in the process (:meth:`AnnotationStore._walk`): an item below it can never
be served by the walk again, so a claim deep into a large queue does not look at every item before it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    cast,
    delete,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session, aliased

from rrm_ui.domain import (
    Choice,
    HumanLabel,
    Item,
    Judgment,
    QueueFilter,
    QueueProgress,
    QueueSpec,
    Status,
    StoredItem,
    Verdict,
)
from rrm_ui.storage import models as m

T = TypeVar("T")
SKIPPED = datetime(1970, 1, 1, tzinfo=UTC)  # ``claimed_at`` of a skipped item: never a fresh claim


class AnnotationStore:
    """Mixin: needs the repository's ``_tx``, ``_query`` and ``_annotator_id``."""

    if TYPE_CHECKING:

        def _tx(self, fn: Callable[[Session], T]) -> T: ...

        def _query(self, fn: Callable[[Session], T]) -> T: ...

        def _annotator_id(self, s: Session, name: str) -> int: ...

    # --- the queue ---------------------------------------------------------------------------

    def claim_next(self, spec: QueueSpec, annotator: str, *, ttl_s: float = 600) -> StoredItem | None:
        """Claim the next item of the queue for ``annotator`` (rules in the module docstring)."""

        def write(s: Session) -> StoredItem | None:
            if _dialect(s) == "postgresql":
                # PostgreSQL over-estimates the open-items query and JIT-compiles it: 0.27 s of a 0.64 s
                # claim over 41,099 items (docs/benchmarks.md); off for this transaction only
                s.execute(text("SET LOCAL jit = off"))
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
            item_id = s.scalar(open_items.where(m.Item.id.in_(held)).order_by(m.Item.id).limit(1))
            if item_id is None:
                item_id = self._walk(s, spec, annotator, me, open_items, m.Item.id.not_in(select(skipped.c.item_id)))
            if item_id is None:  # the oldest skip first
                item_id = s.scalar(
                    open_items.join(skipped, skipped.c.item_id == m.Item.id).order_by(skipped.c.id).limit(1)
                )
            if item_id is None:
                return None
            _upsert_claim(s, item_id, me, now)
            return _stored_item(s, item_id)

        return self._tx(write)

    def _walk(
        self, s: Session, spec: QueueSpec, annotator: str, me: int, open_items: Select[Any], not_skipped: Any
    ) -> int | None:
        """The first of ``open_items`` in id order that the annotator has not skipped (``not_skipped``), walked
        from this process's floor for (queue, annotator): an id below which the walk can serve no item again.

        An item stays out of the walk for good once it leaves the queue's matching items, the annotator has
        labelled it, or enough others have (labels, items and results are never deleted); claims expire and
        skips can end, so an item held back only by them keeps the floor at or below it. The floor is
        recomputed from the data set's first item when the data set's items or the run's results changed, or
        one of the annotator's skips ended (a skipped item served again can come back to the walk)."""
        bounds = select(func.min(m.Item.id), func.max(m.Item.id), func.count()).where(
            m.Item.dataset_id == spec.dataset_id
        )
        lo, hi, n = s.execute(bounds).one()
        if lo is None:
            return None
        results = None if spec.run_id is None else s.scalar(
            select(func.max(m.ItemResult.id)).where(m.ItemResult.run_id == spec.run_id))  # fmt: skip
        skips = (m.Assignment.annotator_id == me, m.Assignment.claimed_at == SKIPPED)
        n_skips, last_skip = s.execute(select(func.count(), func.max(m.Assignment.id)).where(*skips)).one()
        memo: dict[Any, Any] = self.__dict__.setdefault("_claim_floors", {})
        key, marks = (spec, annotator), (me, lo, n, results)
        floor, old = lo, memo.get(key)
        if old is not None and old[0] == marks:
            kept = 0 if old[2] is None else s.scalar(
                select(func.count()).where(*skips, m.Assignment.id <= old[2]))  # fmt: skip
            if kept == old[1]:  # every skip counted then is still a skip
                floor = old[3]
        # the items the walk could still serve: not labelled by the annotator, room for them, not skipped (the
        # open ones are these less the ones others hold now); the first is the new floor, the walk goes on from it
        could = _matching(spec, _dialect(s)).where(~_labelled_by(me), _labellers() < spec.overlap, not_skipped)
        floor = _first_in_id_order(s, could, floor, hi + 1)
        memo[key] = (marks, n_skips, last_skip, hi + 1 if floor is None else floor)
        if floor is None:
            return None
        return _first_in_id_order(s, open_items.where(not_skipped), floor, hi + 1)

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
        have not labelled that have fewer labellers than the overlap (claims are not counted).

        Counted incrementally: the figures are kept per (queue, annotator) in this process with the
        labels they count (every label up to an id, and how many those are); a later call reads only
        the labels added since and updates the figures from the items those touch. A change of the
        queue's items or of its run's results, or a label committed late below the id (fewer labels up
        to it than counted), means a full count in SQL. Labels, items and results are never deleted."""

        def read(s: Session) -> QueueProgress:
            _check_spec(s, spec)
            me = s.scalar(select(m.Annotator.id).where(m.Annotator.name == annotator))
            top = s.scalar(select(func.max(m.Label.id))) or 0
            items = s.scalar(select(func.max(m.Item.id)).where(m.Item.dataset_id == spec.dataset_id))
            results = None if spec.run_id is None else s.scalar(
                select(func.max(m.ItemResult.id)).where(m.ItemResult.run_id == spec.run_id))  # fmt: skip
            memo: dict[Any, Any] = self.__dict__.setdefault("_progress_memo", {})
            key, marks = (spec, annotator), (me, items, results)
            old = memo.get(key)
            if old is not None and old[0] == marks and old[1] <= top:
                seen = s.scalar(select(func.count()).select_from(m.Label).where(m.Label.id <= old[1]))
                if seen == old[2]:  # no label committed late below the id counted up to
                    progress = _progress_delta(s, spec, me, old[3], old[1], top)
                    new = s.scalar(select(func.count()).select_from(m.Label)
                                   .where(m.Label.id > old[1], m.Label.id <= top))  # fmt: skip
                    memo[key] = (marks, top, seen + (new or 0), progress)
                    return progress
            rows = (
                _matching(spec, _dialect(s))
                .add_columns(_labelled_by(me, top).label("mine"), (_labellers(top) < spec.overlap).label("room"))
                .subquery()
            )
            done, left = func.count().filter(rows.c.mine), func.count().filter(~rows.c.mine, rows.c.room)
            total, done, left = s.execute(select(func.count(), done, left)).one()
            progress = QueueProgress(done=done or 0, left=left or 0, total=total or 0)
            seen = s.scalar(select(func.count()).select_from(m.Label).where(m.Label.id <= top))
            memo[key] = (marks, top, seen, progress)
            return progress

        return self._query(read)

    # --- what the annotation page shows ------------------------------------------------------

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
                "bracket": list(row.bracket or ()),  # a knockout's rounds of match dicts
                "strategy": row.strategy,
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

    def recent_label(self, dataset_id: int, annotator: str, offset: int = 0) -> tuple[int, datetime, HumanLabel] | None:
        """The annotator's latest label (id, created_at, label) on their ``offset``-th most recently labelled
        item of the data set (0: the item they labelled last), or None: the Annotate tab's back key."""
        latest = (
            select(func.max(m.Label.id).label("id"))
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
            .join(m.Item, m.Item.id == m.Label.item_id)
            .where(m.Item.dataset_id == dataset_id, m.Annotator.name == annotator)
            .group_by(m.Label.item_id)
            .subquery()
        )
        q = (
            select(m.Label, m.Annotator.name)
            .join(m.Annotator, m.Annotator.id == m.Label.annotator_id)
            .where(m.Label.id.in_(select(latest.c.id)))
            .order_by(m.Label.id.desc())
            .offset(max(0, offset))
            .limit(1)
        )

        def read(s: Session) -> tuple[int, datetime, HumanLabel] | None:
            row = s.execute(q).first()
            return None if row is None else (row[0].id, row[0].created_at, _label(row[0], row[1]))

        return self._query(read)

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
            return q.where(_shown_pair_split(r, dialect))
        case QueueFilter.POSITION_INCONSISTENT:
            return q.where(r.position_consistent.is_(False))
        case QueueFilter.TRUNCATED:
            return q.where(exists().where(m.Judgment.run_id == spec.run_id, m.Judgment.item_id == m.Item.id,
                                          m.Judgment.status == Status.TRUNCATED.value))  # fmt: skip
        case QueueFilter.NO_VERDICT:
            return q.where(r.decision != "decided")
    return q


def _shown_pair_split(r: Any, dialect: str) -> ColumnElement[bool]:
    """The comparison of the pair the queue shows (the ranking's top two, else responses 0 and 1) had
    votes for both sides: its own outcome in ``pairs``, never the item's votes summed over all the
    matches of a list (the Explorer's ``split_votes`` flag counts the same way)."""
    if dialect == "postgresql":
        p = func.json_array_elements(r.pairs).table_valued("value").alias("p")

        def num(doc: Any, key: Any) -> Any:
            return cast(doc.op("->>")(key), Integer)

        top = func.coalesce(num(r.ranking, 0), 0), func.coalesce(num(r.ranking, 1), 1)
        i, j = num(p.c.value, "i"), num(p.c.value, "j")
        votes = p.c.value.op("->")("votes")
        vi, vj = num(votes, p.c.value.op("->>")("i")), num(votes, p.c.value.op("->>")("j"))
    else:
        p = func.json_each(r.pairs).table_valued("value").alias("p")

        def num(doc: Any, path: Any) -> Any:
            return cast(func.json_extract(doc, path), Integer)

        top = func.coalesce(num(r.ranking, "$[0]"), 0), func.coalesce(num(r.ranking, "$[1]"), 1)
        i, j = num(p.c.value, "$.i"), num(p.c.value, "$.j")
        vi = num(p.c.value, literal('$.votes."') + func.json_extract(p.c.value, "$.i") + literal('"'))
        vj = num(p.c.value, literal('$.votes."') + func.json_extract(p.c.value, "$.j") + literal('"'))
    same = or_(and_(i == top[0], j == top[1]), and_(i == top[1], j == top[0]))
    return exists(select(1).select_from(p).where(same, func.coalesce(vi, 0) > 0, func.coalesce(vj, 0) > 0))


def _labelled_by(me: int | None, upto: int | None = None) -> ColumnElement[bool]:
    """The item (``items.id`` of the enclosing query) has a label by this annotator (any pair, any run);
    ``upto``: among the labels with ids up to it."""
    if me is None:
        return false()
    q = exists().where(m.Label.item_id == m.Item.id, m.Label.annotator_id == me)
    return q if upto is None else q.where(m.Label.id <= upto)


def _labellers(upto: int | None = None) -> Any:
    """How many different annotators labelled the item (``upto``: labels with ids up to it)."""
    q = select(func.count(func.distinct(m.Label.annotator_id))).where(m.Label.item_id == m.Item.id)
    return (q if upto is None else q.where(m.Label.id <= upto)).scalar_subquery()


def _progress_delta(
    s: Session, spec: QueueSpec, me: int | None, before: QueueProgress, since: int, upto: int
) -> QueueProgress:
    """``before`` (the progress counted with the labels up to ``since``) brought up to the labels up to
    ``upto``: only the queue's items that the labels in between touch are read."""
    touched = select(m.Label.item_id).where(m.Label.id > since, m.Label.id <= upto).distinct()
    ids = list(s.scalars(_matching(spec, _dialect(s)).where(m.Item.id.in_(touched))))
    done, left = before.done, before.left
    first: dict[int, dict[int, int]] = {}  # item -> annotator -> the id of their first label of it
    for start in range(0, len(ids), 900):
        q = (
            select(m.Label.item_id, m.Label.annotator_id, func.min(m.Label.id))
            .where(m.Label.item_id.in_(ids[start : start + 900]), m.Label.id <= upto)
            .group_by(m.Label.item_id, m.Label.annotator_id)
        )
        for item_id, annotator_id, label_id in s.execute(q):
            first.setdefault(item_id, {})[annotator_id] = label_id
    for item_id in ids:
        by = first.get(item_id, {})
        for_state = ({a for a, k in by.items() if k <= since}, set(by))  # labellers before, after
        mine = [me is not None and me in who for who in for_state]
        room = [not mine[k] and len(for_state[k]) < spec.overlap for k in (0, 1)]
        done += mine[1] - mine[0]
        left += room[1] - room[0]
    return QueueProgress(done=done, left=left, total=before.total)


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


#: ids per step of the walk in id order to the first open item (:func:`_first_in_id_order`): the first step,
#: doubled after each step that finds none, up to the last
SCAN_STEPS = (256, 8192)


def _first_in_id_order(s: Session, q: Select[Any], start: int, stop: int) -> int | None:
    """The lowest item id in ``[start, stop)`` that ``q`` (ids of items) selects, found by walking the ids in
    steps: each step is a primary-key range the planner bounds. Asked for the first of all at once,
    PostgreSQL evaluated and sorted every item of the data set (0.64 s a claim over 41,099 items, however
    near the start the first open item was; docs/benchmarks.md); SQLite walked in id order anyway. Steps that
    double keep a queue whose first open item is near its start cheap, and one deep into it no dearer."""
    step, most = SCAN_STEPS
    while start < stop:
        end = min(start + step, stop)
        found = s.scalar(q.where(m.Item.id >= start, m.Item.id < end).order_by(m.Item.id).limit(1))
        if found is not None:
            return found
        start, step = end, min(2 * step, most)
    return None


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
        forced_close=bool(r.forced_close), forced_at=r.forced_at, score_a=r.score_a, score_b=r.score_b,
        escalated_to=r.escalated_to,
    )  # fmt: skip


def _label(r: m.Label, annotator: str) -> HumanLabel:
    return HumanLabel(
        annotator=annotator, item_db_id=r.item_id, choice=Choice(r.choice), pair_i=r.pair_i, pair_j=r.pair_j,
        run_id=r.run_id, agrees_with_model=r.agrees_with_model, note=r.note, time_taken_s=r.time_taken_s,
        blind=bool(r.blind), guideline_version=r.guideline_version,
    )  # fmt: skip
