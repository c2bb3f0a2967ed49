"""Exports and job plans stream from the database (issue 18, "sized for a million judgments"): on real
data (LLMBar Natural pairs and RM-Bench lists of six, imported from ../shared/data) with stored
judgments and human labels, an export written a few pairs / items at a time is the same as one written in
one piece, the full dump holds what an independent join of the tables (written here) holds, and a plan
reads every item that has no result, texts included, without holding the texts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel, ItemResult, JudgeSpec, Judgment, PairOutcome, Sampling, Status, Verdict
from rrm_ui.domain import Compute as ComputeSpec
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import exports, open_repository
from rrm_ui.services.datasets import import_file
from rrm_ui.services.exports import ExportFilters, export
from rrm_ui.services.judging import PlannedItems, plan_run
from rrm_ui.storage.models import Judgment as JudgmentRow

SPEC = JudgeSpec(judge="rrm", judge_version="1", backend="transformers", model="tiny",
                 sampling=Sampling(max_tokens=64, seed=1), compute=ComputeSpec(votes=1, swap=True),
                 strategy="pair")  # fmt: skip


def _judgment(a: int, b: int, verdict: Verdict | None, k: int) -> Judgment:
    status = Status.OK if verdict else Status.TRUNCATED
    tokens = None if k % 7 == 0 else 100 + k  # some empty integers, as errors leave them
    return Judgment(a, b, 0, verdict, status, verdict, f"trace {k}: compare {a} and {b}\rwith a lone CR",
                    f"\\boxed{{{verdict.value if verdict else ''}}}", tokens, 20, 15, 0.01, 0.5, "stop", k)  # fmt: skip


def _result(ext_id: str, n: int, rng: random.Random, k: int) -> ItemResult:
    """A pair judged in both orders (one vote each), for the pair (0, 1) of the item."""
    first, second = rng.choice((Verdict.A, Verdict.B, None)), rng.choice((Verdict.A, Verdict.B))
    js = (_judgment(0, 1, first, k), _judgment(1, 0, second, k + 1))
    votes = {0: 0, 1: 0}
    for j in js:
        if j.verdict is not None:
            votes[j.a if j.verdict is Verdict.A else j.b] += 1
    winner = 0 if votes[0] > votes[1] else 1 if votes[1] > votes[0] else None
    consistent = None if first is None else (first is Verdict.A) == (second is Verdict.B)
    pair = PairOutcome(0, 1, winner, votes, int(first is None), consistent, 2, None, js)
    ranking = () if winner is None else (winner, 1 - winner)
    return ItemResult(ext_id, "pair", winner, ranking, (pair,), "rrm", "1", "tiny", "transformers")


@pytest.fixture
def stored(db_url: str, shared_data: Path):  # noqa: ANN201
    repo = open_repository(Settings(database_url=db_url))
    nat = import_file(repo, shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json", name="natural",
                      mapping=PRESETS["llmbar"])  # fmt: skip
    chat = import_file(repo, shared_data / "rm-bench/chat_filtered.json", name="chat")
    rng = random.Random(7)
    for info in (nat, chat):
        run, _ = repo.get_or_create_run(info.id, "tiny", **SPEC.run_columns())
        items = repo.items(info.id)
        for k, it in enumerate(items):
            if k % 5 != 4:  # four in five items judged
                repo.save_result(run.id, it.db_id, _result(it.item.id, len(it.item.responses), rng, 2 * k))
            for who in ("alice", "bob")[: k % 3]:  # none, one or two humans on the pair (0, 1)
                choice = rng.choice((Choice.A, Choice.B, Choice.A, Choice.TIE))
                repo.add_label(HumanLabel(who, it.db_id, choice))
            if len(it.item.responses) > 2 and k % 4 == 0:  # a pair of a list
                repo.add_label(HumanLabel("alice", it.db_id, rng.choice((Choice.A, Choice.B)), pair_i=2, pair_j=4))
    return repo, nat, chat


FILTERS = [
    {},
    {"with_reasoning": True},
    {"fill_from": "gold"},
    {"fill_from": "none"},
    {"only_corrected": True},
    {"only_disagreements": True},
    {"annotator": "alice"},
]


@pytest.mark.parametrize("fmt", ["trl", "trl-conversational", "rrm", "trl-parquet"])
def test_pair_exports_written_in_chunks_equal_one_piece(stored, tmp_path: Path, monkeypatch, fmt: str) -> None:  # noqa: ANN001
    repo, nat, chat = stored
    for ds in (nat.name, chat.name):
        for k, options in enumerate(FILTERS):
            f = ExportFilters(dataset=ds, **options)
            monkeypatch.setattr(exports, "PAIRS_PER_CHUNK", 10**9)
            whole = export(repo, fmt, tmp_path / f"whole-{ds}-{k}", f)
            monkeypatch.setattr(exports, "PAIRS_PER_CHUNK", 3)
            chunked = export(repo, fmt, tmp_path / f"chunked-{ds}-{k}", f)
            assert whole.written > 0 or options, (ds, options)
            assert (chunked.written, chunked.skipped, chunked.sources) == (whole.written, whole.skipped, whole.sources)
            if fmt == "trl-parquet":
                a, b = pd.read_parquet(whole.path), pd.read_parquet(chunked.path)
                pd.testing.assert_frame_equal(a, b)
                assert list(a.columns) == list(exports.TRL_PARQUET_COLUMNS) and len(a) == whole.written
            else:
                assert Path(whole.path).read_bytes() == Path(chunked.path).read_bytes()
            assert not list(tmp_path.glob("*.part"))


def test_pair_export_rows_carry_the_stored_texts(stored, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Each row's texts are its item's (read a chunk at a time): checked against the items read here."""
    repo, _, chat = stored
    monkeypatch.setattr(exports, "PAIRS_PER_CHUNK", 4)
    summary = export(repo, "rrm", tmp_path / "rrm.jsonl", ExportFilters(dataset=chat.name, fill_from="gold"))
    items = {it.item.id: it.item for it in repo.items(chat.id)}
    rows = [json.loads(line) for line in Path(summary.path).read_text().splitlines()]
    assert len(rows) == summary.written > 100
    for r in rows:
        it, (i, j) = items[r["id"]], r["pair"]
        assert r["query"] == it.query and {r["response1"], r["response2"]} == {it.responses[i], it.responses[j]}


