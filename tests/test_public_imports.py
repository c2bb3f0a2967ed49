"""Public judging and preference files imported as they are published, and what is stored.

The accepted half of the upload catalogue (tests/test_upload_faults.py holds the refused half):
real files from ../shared/data and variations with their real quirks (empty responses, JSON
booleans where text is meant, label codes 0/1/2, keys with spaces, a judge that failed to
answer, verdict files covering rows the user dropped, best-of-N objects nested in lists). Each
case checks what is stored against the raw text, computed independently in the test.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rrm_ui.config import Settings
from rrm_ui.io.importers import (
    ExternalVerdicts,
    ImportFileError,
    LabelFile,
    parse_label_values,
    parse_mapping,
    read_dataset,
)
from rrm_ui.services import open_repository
from rrm_ui.services.datasets import attach_labels, attach_verdicts, import_file
from rrm_ui.storage import Repository
from tests.test_cli import rrm_ui

HH = "hh-rlhf/harmless-base-test-first300.jsonl.gz"
ASSISTANT = "\n\nAssistant:"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return open_repository(Settings(database_url=f"sqlite:///{tmp_path / 'rrm.db'}"))


def _stored_items(repo: Repository, name: str) -> dict:
    info = repo.dataset(name)
    assert info is not None
    return {it.item.id: it for it in repo.items(info.id)}


# --- HH-RLHF: the prompt inside chosen and rejected -------------------------------------------


def _hh_raw(shared_data: Path) -> list[dict]:
    with gzip.open(shared_data / HH, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _hh_split(text: str) -> tuple[str, str]:
    """The usual HH-RLHF split (prompt up to the last Assistant marker), written here independently."""
    at = text.rfind(ASSISTANT)
    prompt, reply = text[:at], text[at + len(ASSISTANT) :]
    return prompt, reply[1:] if reply.startswith(" ") else reply


def _hh_query(prompt: str) -> str:
    """The prompt as rrm-ui flattens turns: a lone Human turn as it is, else 'User: ...\\n\\nAssistant: ...'."""
    turns = prompt.split("\n\n")[1:]
    joined, out = [], []
    for t in turns:  # a turn's text may itself hold blank lines: glue those back to the turn before
        if t.startswith(("Human:", "Assistant:")) or not joined:
            joined.append(t)
        else:
            joined[-1] += "\n\n" + t
    for t in joined:
        role, _, content = t.partition(":")
        out.append(("User" if role == "Human" else "Assistant", content[1:] if content.startswith(" ") else content))
    if len(out) == 1:
        return out[0][1]
    return "\n\n".join(f"{role}: {content}" for role, content in out)


def test_hh_rlhf_imports_as_published_with_prompts_and_responses_as_in_the_raw_text(shared_data, repo):
    raw = _hh_raw(shared_data)
    ds = read_dataset(shared_data / HH)
    assert ds.format == "preference-implicit" and len(ds.items) == len(raw) == 300
    multi = 0
    for item, rec in zip(ds.items, raw, strict=True):
        prompt_c, chosen = _hh_split(rec["chosen"])
        prompt_r, rejected = _hh_split(rec["rejected"])
        assert prompt_c == prompt_r  # true of every row of this slice
        assert item.query == _hh_query(prompt_c)
        best = item.gold_tiers.index(0)
        assert item.responses[best] == chosen and item.responses[1 - best] == rejected
        assert item.metadata.get("source_order") == ([1, 0] if best == 1 else None)
        multi += prompt_c.count("\n\nHuman:") > 1
    assert multi > 100 and any(f"{multi} multi-turn" in n for n in ds.notes)
    # a known row, by hand: line 1 is five turns; the chosen reply is the last Assistant turn only
    first = ds.items[0]
    assert first.query.startswith("User: what are some pranks with a pen i can do?\n\nAssistant: Are you looking")
    assert first.query.endswith("\n\nUser: okay some of these do not have anything to do with pens")
    assert first.metadata["turns"] == 5
    assert first.responses[first.gold_tiers.index(0)] == (
        "No, sorry!  All of these involve a pen, the point is that you can get funny results by doing pranks with pens."
    )
    # both presentation orders occur (the chosen response is not always first)
    assert {it.gold_tiers for it in ds.items} == {(0, 1), (1, 0)}
    info = import_file(repo, shared_data / HH)
    assert info.n_items == 300 and info.format == "preference-implicit"


def test_implicit_prompt_without_role_markers_follows_trls_extract_prompt(tmp_path):
    rows = [{"chosen": "The sky is blue.", "rejected": "The sky is green."}]
    (item,) = read_dataset(write_jsonl(tmp_path / "p.jsonl", rows)).items
    # TRL: prompt "The sky is", chosen " blue.", rejected " green." (the space goes with the completion)
    assert item.query == "The sky is"
    assert sorted(item.responses) == sorted([" blue.", " green."])


# --- human-preference sets with empty responses, booleans, codes 0/1/2 ----------------------------


def _llmbar_like(shared_data: Path, n: int) -> list[dict]:
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:n]
    out = []
    for k, r in enumerate(rows):
        out.append({"id": f"p{k}", "question": r["input"], "response1": r["output_1"], "response2": r["output_2"],
                    "annotator1": (k % 3), "annotator2": ((k + 1) % 3), "annotator3": "" if k % 4 else 2})  # fmt: skip
    if n > 18:
        out[18]["response1"] = ""  # the refused row of the issue: row 19
    out[5]["response2"] = True  # JSON true where the text True was meant
    out[7]["response1"] = 3.5
    return out


def test_empty_responses_and_booleans_are_imported_counted_and_judgeable(shared_data, tmp_path, repo):
    rows = _llmbar_like(shared_data, 30)
    path = write_jsonl(tmp_path / "human.jsonl", rows)
    mapping = parse_mapping(["query=question", "responses=response1,response2", "id=id"], None)
    codes = parse_label_values("0=tie,1=A,2=B")
    columns = {"annotator1": "ann1", "annotator2": "ann2", "annotator3": "ann3"}
    ds = read_dataset(path, mapping=mapping, annotator_columns=columns, annotator_labels=codes)
    by_id = {it.ext_id: it for it in ds.items}
    assert by_id["p18"].responses[0] == "" and by_id["p5"].responses[1] == "True" and by_id["p7"].responses[0] == "3.5"
    assert any("1 empty response(s) kept" in n for n in ds.notes)
    assert any("2 number or boolean value(s)" in n and "response1 1" in n and "response2 1" in n for n in ds.notes)
    # labels: 0 = tie, 1 = A, 2 = B; an empty cell is no label
    expect = []
    for k, r in enumerate(rows):
        for col, who in columns.items():
            if r[col] != "":
                expect.append((f"p{k}", who, {0: "tie", 1: "A", 2: "B"}[r[col]]))
    assert sorted((lb.ext_id, lb.annotator, lb.choice.value) for lb in ds.labels) == sorted(expect)
    repo.create_dataset(ds)
    stored = {it.item.id: it for it in repo.items(repo.dataset("human").id)}
    assert stored["p18"].item.responses[0] == "" and stored["p5"].item.responses[1] == "True"
    # the prompt renders an empty response as the official code would: an empty slot, nothing else
    from rrm_ui.protocol.rrm import RRMFormat

    messages = RRMFormat().messages(stored["p18"].item.query, "", stored["p18"].item.responses[1])
    text = "".join(m["content"] for m in messages)
    assert "### Assistant 1\n\n\n\n\n### Assistant 2\n\n" in text  # {answer1} filled with nothing


def test_a_pairwise_set_with_spaces_in_keys_and_tie_code_2(tmp_path):
    rows = [{"Question text": f"q{k}", "Answer A": f"a{k}" if k != 3 else "", "Answer B": f"b{k}", "label": k % 3}
            for k in range(6)]  # fmt: skip
    path = write_jsonl(tmp_path / "judging.jsonl", rows)
    mapping = parse_mapping(["query=Question text", "responses=Answer A,Answer B", "label=label"], "0=A,1=B,2=tie")
    ds = read_dataset(path, mapping=mapping)
    assert [it.query for it in ds.items] == [r["Question text"] for r in rows]
    assert [it.gold_tiers for it in ds.items] == [{0: (0, 1), 1: (1, 0), 2: (0, 0)}[r["label"]] for r in rows]
    assert ds.items[3].responses == ("", "b3")


# --- best-of-N objects in lists -------------------------------------------------------------------


def test_best_of_n_objects_nested_in_lists_with_a_message_list_as_the_query(shared_data, tmp_path):
    rm = json.loads((shared_data / "rm-bench/chat_filtered.json").read_text())[:12]
    rows = [
        {"bon_uid": f"u{k}", "conversation_input": [{"role": "user", "content": r["prompt"], "language": "en"}],
         "bon_best": {"llm_name": "chosen-0", "answer": r["chosen"][0]},
         "loser_list": [{"llm_name": f"rejected-{j}", "answer": a} for j, a in enumerate(r["rejected"])],
         "category_path": r["subset"]}
        for k, r in enumerate(rm)
    ]  # fmt: skip
    path = tmp_path / "bon.json"
    path.write_text(json.dumps(rows))
    pairs = ["query=conversation_input", "responses=bon_best.answer,loser_list[].answer", "id=bon_uid",
             "subset=category_path", "gold=first-beats-rest"]  # fmt: skip
    ds = read_dataset(path, mapping=parse_mapping(pairs, None))
    moved = 0
    for item, row, r in zip(ds.items, rows, rm, strict=True):
        assert item.ext_id == row["bon_uid"] and item.query == r["prompt"] and item.subset == r["subset"]
        order = item.metadata.get("source_order", [0, 1, 2, 3])
        source = [r["chosen"][0], *r["rejected"]]
        names = ["chosen-0", *(f"rejected-{j}" for j in range(3))]
        assert list(item.responses) == [source[k] for k in order]
        assert list(item.gold_tiers) == [0 if k == 0 else 1 for k in order]
        assert [m["llm_name"] for m in item.metadata["response_meta"]] == [names[k] for k in order]
        assert "bon_best" not in item.metadata and "loser_list" not in item.metadata
        moved += order[0] != 0
    assert moved > 0  # the best answer is not always shown first


def test_a_malformed_path_is_refused_before_the_file_is_read():
    with pytest.raises(ValueError, match="expected names separated by dots"):
        parse_mapping(["query=q", "responses=a[x].b,c"], None)


# --- skipping bad rows -------------------------------------------------------------------------


def test_skip_invalid_imports_the_valid_rows_and_reports_every_skipped_one(shared_data, tmp_path):
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:20]
    rows[3]["label"] = 3
    rows[11]["output_2"] = ["not", "text"]
    del rows[15]["input"]
    path = tmp_path / "llmbar.json"
    path.write_text(json.dumps(rows))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    proc = rrm_ui("import", str(path), "--db", db, "--preset", "llmbar", cwd=tmp_path)
    assert proc.returncode == 2 and "row 4, field 'label'" in proc.stderr and "nothing was imported" in proc.stderr
    repo = open_repository(Settings(database_url=db))
    assert repo.datasets() == []
    proc = rrm_ui("import", str(path), "--db", db, "--preset", "llmbar", "--skip-invalid", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "imported 17 items" in proc.stdout and "skipped 3 refused row(s)" in proc.stdout
    rejects = [json.loads(line) for line in (tmp_path / "llmbar.rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["field"]) for r in rejects] == [(4, "label"), (12, "output_2"), (16, "input")]
    assert rejects[0]["record"] == rows[3] and "not in the label mapping" in rejects[0]["reason"]
    stored = _stored_items(repo, "llmbar")
    assert sorted(stored) == sorted(f"row-{k + 1}" for k in range(20) if k not in (3, 11, 15))
    assert any("3 record(s) skipped as invalid" in n for n in repo.dataset("llmbar").notes)


# --- another judge's verdicts and more human labels, attached later --------------------------------


def test_verdicts_with_a_no_verdict_code_and_extra_ids(shared_data, tmp_path, repo):
    rows = _llmbar_like(shared_data, 30)
    path = write_jsonl(tmp_path / "human.jsonl", rows)
    mapping = parse_mapping(["query=question", "responses=response1,response2", "id=id"], None)
    info = import_file(repo, path, mapping=mapping)
    codes = ["1", "2", "Tie", "garbage"]
    verdicts = [{"id": f"p{k}", "pred": codes[k % 4]} for k in range(34)]  # p30..p33: rows the user dropped
    vpath = write_jsonl(tmp_path / "judge.jsonl", verdicts)
    spec = ExternalVerdicts(vpath, "judge-x", "id", "pred", parse_label_values("1=A,2=B,Tie=tie,garbage=none",
                                                                                 verdicts=True))  # fmt: skip
    with pytest.raises(ImportFileError, match=r"line 31, field 'id': expected the id of an item of the data set"):
        attach_verdicts(repo, info.name, spec)
    assert [r.name for r in repo.runs(info.id)] == []  # nothing stored
    done = attach_verdicts(repo, info.name, spec, skip_invalid=True)
    assert done.stored == 30 and done.no_verdict == sum(codes[k % 4] == "garbage" for k in range(30))
    assert [(r.line, r.field) for r in done.rejects] == [(31, "id"), (32, "id"), (33, "id"), (34, "id")]
    res = repo.latest_results(info.id)
    run_id = done.run.id
    got = {}
    items = {it.db_id: it.item.id for it in repo.items(info.id)}
    for _, r in res[res["run_id"] == run_id].iterrows():
        got[items[r["item_id"]]] = (r["winner"] if r["winner"] == r["winner"] else None, r["decision"])
    for k in range(30):
        want = {"1": (0, "decided"), "2": (1, "decided"), "Tie": (None, "tie"), "garbage": (None, "undecided")}
        winner, decision = got[f"p{k}"]
        assert (None if winner is None else int(winner), decision) == want[codes[k % 4]]
    # a second judge on the same data set, and a name that exists is refused
    spec2 = ExternalVerdicts(vpath, "judge-y", "id", "pred", parse_label_values("1=B,2=A,Tie=tie,garbage=none",
                                                                                  verdicts=True))  # fmt: skip
    attach_verdicts(repo, info.name, spec2, skip_invalid=True)
    assert sorted(r.name for r in repo.runs(info.id)) == ["judge-x", "judge-y"]
    with pytest.raises(ValueError, match="has a run named 'judge-x' already"):
        attach_verdicts(repo, info.name, spec, skip_invalid=True)


def test_labels_attached_later_in_wide_and_long_form_follow_a_swapped_pair(shared_data, tmp_path, repo):
    info = import_file(repo, shared_data / HH)  # chosen/rejected: presentation order drawn per pair
    items = {it.item.id: it for it in repo.items(info.id)}
    raw = _hh_raw(shared_data)
    ids = [f"row-{k + 1}" for k in range(10)]
    # wide form: in the file's order A is chosen; two annotators
    wide = write_jsonl(tmp_path / "wide.jsonl", [{"id": i, "a1": "A", "a2": "B" if k % 2 else "A"}
                                                  for k, i in enumerate(ids)])  # fmt: skip
    spec = LabelFile(wide, parse_label_values("A=A,B=B"), columns={"a1": "x", "a2": "y"})
    done = attach_labels(repo, info.name, spec)
    assert done.stored == 20 and done.annotators == ("x", "y")
    # long form, a second batch by a third annotator, with notes
    long = write_jsonl(tmp_path / "long.jsonl", [{"id": i, "who": "z", "pick": 1, "why": "safer"} for i in ids])
    attach_labels(repo, info.name, LabelFile(long, parse_label_values("1=A,2=B"), annotator_field="who",
                                             label_field="pick", note_field="why"))  # fmt: skip
    labels = repo.latest_labels(info.id)
    for k, ext_id in enumerate(ids):
        stored = items[ext_id]
        chosen = _hh_split(raw[k]["chosen"])[1]
        chosen_at = stored.item.responses.index(chosen)
        for who, said_chosen in (("x", True), ("y", k % 2 == 0), ("z", True)):
            (row,) = labels[(labels["item_id"] == stored.db_id) & (labels["annotator"] == who)].itertuples()
            points_at = 0 if row.choice == "A" else 1
            assert (points_at == chosen_at) == said_chosen
            if who == "z":
                assert row.note == "safer"
    # an id the data set lacks: refused whole, or skipped and reported
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "row-1", "a1": "A"}, {"id": "row-999", "a1": "B"}])
    before = len(repo.frame("labels"))
    with pytest.raises(ImportFileError, match="line 2, field 'id'"):
        attach_labels(repo, info.name, LabelFile(bad, parse_label_values("A=A,B=B"), columns={"a1": "x"}))
    assert len(repo.frame("labels")) == before
    done = attach_labels(repo, info.name, LabelFile(bad, parse_label_values("A=A,B=B"), columns={"a1": "x"}),
                         skip_invalid=True)  # fmt: skip
    assert done.stored == 1 and [r.line for r in done.rejects] == [2]


def test_the_cli_attaches_labels_and_verdicts_and_writes_rejects(shared_data, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    rows = _llmbar_like(shared_data, 12)
    data = write_jsonl(tmp_path / "human.jsonl", rows)
    proc = rrm_ui("import", str(data), "--db", db, "--map", "query=question", "--map", "responses=response1,response2",
                  "--map", "id=id", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = write_jsonl(tmp_path / "labels.jsonl", [{k: r[k] for k in ("id", "annotator1", "annotator2")}
                                                      for r in rows] + [{"id": "p99", "annotator1": 1}])  # fmt: skip
    args = ["labels", "import", str(labels), "--db", db, "--dataset", "human", "--annotator-column", "annotator1=ann1",
            "--annotator-column", "annotator2=ann2", "--labels", "0=tie,1=A,2=B"]  # fmt: skip
    proc = rrm_ui(*args, cwd=tmp_path)
    assert proc.returncode == 2 and "line 13, field 'id'" in proc.stderr
    proc = rrm_ui(*args, "--skip-invalid", "--rejects", str(tmp_path / "r.jsonl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "attached 24 label(s) by ann1, ann2" in proc.stdout and "skipped 1 refused row(s)" in proc.stdout
    assert json.loads((tmp_path / "r.jsonl").read_text())["line"] == 13
    verdicts = write_jsonl(tmp_path / "v.jsonl", [{"id": r["id"], "verdict": "garbage"} for r in rows])
    proc = rrm_ui("verdicts", "import", str(verdicts), "--db", db, "--dataset", "human", "--run", "judge-x",
                  "--labels", "1=A,2=B,garbage=none", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "12 verdict(s)" in proc.stdout and "12 of them 'no verdict'" in proc.stdout
    help_text = rrm_ui("import", "--help").stdout
    assert "loser_list[].answer" in help_text and "first-beats-rest" in help_text


# --- Parquet decompression bombs ------------------------------------------------------------------


def test_a_parquet_bomb_is_refused_from_its_footer_and_a_dictionary_bomb_per_value(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rrm_ui.services import uploads

    bomb = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"query": ["q"], "response_a": ["a"], "response_b": ["b"], "blob": ["x" * 50 * 1024**2]}),
                   bomb, compression="zstd")  # fmt: skip
    assert bomb.stat().st_size < 20_000
    problem = uploads.preview(bomb).problem
    assert problem is not None and "field 'blob'" in problem and "over the per-value limit" in problem
    with pytest.raises(ImportFileError, match="field 'blob': value too large"):
        read_dataset(bomb)
    # dictionary encoding hides the repeats from the footer: caught per value before decoding to Python
    rep = tmp_path / "repeat.parquet"
    n = 40
    pq.write_table(pa.table({"query": [f"q{k}" for k in range(n)], "response_a": ["a"] * n, "response_b": ["b"] * n,
                             "blob": ["y" * (2 * 1024**2)] * n}), rep, compression="zstd")  # fmt: skip
    with pytest.raises(ImportFileError, match=r"row 1, field 'blob': value too large: it decodes to 2.0 MB"):
        read_dataset(rep)


# --- the same through the Batch tab's handlers -------------------------------------------------------


def test_the_batch_tab_skips_invalid_rows_and_attaches_labels_and_verdicts(shared_data, tmp_path):
    from rrm_ui.services import accounts
    from rrm_ui.ui.tabs import batch
    from tests.test_ui_handlers import Req, shown
    from tests.test_upload_faults import make_app

    with make_app(tmp_path) as app:
        rows = _llmbar_like(shared_data, 10)
        rows[4]["response2"] = {"not": "text"}
        path = write_jsonl(app.uploads / "human.jsonl", rows)
        message, rejected = batch.import_with_rejects(app.ctx, Req(), str(path), "human", "",
                                                      "query=question\nresponses=response1,response2\nid=id", "",
                                                      False)  # fmt: skip
        assert shown(message).startswith("**Not imported** (nothing was stored): human.jsonl, line 5, field 'resp")
        assert rejected is None and app.ctx.repo.datasets() == []
        message, rejected = batch.import_with_rejects(app.ctx, Req(), str(path), "human", "",
                                                      "query=question\nresponses=response1,response2\nid=id", "",
                                                      True)  # fmt: skip
        assert "Imported **human**: 9 items" in shown(message) and "1 row(s) skipped" in shown(message)
        assert json.loads(Path(rejected).read_text())["line"] == 5
        labels = write_jsonl(app.uploads / "labels.jsonl", [{"id": r["id"], "a1": r["annotator1"]} for r in rows])
        message, rejected = batch.attach_file(app.ctx, Req(), str(labels), "human", "Human labels", "0=tie,1=A,2=B",
                                              "id", "a1=ann1", "", "", "verdict", "", True)  # fmt: skip
        assert "Attached 9 label(s) by ann1" in shown(message) and rejected is not None  # p4 was not imported
        verdicts = write_jsonl(app.uploads / "v.jsonl", [{"id": r["id"], "pred": "x"} for r in rows if r["id"] != "p4"])
        message, _ = batch.attach_file(app.ctx, Req(), str(verdicts), "human", "Another judge's verdicts", "x=none",
                                       "id", "", "", "", "pred", "judge-x", False)  # fmt: skip
        assert "9 verdict(s)" in shown(message) and "9 of them 'no verdict'" in shown(message)
        info = app.ctx.repo.dataset("human")
        assert [r.name for r in app.ctx.repo.runs(info.id)] == ["judge-x"]
        # with accounts on, an annotator cannot attach files (labels carry other people's names)
        accounts.add_user(app.ctx.repo, "ann", "a-long-password-1")
        app.ctx.login = True
        message, _ = batch.attach_file(app.ctx, Req(username="ann"), str(labels), "human", "Human labels", "1=A",
                                       "id", "a1=ann1", "", "", "verdict", "", True)  # fmt: skip
        assert "only an admin" in message


# --- the whole path, as a user takes it, on the command line -----------------------------


def test_published_file_three_annotators_two_judges_then_the_report(shared_data, tmp_path):
    """LLMBar as published -> three annotators' labels and two judges' verdicts attached from files
    (one with a no-verdict code and rows the user dropped) -> ``rrm-ui report``, checked by hand."""
    raw = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:40]
    data = tmp_path / "dataset.json"
    data.write_text(json.dumps(raw))
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    proc = rrm_ui("import", str(data), "--db", db, "--preset", "llmbar", "--name", "llmbar", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ids = [f"row-{k + 1}" for k in range(len(raw))]
    gold = {i: "A" if r["label"] == 1 else "B" for i, r in zip(ids, raw, strict=True)}
    flip = {"A": "B", "B": "A"}
    # annotators: 0 = tie, 1 = Output 1, 2 = Output 2; each departs from gold on its own items
    code = {"A": 1, "B": 2, "tie": 0}
    said: dict[str, dict[str, str]] = {"ann1": {}, "ann2": {}, "ann3": {}}
    for k, i in enumerate(ids):
        said["ann1"][i] = flip[gold[i]] if k % 7 == 0 else gold[i]
        said["ann2"][i] = "tie" if k % 5 == 0 else gold[i]
        if k % 3:
            said["ann3"][i] = flip[gold[i]] if k % 4 == 0 else gold[i]
    rows = [{"id": i, **{f"annotator{n + 1}": code[said[a][i]] if i in said[a] else "" for n, a in enumerate(said)}}
            for i in ids]  # fmt: skip
    labels = write_jsonl(tmp_path / "labels.jsonl", rows)
    proc = rrm_ui("labels", "import", str(labels), "--db", db, "--dataset", "llmbar", "--annotator-column",
                  "annotator1=ann1", "--annotator-column", "annotator2=ann2", "--annotator-column", "annotator3=ann3",
                  "--labels", "0=tie,1=A,2=B", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # two judges: x right but for every sixth (and 'garbage' on every ninth), y says Tie on every fourth
    vcode = {"A": "1", "B": "2"}
    judge: dict[str, dict[str, str]] = {"x": {}, "y": {}}
    xrows, yrows = [], []
    for k, i in enumerate(ids):
        judge["x"][i] = "none" if k % 9 == 0 else (flip[gold[i]] if k % 6 == 0 else gold[i])
        xrows.append({"id": i, "pred": "garbage" if judge["x"][i] == "none" else vcode[judge["x"][i]]})
        judge["y"][i] = "tie" if k % 4 == 0 else gold[i]
        yrows.append({"id": i, "pred": "Tie" if judge["y"][i] == "tie" else vcode[judge["y"][i]]})
    xrows.append({"id": "row-999", "pred": "1"})  # a row the user dropped from the data set
    for name, vrows in (("judge-x", xrows), ("judge-y", yrows)):
        path = write_jsonl(tmp_path / f"{name}.jsonl", vrows)
        proc = rrm_ui("verdicts", "import", str(path), "--db", db, "--dataset", "llmbar", "--run", name,
                      "--verdict-field", "pred", "--labels", "1=A,2=B,Tie=tie,garbage=none", "--skip-invalid",
                      cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    proc = rrm_ui("report", "--db", db, "--dataset", "llmbar", "--reference", "majority", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    # the human majority, by hand: the class with more of the three latest labels than any other
    majority: dict[str, str | None] = {}
    for i in ids:
        votes: dict[str, int] = {}
        for a in said:
            if i in said[a]:
                votes[said[a][i]] = votes.get(said[a][i], 0) + 1
        top = max(votes.values())
        winners = [c for c, n in votes.items() if n == top]
        majority[i] = winners[0] if len(winners) == 1 else None
    assert report["counts"]["no_majority"] == sum(v is None for v in majority.values())
    rows_by = {(r["reference"], r["run"]): r for r in report["by_reference"]}
    for run, j in (("judge-x", judge["x"]), ("judge-y", judge["y"])):
        decisive = [i for i in ids if majority[i] in ("A", "B")]
        agree = sum(j[i] == majority[i] for i in decisive)
        row = rows_by["majority", run]
        assert (row["decisive"], row["agree"]) == (len(decisive), agree)
        gold_agree = sum(j[i] == gold[i] for i in ids)
        assert (rows_by["gold", run]["decisive"], rows_by["gold", run]["agree"]) == (len(ids), gold_agree)
    # between annotators: pairwise agreement on the items both labelled
    pairs = {(p["rater_1"], p["rater_2"]): p for p in report["annotators"]["pairs"]}
    for a, b in (("ann1", "ann2"), ("ann1", "ann3"), ("ann2", "ann3")):
        both = [i for i in ids if i in said[a] and i in said[b]]
        p = pairs.get((a, b)) or pairs[(b, a)]
        assert p["n"] == len(both)
        assert p["agreement"]["value"] == pytest.approx(sum(said[a][i] == said[b][i] for i in both) / len(both))
    # between judges: items both decided (A/B), and how many of those agree
    (jj,) = [j for j in report["judges"] if {j["run_1"], j["run_2"]} == {"judge-x", "judge-y"}]
    decided = [i for i in ids if judge["x"][i] in ("A", "B") and judge["y"][i] in ("A", "B")]
    assert jj["n"] == len(ids) and jj["both_decided"] == len(decided)
    assert jj["agree_decided"] == sum(judge["x"][i] == judge["y"][i] for i in decided)
    md = rrm_ui("report", "--db", db, "--dataset", "llmbar", "--format", "markdown")
    assert md.returncode == 0 and "judge-x" in md.stdout and "judge-y" in md.stdout


def test_rm_bench_lists_with_labels_on_pairs_and_two_judges_rankings_then_the_report(shared_data, tmp_path):
    """RM-Bench (lists of six) as published; three annotators label chosen-vs-rejected pairs named by
    their indices; two judges' rankings attached (one gives no ranking for some items); the report
    per run against humans and gold, computed by hand from the file's indices."""
    src = shared_data / "rm-bench/chat_filtered.json"
    raw = json.loads(src.read_text())[:24]
    data = tmp_path / "rmbench.json"
    data.write_text(json.dumps(raw))
    db = f"sqlite:///{tmp_path / 'rrm.db'}"
    assert rrm_ui("import", str(data), "--db", db, "--name", "rmb", cwd=tmp_path).returncode == 0
    ids = [str(r["id"]) for r in raw]
    # labels: annotator a compares chosen k with rejected k (indices k, 3 + k), mostly right
    label_rows, said = [], {}
    for n, i in enumerate(ids):
        for a, wrong in (("ann1", n % 5 == 0), ("ann2", n % 3 == 0), ("ann3", False)):
            k = (n + len(a)) % 3
            pick = "B" if wrong else "A"  # A: index k (a chosen one) is better
            label_rows.append({"id": i, "who": a, "i": k, "j": 3 + k, "pick": pick})
            said[a, i] = (k, 3 + k, pick)
    labels = write_jsonl(tmp_path / "labels.jsonl", label_rows)
    proc = rrm_ui("labels", "import", str(labels), "--db", db, "--dataset", "rmb", "--annotator-field", "who",
                  "--label-field", "pick", "--pair-fields", "i,j", "--labels", "A=A,B=B", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # two judges' rankings in the file's indices: r1 puts chosen first except on every fourth item,
    # r2 ranks in reverse on every other item and gives no ranking on every seventh
    rankings: dict[str, dict[str, list[int] | None]] = {"r1": {}, "r2": {}}
    for n, i in enumerate(ids):
        good = [0, 1, 2, 3, 4, 5]
        rankings["r1"][i] = [3, 0, 1, 2, 4, 5] if n % 4 == 0 else good
        rankings["r2"][i] = None if n % 7 == 0 else (good[::-1] if n % 2 else good)
    for run in ("r1", "r2"):
        rows = [{"id": i, "ranking": rk if rk is not None else []} for i, rk in rankings[run].items()]
        path = write_jsonl(tmp_path / f"{run}.jsonl", rows)
        proc = rrm_ui("verdicts", "import", str(path), "--db", db, "--dataset", "rmb", "--run", run,
                      "--ranking-field", "ranking", "--labels", "A=A,B=B", cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    proc = rrm_ui("report", "--db", db, "--dataset", "rmb", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows_by = {(r["reference"], r["run"]): r for r in json.loads(proc.stdout)["by_reference"]}
    tiers = (0, 0, 0, 1, 1, 1)  # RM-Bench: every chosen beats every rejected
    for run in ("r1", "r2"):
        decisive = agree = 0
        for (_, i), (a, b, pick) in said.items():
            rk = rankings[run][i]
            decisive += 1
            if rk is not None:
                model = "A" if rk.index(a) < rk.index(b) else "B"
                agree += model == pick
        row = rows_by["humans", run]
        assert (row["decisive"], row["agree"]) == (decisive, agree)
        # gold on the judge's top two (the pair a list's gold is read on)
        g_dec = g_agree = 0
        for i in ids:
            rk = rankings[run][i]
            if rk is None:
                continue  # no top two: gold is taken on the judge's top two, and there are none
            top, second = rk[0], rk[1]
            if tiers[top] != tiers[second]:
                g_dec += 1
                g_agree += tiers[top] < tiers[second]
        assert (rows_by["gold", run]["decisive"], rows_by["gold", run]["agree"]) == (g_dec, g_agree)
    # the dashboards render this mix (lists, labels on pairs, external rankings, no RRM run)
    from rrm_ui.services.insights import Insights, Scope

    repo = open_repository(Settings(database_url=db))
    ins = Insights(repo)
    for reference in ("humans", "majority", "gold"):
        ins.dashboard(Scope(dataset="rmb", reference=reference))
