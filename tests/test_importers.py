"""Tests for rrm_ui.io.importers: data set files -> ImportedDataset (pure, no database)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rrm_ui.domain import Choice, ImportedLabel, ImportedVerdict
from rrm_ui.io.importers import (
    FORMATS,
    PRESETS,
    ExternalVerdicts,
    ImportFileError,
    Mapping,
    detect_format,
    parse_label_values,
    parse_mapping,
    read_dataset,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
LLMBAR = "data/llmbar/Dataset/LLMBar/Natural/dataset.json"
RMBENCH = "data/rm-bench/chat_filtered.json"
A, B = Choice.A, Choice.B


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.fail(f"{path} is missing: these tests read real judging data from ../shared/data")
    return path


def write_jsonl(path: Path, records: list[Any], *, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(records)
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def error(path: Path, **kwargs: Any) -> ImportFileError:
    with pytest.raises(ImportFileError) as info:
        read_dataset(path, **kwargs)
    return info.value


def check(err: ImportFileError, name: str, where: str | None, field: str | None, *fragments: str) -> None:
    """The error names the file, the line or row ("line 3", "row 7"), the field and each fragment."""
    msg = str(err)
    assert name in msg, msg
    if where is None:
        assert err.line is None, msg
    else:
        unit, line = where.split()
        assert (err.unit, err.line) == (unit, int(line)), msg
        assert f", {where}" in msg, msg
    assert err.field == field, msg
    if field is not None:
        assert f"field '{field}'" in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg


PAIR = {"id": "p1", "query": "What is 2+2?", "response_a": "4", "response_b": "5", "label": "A"}


# --- real data -------------------------------------------------------------------------------


def test_llmbar_natural_with_preset():
    raw = json.loads(shared(LLMBAR).read_text(encoding="utf-8"))
    ds = read_dataset(shared(LLMBAR), mapping=PRESETS["llmbar"])
    # Natural/dataset.json: a file name that says nothing takes its folder's name
    assert (ds.name, ds.format, len(ds.items)) == ("Natural", "llmbar", 100)
    for k, (item, rec) in enumerate(zip(ds.items, raw, strict=True), start=1):
        assert item.query == rec["input"] and item.responses == (rec["output_1"], rec["output_2"])
        assert item.gold_tiers == {1: (0, 1), 2: (1, 0)}[rec["label"]]
        assert (item.ext_id, item.source_line, item.metadata) == (f"row-{k}", k, {})
    assert any("row-<N>" in n for n in ds.notes)


def test_rmbench_chat():
    raw = json.loads(shared(RMBENCH).read_text(encoding="utf-8"))
    ds = read_dataset(shared(RMBENCH))
    assert (ds.format, len(ds.items)) == ("rmbench", 129)
    for item, rec in zip(ds.items, raw, strict=True):
        assert item.responses == tuple(rec["chosen"] + rec["rejected"]) and len(item.responses) == 6
        assert item.gold_tiers == (0, 0, 0, 1, 1, 1)
        assert (item.ext_id, item.query, item.subset) == (str(rec["id"]), rec["prompt"], rec["subset"])
        assert item.metadata == {"error_key": rec["error_key"], "error": rec["error"]}
    assert not ds.notes  # RM-Bench keeps its order: nothing shuffled


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "parquet", "parquet.gz"])
def test_rmbench_round_trips(tmp_path, kind):
    raw = json.loads(shared(RMBENCH).read_text(encoding="utf-8"))
    expected = read_dataset(shared(RMBENCH)).items
    path = tmp_path / f"rm.{kind}"
    if kind.startswith("jsonl"):
        write_jsonl(path, raw, gz=kind.endswith(".gz"))
    else:
        write_parquet(tmp_path / "rm.parquet", raw)
        if kind.endswith(".gz"):
            path.write_bytes(gzip.compress((tmp_path / "rm.parquet").read_bytes()))
    ds = read_dataset(path)
    assert ds.items == expected and ds.name == "rm" and ds.format == "rmbench"


@pytest.mark.parametrize("kind", ["csv", "tsv", "csv.gz", "jsonl", "jsonl.gz", "parquet"])
def test_llmbar_round_trips(tmp_path, kind):
    raw = json.loads(shared(LLMBAR).read_text(encoding="utf-8"))
    expected = read_dataset(shared(LLMBAR), mapping=PRESETS["llmbar"]).items
    path = tmp_path / f"llmbar.{kind}"
    if kind.startswith("jsonl"):
        write_jsonl(path, raw, gz=kind.endswith(".gz"))
    elif kind == "parquet":
        write_parquet(path, raw)
    else:
        plain = write_csv(tmp_path / f"plain.{kind[:3]}", raw, "\t" if kind == "tsv" else ",")
        path.write_bytes(gzip.compress(plain.read_bytes()) if kind.endswith(".gz") else plain.read_bytes())
    assert read_dataset(path, mapping=PRESETS["llmbar"]).items == expected


def test_gzip_detected_by_magic_bytes_and_type_by_content(tmp_path):
    path = tmp_path / "pairs.data"
    path.write_bytes(gzip.compress((json.dumps(PAIR) + "\n").encode()))
    assert read_dataset(path).items[0].responses == ("4", "5")
    (tmp_path / "list.data").write_text(json.dumps([PAIR]))
    assert read_dataset(tmp_path / "list.data").items[0].ext_id == "p1"


# --- detected formats ------------------------------------------------------------------------


def test_listwise(tmp_path):
    path = write_jsonl(
        tmp_path / "list.jsonl",
        [
            {"id": 7, "query": "q", "responses": ["x", "y", "z"], "ranking": [2, 0, 1], "source": {"k": [1]}},
            {"prompt": "p", "responses": ["u", "v"], "subset": "s"},
        ],
    )
    ds = read_dataset(path)
    one, two = ds.items
    assert ds.format == "listwise"
    assert (one.ext_id, one.query, one.responses, one.gold_tiers) == ("7", "q", ("x", "y", "z"), (1, 2, 0))
    assert one.metadata == {"source": {"k": [1]}}
    assert (two.ext_id, two.query, two.gold_tiers, two.subset, two.source_line) == ("row-2", "p", None, "s", 2)


def test_rmbench_tiny(tmp_path):
    rec = {"id": "r", "subset": "math", "prompt": "p", "chosen": ["c1", "c2"], "rejected": ["r1"], "x": 1}
    (item,) = read_dataset(write_jsonl(tmp_path / "rm.jsonl", [rec])).items
    assert (item.responses, item.gold_tiers, item.subset, item.metadata) == (
        ("c1", "c2", "r1"),
        (0, 0, 1),
        "math",
        {"x": 1},
    )


def test_pairwise_labels(tmp_path):
    recs = [dict(PAIR, id=f"p{k}", label=label) for k, label in enumerate(["A", "b", "TIE", "both_bad", None, ""])]
    ds = read_dataset(write_jsonl(tmp_path / "pairs.jsonl", recs))
    assert ds.format == "pairwise" and not ds.notes
    assert [i.gold_tiers for i in ds.items] == [(0, 1), (1, 0), (0, 0), (0, 0), None, None]
    assert [i.metadata.get("gold_choice") for i in ds.items] == [None, None, "tie", "both_bad", None, None]
    assert ds.items[0].responses == ("4", "5")  # pairwise data keeps its order


def test_pairwise_numeric_labels_with_labels_only_mapping(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIR, label=1), dict(PAIR, id="p2", label=2)])
    ds = read_dataset(path, mapping=parse_mapping([], "1=A,2=B"))
    assert [i.gold_tiers for i in ds.items] == [(0, 1), (1, 0)] and ds.format == "pairwise"


def test_preference(tmp_path):
    rec = {"prompt": "p", "chosen": "good", "rejected": "bad", "subset": "chat", "id": 3}
    ds = read_dataset(write_jsonl(tmp_path / "pref.jsonl", [rec]))
    (item,) = ds.items
    assert ds.format == "preference" and item.subset == "chat" and item.ext_id == "3"
    assert item.responses[item.gold_tiers.index(0)] == "good" and sorted(item.responses) == ["bad", "good"]
    assert any("shuffled with seed 0" in n for n in ds.notes)


def test_trl_explicit_prompt(tmp_path):
    recs = [
        {"prompt": "Hi?", "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [_asst("Go away.")]},
        {  # prompt as messages, repeated at the start of chosen and rejected (ultrafeedback_binarized style)
            "prompt": [_user("Q?")],
            "chosen": [_user("Q?"), _asst("part 1"), _asst("part 2")],
            "rejected": [_user("Q?"), _asst("no")],
        },
    ]
    ds = read_dataset(write_jsonl(tmp_path / "trl.jsonl", recs))
    one, two = ds.items
    assert ds.format == "trl-conversational"
    assert one.query == "Hi?" and _chosen(one) == "Hello!" and "turns" not in one.metadata
    assert two.query == "Q?" and _chosen(two) == "part 1\n\npart 2" and set(two.responses) == {"part 1\n\npart 2", "no"}


def test_trl_implicit_and_multi_turn_prompt(tmp_path):
    shared_turns = [_msg("system", "Be brief."), _user("Hi"), _asst("Hello"), _user("2+2?")]
    recs = [
        {"chosen": [_user("Q?"), _asst("yes")], "rejected": [_user("Q?"), _asst("no")]},
        {"chosen": [*shared_turns, _asst("4")], "rejected": [*shared_turns, _asst("5")], "extra": "kept"},
    ]
    ds = read_dataset(write_jsonl(tmp_path / "trl.jsonl", recs))
    one, two = ds.items
    # source_order is recorded where the presentation draw put the chosen response second
    order = {"source_order": [1, 0]} if one.gold_tiers == (1, 0) else {}
    assert one.query == "Q?" and _chosen(one) == "yes" and one.metadata == order
    assert two.query == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: 2+2?"
    order = {"source_order": [1, 0]} if two.gold_tiers == (1, 0) else {}
    assert two.metadata == {"extra": "kept", "flattened": "role-prefixed", "turns": 4, **order}
    assert _chosen(two) == "4"
    assert any("flattened" in n for n in ds.notes) and any("no prompt field" in n for n in ds.notes)


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _user(content: str) -> dict[str, str]:
    return _msg("user", content)


def _asst(content: str) -> dict[str, str]:
    return _msg("assistant", content)


def _chosen(item: Any) -> str:
    return item.responses[item.gold_tiers.index(0)]


def test_detect_format():
    assert detect_format({"query": "q", "responses": []}) == "listwise"
    assert detect_format({"prompt": "q", "chosen": ["a"], "rejected": ["b"]}) == "rmbench"
    assert detect_format({"query": "q", "response_a": "a", "response_b": "b"}) == "pairwise"
    assert detect_format({"prompt": "q", "chosen": "a", "rejected": "b"}) == "preference"
    assert detect_format({"chosen": [_asst("a")], "rejected": [_asst("b")]}) == "trl-conversational"
    assert detect_format({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "x"}) == "preference-implicit"
    assert set(FORMATS) == {"listwise", "rmbench", "pairwise", "preference", "trl-conversational",
                            "preference-implicit"}  # fmt: skip
    with pytest.raises(ImportFileError) as info:
        detect_format({"question": "q", "answer": "a"})
    assert "'question', 'answer'" in str(info.value) and all(f in str(info.value) for f in FORMATS)


# --- shuffling -------------------------------------------------------------------------------


def test_preference_order_is_shuffled_deterministically(tmp_path):
    recs = [{"prompt": f"question {k}", "chosen": f"good {k}", "rejected": f"bad {k}"} for k in range(200)]
    path = write_jsonl(tmp_path / "pref.jsonl", recs)
    ds = read_dataset(path)
    gold_a = sum(item.gold_tiers == (0, 1) for item in ds.items)
    assert 70 <= gold_a <= 130
    for item, rec in zip(ds.items, recs, strict=True):
        assert _chosen(item) == rec["chosen"] and set(item.responses) == {rec["chosen"], rec["rejected"]}
    assert read_dataset(path).items == ds.items
    other = read_dataset(path, shuffle_seed=1)
    assert [i.gold_tiers for i in other.items] != [i.gold_tiers for i in ds.items]
    assert all(_chosen(i) == r["chosen"] for i, r in zip(other.items, recs, strict=True))
    assert any("shuffled with seed 1" in n for n in other.notes)
    assert any(f"kept the source order (best first) in {gold_a} of 200" in n for n in ds.notes)


# --- mappings --------------------------------------------------------------------------------


def test_mapping_joins_query_fields(tmp_path):
    recs = [
        {"uid": "u1", "instruction": "Translate.", "input": "Bonjour", "out1": "Hi", "out2": "Bye", "pref": 2},
        {"uid": "u2", "instruction": "Say hi.", "input": "", "out1": "Hi", "out2": "Yo", "pref": 1},
    ]
    m = parse_mapping(["query=instruction+input", "responses=out1,out2", "label=pref", "id=uid"], "1=A,2=B")
    assert m == Mapping(("instruction", "input"), ("out1", "out2"), "pref", {"1": A, "2": B}, "uid")
    ds = read_dataset(write_csv(tmp_path / "data.csv", recs), mapping=m)
    one, two = ds.items
    assert ds.format == "mapping"
    assert (one.ext_id, one.query, one.responses, one.gold_tiers) == (
        "u1",
        "Translate.\n\nBonjour",
        ("Hi", "Bye"),
        (1, 0),
    )
    assert (two.query, two.gold_tiers, two.metadata) == ("Say hi.", (0, 1), {})


def test_mapping_with_one_list_field(tmp_path):
    m = parse_mapping(["query=q", "responses=cands"], None)
    (item,) = read_dataset(write_jsonl(tmp_path / "c.jsonl", [{"q": "q", "cands": ["a", "b", "c"]}]), mapping=m).items
    assert item.responses == ("a", "b", "c") and item.gold_tiers is None


def test_parse_label_values_and_mapping_errors():
    assert parse_label_values("1=A,2=B,0=tie,3=Both_Bad") == {"1": A, "2": B, "0": Choice.TIE, "3": Choice.BOTH_BAD}
    bad_specs = [("1=A,2=C", "'C' is not a choice"), ("1A", "CODE=CHOICE"), ("1=A,1=B", "twice"), ("", "CODE=CHOICE")]
    for bad, fragment in bad_specs:
        with pytest.raises(ValueError, match=fragment):
            parse_label_values(bad)
    with pytest.raises(ValueError, match="--labels"):
        parse_mapping(["query=q", "responses=a,b", "label=l"], None)
    with pytest.raises(ValueError, match="unknown key 'answer'"):
        parse_mapping(["answer=x"], None)
    with pytest.raises(ValueError, match="query and responses"):
        parse_mapping(["query=q"], None)
    with pytest.raises(ValueError, match="label values"):
        Mapping(("q",), ("a", "b"), label="l")


# --- annotators and external verdicts --------------------------------------------------------


def test_annotator_columns(tmp_path):
    recs = [dict(PAIR, id="p1", expert1="1", expert2=""), dict(PAIR, id="p2", expert1="2", expert2="1")]
    ds = read_dataset(
        write_csv(tmp_path / "pairs.csv", recs),
        annotator_columns={"expert1": "alice", "expert2": "bob"},
        annotator_labels={"1": A, "2": B},
    )
    assert ds.labels == (
        ImportedLabel("p1", "alice", A),
        ImportedLabel("p2", "alice", B),
        ImportedLabel("p2", "bob", A),
    )
    assert "expert1" not in ds.items[0].metadata


def test_annotator_labels_follow_a_swapped_pair(tmp_path):
    recs = [{"id": f"x{k}", "prompt": f"q{k}", "chosen": "good", "rejected": "bad", "h": "A"} for k in range(20)]
    ds = read_dataset(
        write_jsonl(tmp_path / "pref.jsonl", recs), annotator_columns={"h": "ann"}, annotator_labels={"A": A}
    )
    for item, label in zip(ds.items, ds.labels, strict=True):  # the annotator preferred "good" every time
        assert item.responses[0 if label.choice is A else 1] == "good"


def test_external_verdicts(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIR, id="p1"), dict(PAIR, id="p2"), dict(PAIR, id="p3")])
    verdicts = write_csv(
        tmp_path / "judge.csv", [{"uid": "p1", "v": "1"}, {"uid": "p3", "v": "0"}, {"uid": "p2", "v": ""}]
    )
    ext = ExternalVerdicts(verdicts, "gpt-judge", "uid", "v", {"1": A, "2": B, "0": Choice.TIE})
    ds = read_dataset(path, external=ext)
    assert ds.external_run == "gpt-judge"
    assert ds.external == (ImportedVerdict("p1", A), ImportedVerdict("p3", Choice.TIE))


# --- errors ----------------------------------------------------------------------------------


def test_error_file_not_found(tmp_path):
    check(error(tmp_path / "nope.jsonl"), "nope.jsonl", None, None, "file not found")


@pytest.mark.parametrize(
    ("name", "content"), [("e.jsonl", ""), ("e.jsonl", "\n\n"), ("e.json", "[]"), ("e.csv", "a,b\n")]
)
def test_error_empty_file(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    check(error(tmp_path / name), name, None, None, "empty file")


def test_error_not_utf8(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b"\n\n" + '{"query": "caf\xe9"}\n'.encode("latin-1"))
    check(error(path), "pairs.jsonl", "line 3", None, "not UTF-8", "0xe9")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_bytes(b"query,response_a,response_b\nq,a,b\nq,caf\xe9,b\n")
    check(error(csv_path), "pairs.csv", "line 3", None, "not UTF-8")


def test_error_truncated_and_corrupt_gzip(tmp_path):
    data = gzip.compress("".join(json.dumps(dict(PAIR, id=f"p{k}")) + "\n" for k in range(500)).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    check(error(tmp_path / "cut.jsonl.gz"), "cut.jsonl.gz", None, None, "truncated or corrupt gzip")
    (tmp_path / "bad.jsonl.gz").write_bytes(data[:10] + b"\xff" * 50 + data[60:])
    check(error(tmp_path / "bad.jsonl.gz"), "bad.jsonl.gz", None, None, "truncated or corrupt gzip")
    (tmp_path / "fake.jsonl.gz").write_text(json.dumps(PAIR))
    check(error(tmp_path / "fake.jsonl.gz"), "fake.jsonl.gz", None, None, "gzip magic bytes")


def test_error_broken_json_line(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR, '{"query": "q",'])
    check(error(path), "pairs.jsonl", "line 2", None, "broken JSON", "column")


def test_error_json_file_not_a_list(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(PAIR))
    check(error(path), "pairs.json", None, None, "expected a JSON list of objects, found an object", ".jsonl")
    path.write_text('[{"query": \n "q" oops]')
    check(error(path), "pairs.json", "line 2", None, "broken JSON")


def test_error_record_not_an_object(tmp_path):
    check(error(write_jsonl(tmp_path / "pairs.jsonl", [PAIR, "[1, 2]"])), "pairs.jsonl", "line 2", None, "a list of 2")
    (tmp_path / "pairs.json").write_text(json.dumps([PAIR, "text"]))
    check(error(tmp_path / "pairs.json"), "pairs.json", "row 2", None, "expected a JSON object, found a string")


def test_error_missing_field(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR, {"id": "p2", "query": "q", "response_a": "a"}])
    check(error(path), "pairs.jsonl", "line 2", "response_b", "found the field missing", "pairwise")


def test_error_wrong_types(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIR, response_b=[5])])
    check(error(path), "pairs.jsonl", "line 1", "response_b", "expected a string, found a list of 1")
    path = write_jsonl(tmp_path / "list.jsonl", [{"query": "q", "responses": "ab"}])
    check(error(path), "list.jsonl", "line 1", "responses", "expected a list", "found a string")
    path = write_jsonl(
        tmp_path / "rm.jsonl",
        [{"prompt": "p", "chosen": ["a"], "rejected": ["b"]}, {"prompt": "p", "chosen": ["a"], "rejected": "b"}],
    )
    check(error(path), "rm.jsonl", "line 2", "rejected", "found a string")
    path = write_jsonl(
        tmp_path / "trl.jsonl",
        [{"chosen": [_user("q"), {"role": "assistant", "content": 3}], "rejected": [_user("q")]}],
    )
    check(error(path), "trl.jsonl", "line 1", "chosen[1].content", "expected a string")


@pytest.mark.parametrize(("field", "value"), [("query", "   \n"), ("query", "")])
def test_error_empty_text(tmp_path, field, value):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR, dict(PAIR, id="p2", **{field: value})])
    check(error(path), "pairs.jsonl", "line 2", field, "expected a non-empty string")


def test_error_fewer_than_two_responses(tmp_path):
    path = write_jsonl(tmp_path / "list.jsonl", [{"query": "q", "responses": ["only"]}])
    check(error(path), "list.jsonl", "line 1", "responses", "at least 2", "a list of 1")


def test_error_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR, dict(PAIR, id="p2"), "", dict(PAIR, id="p1")])
    check(error(path), "pairs.jsonl", "line 4", "id", "'p1' twice: line 1 and line 4")


def test_error_label_outside_mapping(tmp_path):
    recs = [{"input": f"q{k}", "output_1": "a", "output_2": "b", "label": 1 if k != 7 else 3} for k in range(1, 9)]
    err = error(write_csv(tmp_path / "data.csv", recs), mapping=PRESETS["llmbar"])
    assert str(err).endswith(
        "data.csv, row 7, field 'label': value '3' is not in the label mapping 1=A,2=B; expected one of 1, 2"
    )


def test_error_numeric_label_without_mapping(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIR, label=1)])
    check(error(path), "pairs.jsonl", "line 1", "label", "never guessed", "--labels")
    path = write_jsonl(tmp_path / "words.jsonl", [dict(PAIR, label="first")])
    check(error(path), "words.jsonl", "line 1", "label", "expected A, B, tie or both_bad")


def test_error_csv_wrong_number_of_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("query,response_a,response_b\nq,a,b\nq,a,b,extra\n")
    check(error(path), "pairs.csv", "row 2", None, "expected 3 (as in the header), found 4", "line 3")


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_error_csv_other_delimiter(tmp_path, delimiter):
    path = tmp_path / "pairs.csv"
    path.write_text(delimiter.join(["query", "response_a", "response_b"]) + "\n" + delimiter.join("qab") + "\n")
    shown = "\\t" if delimiter == "\t" else delimiter
    check(error(path), "pairs.csv", None, None, f"looks like a '{shown}'-delimited file")


def test_error_binary_file(tmp_path):
    (tmp_path / "blob.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    check(error(tmp_path / "blob.jsonl"), "blob.jsonl", None, None, "not a text file", "NUL")
    (tmp_path / "noise.csv").write_bytes(bytes(range(128, 256)) * 8)
    check(error(tmp_path / "noise.csv"), "noise.csv", None, None, "not a text file")


def test_error_not_parquet(tmp_path):
    (tmp_path / "t.parquet").write_text("query,response_a\n")
    check(error(tmp_path / "t.parquet"), "t.parquet", None, None, "not a Parquet file", "PAR1")
    (tmp_path / "cut.parquet").write_bytes(b"PAR1" + b"\x01" * 64)
    check(error(tmp_path / "cut.parquet"), "cut.parquet", None, None, "not a readable Parquet file")
    (tmp_path / "p.jsonl").write_bytes(b"PAR1\x00\x00junk")
    check(error(tmp_path / "p.jsonl"), "p.jsonl", None, None, "not a text file", "name it .parquet")
    (tmp_path / "u16.csv").write_bytes("query,response_a,response_b\n".encode("utf-16"))
    check(error(tmp_path / "u16.csv"), "u16.csv", None, None, "not a text file", "UTF-16")


def test_error_response_too_large(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR, dict(PAIR, id="p2", response_a="é" * 600_000)])
    check(error(path), "pairs.jsonl", "line 2", "response_a", "1.1 MB (1,200,000 bytes)", "limit of 1.0 MB")
    assert len(read_dataset(path, max_response_bytes=2 * 1024**2).items) == 2


def test_error_file_too_large(tmp_path):
    recs = [dict(PAIR, id=f"p{k}", response_a="x" * 1000) for k in range(1000)]
    path = write_jsonl(tmp_path / "pairs.jsonl", recs)
    check(error(path, max_bytes=1024**2 // 2), "pairs.jsonl", None, None, "file too large", "1.0 MB", "limit of 0.5 MB")
    gz = write_jsonl(tmp_path / "pairs.jsonl.gz", recs, gz=True)
    assert gz.stat().st_size < 1024**2 // 2
    check(error(gz, max_bytes=1024**2 // 2), "pairs.jsonl.gz", None, None, "decompressed content passes the limit")


def test_error_unknown_format_and_mismatch(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    check(error(path), "odd.jsonl", "line 1", None, "unknown format", "'question', 'answer'", "pairwise", "llmbar")
    path = write_jsonl(tmp_path / "mixed.jsonl", [PAIR, {"id": "l", "query": "q", "responses": ["a", "b"]}])
    check(error(path), "mixed.jsonl", "line 2", "response_a", "pairwise")


def test_error_external_verdicts(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [PAIR])
    verdicts = write_jsonl(tmp_path / "judge.jsonl", [{"id": "p1", "verdict": "A"}, {"id": "zz", "verdict": "B"}])
    err = error(path, external=ExternalVerdicts(verdicts, "j"))
    check(err, "judge.jsonl", "line 2", "id", "'zz'", "not one")
    verdicts = write_jsonl(tmp_path / "judge2.jsonl", [{"id": "p1", "verdict": "maybe"}])
    check(
        error(path, external=ExternalVerdicts(verdicts, "j")),
        "judge2.jsonl",
        "line 1",
        "verdict",
        "'maybe'",
        "A=A,B=B,tie=tie",
    )


def test_error_annotator_label_outside_values(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [dict(PAIR, h="A"), dict(PAIR, id="p2", h="C")])
    err = error(path, annotator_columns={"h": "ann"}, annotator_labels={"A": A, "B": B})
    check(err, "pairs.jsonl", "line 2", "h", "value 'C' is not in the label mapping A=A,B=B")


def test_nothing_is_returned_on_a_late_error(tmp_path):
    recs = [dict(PAIR, id=f"p{k}") for k in range(50)] + [dict(PAIR, id="bad", query="")]
    check(error(write_jsonl(tmp_path / "pairs.jsonl", recs)), "pairs.jsonl", "line 51", "query")


# --- scale -----------------------------------------------------------------------------------


def test_a_hundred_thousand_rows(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for k in range(100_000):
            f.write(
                json.dumps({"id": f"i{k}", "query": f"q{k}", "response_a": "a", "response_b": "b", "label": "B"}) + "\n"
            )
    ds = read_dataset(path)
    assert len(ds.items) == 100_000 and ds.items[-1].gold_tiers == (1, 0)
