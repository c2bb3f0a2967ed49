"""The openai backend's retries, endpoint spreading and stream formats.

A scripted chat-completions server (real HTTP on loopback, scripted answers: a test
double for failure injection) drives the logic; the last test kills a real vLLM server
in the middle of a stream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rrm_ui.backends.openai_http import OpenAIBackend
from rrm_ui.domain import Compute, Item, Sampling, Status
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_items
from rrm_ui.protocol import RRM_FORMAT
from tests.scripted_openai import Script
from tests.scripted_openai import serve as serve  # noqa: PLC0414 - the fixture, used by name

ITEMS = [Item(f"q{k}", f"question {k}", (f"first {k}", f"second {k}")) for k in range(12)]


def judge_all(backend: OpenAIBackend, items: list[Item] = ITEMS, compute: Compute | None = None) -> list:
    async def run() -> list:
        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=64), compute=compute)
        try:
            return [r async for r in judge_items(judge, items)]
        finally:
            await backend.close()

    return asyncio.run(run())


def judgments(results: list) -> list:
    return [j for r in results for p in r.pairs for j in p.judgments]


@pytest.mark.parametrize("field_name", ["reasoning", "reasoning_content", None])
def test_reads_reasoning_field_or_inline_think(serve, field_name: str | None) -> None:  # noqa: ANN001
    url = serve(Script(field_name=field_name, verdict="Assistant 2"))
    js = judgments(judge_all(OpenAIBackend([url]), ITEMS[:2]))
    assert [j.status for j in js] == [Status.OK, Status.OK]
    assert all(j.winner == 1 and j.reasoning.startswith("step 0. step 1.") for j in js)
    assert all(j.answer == "\\boxed{Assistant 2}" and j.prompt_tokens == 42 for j in js)


def test_retries_5xx_with_backoff_then_succeeds(serve) -> None:  # noqa: ANN001
    script = Script(fail_first=2)
    url = serve(script)
    js = judgments(judge_all(OpenAIBackend([url], backoff_s=0.01), ITEMS[:1]))
    assert js[0].status is Status.OK
    assert script.requests == 3


def test_a_connection_reset_before_any_text_is_tried_again(serve) -> None:  # noqa: ANN001
    # httpx reads a reset as ReadError (CI saw one against a busy scripted server): nothing was streamed, so
    # the request is sent again, as for a refused connection, instead of ending the sample with an error
    script = Script(reset_first=1)
    url = serve(script)
    js = judgments(judge_all(OpenAIBackend([url], backoff_s=0.01, cooldown_s=0.01), ITEMS[:1]))
    assert js[0].status is Status.OK, js[0].error
    assert script.requests == 2


def test_gives_up_after_max_retries_with_the_reason(serve) -> None:  # noqa: ANN001
    script = Script(fail_first=10**6)
    url = serve(script)
    js = judgments(judge_all(OpenAIBackend([url], backoff_s=0.01, max_retries=2), ITEMS[:2]))
    assert all(j.status is Status.ERROR for j in js)
    assert all("gave up after 3 attempts" in j.error and "HTTP 503" in j.error for j in js)
    assert script.requests == 6


def test_client_errors_are_not_retried(serve) -> None:  # noqa: ANN001
    script = Script(fail_first=10**6, fail_status=400)
    url = serve(script)
    js = judgments(judge_all(OpenAIBackend([url], backoff_s=0.01), ITEMS[:1]))
    assert js[0].status is Status.ERROR and "HTTP 400" in js[0].error
    assert script.requests == 1


def test_dead_endpoint_is_skipped(serve) -> None:  # noqa: ANN001
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    script = Script()
    live = serve(script)
    js = judgments(judge_all(OpenAIBackend([dead, live], model="scripted-judge", backoff_s=0.01)))
    assert all(j.status is Status.OK for j in js) and len(js) == len(ITEMS)
    assert all(j.endpoint == live for j in js)
    assert script.requests == len(ITEMS)


def counting_client(backend: OpenAIBackend) -> list[str]:
    """Every request the backend sends, as "METHOD url", through the client's own request hook."""
    import httpx

    sent: list[str] = []

    async def hook(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url}")

    backend._client = httpx.AsyncClient(timeout=backend.timeout, event_hooks={"request": [hook]})
    return sent


