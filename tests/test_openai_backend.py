"""The openai backend's retries, endpoint spreading and stream formats.

A scripted chat-completions server (real HTTP on loopback, scripted answers: a test
double for failure injection) drives the logic; the last test kills a real vLLM server
in the middle of a stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rrm_ui.backends.openai_http import OpenAIBackend
from rrm_ui.domain import Compute, Item, Sampling, Status
from rrm_ui.engine.judge import Judge
from rrm_ui.engine.runner import judge_items
from rrm_ui.protocol import RRM_FORMAT


@dataclass
class Script:
    """How the scripted server behaves. ``field_name`` None sends reasoning inline in content."""

    fail_first: int = 0  # answer HTTP `fail_status` to this many requests first
    fail_status: int = 503
    field_name: str | None = "reasoning"
    verdict: str = "Assistant 1"
    chunks: int = 5
    chunk_delay_s: float = 0.0
    drop_after: int | None = None  # close the connection after this many chunks
    drop_requests: int | None = None  # drop only the first this many requests (None: every request)
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = json.dumps({"data": [{"id": "scripted-judge", "owned_by": "scripted"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.requests += 1
                n = script.requests
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                if n <= script.fail_first:
                    body = b'{"error": "overloaded"}'
                    self.send_response(script.fail_status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for k, delta in enumerate(self._deltas()):
                    dropping = script.drop_requests is None or n <= script.drop_requests
                    if script.drop_after is not None and k >= script.drop_after and dropping:
                        self.wfile.flush()
                        self.connection.shutdown(2)  # the server goes away mid-stream
                        return
                    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    self._send(chunk)
                    time.sleep(script.chunk_delay_s)
                self._send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._send({"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": script.chunks + 2}})
                self.wfile.write(b"data: [DONE]\n\n")
            finally:
                with script.lock:
                    script.in_flight -= 1

        def _deltas(self) -> list[dict]:
            thoughts = [f"step {k}. " for k in range(script.chunks)]
            answer = "\\boxed{" + script.verdict + "}"
            if script.field_name is None:  # no reasoning parser: the think block is inline
                return [{"content": t} for t in thoughts] + [{"content": "</th"}, {"content": "ink>" + answer}]
            return [{script.field_name: t} for t in thoughts] + [{"content": answer}]

        def _send(self, chunk: dict) -> None:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


@pytest.fixture
def serve():  # noqa: ANN201
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


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
