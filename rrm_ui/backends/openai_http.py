"""Any OpenAI-compatible chat-completions server (``vllm serve``, SGLang, a hosted endpoint).

- Streams over Server-Sent Events and reads the reasoning from ``delta.reasoning`` (vLLM),
  ``delta.reasoning_content`` (older vLLM, SGLang, DeepSeek) or, when the server has no
  reasoning parser, from inline ``<think>...</think>`` in ``delta.content``.
- Spreads requests over several endpoints (vLLM replicas, or a router in front of them):
  each request goes to the endpoint with the fewest requests in flight, each endpoint has
  its own concurrency limit.
- Endpoint health: an endpoint that refuses or drops a connection before any text (a dead
  replica) is left alone for a cooldown (``cooldown_s``, 2 s, doubled per failure in a row up
  to ``max_cooldown_s``, 30 s), and afterwards is sent nothing until a ``GET /health`` probe answers
  (``/models`` where the server has no ``/health``). Without it a dead replica, having no
  load, was picked first whenever the live ones were busy.
- Retries connection errors (refused, reset or dropped before any text), timeouts before the first
  byte, HTTP 429 and 5xx, with
  exponential backoff, preferring another endpoint. Once text has streamed, a failure is not
  retried here: the sample ends with status ``error``, the message and ``transient=True``, and
  the engine decides (``Judge(retries=...)`` tries the sample again from the start).
- The ``n`` samples of a request are sent as ``n`` requests of one sample each (every sample
  gets its own usage figures and seed), all to one endpoint, so that its prefix cache shares the
  prompt: a request's prompt has a key (:func:`affinity_key`, a hash of its messages) pinned to the
  endpoint its first sample went to, and later requests of the same prompt (adaptive rounds, tries
  again, a forced close's answer) go there too while it is up. The key goes out in a header
  (``affinity_header``, default ``X-Session-ID``) for routers that route by session (vLLM's
  production-stack router with ``--routing-logic session``). Behind one vLLM server with several
  data-parallel engines (its ``/metrics`` shows several ``engine`` labels) the pin names an engine
  too, sent as vLLM's ``X-data-parallel-rank`` header.
- Load: each endpoint's ``/metrics`` (vLLM's Prometheus gauges ``vllm:num_requests_running`` and
  ``vllm:num_requests_waiting``, summed over engines) is read at most every ``metrics_s`` seconds, in a
  task of its own off the request path; an endpoint's load is this backend's requests there now (in
  flight, or placed and waiting for a slot) plus the others' requests at the last reading. An endpoint
  without ``/metrics`` (or with ``metrics_s`` 0) counts only this backend's requests; a reading never
  fails a request.
- Priority: with ``priority_scheduling`` (the servers run ``--scheduling-policy priority``) each request
  carries ``GenRequest.priority`` as vLLM's ``priority`` field (lower runs earlier); without it no
  priority is sent (vLLM refuses a priority other than 0 unless it schedules by priority).
- Closing the stream closes the HTTP connection, which makes vLLM abort the generation.
- Budget forcing's second step (``GenRequest.continuation``): the chat endpoint cannot continue
  the assistant's turn with its reasoning (chat templates drop it), so the prompt is rendered by the
  server (vLLM's ``POST /tokenize`` with the messages, then the continuation's text) and the answer
  streamed from ``/completions`` with those token ids: the same sequence, which the prefix cache holds.
  A server without ``/tokenize`` answers 404: the sample ends with an error that says so.
- Scalar reward models (``--judge scalar-rm``, :meth:`OpenAIBackend.score`): on a vLLM pooling server
  (``vllm serve RM --runner pooling``) each conversation is rendered by ``POST /tokenize`` and scored by
  ``POST /classify`` on those token ids (``use_activation`` false: the first logit), the same ids and score
  as the in-process backends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rrm_ui.backends.base import Backend, BackendError, Event, SampleTracker, Scored
from rrm_ui.domain import GenRecord, GenRequest

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
LOAD_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")  # summed: an engine's load
RANK_HEADER = "X-data-parallel-rank"  # vLLM: run the request on this data-parallel engine
PINS_KEPT = 4096  # prompt keys remembered with their endpoint (least recently used dropped first)
METRICS_MISSING_WAIT_S = 60.0  # an endpoint without /metrics is asked again after this long at least


class _Retryable(Exception):
    """A failure before any text arrived: safe to try again."""


@dataclass
class Endpoint:
    url: str
    limit: int
    in_flight: int = 0
    failures: int = 0  # failures in a row (any kind); the pick prefers fewer
    strikes: int = 0  # connection failures in a row: the endpoint is down until a probe answers
    down_until: float = 0.0  # time.monotonic() until which nothing is sent
    down_reason: str | None = None
    sent: int = 0  # requests sent (for diagnostics and tests)
    probes: int = 0  # health probes sent
    # the server's load at the last /metrics reading: running + waiting per engine label ("" without one)
    server_load: dict[str, float] | None = None
    own_at_reading: Counter[str] = field(default_factory=Counter)  # ours in flight per engine then ("": all)
    rank_in_flight: Counter[str] = field(default_factory=Counter)  # ours in flight now, per pinned engine
    placed: int = 0  # our samples placed here that are not in flight yet (waiting for a slot, or to start)
    rank_placed: Counter[str] = field(default_factory=Counter)  # the same, per engine
    ranks_refused: bool = False  # the server refused X-data-parallel-rank: no engine is pinned there again
    metrics_next: float = 0.0  # time.monotonic() before which /metrics is not read again
    metrics_error: str | None = None  # why the last reading gave no load
    readings: int = 0  # /metrics requests sent
    metrics_task: asyncio.Task[None] | None = field(default=None, repr=False)
    slots: asyncio.Semaphore = field(init=False)
    probe_lock: asyncio.Lock = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        self.slots = asyncio.Semaphore(self.limit)
        self.probe_lock = asyncio.Lock()

    @property
    def root(self) -> str:
        """The server's root (vLLM serves ``/health``, ``/metrics`` and ``/tokenize`` there, beside ``/v1``)."""
        return self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url

    @property
    def health_urls(self) -> list[str]:
        """vLLM and SGLang answer ``/health`` at the server's root; ``/models`` is the fallback."""
        return [f"{self.root}/health", f"{self.url}/models"]

    @property
    def load(self) -> float:
        """Requests on the endpoint: ours in flight now, plus the others' at the last reading (the server's
        running and waiting requests then, less ours then)."""
        ours = self.in_flight + self.placed
        if self.server_load is None:
            return float(ours)
        return ours + max(0.0, sum(self.server_load.values()) - self.own_at_reading[""])

    @property
    def engines(self) -> list[str]:
        """The data-parallel engines the last reading showed, when there are several (else none)."""
        if self.server_load is None or self.ranks_refused or len(self.server_load) < 2 or "" in self.server_load:
            return []
        return sorted(self.server_load, key=lambda e: (len(e), e))

    def engine_load(self, engine: str) -> float:
        assert self.server_load is not None
        others = max(0.0, self.server_load.get(engine, 0.0) - self.own_at_reading[engine])
        return self.rank_in_flight[engine] + self.rank_placed[engine] + others