def test_dead_replica_gets_no_traffic_while_it_cools_down(serve) -> None:  # noqa: ANN001
    # issue 13: 3 live + 1 dead replica; a refused connection left the dead one at zero load, so it was
    # picked first whenever the live ones were busy (134 wasted attempts for 320 requests)
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    scripts = [Script(chunk_delay_s=0.005) for _ in range(3)]
    live = [serve(sc) for sc in scripts]
    backend = OpenAIBackend([dead, *live], model="scripted-judge", per_endpoint_concurrency=2, backoff_s=0.01,
                            cooldown_s=600)  # fmt: skip
    sent = counting_client(backend)
    items = [Item(f"q{k}", f"question {k}", (f"first {k}", f"second {k}")) for k in range(40)]
    js = judgments(judge_all(backend, items))
    assert all(j.status is Status.OK for j in js) and len(js) == len(items)
    to_dead = [r for r in sent if r.split(" ", 1)[1].startswith(dead)]
    # the start's GET /models finds it dead (or, at most, its two slots are used before the first refusal
    # comes back); then nothing is sent there, not even a probe, while it cools down
    posts = [r for r in to_dead if r.startswith("POST")]
    assert len(posts) <= 2 and len(to_dead) - len(posts) <= 1, to_dead
    assert sum(sc.requests for sc in scripts) == len(items)


def test_replica_back_after_its_cooldown_is_probed_before_it_gets_requests(serve) -> None:  # noqa: ANN001
    from tests.conftest import free_port

    port = free_port()
    back = f"http://127.0.0.1:{port}/v1"
    other = Script(chunk_delay_s=0.005)
    live = serve(other)
    backend = OpenAIBackend([back, live], model="scripted-judge", per_endpoint_concurrency=2, backoff_s=0.01,
                            cooldown_s=0.2)  # fmt: skip
    items = [Item(f"q{k}", f"question {k}", (f"first {k}", f"second {k}")) for k in range(8)]

    async def run() -> tuple[list, list, Script]:
        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=64))
        try:
            first = [r async for r in judge_items(judge, items[:4])]  # the port is dead: it cools down
            revived = Script(chunk_delay_s=0.005)
            serve(revived, port)
            ep = backend.endpoints[0]
            await asyncio.sleep(max(0.0, ep.down_until - time.monotonic()) + 0.05)  # its cooldown ends
            second = [r async for r in judge_items(judge, items)]
            return first, second, revived
        finally:
            await backend.close()

    first, second, revived = asyncio.run(run())
    assert all(j.status is Status.OK for j in judgments(first) + judgments(second))
    assert revived.requests > 0  # it is used again
    assert revived.paths[0] == "GET /health", revived.paths[:3]  # but only after a probe answered
    assert {j.endpoint for j in judgments(second)} == {back, live}


def test_spreads_over_endpoints_within_their_limits(serve) -> None:  # noqa: ANN001
    scripts = [Script(chunk_delay_s=0.02), Script(chunk_delay_s=0.02)]
    urls = [serve(s) for s in scripts]
    backend = OpenAIBackend(urls, per_endpoint_concurrency=2)
    js = judgments(judge_all(backend, compute=Compute(votes=2)))
    assert all(j.status is Status.OK for j in js) and len(js) == 2 * len(ITEMS)
    assert sum(s.requests for s in scripts) == 2 * len(ITEMS)
    assert all(s.requests >= len(ITEMS) // 2 for s in scripts), [s.requests for s in scripts]
    assert all(s.max_in_flight <= 2 for s in scripts), [s.max_in_flight for s in scripts]
    assert {j.endpoint for j in js} == set(urls)


def test_connection_lost_mid_stream_is_an_error_not_a_retry(serve) -> None:  # noqa: ANN001
    script = Script(drop_after=3)
    url = serve(script)
    js = judgments(judge_all(OpenAIBackend([url], backoff_s=0.01), ITEMS[:2]))
    assert all(j.status is Status.ERROR for j in js)
    assert all(url in j.error for j in js)
    assert all(j.reasoning.startswith("step 0.") for j in js)  # what streamed is kept
    assert script.requests == 2


@pytest.mark.slow
def test_real_vllm_server_killed_mid_stream(tiny_model: Path, tmp_path: Path) -> None:
    """SIGKILL a real vLLM server while it streams: those judgments get status error, the run ends."""
    from tests.conftest import VLLMServer

    server = VLLMServer(tiny_model, tmp_path).wait_ready()
    items = ITEMS[:4]
    killed = asyncio.Event()

    async def run() -> list:
        backend = OpenAIBackend([server.url], backoff_s=0.05, max_retries=1)

        def on_delta(_update: object) -> None:
            if not killed.is_set():
                killed.set()
                server.kill()

        from rrm_ui.engine.judge import Observer

        judge = Judge(backend, RRM_FORMAT, sampling=Sampling(max_tokens=6000, seed=1), observer=Observer(on_delta))
        try:
            return [r async for r in judge_items(judge, items)]
        finally:
            await backend.close()

    try:
        results = asyncio.run(asyncio.wait_for(run(), 120))
    finally:
        server.stop()
    assert killed.is_set()
    assert [r.id for r in results] == [i.id for i in items]  # the run went on to the end
    js = judgments(results)
    assert len(js) == len(items)
    assert all(j.status is Status.ERROR for j in js)
    assert all(server.url in j.error for j in js)