def _expected_dump(repo, dataset_id: int, run: str | None) -> pd.DataFrame:  # noqa: ANN001
    """The dump as a join of the tables in one piece (how the export did it before it streamed)."""
    with repo.engine.connect() as conn:
        j = pd.read_sql(text("SELECT judgments.* FROM judgments JOIN items ON items.id = judgments.item_id "
                             "WHERE items.dataset_id = :d"), conn, params={"d": dataset_id})  # fmt: skip
        items = pd.read_sql(text("SELECT id AS item_id, ext_id, query, responses, subset, gold_tiers FROM items "
                                 "WHERE dataset_id = :d"), conn, params={"d": dataset_id})  # fmt: skip
        runs = pd.read_sql(text("SELECT id AS run_id, name AS run, model, backend, template, template_version "
                                "FROM runs WHERE dataset_id = :d"), conn, params={"d": dataset_id})  # fmt: skip
        labels = pd.read_sql(text("SELECT l.item_id, a.name, l.choice FROM labels l JOIN annotators a "
                                  "ON a.id = l.annotator_id WHERE l.id IN (SELECT max(id) FROM labels "
                                  "GROUP BY annotator_id, item_id, pair_i, pair_j)"), conn)  # fmt: skip
    if run is not None:
        j = j[j["run_id"].isin(runs.loc[runs["run"] == run, "run_id"])]
    decode = lambda v: json.loads(v) if isinstance(v, str) else v  # noqa: E731 - JSON as text on SQLite
    items["responses"] = items["responses"].map(decode)
    items["gold_tiers"] = items["gold_tiers"].map(lambda g: None if g is None else json.dumps(decode(g)))
    frame = j.merge(items, on="item_id").merge(runs, on="run_id", how="left")
    per_item = labels.assign(label=labels["name"] + "=" + labels["choice"]).groupby("item_id")["label"]
    frame["human_labels"] = frame["item_id"].map(per_item.agg(lambda s: ";".join(sorted(s))))
    frame["final_labels"] = None
    frame["response_a"] = [r[a] for r, a in zip(frame["responses"], frame["a"], strict=True)]
    frame["response_b"] = [r[b] for r, b in zip(frame["responses"], frame["b"], strict=True)]
    frame = frame.drop(columns=["responses"]).sort_values(["run_id", "item_id", "a", "b", "sample", "id"])
    return frame.reset_index(drop=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_full_dump_streamed_holds_the_joined_tables(stored, tmp_path: Path, monkeypatch, fmt: str) -> None:  # noqa: ANN001
    repo, nat, chat = stored
    monkeypatch.setattr(exports, "ITEMS_PER_CHUNK", 7)  # many chunks per run
    for info in (nat, chat):
        for run in (None, "tiny"):
            f = ExportFilters(dataset=info.name, run=run)
            summary = export(repo, fmt, tmp_path / f"{info.name}-{run}.{fmt}", f)
            got = pd.read_parquet(summary.path) if fmt == "parquet" else pd.read_csv(summary.path)
            want = _expected_dump(repo, info.id, run)
            assert summary.written == len(got) == len(want) > 100
            table = list(JudgmentRow.__table__.columns.keys())  # the table's columns, then the joined ones
            assert list(got.columns) == table + [c for c in want.columns if c not in table]
            for column in ("id", "item_id", "a", "b", "sample", "prompt_tokens", "seed"):
                g, w = (x[column].astype("float64").fillna(-1).tolist() for x in (got, want))
                assert g == w, column
            for column in ("reasoning", "answer", "query", "response_a", "response_b", "ext_id", "run", "human_labels",
                           "gold_tiers", "verdict", "status"):  # fmt: skip
                g = got[column].map(lambda v: None if pd.isna(v) else str(v)).tolist()
                w = want[column].map(lambda v: None if pd.isna(v) else str(v)).tolist()
                assert g == w, column


def test_dump_of_a_data_set_without_judgments_has_the_header_only(stored, tmp_path: Path, shared_data: Path) -> None:  # noqa: ANN001
    repo, _, _ = stored
    import_file(repo, shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json", name="empty",
                mapping=PRESETS["llmbar"])  # fmt: skip
    for fmt in ("csv", "parquet"):
        summary = export(repo, fmt, tmp_path / f"empty.{fmt}", ExportFilters(dataset="empty"))
        got = pd.read_parquet(summary.path) if fmt == "parquet" else pd.read_csv(summary.path)
        assert summary.written == len(got) == 0 and "response_a" in got.columns and "reasoning" in got.columns


def test_a_plan_holds_ids_and_reads_every_unjudged_item(stored, monkeypatch) -> None:  # noqa: ANN001
    repo, nat, chat = stored
    monkeypatch.setattr(PlannedItems, "CHUNK", 7)  # the texts read in many chunks
    for info in (nat, chat):
        items = repo.items(info.id)
        with repo.engine.connect() as conn:
            judged = {r[0] for r in conn.execute(text("SELECT DISTINCT item_id FROM item_results r JOIN runs "
                                                       "ON runs.id = r.run_id WHERE runs.name = 'tiny' "
                                                       "AND runs.dataset_id = :d"), {"d": info.id})}  # fmt: skip
        plan = plan_run(repo, info.id, "tiny", SPEC)
        assert isinstance(plan.todo, PlannedItems) and not plan.created
        want = [it for it in items if it.db_id not in judged]
        assert plan.already_done == len(judged) == len(items) - len(want) and len(plan.todo) == len(want) > 0
        assert list(plan.todo) == want  # every text read back, in the data set's order
        assert plan.todo[1] == want[1] and list(plan.todo[2:5]) == want[2:5]
        fresh = plan_run(repo, info.id, "new run", SPEC)  # a new run: every item
        assert fresh.created and fresh.already_done == 0 and list(fresh.todo) == items
