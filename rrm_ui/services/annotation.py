"""The annotation queue as the app uses it: the next task, submitting a label, skipping, reading labels.

A :class:`Task` is one pair of one item for one annotator. The item comes from
:meth:`Repository.claim_next <rrm_ui.storage.repo_annotation.AnnotationStore.claim_next>`: never
one the annotator labelled, the same one again after a page reload, and no more annotators per
item than the queue's overlap (the module docstring of :mod:`rrm_ui.storage.repo_annotation`
has the rules). The pair is ``(0, 1)`` for a two-response item; for a list of responses it is the
run's two best in its latest ranking (shown in index order, so the position does not reveal the
model's preference), else ``(0, 1)``.

Who sees which labels: an admin, or anyone in local single-user mode (no viewer), sees every
label of an item; an annotator sees only their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rrm_ui.domain import Account, Choice, HumanLabel, Judgment, QueueProgress, QueueSpec, Role, StoredItem
from rrm_ui.storage import Repository


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


@dataclass(frozen=True)
class StoredLabel:
    id: int
    created_at: datetime
    label: HumanLabel


def next_task(repo: Repository, spec: QueueSpec, annotator: str, *, ttl_s: float = 600) -> Task | None:
    """Claim the annotator's next item and describe it; None when the queue has nothing left for them."""
    item = repo.claim_next(spec, annotator, ttl_s=ttl_s)
    if item is None:
        return None
    row = repo.latest_result_row(spec.run_id, item.db_id) if spec.run_id is not None else None
    pair = _pair(row)
    model = None
    if spec.run_id is not None and row is not None:
        judgments = tuple(repo.pair_judgments(spec.run_id, item.db_id, *pair))
        model = ModelView(spec.run_id, *_pair_view(row, *pair), judgments=judgments)
    return Task(item, pair, spec.run_id, model, repo.queue_progress(spec, annotator))


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
    """Labels of an item, oldest first: all of them for an admin or no viewer (local mode), else the viewer's own."""
    name = None if viewer is None or viewer.role is Role.ADMIN else viewer.name
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
    "ModelView",
    "StoredLabel",
    "Task",
    "agrees_with_model",
    "item_labels",
    "my_labels",
    "next_task",
    "skip",
    "submit",
]
