"""`rrm-ui judge` and `rrm-ui dev tiny-model` as a user runs them: real processes, real backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPARISON_FIELDS = {
    "a", "b", "sample", "verdict", "status", "reasoning", "answer", "prompt_tokens",
    "completion_tokens", "ttft_s", "latency_s", "finish_reason",
}  # fmt: skip


def rrm_ui(*args: str, timeout: float = 600, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rrm_ui", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def llmbar_pairs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:3]
    items = [
        {"id": f"nat-{k}", "query": r["input"], "response_a": r["output_1"], "response_b": r["output_2"]}
        for k, r in enumerate(rows)
    ]
    return write_jsonl(tmp_path_factory.mktemp("in") / "pairs.jsonl", items), items


@pytest.fixture(scope="module")
def rmbench_lists(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    rows = json.loads((shared_data / "rm-bench/chat_filtered.json").read_text())[:2]
    items = [{"id": str(r["id"]), "query": r["prompt"], "responses": r["chosen"] + r["rejected"]} for r in rows]
    return write_jsonl(tmp_path_factory.mktemp("in") / "lists.jsonl", items), items


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_comparisons(line: dict, n_responses: int) -> None:
    assert line["comparisons"], line["id"]
    for c in line["comparisons"]:
        assert set(c) >= COMPARISON_FIELDS
        assert c["a"] != c["b"] and {c["a"], c["b"]} <= set(range(n_responses))
        assert c["status"] in {"ok", "truncated", "no_verdict", "invalid", "error"}
        assert c["verdict"] in {"A", "B", None}
        assert (c["verdict"] is None) == (c["status"] != "ok")
    assert line["template"] == "rrm" and line["template_version"] == "2"


@pytest.mark.slow
def test_judge_pairs_with_transformers_votes_and_swap(tiny_model: Path, llmbar_pairs, tmp_path: Path) -> None:  # noqa: ANN001
    path, items = llmbar_pairs
    out = tmp_path / "verdicts.jsonl"
    proc = rrm_ui("judge", str(path), "--out", str(out), "--backend", "transformers", "--model", str(tiny_model),
                  "--votes", "2", "--swap", "--max-tokens", "32", "--seed", "5")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "judged 3 items" in proc.stderr and "tok_s" in proc.stderr  # progress bar and summary
    lines = read_out(out)
    assert [x["id"] for x in lines] == [i["id"] for i in items]
    for line in lines:
        assert line["strategy"] == "pair"
        assert len(line["comparisons"]) == 4  # 2 votes x 2 orders
        assert sorted((c["a"], c["b"]) for c in line["comparisons"]) == [(0, 1), (0, 1), (1, 0), (1, 0)]
        check_comparisons(line, 2)
        assert line["compute"]["votes"] == 2 and line["compute"]["swap"] is True
        assert line["sampling"] == {"temperature": 0.6, "top_p": 1.0, "max_tokens": 32, "seed": 5}


@pytest.mark.slow
def test_judge_lists_knockout_over_openai(vllm_server, rmbench_lists, tmp_path: Path) -> None:  # noqa: ANN001
    path, items = rmbench_lists
    out = tmp_path / "ranked.jsonl"
    proc = rrm_ui("judge", str(path), "--out", str(out), "--strategy", "knockout", "--backend", "openai",
                  "--endpoint", vllm_server.url, "--max-tokens", "48")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for line, item in zip(read_out(out), items, strict=True):
        n = len(item["responses"])
        assert line["strategy"] == "knockout" and line["backend"] == "openai"
        assert len(line["comparisons"]) == n - 1
        assert len(line["bracket"]) == 3  # ceil(log2 6)
        check_comparisons(line, n)
        if line["winner"] is not None:
            assert sorted(line["ranking"]) == list(range(n)) and line["ranking"][0] == line["winner"]


@pytest.mark.slow
def test_judge_with_in_process_vllm(tiny_model: Path, llmbar_pairs, tmp_path: Path) -> None:  # noqa: ANN001
    path, _items = llmbar_pairs
    out = tmp_path / "verdicts.jsonl"
    proc = rrm_ui("judge", str(path), "--out", str(out), "--backend", "vllm", "--model", str(tiny_model),
                  "--votes", "4", "--swap", "--max-tokens", "32", "--dtype", "float32", "--enforce-eager",
                  "--gpu-memory-utilization", "0.2", "--max-model-len", "4096")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for line in read_out(out):
        assert len(line["comparisons"]) == 8
        check_comparisons(line, 2)


def test_bad_line_stops_before_judging(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "q", "responses": ["a", "b"]}\n{"query": "q", "responses": ["only one"]}\n')
    out = tmp_path / "out.jsonl"
    proc = rrm_ui("judge", str(path), "--out", str(out), "--backend", "openai", "--endpoint", "http://127.0.0.1:9/v1")
    assert proc.returncode == 2
    assert "bad.jsonl, line 2, field 'responses'" in proc.stderr
    assert not out.exists()


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    proc = rrm_ui("judge", str(path), "--out", str(tmp_path / "o.jsonl"), "--backend", "transformers", "--model", "x")
    assert proc.returncode == 2 and "is empty" in proc.stderr


def test_unreachable_hub_model_fails_at_once_with_the_fixes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"query": "q", "response_a": "a", "response_b": "b"}])
    proc = rrm_ui("judge", str(path), "--out", str(tmp_path / "o.jsonl"), "--backend", "transformers",
                  "--model", "Reward-Reasoning/RRM-7B", timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert "Reward-Reasoning/RRM-7B" in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr
    assert "--endpoint" in proc.stderr and "rrm-ui dev tiny-model" in proc.stderr


def test_missing_model_directory(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [{"query": "q", "response_a": "a", "response_b": "b"}])
    proc = rrm_ui("judge", str(path), "--out", str(tmp_path / "o.jsonl"), "--backend", "vllm",
                  "--model", str(tmp_path / "nowhere"))  # fmt: skip
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_dev_tiny_model_builds_a_loadable_model(tmp_path: Path) -> None:
    proc = rrm_ui("dev", "tiny-model", str(tmp_path / "tiny"))
    assert proc.returncode == 0, proc.stderr
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tmp_path / "tiny")
    assert config.model_type == "qwen2" and config.hidden_size // config.num_attention_heads == 64
    tok = AutoTokenizer.from_pretrained(tmp_path / "tiny")
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<｜Assistant｜><think>\n")
