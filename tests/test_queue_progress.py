"""The annotation queue's progress is counted incrementally (issue 18): on real data (LLMBar Natural,
imported from ../shared/data) with a run's results, labels by several annotators added one by one
(relabels and other pairs included), results added midway and a label committed late below the ids
already counted, every figure equals an independent count from the tables written here, and a fresh
repository (a full count in SQL) agrees."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import insert, select

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel, ItemResult, JudgeSpec, PairOutcome, QueueSpec, Sampling
from rrm_ui.domain import Compute as ComputeSpec
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.storage import models as m

SPEC = JudgeSpec(judge="rrm", judge_version="1", backend="transformers", model="tiny",
                 sampling=Sampling(max_tokens=64, seed=1), compute=ComputeSpec(votes=1, swap=True),
                 strategy="pair")  # fmt: skip


def _result(ext_id: str, winner: int) -> ItemResult:
    pair = PairOutcome(0, 1, winner, {winner: 1, 1 - winner: 0}, 0, None, 1, None, ())
    return ItemResult(ext_id, "pair", winner, (winner, 1 - winner), (pair,), "rrm", "1", "tiny", "transformers")


def _expected(repo, spec: QueueSpec, annotator: str) -> tuple[int, int, int]:  # noqa: ANN001
    """(done, left, total) from the rows: the queue's items, who labelled each."""
    with repo.engine.connect() as conn:
        items = set(conn.scalars(select(m.Item.id).where(m.Item.dataset_id == spec.dataset_id)))
        if spec.run_id is not None:
            items &= set(conn.scalars(select(m.ItemResult.item_id).where(m.ItemResult.run_id == spec.run_id)))
        me = conn.scalar(select(m.Annotator.id).where(m.Annotator.name == annotator))
        who: dict[int, set[int]] = {}
        for item_id, annotator_id in conn.execute(select(m.Label.item_id, m.Label.annotator_id)):
            who.setdefault(item_id, set()).add(annotator_id)
    done = sum(1 for i in items if me in who.get(i, ()))
    left = sum(1 for i in items if me not in who.get(i, ()) and len(who.get(i, ())) < spec.overlap)
    return done, left, len(items)


def test_progress_counted_incrementally_equals_a_full_count(db_url: str, shared_data: Path, monkeypatch) -> None:  # noqa: ANN001
    from rrm_ui.storage import repo_annotation

    deltas = []  # the incremental path is the one taken after a label
    counted = repo_annotation._progress_delta
    monkeypatch.setattr(repo_annotation, "_progress_delta", lambda *a: deltas.append(a) or counted(*a))
    repo = open_repository(Settings(database_url=db_url))
    info = import_file(repo, shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json", name="natural",
                       mapping=PRESETS["llmbar"])  # fmt: skip
    items = repo.items(info.id)
    run, _ = repo.get_or_create_run(info.id, "tiny", **SPEC.run_columns())
    for it in items[:60]:
        repo.save_result(run.id, it.db_id, _result(it.item.id, it.db_id % 2))
    specs = [QueueSpec(info.id, run.id), QueueSpec(info.id, None, overlap=2), QueueSpec(info.id, run.id, overlap=3)]
    people = ["alice", "bob", "carol", "dave"]
    rng = random.Random(3)

    def check() -> None:
        for spec in specs:
            for who in people:
                got = repo.queue_progress(spec, who)
                assert (got.done, got.left, got.total) == _expected(repo, spec, who), (spec, who)
        fresh = open_repository(Settings(database_url=db_url))  # no memo: the full count in SQL
        for spec in specs:
            assert fresh.queue_progress(spec, "bob") == repo.queue_progress(spec, "bob")

    check()
    for step in range(60):
        it = rng.choice(items[:70])
        pair = (0, 1) if step % 5 else (1, 0)
        repo.add_label(HumanLabel(rng.choice(people[:3]), it.db_id, rng.choice((Choice.A, Choice.B)), *pair))
        if step % 4 == 0:
            check()
            assert deltas, "no progress was counted incrementally"
        if step == 30:  # the run judges more items: the queue itself grows
            for it in items[60:80]:
                repo.save_result(run.id, it.db_id, _result(it.item.id, 0))
    check()
    # a label committed late with an id below those already counted (ids handed out before commit)
    with repo.engine.begin() as conn:
        top = conn.scalar(select(m.Label.id).order_by(m.Label.id.desc()).limit(1))
        alice = conn.scalar(select(m.Annotator.id).where(m.Annotator.name == "alice"))
        row = {"annotator_id": alice, "item_id": items[5].db_id, "pair_i": 0, "pair_j": 1, "choice": "A"}
        conn.execute(insert(m.Label).values(id=top + 10, **row))
    check()
    with repo.engine.begin() as conn:
        conn.execute(insert(m.Label).values(id=top + 5, **row | {"item_id": items[6].db_id}))
    check()
