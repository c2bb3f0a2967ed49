"""The one streaming interface every generation backend implements.

A backend turns a :class:`~rrm_ui.domain.GenRequest` (chat messages, sampling, ``n``)
into an async stream of events: :class:`~rrm_ui.domain.Delta` as text arrives, and one
:class:`~rrm_ui.domain.GenRecord` per sample when that sample ends. Closing the stream
early (``aclose()``, or cancelling the task that reads it) must stop the generation on
the backend, not only the reading of it.

:class:`SampleTracker` owns what every backend would otherwise write again: splitting
streamed text at ``</think>`` (which may arrive cut across chunks), time to first token,
latency, and the reasoning-token count.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from rrm_ui.domain import Delta, GenRecord, GenRequest, Sampling
from rrm_ui.protocol.base import THINK_CLOSE, THINK_OPEN

Event = Delta | GenRecord


class BackendError(RuntimeError):
    """A backend cannot be set up (missing extra, missing model). The message says how to fix it."""


class Backend(ABC):
    """A model that can stream judgments. Subclasses implement :meth:`stream`."""

    name: str = "base"
    #: how many requests it pays to keep in flight at once (the engine's default concurrency)
    concurrency: int = 1

    def __init__(self, model: str) -> None:
        self.model = model

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights / open connections. Called once before the first request."""

    @abstractmethod
    def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        """Yield deltas as they arrive and one GenRecord per sample (``0..n-1``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and connections."""

    async def __aenter__(self) -> Backend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ThinkSplitter:
    """Incrementally splits text that starts inside ``<think>`` into reasoning and answer.

    ``</think>`` may arrive cut across two chunks, so a possible partial tag at the end of
    a chunk is held back until the next chunk (or :meth:`flush`) decides it.
    """

    def __init__(self) -> None:
        self.closed = False
        self._pending = ""
        self._at_start = True

    def feed(self, text: str) -> tuple[str, str]:
        if self.closed:
            return "", text
        buf = self._pending + text
        self._pending = ""
        if self._at_start:
            # a model may repeat the opening tag the template already wrote
            if THINK_OPEN.startswith(buf) and len(buf) < len(THINK_OPEN):
                self._pending = buf
                return "", ""
            if buf.startswith(THINK_OPEN):
                buf = buf[len(THINK_OPEN) :]
            self._at_start = False
        head, sep, tail = buf.partition(THINK_CLOSE)
        if sep:
            self.closed = True
            return head, tail
        keep = _partial_suffix(head, THINK_CLOSE)
        if keep:
            self._pending = head[-keep:]
            head = head[:-keep]
        return head, ""

    def flush(self) -> str:
        """Reasoning text still held back when the stream ends."""
        rest, self._pending = self._pending, ""
        return rest


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class SampleTracker:
    """Accumulates one sample's stream and builds its :class:`GenRecord`."""

    def __init__(self, sample: int, *, backend: str, model: str, sampling: Sampling, seed: int | None) -> None:
        self.sample = sample
        self.backend = backend
        self.model = model
        self.sampling = sampling
        self.seed = seed
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.splitter = ThinkSplitter()
        self._reasoning: list[str] = []
        self._answer: list[str] = []
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.prompt_tokens: int | None = None
        self.endpoint: str | None = None

    @property
    def think_closed(self) -> bool:
        return self.splitter.closed

    def _mark_first(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def add_text(self, text: str, tokens: int = 0) -> Delta | None:
        """Feed raw generated text (which starts inside ``<think>``); returns the delta to emit."""
        if tokens or text:
            self._mark_first()
        was_open = not self.splitter.closed
        self.completion_tokens += tokens
        if was_open:
            self.reasoning_tokens += tokens
        reasoning, answer = self.splitter.feed(text)
        return self._emit(reasoning, answer)

    def add_split(self, reasoning: str, answer: str, tokens: int = 0) -> Delta | None:
        """Feed text a server already split into reasoning and answer fields."""
        if tokens or reasoning or answer:
            self._mark_first()
        self.completion_tokens += tokens
        if not self.splitter.closed:
            self.reasoning_tokens += tokens  # the chunk that closes the block counts, as in add_text
        if answer:
            self.splitter.closed = True  # the server saw </think>: content only follows it
        return self._emit(reasoning, answer)

    def _emit(self, reasoning: str, answer: str) -> Delta | None:
        if reasoning:
            self._reasoning.append(reasoning)
        if answer:
            self._answer.append(answer)
        if reasoning or answer:
            return Delta(self.sample, reasoning, answer)
        return None

    def finish(
        self,
        finish_reason: str | None,
        *,
        completion_tokens: int | None = None,
        error: str | None = None,
        transient: bool = False,
    ) -> GenRecord:
        held = self.splitter.flush()
        if held:
            self._reasoning.append(held)
        now = time.perf_counter()
        return GenRecord(
            sample=self.sample,
            reasoning="".join(self._reasoning),
            answer="".join(self._answer),
            think_closed=self.splitter.closed,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion_tokens if completion_tokens is not None else self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
            ttft_s=None if self.first_token_at is None else self.first_token_at - self.started,
            latency_s=now - self.started,
            finish_reason=finish_reason,
            model=self.model,
            backend=self.backend,
            sampling=self.sampling,
            seed=self.seed,
            error=error,
            endpoint=self.endpoint,
            transient=transient,
        )
