"""The judge format is a real choice in the engine (issue 15): the format renders (chat messages, or
its own raw prompt), its official parser reads (ties included), games = 2 plays both orders.

Unit tests of the engine's logic use a backend that answers a fixed text (the logic around the
backend is what is tested); the raw prompt's tokens are checked on the tiny model with the real
transformers backend, and a tie is stored in a real SQLite database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from rrm_ui.backends.base import Backend
from rrm_ui.backends.openai_http import OpenAIBackend
from rrm_ui.config import Settings
from rrm_ui.domain import Compute, GenRecord, GenRequest, Item, ItemResult, Sampling, Status, Verdict
from rrm_ui.engine.judge import Judge, tally
from rrm_ui.protocol import get_format
from rrm_ui.services import open_repository

ITEM = Item("q1", "What is 2+2?", ("Four.", "Five."))


class Fixed(Backend):
    """Answers every sample with one text (as a model without a think block: all of it before any
    ``</think>``), and keeps the requests."""

    name = "fixed"
    concurrency = 4

    def __init__(self, text: str) -> None:
        super().__init__("fixed-model")
        self.text = text
        self.requests: list[GenRequest] = []

    async def stream(self, request: GenRequest) -> AsyncIterator[GenRecord]:
        self.requests.append(request)
        for k in range(request.n):
            yield GenRecord(sample=k, reasoning=self.text, answer="", think_closed=False, prompt_tokens=1,
                            completion_tokens=1, reasoning_tokens=None, ttft_s=None, latency_s=0.0,
                            finish_reason="stop", model=self.model, backend=self.name, sampling=request.sampling,
                            seed=request.sampling.seed)  # fmt: skip


def pair(backend: Backend, fmt: str, compute: Compute | None = None):  # noqa: ANN201
    return asyncio.run(Judge(backend, get_format(fmt), compute=compute or Compute()).judge_pair(ITEM, 0, 1))


def test_a_tie_counts_toward_neither_response_and_is_no_invalid_vote() -> None:
    backend = Fixed("Both are fine. [[C]]")
    out = pair(backend, "fastchat-pair-v2", Compute(votes=2))
    assert [j.verdict for j in out.judgments] == [Verdict.TIE] * 4  # two games of two votes
    assert all(j.status is Status.OK and j.winner is None for j in out.judgments)
    assert (out.winner, out.votes, out.invalid_votes) == (None, {0: 0, 1: 0}, 0)
    assert tally(list(out.judgments)) == ({}, 0)


def test_two_games_are_played_in_both_orders_and_a_flip_is_seen() -> None:
    backend = Fixed("[[A]]")  # always the first shown: the verdict follows the order
    out = pair(backend, "fastchat-pair-v2")  # no swap asked: the format's games = 2 plays both
    texts = [r.messages[-1]["content"] for r in backend.requests]
    shown = [(t.index("Four."), t.index("Five.")) for t in texts]
    assert len(shown) == 2 and (shown[0][0] < shown[0][1]) != (shown[1][0] < shown[1][1])
    assert (out.winner, out.votes, out.position_consistent) == (None, {0: 1, 1: 1}, False)
    rrm = Fixed("</think>\\boxed{Assistant 1}")
    assert len(pair(rrm, "rrm").judgments) == 1 and len(rrm.requests) == 1  # games = 1: one order


def test_a_raw_prompt_format_sends_its_own_prompt() -> None:
    fmt = get_format("autoj-pairwise-tie")
    backend = Fixed("So, the final decision is Tie. Both answers ...")
    out = pair(backend, "autoj-pairwise-tie")
    request = backend.requests[0]
    assert request.messages == () and request.prompt == fmt.raw_prompt(ITEM.query, "Four.", "Five.")
    assert out.judgments[0].verdict is Verdict.TIE and out.invalid_votes == 0


def test_the_openai_backend_refuses_a_raw_prompt_with_what_to_do() -> None:
    backend = OpenAIBackend(["http://127.0.0.1:9/v1"], model="m")
    out = pair(backend, "autoj-pairwise-tie")
    assert out.judgments[0].status is Status.ERROR and "vllm or transformers" in out.judgments[0].error


def test_raw_prompt_tokens_on_the_tiny_model(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from rrm_ui.backends.hf_transformers import TransformersBackend

    fmt = get_format("autoj-pairwise-tie")
    backend = TransformersBackend(str(tiny_model), device="cpu")
    judge = Judge(backend, fmt, sampling=Sampling(max_tokens=4, seed=1))
    out = asyncio.run(judge.judge_pair(ITEM, 0, 1))
    expected = AutoTokenizer.from_pretrained(tiny_model)(fmt.raw_prompt(ITEM.query, "Four.", "Five."))["input_ids"]
    assert out.judgments[0].prompt_tokens == len(expected)


def test_a_tie_is_stored_and_read_back(tmp_path: Path) -> None:
    repo = open_repository(Settings(database_url=f"sqlite:///{tmp_path / 't.db'}"))
    dataset_id, item_db_id = repo.add_item("ties", ITEM)
    run, _ = repo.get_or_create_run(dataset_id, "fc", backend="fixed", model="fixed-model", strategy="pair",
                                    template="fastchat-pair-v2", template_version="1")  # fmt: skip
    out = pair(Fixed("[[C]]"), "fastchat-pair-v2")
    repo.save_result(run.id, item_db_id, ItemResult(ITEM.id, "pair", None, (), (out,), "fastchat-pair-v2", "1",
                                                    "fixed-model", "fixed"))  # fmt: skip
    stored = repo.item_judgments(item_db_id)
    assert list(stored["verdict"]) == ["T", "T"] and list(stored["status"]) == ["ok", "ok"]
