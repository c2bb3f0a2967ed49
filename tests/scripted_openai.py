"""A scripted OpenAI-compatible server: real HTTP on loopback, scripted answers (a test double).

One server for every test of the logic around an OpenAI endpoint: the openai backend's retries and
stream formats, its endpoint picker and cluster routing, the app's endpoint status. It answers
``POST /v1/chat/completions`` with a stream of ``chunks`` reasoning deltas and a ``\\boxed{}`` verdict,
``GET /metrics`` with a scripted Prometheus page (404 when there is none), and any other ``GET`` with
a model list. Failures are scripted too: HTTP errors, connection resets, streams cut mid-way, a
refused data-parallel engine. Every request is recorded for the test to look at.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rrm_ui.backends.openai_http import RANK_HEADER


@dataclass
class Script:
    """How the scripted server behaves, and what it was sent. ``field_name`` None sends reasoning inline."""

    fail_first: int = 0  # answer HTTP `fail_status` to this many requests first
    reset_first: int = 0  # reset the connection (TCP RST, nothing sent) on this many requests first
    fail_status: int = 503
    field_name: str | None = "reasoning"
    verdict: str = "Assistant 1"
    chunks: int = 5  # reasoning deltas before the answer
    chunk_delay_s: float = 0.0  # after each delta
    drop_after: int | None = None  # close the connection after this many chunks
    drop_requests: int | None = None  # drop only the first this many requests (None: every request)
    metrics: str | None = None  # the /metrics page (None: 404, a server without one)
    refuse_rank: bool = False  # answer 400 to a request naming a data-parallel engine, as vLLM does for a bad one
    # what it was sent
    requests: int = 0
    paths: list[str] = field(default_factory=list)  # "GET /health", "POST /v1/chat/completions", in order
    posts: list[dict] = field(default_factory=list)  # {"headers": {...}, "body": {...}} of each POST
    metrics_reads: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            with script.lock:
                script.paths.append(f"GET {self.path}")
                if self.path == "/metrics":
                    script.metrics_reads += 1
                page = script.metrics
            if self.path != "/metrics":
                self._reply(200, json.dumps({"data": [{"id": "scripted-judge", "owned_by": "scripted"}]}).encode())
            elif page is None:
                self._reply(404, b'{"detail": "Not Found"}')
            else:
                self._reply(200, page.encode(), "text/plain; version=0.0.4")

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with script.lock:
                script.paths.append(f"POST {self.path}")
                script.posts.append({"headers": headers, "body": body})
                script.requests += 1
                n = script.requests
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                self._answer(n, headers)
            finally:
                with script.lock:
                    script.in_flight -= 1

        def _answer(self, n: int, headers: dict[str, str]) -> None:
            if n <= script.reset_first:  # a connection reset before any byte (a stale or refused socket)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if n <= script.fail_first:
                self._reply(script.fail_status, b'{"error": "overloaded"}')
                return
            if script.refuse_rank and RANK_HEADER.lower() in headers:
                message = f"data_parallel_rank {headers[RANK_HEADER.lower()]} is out of range [0, 1)."
                self._reply(400, json.dumps({"error": {"message": message}}).encode())
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
                self._send({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
                time.sleep(script.chunk_delay_s)
            self._send({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._send({"choices": [], "usage": {"prompt_tokens": 42, "completion_tokens": script.chunks + 2}})
            self.wfile.write(b"data: [DONE]\n\n")

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


def start_server(script: Script, port: int = 0) -> ThreadingHTTPServer:
    """A scripted server on loopback (``port`` 0: any free one), serving in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(script))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def serve() -> Iterator:
    """``serve(script, port=0)`` starts a scripted server and gives its ``/v1`` URL; all stop at the end."""
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script, port: int = 0) -> str:
        servers.append(start_server(script, port))
        return f"http://127.0.0.1:{servers[-1].server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()
