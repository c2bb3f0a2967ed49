"""The annotation queue as the app uses it: the next task, submitting a label, skipping, reading labels.

A :class:`Task` is one pair of one item for one annotator. The item comes from
:meth:`Repository.claim_next <rrm_ui.storage.repo_annotation.AnnotationStore.claim_next>`: never
one the annotator labelled, the same one again after a page reload, and no more annotators per
item than the queue's overlap (the module docstring of :mod:`rrm_ui.storage.repo_annotation`
has the rules). The pair is ``(0, 1)`` for a two-response item; for a list of responses it is the
run's two best in its latest ranking (shown in index order, so the position does not reveal the
model's preference), else ``(0, 1)``.

Who sees which labels: an admin or a reviewer, or anyone in local single-user mode (no viewer), sees
every label of an item; an annotator sees only their own.

An item's identity, the same in every tab: ``DATA SET / ITEM ID`` (:func:`item_ref`), the item id being
the data set's own (the ``id`` field imported, ``row-N`` without one, ``live-...`` for a Judge-tab item);
:func:`find_item` reads it back (the Explorer's and the Annotate tab's item boxes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rrm_ui.domain import Account, Choice, HumanLabel, Judgment, QueueProgress, QueueSpec, StoredItem
from rrm_ui.storage import Repository
from rrm_ui.storage import models as m

REF_SEP = " / "  # between the data set's name and the item's id


@dataclass(frozen=True)
class ModelView:
    """What the audited run decided about the task's pair."""

    run_id: int
    winner: int | None  # the pair's i or j, or None (tie, no valid verdict, no decision on this pair)
    decision: str  # decided | tie | undecided
    votes: dict[int, int]  # response index (i or j) -> samples that chose it
    position_consistent: bool | None
    judgments: tuple[Judgment, ...]  # every judgment of the pair in the run, both orders, oldest first


@dataclass(frozen=True)
class Task:
    item: StoredItem
    pair: tuple[int, int]  # (i, j): Choice.A means response i is better
    run_id: int | None  # the audited run; None in plain preference collection
    model: ModelView | None  # None without a run (or if the run has no result for the item)
    progress: QueueProgress
    why: str = ""  # why this pair of a list is asked about ("" for a two-response item)
    dataset: str = ""  # the data set's name: with item.item.id, the item as every tab names it (item_ref)

    @property
    def ref(self) -> str:
        return item_ref(self.dataset, self.item.item.id)


@dataclass(frozen=True)
class StoredLabel:
    id: int
    created_at: datetime
    label: HumanLabel


def item_ref(dataset: str, item_id: str) -> str:
    """How every tab names an item: its data set and the data set's own id, ``llmbar / row-3``."""
    return f"{dataset}{REF_SEP}{item_id}"


def parse_item_ref(text: str, dataset: str | None = None) -> tuple[str, str]:
    """(data set, item id) of a reference as :func:`item_ref` writes it; a bare id is taken to be in
    ``dataset`` (the one chosen in the form). ValueError, saying the form, when it cannot be read."""
    text = (text or "").strip()
    if REF_SEP.strip() in text:
        name, _, item_id = text.partition(REF_SEP.strip())  # the first slash: an item id may hold more
        name, item_id = name.strip(), item_id.strip()
        if name and item_id:
            return name, item_id
    elif text and dataset:
        return dataset, text
    raise ValueError(f"expected an item as 'DATA SET / ITEM ID' (as the tabs show it, e.g. 'llmbar / row-3'), "
                     f"found {text!r}")  # fmt: skip


