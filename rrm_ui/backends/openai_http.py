"""Any OpenAI-compatible chat-completions server (``vllm serve``, SGLang, a hosted endpoint).

- Streams over Server-Sent Events and reads the reasoning from ``delta.reasoning`` (vLLM),
  ``delta.reasoning_content`` (older vLLM, SGLang, DeepSeek) or, when the server has no
  reasoning parser, from inline ``<think>...</think>`` in ``delta.content``.
- Spreads requests over several endpoints (vLLM replicas, or a router in front of them):
  each request goes to the endpoint with the fewest requests in flight, each endpoint has
  its own concurrency limit.
- Retries connection errors, timeouts before the first byte, HTTP 429 and 5xx, with
  exponential backoff, preferring another endpoint. Once text has streamed, a failure is not
  retried here: the sample ends with status ``error``, the message and ``transient=True``, and
  the engine decides (``Judge(retries=...)`` tries the sample again from the start).
- The ``n`` samples of a request are sent as ``n`` requests of one sample each: every sample
  gets its own usage figures and seed, and they spread over the endpoints. The server's
  prefix cache shares the prompt between them.
- Closing the stream closes the HTTP connection, which makes vLLM abort the generation.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rrm_ui.backends.base import Backend, BackendError, Event, SampleTracker
from rrm_ui.domain import GenRecord, GenRequest

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    """A failure before any text arrived: safe to try again."""


@dataclass
class Endpoint:
    url: str
    limit: int
    in_flight: int = 0
    failures: int = 0
    slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.slots = asyncio.Semaphore(self.limit)


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(
        self,
        endpoints: list[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        per_endpoint_concurrency: int = 32,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not endpoints:
            raise BackendError("the openai backend needs at least one --endpoint URL (e.g. http://127.0.0.1:8000/v1)")
        super().__init__(model or "")
        self.endpoints = [Endpoint(u, per_endpoint_concurrency) for u in endpoints]
        self.concurrency = per_endpoint_concurrency * len(self.endpoints)
        self.api_key = api_key
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.extra_body = extra_body or {}
        self._client: httpx.AsyncClient | None = None
        self._started = False

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=self.concurrency)
            self._client = httpx.AsyncClient(timeout=self.timeout, headers=headers, limits=limits)
        return self._client

    async def start(self) -> None:
        """Ask the servers which model they serve (when none was given) and whether they are vLLM.

        vLLM returns each chunk's token ids when asked (``return_token_ids``), which makes the
        token counts exact; other servers may reject unknown fields, so it is only sent to vLLM.
        """
        if self._started:
            return
        errors = []
        for ep in self.endpoints:
            try:
                resp = await self.client.get(f"{ep.url}/models")
                resp.raise_for_status()
                served = resp.json()["data"][0]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                errors.append(f"{ep.url}: {type(exc).__name__}: {exc}")
                continue
            self.model = self.model or served["id"]
            if served.get("owned_by") == "vllm":
                self.extra_body.setdefault("return_token_ids", True)
            self._started = True
            return
        if not self.model:
            raise BackendError("no --model given and no endpoint answered GET /models: " + "; ".join(errors))
        self._started = True  # servers not up yet: requests will retry

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _pick(self, avoid: Endpoint | None) -> Endpoint:
        candidates = [e for e in self.endpoints if e is not avoid] or self.endpoints
        return min(candidates, key=lambda e: (e.in_flight / e.limit, e.failures, random.random()))

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        await self.start()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        async def run(k: int) -> None:
            try:
                await self._sample(request, k, queue)
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(run(k)) for k in range(request.n)]
        try:
            remaining = len(tasks)
            while remaining:
                ev = await queue.get()
                if ev is None:
                    remaining -= 1
                else:
                    yield ev
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _sample(self, request: GenRequest, k: int, out: asyncio.Queue[Event | None]) -> None:
        s = request.sampling
        seed = None if s.seed is None else s.seed + k
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.extra_body,
        }
        if seed is not None:
            body["seed"] = seed
        last_error = "no attempt made"
        endpoint: Endpoint | None = None
        for attempt in range(self.max_retries + 1):
            endpoint = self._pick(avoid=endpoint if attempt else None)
            tracker = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=seed)
            tracker.endpoint = endpoint.url
            try:
                async with endpoint.slots:
                    endpoint.in_flight += 1
                    try:
                        record = await self._attempt(endpoint, body, tracker, out)
                    finally:
                        endpoint.in_flight -= 1
                endpoint.failures = 0
                await out.put(record)
                return
            except _Retryable as exc:
                endpoint.failures += 1
                last_error = str(exc)
                if attempt < self.max_retries:
                    await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        message = f"gave up after {self.max_retries + 1} attempts: {last_error}"
        await out.put(tracker.finish("error", error=message, transient=True))

    async def _attempt(
        self, ep: Endpoint, body: dict[str, Any], tracker: SampleTracker, out: asyncio.Queue[Event | None]
    ) -> GenRecord:
        url = f"{ep.url}/chat/completions"
        streamed = False
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        inline = True  # until the server shows a reasoning field, <think> is parsed from content
        try:
            async with self.client.stream("POST", url, json=body) as resp:
                if resp.status_code in RETRY_STATUS:
                    text = (await resp.aread()).decode(errors="replace")[:300]
                    raise _Retryable(f"{url}: HTTP {resp.status_code}: {text}")
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace")[:500]
                    return tracker.finish("error", error=f"{url}: HTTP {resp.status_code}: {text}")
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    if "error" in chunk and not chunk.get("choices"):
                        raise httpx.RemoteProtocolError(f"server error in stream: {chunk['error']}")
                    for choice in chunk.get("choices") or ():
                        d = choice.get("delta") or {}
                        reasoning = d.get("reasoning") or d.get("reasoning_content") or ""
                        content = d.get("content") or ""
                        if reasoning:
                            inline = False
                        # vLLM sends token_ids per chunk when asked (return_token_ids); else ~1 token a chunk
                        ids = choice.get("token_ids")
                        tokens = len(ids) if ids is not None else (1 if reasoning or content else 0)
                        if reasoning or content or tokens:
                            streamed = True
                            if inline:
                                delta = tracker.add_text(content, tokens)
                            else:
                                delta = tracker.add_split(reasoning, content, tokens)
                            if delta is not None:
                                await out.put(delta)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
        except (httpx.TransportError, httpx.StreamError) as exc:
            message = f"{url}: {type(exc).__name__}: {exc}"
            if not streamed and isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.TimeoutException)):
                raise _Retryable(message) from exc
            if not streamed and isinstance(exc, httpx.RemoteProtocolError):
                raise _Retryable(message) from exc
            return tracker.finish("error", error=message, transient=True)
        except json.JSONDecodeError as exc:
            return tracker.finish("error", error=f"{url}: malformed stream chunk: {exc}")
        if finish_reason is None:
            return tracker.finish("error", error=f"{url}: stream ended without a finish reason", transient=True)
        completion = None
        if usage:
            tracker.prompt_tokens = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            details = usage.get("completion_tokens_details") or {}
            # vLLM reports 0 here even for all-reasoning output: trust it only over no count of ours
            if details.get("reasoning_tokens") and not tracker.reasoning_tokens:
                tracker.reasoning_tokens = details["reasoning_tokens"]
        return tracker.finish(finish_reason, completion_tokens=completion)
