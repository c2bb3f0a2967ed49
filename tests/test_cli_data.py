"""`rrm-ui import`, `rrm-ui export` and `rrm-ui db upgrade` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from rrm_ui.config import Settings
from rrm_ui.services import open_repository
from tests.test_cli import rrm_ui


def test_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'sub' / 'rrm.db'}"
    proc = rrm_ui("db", "upgrade", "--db", db)
    assert proc.returncode == 0, proc.stderr
    from rrm_ui.storage.db import MIGRATIONS

    newest = max(p.name[:4] for p in MIGRATIONS.glob("versions/0*.py"))
    assert f"revision {newest}" in proc.stdout and (tmp_path / "sub" / "rrm.db").exists()


def test_import_llmbar_with_preset_then_export_trl_from_gold_free_labels(shared_data: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    source = shared_data / "llmbar/Dataset/LLMBar/Adversarial/Manual/dataset.json"
    proc = rrm_ui("import", str(source), "--db", db, "--preset", "llmbar", "--name", "manual")
    assert proc.returncode == 0, proc.stderr
    n = len(json.loads(source.read_text()))
    assert f"imported {n} items as data set 'manual'" in proc.stdout
    again = rrm_ui("import", str(source), "--db", db, "--preset", "llmbar", "--name", "manual")
    assert again.returncode == 2 and "exists already" in again.stderr
    out = tmp_path / "trl.jsonl"
    proc = rrm_ui("export", "--db", db, "--dataset", "manual", "--format", "trl", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    # no run and no human label yet: nothing to export, and every pair is counted as skipped
    assert "wrote 0 rows" in proc.stdout and f"no_decision {n}" in proc.stdout
    assert out.read_text() == ""


def test_import_with_annotators_and_an_external_judge(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    data = tmp_path / "pairs.csv"
    data.write_text("uid,question,a,b,gold,ann1,ann2\n"
                    "1,Capital of France?,Paris,Lyon,1,1,1\n"
                    "2,2+2?,5,4,2,2,1\n")  # fmt: skip
    verdicts = tmp_path / "gpt.jsonl"
    verdicts.write_text('{"id": "1", "verdict": "A"}\n{"id": "2", "verdict": "A"}\n')
    proc = rrm_ui("import", str(data), "--db", db, "--map", "id=uid", "--map", "query=question",
                  "--map", "responses=a,b", "--map", "label=gold", "--labels", "1=A,2=B",
                  "--annotator-column", "ann1=alice", "--annotator-column", "ann2=bob", "--annotator-labels", "1=A,2=B",
                  "--external", str(verdicts), "--external-run", "gpt-4o", "--external-labels", "A=A,B=B")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    repo = open_repository(Settings(database_url=db))
    (ds,) = repo.datasets()
    labels = repo.latest_labels(ds.id).sort_values(["item_id", "annotator"])
    assert list(zip(labels["annotator"], labels["choice"], strict=True)) == [
        ("alice", "A"), ("bob", "A"), ("alice", "B"), ("bob", "A")]  # fmt: skip
    (run,) = repo.runs(ds.id)
    assert run.name == "gpt-4o" and run.kind == "external"
    out = tmp_path / "rrm.jsonl"
    proc = rrm_ui("export", "--db", db, "--dataset", ds.name, "--format", "rrm", "--out", str(out), "--run", "gpt-4o")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # item 1: both humans say A; item 2: the humans disagree, so it is left out and counted
    assert [(r["id"], r["label"], r["source"]) for r in rows] == [("1", 1, "human")]
    assert "humans_disagree 1" in proc.stdout


def test_a_bad_file_is_refused_whole_and_the_database_is_unchanged(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"query": "q1", "response_a": "a", "response_b": "b"}\n'
                    '{"query": "q2", "response_a": "a", "response_b": ["not", "text"]}\n')  # fmt: skip
    proc = rrm_ui("import", str(data), "--db", db)
    assert proc.returncode == 2
    assert "pairs.jsonl, line 2, field 'response_b'" in proc.stderr and "nothing was imported" in proc.stderr
    repo = open_repository(Settings(database_url=db))
    assert repo.datasets() == [] and repo.frame("items").empty


def test_judging_the_same_relative_file_again_continues_its_data_set(tiny_model: Path, tmp_path: Path) -> None:
    """`rrm-ui judge pairs.jsonl --db ...` run twice from the file's folder finds the data set it imported."""
    import subprocess
    import sys

    (tmp_path / "pairs.jsonl").write_text('{"query": "q", "response_a": "a", "response_b": "b"}\n')
    cmd = [sys.executable, "-m", "rrm_ui", "judge", "pairs.jsonl", "--db", "sqlite:///rrm.db",
           "--backend", "transformers", "--model", str(tiny_model), "--max-tokens", "4", "--quiet"]  # fmt: skip
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "0 items to judge, 1 already judged" in second.stderr
