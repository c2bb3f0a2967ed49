"""Prompts over the model's context length are refused at once, with the numbers (issue 13, item 20).

A 162,444-token prompt was accepted against a 32,768-token model: the page said "0 tokens so far" for
273 s. Now the in-process backends count the prompt's tokens before generating and refuse with the
prompt's tokens, the model's limit and the thinking budget, without holding the transformers
backend's generate() for anyone else. The tiny model (32,768 positions) on the real transformers
backend; the expected counts come from the tokenizer in the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rrm_ui.domain import Compute, Item, Sampling, Status
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_item
from rrm_ui.protocol import RRM_FORMAT


@pytest.fixture(scope="module")
def backend(tiny_model: Path, loop):  # noqa: ANN001, ANN201
    from rrm_ui.backends.hf_transformers import TransformersBackend

    b = TransformersBackend(str(tiny_model), device="cpu")
    loop.run(b.start())
    yield b
    loop.run(b.close())


def prompt_tokens(tiny_model: Path, item: Item) -> int:
    """The prompt's length as the model sees it, counted here with the model's own tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    messages = RRM_FORMAT.messages(item.query, item.responses[0], item.responses[1])
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def long_item(words: int) -> Item:
    return Item("long", "Which is better?", ("cat " * words, "A short answer."))


def test_prompt_over_the_limit_is_refused_with_the_numbers(backend, tiny_model: Path, loop) -> None:  # noqa: ANN001
    from transformers import AutoConfig

    limit = AutoConfig.from_pretrained(str(tiny_model)).max_position_embeddings
    big = long_item(40_000)
    n = prompt_tokens(tiny_model, big)
    assert n > limit  # the test's own premise
    small = Item("small", "What is 2+2?", ("4", "5"))
    judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=16, seed=1), compute=Compute(votes=2))
    before = backend.tokens_generated

    async def both() -> tuple:
        # the refused one and a normal one at once: the normal one is judged, the big one never queued
        return await asyncio.gather(judge_item(judge, big, "pair"), judge_item(judge, small, "pair"))

    refused, judged = loop.run(both())
    js = refused.pairs[0].judgments
    assert len(js) == 2 and all(j.status is Status.ERROR for j in js)
    assert all(j.prompt_tokens == n and j.completion_tokens in (0, None) for j in js)
    assert js[0].error == (f"the prompt is {n:,} tokens, over the model's limit of {limit:,} tokens (with a "
                           "thinking budget of 16 tokens on top): shorten the query or the responses")  # fmt: skip
    assert refused.winner is None
    assert all(j.status is not Status.ERROR for j in judged.pairs[0].judgments)
    # only the small one's two rows ran (at most 16 steps each); the big one's rows never joined the batch
    assert 0 < backend.tokens_generated - before <= 2 * 16


def test_prompt_plus_budget_over_the_limit_says_which_budget_fits(backend, tiny_model: Path, loop) -> None:  # noqa: ANN001
    from transformers import AutoConfig

    limit = AutoConfig.from_pretrained(str(tiny_model)).max_position_embeddings
    item = long_item(12_000)
    n = prompt_tokens(tiny_model, item)
    budget = limit - n + 100  # the prompt fits, the prompt and the budget do not
    assert 0 < n < limit and budget > 0
    judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=budget, seed=1))
    result = loop.run(judge_item(judge, item, "pair"))
    [j] = result.pairs[0].judgments
    assert j.status is Status.ERROR
    assert f"the prompt is {n:,} tokens and the thinking budget {budget:,} tokens" in j.error
    assert f"together {n + budget:,}, over the model's limit of {limit:,} tokens" in j.error
    assert f"lower the thinking budget to {limit - n:,} or less" in j.error