def find_item(repo: Repository, text: str, dataset: str | None = None) -> tuple[str, StoredItem]:
    """The stored item a reference names (:func:`parse_item_ref`), with its data set's name; a ValueError
    that says what is missing (no such data set, no such item in it)."""
    name, item_id = parse_item_ref(text, dataset)
    info = repo.dataset(name)
    if info is None and dataset and REF_SEP.strip() in text:  # a bare id of the chosen data set with a slash in it
        found = _lookup(repo, dataset, text.strip())
        if found is not None:
            return found
    if info is None:
        raise ValueError(f"no data set named {name!r} (in {text.strip()!r})")
    found = _lookup(repo, name, item_id)
    if found is None:
        raise ValueError(f"the data set {name!r} has no item with the id {item_id!r}")
    return found


def _lookup(repo: Repository, dataset: str, item_id: str) -> tuple[str, StoredItem] | None:
    info = repo.dataset(dataset)
    if info is None:
        return None
    rows = repo.frame("items", [m.Item.dataset_id == info.id, m.Item.ext_id == item_id])
    stored = repo.item(int(rows["id"].iat[0])) if len(rows) else None
    return (info.name, stored) if stored is not None else None


def next_task(repo: Repository, spec: QueueSpec, annotator: str, *, ttl_s: float = 600) -> Task | None:
    """Claim the annotator's next item and describe it; None when the queue has nothing left for them."""
    item = repo.claim_next(spec, annotator, ttl_s=ttl_s)
    if item is None:
        return None
    return _task(repo, spec, item, annotator)


@dataclass(frozen=True)
class Earlier:
    """An item the annotator labelled before, reopened for editing (the Annotate tab's back key)."""

    task: Task
    label: StoredLabel


def previous(repo: Repository, spec: QueueSpec, annotator: str, steps: int = 1) -> Earlier | None:
    """The item the annotator labelled ``steps`` items ago in the queue's data set (1: the last one), with
    their latest label on it; the task shows the labelled pair. None when there is no such item.

    A new choice on it is a new label (:func:`submit`); the earlier one stays in the history.
    """
    found = repo.recent_label(spec.dataset_id, annotator, steps - 1)
    if found is None:
        return None
    item = repo.item(found[2].item_db_id)
    if item is None:
        return None
    label = StoredLabel(*found)
    return Earlier(_task(repo, spec, item, annotator, (label.label.pair_i, label.label.pair_j)), label)


def open_item(repo: Repository, spec: QueueSpec, text: str, annotator: str) -> Task:
    """The item a reference names (``DATA SET / ITEM ID``, or a bare id in the queue's data set), as a task
    of the queue's run, not claimed: an item opened by its id, to label or label again. ValueError when the
    reference names nothing, or an item of another data set than the queue's."""
    name = _dataset_name(repo, spec.dataset_id)
    found, item = find_item(repo, text, name)
    if found != name:
        raise ValueError(f"{item_ref(found, item.item.id)} is in the data set {found!r}, not {name!r}: "
                         f"choose {found!r} in the Data set box first")  # fmt: skip
    return _task(repo, spec, item, annotator)


def _dataset_name(repo: Repository, dataset_id: int) -> str:
    rows = repo.frame("datasets", [m.Dataset.id == dataset_id])
    return str(rows["name"].iat[0]) if len(rows) else ""


def _task(
    repo: Repository, spec: QueueSpec, item: StoredItem, annotator: str, pair: tuple[int, int] | None = None
) -> Task:
    row = repo.latest_result_row(spec.run_id, item.db_id) if spec.run_id is not None else None
    why = ""
    if len(item.item.responses) > 2:
        if pair is not None:
            why = "the pair you labelled"
        elif row is not None and len(row["ranking"]) >= 2:
            why = ("the run ranked these two best (shown in index order, so the position does not tell "
                   "which one it preferred)")  # fmt: skip
        else:
            why = "the first two responses: no run ranks this list" if spec.run_id is None else (
                "the first two responses: the run has no ranking of this list")  # fmt: skip
    pair = pair or _pair(row)
    model = None
    if spec.run_id is not None and row is not None:
        judgments = tuple(repo.pair_judgments(spec.run_id, item.db_id, *pair))
        model = ModelView(spec.run_id, *_pair_view(row, *pair), judgments=judgments)
    progress = repo.queue_progress(spec, annotator)
    return Task(item, pair, spec.run_id, model, progress, why, _dataset_name(repo, spec.dataset_id))


