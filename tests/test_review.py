"""Adjudication, guidelines and annotators blind to each other (issue 17), on real databases and exports.

Storage tests run on SQLite and PostgreSQL (``db_url``); exports are written and read back; the
access rules are checked through the services (the Review tab's handlers in test_review_tab.py).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.domain import Choice, HumanLabel, Role
from rrm_ui.io.importers import PRESETS
from rrm_ui.services import accounts, open_repository, review
from rrm_ui.services.datasets import import_file
from rrm_ui.services.exports import ExportFilters, export
from rrm_ui.storage import Repository
from tests.conftest import llmbar_subset
from tests.test_cli import ROOT, rrm_ui

HH = "hh-rlhf/harmless-base-test-first300.jsonl.gz"
PW = "correct horse battery"


def _llmbar(repo: Repository, shared_data: Path, tmp_path: Path, n: int = 6) -> tuple[int, list, list[dict]]:
    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:n]
    info = import_file(repo, llmbar_subset(shared_data, tmp_path, n), name="llmbar", mapping=PRESETS["llmbar"])
    return info.id, repo.items(info.id), raw


def _cli_stdin(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rrm_ui", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, input=stdin)  # fmt: skip


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def repo(db_url: str) -> Repository:
    return open_repository(Settings(database_url=db_url))


def test_adjudications_are_append_only_with_history(repo: Repository, shared_data: Path, tmp_path: Path) -> None:
    ds, items, _ = _llmbar(repo, shared_data, tmp_path)
    it = items[0].db_id
    first = review.adjudicate(repo, "rita", it, (0, 1), Choice.A, "  follows the instruction  ")
    second = review.adjudicate(repo, "rita", it, (1, 0), Choice.A, "on a second reading, 2 is right")  # (j, i)
    other = review.adjudicate(repo, "sam", items[1].db_id, (0, 1), Choice.TIE, "both fine")
    history = repo.adjudications_of(item_db_id=it)
    assert [a.id for a in history] == [first, second]
    assert [(a.choice, a.reason, a.reviewer) for a in history] == [
        (Choice.A, "follows the instruction", "rita"),
        (Choice.A, "on a second reading, 2 is right", "rita"),
    ]
    assert [a.id for a in repo.adjudications_of(dataset_id=ds)] == [first, second, other]
    final = review.final_labels(repo, ds)
    # the latest wins; stored as (1, 0) choice A, it reads as B about (0, 1)
    assert final[(it, 0, 1)]["choice"] == "B" and final[(it, 0, 1)]["id"] == second
    assert final[(items[1].db_id, 0, 1)]["choice"] == "tie"
    assert len(repo.frame("adjudications")) == 3  # nothing overwritten
    with pytest.raises(ValueError, match="reason"):
        review.adjudicate(repo, "rita", it, (0, 1), Choice.A, "   ")
    with pytest.raises(ValueError, match="pair"):
        review.adjudicate(repo, "rita", it, (0, 2), Choice.A, "x")


def test_who_may_adjudicate_and_edit_guidelines(repo: Repository, shared_data: Path, tmp_path: Path) -> None:
    ds, items, _ = _llmbar(repo, shared_data, tmp_path)
    it = items[0].db_id
    # local single-user mode (no account has a password): the local user may do everything
    assert review.can_review(repo, "local")
    review.adjudicate(repo, "local", it, (0, 1), Choice.A, "local mode")
    accounts.add_user(repo, "ann", PW)
    accounts.add_user(repo, "rev", PW, Role.REVIEWER)
    accounts.add_user(repo, "boss", PW, Role.ADMIN)
    with pytest.raises(PermissionError, match="only reviewers and admins"):
        review.adjudicate(repo, "ann", it, (0, 1), Choice.B, "I think so")
    with pytest.raises(PermissionError):
        review.adjudicate(repo, "stranger", it, (0, 1), Choice.B, "?")
    review.adjudicate(repo, "rev", it, (0, 1), Choice.B, "reviewer")
    review.adjudicate(repo, "boss", it, (0, 1), Choice.A, "admin")
    assert [a.reviewer for a in repo.adjudications_of(item_db_id=it)] == ["local", "rev", "boss"]
    for who in ("ann", "rev"):
        with pytest.raises(PermissionError, match="only admins"):
            review.save_guidelines(repo, "llmbar", "# Rules", who)
        with pytest.raises(PermissionError, match="only admins"):
            review.set_blind(repo, "llmbar", True, who)
    assert review.save_guidelines(repo, "llmbar", "# Rules", "boss").version == 1
    assert review.save_guidelines(repo, "llmbar", "# Rules 2", None).version == 2  # the command line


def test_guidelines_are_versioned_and_every_label_records_its_version(
    repo: Repository, shared_data: Path, tmp_path: Path
) -> None:
    ds, items, _ = _llmbar(repo, shared_data, tmp_path)
    repo.add_label(HumanLabel("ann", items[0].db_id, Choice.A))  # before any guidelines
    g1 = review.save_guidelines(repo, "llmbar", "# How to label\n\nPrefer the honest answer.", "boss")
    repo.add_label(HumanLabel("ann", items[1].db_id, Choice.B))
    assert review.save_guidelines(repo, "llmbar", g1.text, "boss").version == 1  # unchanged text: no new version
    g2 = review.save_guidelines(repo, "llmbar", g1.text + "\n\nTies only when equal.", "boss")
    repo.add_label(HumanLabel("ann", items[2].db_id, Choice.TIE))
    repo.add_label(HumanLabel("bob", items[2].db_id, Choice.A))
    assert (g1.version, g2.version) == (1, 2)
    versions = {lb.item_db_id: lb.guideline_version for _, _, lb in repo.labels_of(dataset_id=ds, annotator="ann")}
    assert versions == {items[0].db_id: None, items[1].db_id: 1, items[2].db_id: 2}
    frame = repo.latest_labels(ds)
    assert sorted(frame["guideline_version"].dropna().astype(int)) == [1, 2, 2]
    dash = repo.analytics_frames().labels  # what the dashboards read, for agreement by guideline version
    assert sorted(dash["guideline_version"].dropna().astype(int)) == [1, 2, 2]
    assert repo.guidelines(ds).text == g2.text and repo.guidelines(ds, 1).text == g1.text
    assert [(g.version, g.author) for g in repo.guideline_history(ds)] == [(1, "boss"), (2, "boss")]
    with pytest.raises(ValueError, match="no data set named 'nope'"):
        review.save_guidelines(repo, "nope", "x", None)
    with pytest.raises(ValueError, match="empty"):
        review.save_guidelines(repo, "llmbar", "  \n", None)


def test_review_queue_filters(repo: Repository, shared_data: Path, tmp_path: Path) -> None:
    ds, items, raw = _llmbar(repo, shared_data, tmp_path)
    gold = ["A" if r["label"] == 1 else "B" for r in raw]
    flip = {"A": "B", "B": "A"}
    ids = [it.db_id for it in items]
    # item 0: annotators disagree; item 1: both agree, against gold; item 2: agree with gold, a note;
    # item 3: agree with gold; item 4: one label against gold, stored about (1, 0)
    repo.add_label(HumanLabel("ann", ids[0], Choice(gold[0])))
    repo.add_label(HumanLabel("bob", ids[0], Choice(flip[gold[0]])))
    for who in ("ann", "bob"):
        repo.add_label(HumanLabel(who, ids[1], Choice(flip[gold[1]])))
        repo.add_label(HumanLabel(who, ids[3], Choice(gold[3])))
    repo.add_label(HumanLabel("ann", ids[2], Choice(gold[2]), note="response 2 is rude"))
    repo.add_label(HumanLabel("ann", ids[4], Choice(gold[4]), pair_i=1, pair_j=0))  # mirrored: against gold
    queue = review.review_queue
    assert [e.item_db_id for e in queue(repo, ds, None, ("humans",))] == [ids[0]]
    assert [e.item_db_id for e in queue(repo, ds, None, ("gold",))] == [ids[0], ids[1], ids[4]]
    assert [e.item_db_id for e in queue(repo, ds, None, ("note",))] == [ids[2]]
    both = queue(repo, ds, None, ("humans", "gold"))
    assert [(e.item_db_id, e.reasons) for e in both] == [(ids[0], ("humans", "gold")), (ids[1], ("gold",)),
                                                         (ids[4], ("gold",))]  # fmt: skip
    assert both[0].human == {"ann": gold[0], "bob": flip[gold[0]]} and both[0].gold == gold[0]
    review.adjudicate(repo, "rev", ids[0], (0, 1), Choice(gold[0]), "gold is right")
    assert [e.item_db_id for e in queue(repo, ds, None, ("humans",))] == []
    (done,) = queue(repo, ds, None, ("humans",), include_adjudicated=True)
    assert done.final == gold[0]
    with pytest.raises(ValueError, match="unknown review filter"):
        queue(repo, ds, None, ("vibes",))


def test_export_takes_adjudicated_then_agreeing_humans_then_the_fill(
    repo: Repository, shared_data: Path, tmp_path: Path
) -> None:
    ds, items, raw = _llmbar(repo, shared_data, tmp_path, n=6)
    ids = [it.db_id for it in items]
    gold = ["A" if r["label"] == 1 else "B" for r in raw]
    flip = {"A": "B", "B": "A"}
    repo.add_label(HumanLabel("ann", ids[0], Choice.A))
    repo.add_label(HumanLabel("bob", ids[0], Choice.B))  # disagree: adjudicated below
    repo.add_label(HumanLabel("ann", ids[1], Choice.A))
    repo.add_label(HumanLabel("bob", ids[1], Choice.B))  # disagree, not adjudicated: skipped
    for who in ("ann", "bob"):
        repo.add_label(HumanLabel(who, ids[2], Choice(flip[gold[2]])))  # agree, against gold: humans win
    review.adjudicate(repo, "rev", ids[0], (0, 1), Choice.B, "2 answers the question")
    review.adjudicate(repo, "rev", ids[3], (0, 1), Choice(flip[gold[3]]), "gold is wrong here")  # no labels

    def run(fill: str) -> tuple[dict, object]:
        out = tmp_path / f"{fill}.jsonl"
        summary = export(repo, "trl", out, ExportFilters(dataset="llmbar", fill_from=fill))
        rows = {r["id"]: r for r in _rows(out)}
        assert summary.written == len(rows) and summary.considered == 6
        assert sum(summary.sources.values()) == summary.written
        return rows, summary

    def better(k: int, choice: str) -> str:
        return raw[k]["output_1"] if choice == "A" else raw[k]["output_2"]

    rows, summary = run("gold")
    ext = [it.item.id for it in items]
    assert set(rows) == {ext[0], ext[2], ext[3], ext[4], ext[5]}
    assert rows[ext[0]]["chosen"] == better(0, "B") and rows[ext[0]]["source"] == "adjudicated"
    assert rows[ext[2]]["chosen"] == better(2, flip[gold[2]]) and rows[ext[2]]["source"] == "human"
    assert rows[ext[3]]["chosen"] == better(3, flip[gold[3]]) and rows[ext[3]]["source"] == "adjudicated"
    for k in (4, 5):
        assert rows[ext[k]]["chosen"] == better(k, gold[k]) and rows[ext[k]]["source"] == "gold"
        assert rows[ext[k]]["rejected"] == better(k, flip[gold[k]])
    assert dict(summary.sources) == {"adjudicated": 2, "human": 1, "gold": 2}
    assert dict(summary.skipped) == {"humans_disagree": 1}
    assert "decisions from: adjudicated 2, human 1, gold 2" in summary.describe()
    rows, summary = run("none")
    assert set(rows) == {ext[0], ext[2], ext[3]} and dict(summary.skipped) == {"humans_disagree": 1, "no_decision": 2}
    rows, summary = run("model")  # no run judged this data set: the same as none
    assert set(rows) == {ext[0], ext[2], ext[3]} and summary.skipped["no_decision"] == 2
    with pytest.raises(ValueError, match="fill-from"):
        export(repo, "trl", tmp_path / "x.jsonl", ExportFilters(dataset="llmbar", fill_from="vibes"))


def test_a_chosen_rejected_set_reexports_every_pair_from_gold(shared_data: Path, tmp_path: Path) -> None:
    """Regression: gold could never be exported, so HH-RLHF imported and exported gave 0 rows."""
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    assert rrm_ui("import", str(shared_data / HH), "--db", db, "--name", "hh").returncode == 0
    out = tmp_path / "hh.jsonl"
    before = rrm_ui("export", "--db", db, "--dataset", "hh", "--format", "trl", "--out", str(out))
    assert before.returncode == 0 and "wrote 0 rows" in before.stdout  # the default fill: a model run, none here
    proc = rrm_ui("export", "--db", db, "--dataset", "hh", "--format", "trl", "--out", str(out), "--fill-from", "gold")
    assert proc.returncode == 0, proc.stderr
    with gzip.open(shared_data / HH, "rt", encoding="utf-8") as f:
        raw = [json.loads(line) for line in f]
    rows = _rows(out)
    assert len(rows) == len(raw) == 300 and "decisions from: gold 300" in proc.stdout
    for row, rec in zip(rows, raw, strict=True):  # the chosen text ends the raw chosen conversation
        assert rec["chosen"].endswith(row["chosen"]) and rec["rejected"].endswith(row["rejected"])
        assert row["chosen"] != row["rejected"] or rec["chosen"] == rec["rejected"]


def test_cli_reviewer_guidelines_and_blind(shared_data: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    assert rrm_ui("import", str(llmbar_subset(shared_data, tmp_path, 4)), "--db", db, "--preset", "llmbar",
                  "--name", "ll").returncode == 0  # fmt: skip
    proc = _cli_stdin("users", "add", "rita", "--reviewer", "--password-stdin", "--db", db, stdin=PW + "\n")
    assert proc.returncode == 0 and "added reviewer 'rita'" in proc.stdout, proc.stderr
    both = _cli_stdin("users", "add", "x", "--reviewer", "--admin", "--password-stdin", "--db", db, stdin=PW + "\n")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    rules = tmp_path / "rules.md"
    rules.write_text("# Guidelines\n\n- prefer the response that follows the instruction\n", encoding="utf-8")
    proc = rrm_ui("datasets", "guidelines", "ll", str(rules), "--db", db)
    assert proc.returncode == 0 and "version 1" in proc.stdout, proc.stderr
    proc = rrm_ui("datasets", "guidelines", "nope", str(rules), "--db", db)
    assert proc.returncode == 2 and "no data set named 'nope'" in proc.stderr
    proc = rrm_ui("datasets", "guidelines", "ll", str(tmp_path / "missing.md"), "--db", db)
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    assert rrm_ui("datasets", "blind", "ll", "off", "--db", db).returncode == 0
    repo = open_repository(Settings(database_url=db))
    (info,) = repo.datasets()
    assert repo.account("rita").role is Role.REVIEWER and repo.account("rita").can_review
    assert repo.guidelines(info.id).text == rules.read_text(encoding="utf-8")
    assert repo.dataset_blind(info.id) is False and not review.is_blind(repo, info.id, overlap=3)
    assert rrm_ui("datasets", "blind", "ll", "auto", "--db", db).returncode == 0
    assert review.is_blind(repo, info.id, overlap=2) and not review.is_blind(repo, info.id, overlap=1)


def test_blind_annotators_see_only_their_own_labels_until_adjudicated(
    repo: Repository, shared_data: Path, tmp_path: Path
) -> None:
    ds, items, _ = _llmbar(repo, shared_data, tmp_path)
    accounts.add_user(repo, "ann", PW)
    accounts.add_user(repo, "bob", PW)
    accounts.add_user(repo, "rev", PW, Role.REVIEWER)
    ids = [it.db_id for it in items]
    for k in (0, 1):
        repo.add_label(HumanLabel("ann", ids[k], Choice.A, note="ann's note"))
        repo.add_label(HumanLabel("bob", ids[k], Choice.B, note="bob's note"))
    labels = repo.latest_labels(ds)

    def seen(viewer: str, overlap: int = 2) -> set[tuple[str, int]]:
        shown = review.visible_labels(repo, labels, viewer, ds, overlap)
        return set(zip(shown["annotator"], shown["item_id"], strict=True))

    everyone = {(a, i) for a in ("ann", "bob") for i in ids[:2]}
    assert seen("ann") == {("ann", ids[0]), ("ann", ids[1])}  # overlap 2: blind by default
    assert seen("rev") == everyone
    assert seen("ann", overlap=1) == everyone  # no overlap: the research view
    review.adjudicate(repo, "rev", ids[0], (1, 0), Choice.A, "bob is right")
    assert seen("ann") == {("ann", ids[0]), ("bob", ids[0]), ("ann", ids[1])}
    review.set_blind(repo, "llmbar", False, None)
    assert seen("bob") == everyone
    review.set_blind(repo, "llmbar", True, None)
    assert seen("bob", overlap=1) == {("bob", ids[0]), ("ann", ids[0]), ("bob", ids[1])}


def test_queue_against_the_model_and_corrections_by_a_reviewer(
    repo: Repository, shared_data: Path, tmp_path: Path
) -> None:
    from rrm_ui.domain import ImportedVerdict

    ds, items, _ = _llmbar(repo, shared_data, tmp_path, n=4)
    ext = [it.item.id for it in items]
    # an external judge says A on every item; humans: B on item 0, A on item 1, tie on item 2
    run = repo.attach_external_run(ds, "gpt", [ImportedVerdict(e, Choice.A) for e in ext])
    repo.add_label(HumanLabel("ann", items[0].db_id, Choice.B))
    repo.add_label(HumanLabel("ann", items[1].db_id, Choice.A))
    repo.add_label(HumanLabel("ann", items[2].db_id, Choice.TIE))
    queue = review.review_queue(repo, ds, run.id, ("model",))
    assert [(e.item_db_id, e.model) for e in queue] == [(items[0].db_id, "A"), (items[2].db_id, "A")]
    item = review.review_item(repo, items[0].db_id, (0, 1), run.id)
    assert item.model == "A" and [(lb.annotator, lb.choice, lb.latest) for lb in item.labels] == [("ann", "B", True)]
    # the reviewer overrules ann on item 1 (against the model): a correction, as adjudicated
    review.adjudicate(repo, "rev", items[1].db_id, (0, 1), Choice.B, "the model and ann missed the constraint")
    out = tmp_path / "corrected.jsonl"
    summary = export(repo, "trl", out, ExportFilters(dataset="llmbar", run="gpt", only_corrected=True))
    rows = {r["id"]: r["source"] for r in _rows(out)}
    # item 2's tie corrects the model too but cannot be a preference row; item 3 has no human decision
    assert rows == {ext[0]: "human", ext[1]: "adjudicated"} and dict(summary.skipped) == {"tie": 1, "not_corrected": 1}
    # the dump (one row per judgment) carries each item's final labels beside the human labels
    import pandas as pd

    from rrm_ui.domain import ItemResult, Judgment, PairOutcome, Status, Verdict

    judged, _ = repo.get_or_create_run(ds, "judged", backend="test", model="m", template="rrm", template_version="1",
                                       strategy="pair", sampling={}, compute={})  # fmt: skip
    for it in items[:2]:
        j = Judgment(a=0, b=1, sample=0, verdict=Verdict.A, status=Status.OK, lenient_verdict=Verdict.A,
                     reasoning="r", answer="\\boxed{Assistant 1}", prompt_tokens=5, completion_tokens=5,
                     reasoning_tokens=3, ttft_s=0.1, latency_s=1.0, finish_reason="stop", seed=0)  # fmt: skip
        pair = PairOutcome(i=0, j=1, winner=0, votes={0: 1, 1: 0}, invalid_votes=0, position_consistent=None,
                           samples_spent=1, adaptive_reason=None, judgments=(j,))  # fmt: skip
        repo.save_result(judged.id, it.db_id, ItemResult(id=it.item.id, strategy="pair", winner=0, ranking=(0, 1),
                         pairs=(pair,), template="rrm", template_version="1", model="m", backend="test"))  # fmt: skip
    dump = tmp_path / "dump.csv"
    assert export(repo, "csv", dump, ExportFilters(dataset="llmbar", run="judged")).written == 2
    frame = pd.read_csv(dump, dtype={"ext_id": str}).set_index("ext_id")
    assert frame.loc[ext[1], "final_labels"] == "0-1=B by rev" and pd.isna(frame.loc[ext[0], "final_labels"])
    assert frame.loc[ext[0], "human_labels"] == "ann=B"


def test_reviewers_see_every_label_of_an_item(repo: Repository, shared_data: Path, tmp_path: Path) -> None:
    from rrm_ui.domain import Account
    from rrm_ui.services import annotation

    _ds, items, _ = _llmbar(repo, shared_data, tmp_path, n=2)
    repo.add_label(HumanLabel("ann", items[0].db_id, Choice.A))
    repo.add_label(HumanLabel("bob", items[0].db_id, Choice.B))
    seen = {role: [r.label.annotator for r in annotation.item_labels(repo, items[0].db_id, Account(9, "x", role, True))]
            for role in Role}  # fmt: skip
    assert seen == {Role.ANNOTATOR: [], Role.REVIEWER: ["ann", "bob"], Role.ADMIN: ["ann", "bob"]}