class _Placed:
    """A sample placed on an endpoint (and engine) before it is in flight: counted in their load meanwhile,
    so that prompts pinned in one burst (before any of their samples started) spread by load."""

    def __init__(self, ep: Endpoint, engine: str | None) -> None:
        self.ep, self.engine, self.held = ep, engine, True
        ep.placed += 1
        if engine is not None:
            ep.rank_placed[engine] += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self.ep.placed -= 1
            if self.engine is not None:
                self.ep.rank_placed[self.engine] -= 1


class _Connection(_Retryable):
    """The endpoint could not be reached, or dropped the connection before any text."""


class OpenAIBackend(Backend):
    name = "openai"
    continues = True  # via POST /tokenize and /completions (vLLM's server)

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
        cooldown_s: float = 2.0,
        max_cooldown_s: float = 30.0,
        metrics_s: float = 2.0,
        affinity_header: str | None = "X-Session-ID",
        priority_scheduling: bool = False,
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
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max_cooldown_s
        self.extra_body = extra_body or {}
        self.metrics_s = metrics_s  # how often each endpoint's /metrics is read at most (0: never)
        self.affinity_header = affinity_header or None  # the header carrying a prompt's key (None: none)
        self.priority_scheduling = priority_scheduling  # send GenRequest.priority (vLLM's priority field)
        self._pins: OrderedDict[str, tuple[Endpoint, str | None]] = OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self._started = False
        self._start_lock = asyncio.Lock()

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
        Endpoints that do not answer start cooling down (they are probed before they get requests);
        :meth:`check` tells what is wrong.
        """
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            served, _ = await asyncio.gather(self._served(), self._read_all_metrics())
            answered = [(ep, models) for ep, models in served if isinstance(models, list)]
            if not self.model:
                if not answered:
                    errors = "; ".join(f"{ep.url}: {models}" for ep, models in served)
                    raise BackendError(f"no --model given and no endpoint answered GET /models: {errors}")
                self.model = answered[0][1][0]["id"] if answered[0][1] else ""
            if any(m.get("owned_by") == "vllm" for _, models in answered for m in models):
                self.extra_body.setdefault("return_token_ids", True)
            self._started = True  # endpoints not up yet: requests wait for them and retry

    async def _served(self) -> list[tuple[Endpoint, list[dict[str, Any]] | str]]:
        """``GET /models`` on every endpoint at once: the served models, or why there are none."""

        async def one(ep: Endpoint) -> list[dict[str, Any]] | str:
            try:
                resp = await self.client.get(f"{ep.url}/models", timeout=self.timeout.connect or 10.0)
            except httpx.HTTPError as exc:
                reason = f"does not answer ({type(exc).__name__}: {exc})".replace(" ()", "")
                self._mark_down(ep, reason)
                return reason
            if resp.status_code >= 300:
                return f"answers GET /models with HTTP {resp.status_code}: {resp.text[:200]}"
            try:
                data = resp.json()["data"]
                if not isinstance(data, list):
                    raise TypeError("data is not a list")
            except (ValueError, KeyError, TypeError) as exc:
                return f"answers GET /models with something else than a model list ({exc})"
            ep.strikes, ep.down_reason, ep.down_until = 0, None, 0.0
            return [m for m in data if isinstance(m, dict)]

        return list(zip(self.endpoints, await asyncio.gather(*(one(ep) for ep in self.endpoints)), strict=True))

    async def check(self) -> tuple[bool, list[str]]:
        """Whether the model can be used now, and what is wrong with each endpoint that is not right.

        Usable: at least one endpoint answers ``GET /models`` and lists the model. A problem names the
        endpoint, what it did (no answer, an HTTP error, another model) and how to fix it.
        """
        problems = []
        usable = False
        for ep, models in await self._served():
            if isinstance(models, str):
                fix = ("start the server there (e.g. `vllm serve MODEL --port PORT`), or pass the right "
                       "--endpoint URL (it ends with /v1)")  # fmt: skip
                problems.append(f"{ep.url} {models}: {fix}")
                continue
            ids = [str(m.get("id")) for m in models]
            if self.model and self.model not in ids:
                other = ids[0] if ids else "NAME"
                problems.append(f"{ep.url} serves {', '.join(ids) or 'no model'}, not {self.model}: pass --model "
                                f"{other} or point --endpoint at a server of {self.model}")  # fmt: skip
                continue
            usable = True
        return usable, problems

    async def _read_all_metrics(self) -> None:
        if self.metrics_s > 0:
            await asyncio.gather(*(self._read_metrics(ep) for ep in self.endpoints))

    def _refresh(self, ep: Endpoint) -> None:
        """Start reading the endpoint's ``/metrics`` in a task of its own when the last reading is older than
        ``metrics_s`` (and none is under way); the pick goes on with the reading it has."""
        if self.metrics_s <= 0 or (ep.metrics_task is not None and not ep.metrics_task.done()):
            return
        if time.monotonic() >= ep.metrics_next:
            ep.metrics_task = asyncio.get_running_loop().create_task(self._read_metrics(ep))

    async def _read_metrics(self, ep: Endpoint) -> None:
        """One reading of ``GET /metrics`` at the server's root into ``ep.server_load``; anything wrong
        (no answer, no such page, no vLLM gauges) leaves no load, so the pick counts only ours."""
        ep.metrics_next = time.monotonic() + self.metrics_s
        ep.readings += 1
        url = f"{ep.root}/metrics"
        try:
            resp = await self.client.get(url, timeout=min(5.0, self.timeout.connect or 5.0))
            if resp.status_code >= 300:
                raise ValueError(f"HTTP {resp.status_code}")
            load = server_load(resp.text)
            if load is None:
                raise ValueError(f"no {' or '.join(LOAD_GAUGES)} in it")
        except (httpx.HTTPError, ValueError) as exc:
            ep.server_load, ep.metrics_error = None, f"{url}: {type(exc).__name__}: {exc}"
            ep.metrics_next = time.monotonic() + max(self.metrics_s, METRICS_MISSING_WAIT_S)
            return
        ep.server_load, ep.metrics_error = load, None
        ep.own_at_reading = Counter(ep.rank_in_flight)
        ep.own_at_reading[""] = ep.in_flight

    async def close(self) -> None:
        for ep in self.endpoints:
            if ep.metrics_task is not None:
                ep.metrics_task.cancel()
                await asyncio.gather(ep.metrics_task, return_exceptions=True)
                ep.metrics_task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _choose(self, avoid: Endpoint | None) -> Endpoint:
        """An endpoint to send to: one not cooling down, least loaded first; one that was down must
        pass a health probe first. When every endpoint is cooling down, waits for the first to end."""
        now = time.monotonic()
        ready = [e for e in self.endpoints if e.down_until <= now]
        if not ready:
            soonest = min(self.endpoints, key=lambda e: e.down_until)
            await asyncio.sleep(max(0.0, soonest.down_until - now))
            ready = [e for e in self.endpoints if e.down_until <= time.monotonic()] or [soonest]
        for ep in self.endpoints:
            self._refresh(ep)
        ranked = sorted(ready, key=lambda e: (e is avoid, e.load / e.limit, e.failures, random.random()))
        for ep in ranked:
            if not ep.strikes or await self._probe(ep):
                return ep
        raise _Retryable("no endpoint answers: " + "; ".join(f"{e.url}: {e.down_reason}" for e in ranked))

    def _engine(self, ep: Endpoint) -> str | None:
        """The least loaded of the endpoint's data-parallel engines (None: one engine, or not known)."""
        engines = ep.engines
        if not engines:
            return None
        return min(engines, key=lambda e: (ep.engine_load(e), random.random()))

    async def _pin(self, key: str) -> tuple[Endpoint, str | None] | None:
        """The endpoint (and engine) of a prompt: where its key was pinned while that endpoint is up, else the
        endpoint the pick chooses now, pinned. None when no endpoint answers (each sample then picks)."""
        pin = self._pins.get(key)
        if pin is not None:
            ep, engine = pin
            if not ep.strikes and ep.down_until <= time.monotonic():
                if engine is not None and engine not in ep.engines:
                    engine = self._engine(ep)  # the engines changed (or refused the header)
                    self._pins[key] = (ep, engine)
                self._pins.move_to_end(key)
                for other in self.endpoints:
                    self._refresh(other)
                return ep, engine
        try:
            ep = await self._choose(avoid=None)
        except _Retryable:
            return None
        self._pins[key] = (ep, self._engine(ep))
        self._pins.move_to_end(key)
        while len(self._pins) > PINS_KEPT:
            self._pins.popitem(last=False)
        return self._pins[key]

    def _mark_down(self, ep: Endpoint, reason: str) -> None:
        ep.strikes += 1
        ep.down_reason = reason
        cooldown = min(self.max_cooldown_s, self.cooldown_s * 2 ** (ep.strikes - 1))
        ep.down_until = max(ep.down_until, time.monotonic() + cooldown)

    async def _probe(self, ep: Endpoint) -> bool:
        """``GET /health`` (else ``/models``) on an endpoint whose cooldown ended; one probe at a time."""
        async with ep.probe_lock:
            if not ep.strikes:
                return True  # a probe that ran meanwhile found it back
            if ep.down_until > time.monotonic():
                return False  # a probe that ran meanwhile found it still down
            reason = "no answer"
            for url in ep.health_urls:
                ep.probes += 1
                try:
                    resp = await self.client.get(url, timeout=self.timeout.connect or 10.0)
                except httpx.HTTPError as exc:
                    reason = f"health probe {url}: {type(exc).__name__}: {exc}"
                    break  # not reachable: the fallback would not be either
                if resp.status_code < 300:
                    ep.strikes, ep.down_reason = 0, None
                    return True
                reason = f"health probe {url}: HTTP {resp.status_code}"
                if resp.status_code != 404:
                    break
            self._mark_down(ep, reason)
            return False

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        if request.prompt is not None:
            raise BackendError("the openai backend sends chat messages; this judge format builds its own prompt "
                               "without a chat template: judge it with the vllm or transformers backend")  # fmt: skip
        await self.start()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        key = affinity_key(request)
        pin = await self._pin(key)
        places = [_Placed(*pin) if pin is not None else None for _ in range(request.n)]

        async def run(k: int) -> None:
            place = places[k]
            try:
                await self._sample(request, k, queue, key, pin, place)
            finally:
                if place is not None:
                    place.release()
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

    async def _sample(
        self,
        request: GenRequest,
        k: int,
        out: asyncio.Queue[Event | None],
        key: str,
        pin: tuple[Endpoint, str | None] | None = None,
        place: _Placed | None = None,
    ) -> None:
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
        if self.priority_scheduling:
            body["priority"] = request.priority
        headers = {self.affinity_header: key} if self.affinity_header else {}
        last_error = "no attempt made"
        endpoint: Endpoint | None = None
        answering = request.continuation is not None
        path = "completions" if answering else "chat/completions"
        if answering:
            del body["messages"]
        tracker = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=seed, answering=answering)
        for attempt in range(self.max_retries + 1):
            chosen: Endpoint | None = None
            try:
                if attempt == 0 and pin is not None and not pin[0].strikes and pin[0].down_until <= time.monotonic():
                    chosen, engine = pin  # the prompt's endpoint: its prefix cache holds the prompt
                    if engine is not None and engine not in chosen.engines:
                        engine = self._engine(chosen)
                else:
                    chosen = await self._choose(avoid=endpoint)
                    engine = self._engine(chosen)
                    if pin is not None and chosen is pin[0] and pin[1] is not None and pin[1] in chosen.engines:
                        engine = pin[1]  # tried again on the prompt's endpoint: on its engine, whose cache has it
                endpoint = chosen
                tracker = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=seed,
                                        answering=answering)  # fmt: skip
                tracker.endpoint = chosen.url
                if answering and "prompt" not in body:
                    ids = await self._continuation_ids(chosen, request)
                    if isinstance(ids, str):
                        await out.put(tracker.finish("error", error=ids))
                        return
                    body["prompt"] = ids
                sent_headers = headers if engine is None else {**headers, RANK_HEADER: engine}
                async with chosen.slots:
                    chosen.in_flight += 1
                    chosen.sent += 1
                    if engine is not None:
                        chosen.rank_in_flight[engine] += 1
                    if place is not None:
                        place.release()  # in flight now (here or, the pin being down, elsewhere)
                    try:
                        record = await self._attempt(chosen, body, tracker, out, path, sent_headers)
                    finally:
                        chosen.in_flight -= 1
                        if engine is not None:
                            chosen.rank_in_flight[engine] -= 1
                chosen.failures = 0
                await out.put(record)
                return
            except _Retryable as exc:
                last_error = str(exc)
                if chosen is not None:
                    chosen.failures += 1
                    if isinstance(exc, _Connection):
                        self._mark_down(chosen, last_error)
                if attempt < self.max_retries:
                    await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        message = f"gave up after {self.max_retries + 1} attempts: {last_error}"
        await out.put(tracker.finish("error", error=message, transient=True))

    async def score(self, messages: list[dict[str, str]], max_length: int | None = None) -> Scored:
        """The scalar reward of one conversation on a vLLM pooling server (``vllm serve RM --runner pooling``):
        the conversation rendered by the server's ``POST /tokenize`` as the in-process backends render it (the
        chat template without a generation prompt, no special tokens added again; at most ``max_length``
        tokens, cut at the end), then ``POST /classify`` on those ids with ``use_activation`` false: the first
        logit. A failure to reach the server is tried again on the next endpoint, as generation is; a server
        without the endpoints is refused with what to run instead."""
        await self.start()
        last_error = "no attempt made"
        avoid: Endpoint | None = None
        for attempt in range(self.max_retries + 1):
            try:
                ep = await self._choose(avoid)
            except _Retryable as exc:
                last_error = str(exc)
            else:
                async with ep.slots:
                    ep.in_flight += 1
                    try:
                        return await self._score_on(ep, messages, max_length)
                    except _Retryable as exc:
                        last_error = str(exc)
                        ep.failures += 1
                        if isinstance(exc, _Connection):
                            self._mark_down(ep, last_error)
                        avoid = ep
                    finally:
                        ep.in_flight -= 1
            if attempt < self.max_retries:
                await asyncio.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        raise BackendError(f"scoring gave up after {self.max_retries + 1} attempts: {last_error}")

    async def _post_root(self, ep: Endpoint, path: str, body: dict[str, Any]) -> httpx.Response:
        """``POST`` to a path at the server's root (vLLM's ``/tokenize``, ``/classify``): the answer, or
        ``_Connection`` / ``_Retryable`` for a failure worth trying again; other HTTP errors are the caller's."""
        url = f"{ep.root}/{path}"
        try:
            resp = await self.client.post(url, json=body)
        except httpx.TransportError as exc:
            raise _Connection(f"{url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(f"{url}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    async def _score_on(self, ep: Endpoint, messages: list[dict[str, str]], max_length: int | None) -> Scored:
        async def post(path: str, body: dict[str, Any]) -> Any:
            url = f"{ep.root}/{path}"
            resp = await self._post_root(ep, path, body)
            if resp.status_code >= 400:
                hint = (" (a reward model is served by vLLM's pooling runner: vllm serve MODEL --runner pooling)"
                        if resp.status_code in (400, 404, 405) else "")  # fmt: skip
                raise BackendError(f"a scalar reward model is scored with POST /tokenize and /classify: {url} "
                                   f"answered HTTP {resp.status_code}: {resp.text[:300]}{hint}")  # fmt: skip
            try:
                return resp.json()
            except ValueError as exc:
                raise BackendError(f"{url} answered something else than JSON ({exc})") from None

        started = time.perf_counter()
        rendered = await post("tokenize", {"model": self.model, "messages": messages, "add_generation_prompt": False,
                                           "add_special_tokens": False})  # fmt: skip
        try:
            ids = [int(t) for t in rendered["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{ep.root}/tokenize answered something else than token ids ({exc!r})") from None
        cut = max_length is not None and len(ids) > max_length
        if cut:
            ids = ids[:max_length]
        scored = await post("classify", {"model": self.model, "input": ids, "use_activation": False})
        try:
            value = float(scored["data"][0]["probs"][0])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BackendError(f"{ep.root}/classify answered without a score ({exc!r}): {str(scored)[:300]}") from None
        return Scored(value, len(ids), time.perf_counter() - started, cut)

    async def _continuation_ids(self, ep: Endpoint, request: GenRequest) -> list[int] | str:
        """The token ids of the rendered prompt and the continuation, from the server's ``POST /tokenize``
        (vLLM: at the server's root); a message saying what is wrong where the server cannot."""
        url = f"{ep.root}/tokenize"
        asks = [{"model": self.model, "messages": list(request.messages), "add_generation_prompt": True,
                 "add_special_tokens": False},
                {"model": self.model, "prompt": request.continuation, "add_special_tokens": False}]  # fmt: skip
        ids: list[int] = []
        for ask in asks:
            resp = await self._post_root(ep, "tokenize", ask)
            if resp.status_code >= 400:
                return (f"budget forcing needs the server to render the prompt (vLLM's POST /tokenize): {url} "
                        f"answered HTTP {resp.status_code}: {resp.text[:300]}")  # fmt: skip
            try:
                ids += [int(t) for t in resp.json()["tokens"]]
            except (ValueError, KeyError, TypeError) as exc:
                return f"{url} answered something else than token ids ({exc})"
        return ids

    async def _attempt(
        self,
        ep: Endpoint,
        body: dict[str, Any],
        tracker: SampleTracker,
        out: asyncio.Queue[Event | None],
        path: str = "chat/completions",
        headers: dict[str, str] | None = None,
    ) -> GenRecord:
        url = f"{ep.url}/{path}"
        streamed = False
        finish_reason: str | None = None
        usage: dict[str, Any] | None = None
        inline = True  # until the server shows a reasoning field, <think> is parsed from content
        try:
            async with self.client.stream("POST", url, json=body, headers=headers) as resp:
                if resp.status_code in RETRY_STATUS:
                    text = (await resp.aread()).decode(errors="replace")[:300]
                    raise _Retryable(f"{url}: HTTP {resp.status_code}: {text}")
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace")[:500]
                    if headers and RANK_HEADER in headers and "data_parallel_rank" in text:
                        ep.ranks_refused = True  # engines read from /metrics that the server does not take
                        raise _Retryable(f"{url}: HTTP {resp.status_code}: {text}")
                    return tracker.finish("error", error=f"{url}: HTTP {resp.status_code}: {text}")
                async for line in sse_lines(resp.aiter_text()):
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
                        content = d.get("content") or choice.get("text") or ""  # chat, completions
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
            # before any text: refused, reset (ReadError / WriteError: a stale keep-alive socket, a full accept
            # queue) or dropped; safe to send again, like a refused connection
            if not streamed and isinstance(exc, (httpx.NetworkError, httpx.ConnectTimeout, httpx.RemoteProtocolError)):
                raise _Connection(message) from exc
            if not streamed and isinstance(exc, httpx.TimeoutException):
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


def affinity_key(request: GenRequest) -> str:
    """The key of a request's prompt: the first 16 hex digits of the BLAKE2b hash of its messages as JSON
    (``json.dumps(list(messages), sort_keys=True, ensure_ascii=False)``, UTF-8), or of its raw prompt. The
    same prompt gets the same key in every app process, whatever the sampling, seed or continuation."""
    prompt: Any = request.prompt if request.prompt is not None else list(request.messages)
    text = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_GAUGE_LINE = re.compile(r"^(vllm:num_requests_(?:running|waiting))(?:\{(.*)\})?\s+(\S+)")
_ENGINE_LABEL = re.compile(r'(?:^|,)\s*engine\s*=\s*"((?:[^"\\]|\\.)*)"')


def server_load(text: str) -> dict[str, float] | None:
    """Running + waiting requests per engine (the ``engine`` label's value, ``""`` for samples without one)
    from a Prometheus text page (vLLM's ``/metrics``); None when it has neither gauge."""
    load: dict[str, float] = {}
    for line in text.splitlines():
        m = _GAUGE_LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        engine = _ENGINE_LABEL.search(m.group(2) or "")
        name = engine.group(1) if engine else ""
        load[name] = load.get(name, 0.0) + value
    return load or None


async def sse_lines(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    """The lines of a server-sent event stream, split at ``\n`` (``\r\n``, ``\r``) only.

    httpx's ``aiter_lines`` splits as ``str.splitlines`` does, also at U+2028, U+2029, U+0085 and
    other separators that JSON leaves unescaped inside strings, so a model that writes one of them
    broke its chunk in two ("malformed stream chunk: Unterminated string").
    """
    buffer = ""
    async for chunk in chunks:
        buffer += chunk
        *lines, buffer = re.split(r"\r\n|\r|\n", buffer)
        for line in lines:
            yield line
    if buffer:
        yield buffer