def agrees_with_model(task: Task, choice: Choice) -> bool | None:
    """True/False when the model picked a winner of the pair and the human chose A or B; else None."""
    if task.model is None or task.model.winner is None or choice not in (Choice.A, Choice.B):
        return None
    chosen = task.pair[0] if choice is Choice.A else task.pair[1]
    return chosen == task.model.winner


def submit(
    repo: Repository,
    task: Task,
    annotator: str,
    choice: Choice,
    *,
    note: str | None = None,
    blind: bool = False,
    time_taken_s: float | None = None,
) -> int:
    """Store the annotator's label for the task's pair and release their claim; returns the label id.

    ``blind``: the model's verdict was hidden; agreement with the model is recorded either way.
    """
    label = HumanLabel(
        annotator=annotator,
        item_db_id=task.item.db_id,
        choice=choice,
        pair_i=task.pair[0],
        pair_j=task.pair[1],
        run_id=task.run_id,
        agrees_with_model=agrees_with_model(task, choice),
        note=(note or "").strip() or None,
        time_taken_s=time_taken_s,
        blind=blind,
    )
    label_id = repo.add_label(label)
    repo.release(task.item.db_id, annotator)
    return label_id


def skip(repo: Repository, item_db_id: int, annotator: str) -> None:
    """Let go of the item: others can be served it, and this annotator gets it again only after the rest."""
    repo.skip_item(item_db_id, annotator)


def item_labels(repo: Repository, item_db_id: int, viewer: Account | None) -> list[StoredLabel]:
    """Labels of an item, oldest first: all of them for an admin, a reviewer or no viewer (local mode), else the
    viewer's own."""
    name = None if viewer is None or viewer.can_review else viewer.name
    return [StoredLabel(*row) for row in repo.labels_of(item_db_id=item_db_id, annotator=name)]


def my_labels(repo: Repository, dataset_id: int, annotator: str) -> list[StoredLabel]:
    """The annotator's labels in a data set, oldest first."""
    return [StoredLabel(*row) for row in repo.labels_of(dataset_id=dataset_id, annotator=annotator)]


def _pair(row: dict[str, Any] | None) -> tuple[int, int]:
    ranking = row["ranking"] if row is not None else []
    return (min(ranking[:2]), max(ranking[:2])) if len(ranking) >= 2 else (0, 1)


def _pair_view(row: dict[str, Any], i: int, j: int) -> tuple[int | None, str, dict[int, int], bool | None]:
    """(winner, decision, votes, position_consistent) of the pair: its own outcome when the run compared
    it, else the item's aggregate (an external judge's verdict has no pair outcomes)."""
    for p in row["pairs"]:
        if {p.get("i"), p.get("j")} == {i, j}:
            votes = {int(k): int(v) for k, v in (p.get("votes") or {}).items() if int(k) in (i, j)}
            winner = p.get("winner") if p.get("winner") in (i, j) else None
            decision = "decided" if winner is not None else "tie" if sum(votes.values()) > 0 else "undecided"
            return winner, decision, votes, p.get("position_consistent")
    ranking = row["ranking"]
    winner = row["winner"] if row["winner"] in (i, j) else None
    if winner is None and i in ranking and j in ranking:
        winner = i if ranking.index(i) < ranking.index(j) else j
    votes = {k: v for k, v in row["votes"].items() if k in (i, j)}
    return winner, row["decision"] if winner is None else "decided", votes, row["position_consistent"]


__all__ = [
    "Earlier",
    "ModelView",
    "StoredLabel",
    "Task",
    "agrees_with_model",
    "find_item",
    "item_ref",
    "item_labels",
    "my_labels",
    "next_task",
    "open_item",
    "parse_item_ref",
    "previous",
    "skip",
    "submit",
]
