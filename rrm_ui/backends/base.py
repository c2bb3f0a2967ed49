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
from dataclasses import dataclass

from rrm_ui.domain import NUL_STAND_IN, Delta, GenRecord, GenRequest, Sampling
from rrm_ui.protocol.base import THINK_CLOSE, THINK_OPEN

Event = Delta | GenRecord


class BackendError(RuntimeError):
    """A backend cannot be set up (missing extra, missing model). The message says how to fix it."""


@dataclass(frozen=True)
class Scored:
    """One response scored by a scalar reward model (:meth:`Backend.score`)."""

    score: float
    prompt_tokens: int
    latency_s: float
    truncated: bool = False  # the conversation was longer than the format's max_length and was cut


class Backend(ABC):
    """A model that can stream judgments. Subclasses implement :meth:`stream`."""

    name: str = "base"
    #: how many requests it pays to keep in flight at once (the engine's default concurrency)
    concurrency: int = 1
    #: the model's context length in tokens (prompt + generated), once known; None: not checked here
    max_context: int | None = None
    #: takes ``GenRequest.continuation`` (budget forcing's second step: the prompt, the reasoning so far
    #: and the forced close, generating the answer only); a backend without it leaves such judgments cut off
    continues: bool = False
    #: the close it writes by itself once ``GenRequest.thinking_budget`` tokens were thought (vLLM's
    #: ``thinking_token_budget``), marking ``GenRecord.forced_at``; None: budget forcing takes two steps
    native_close: str | None = None

    def __init__(self, model: str) -> None:
        self.model = model

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Load weights / open connections. Called once before the first request."""

    @abstractmethod
    def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        """Yield deltas as they arrive and one GenRecord per sample (``0..n-1``)."""

    async def score(self, messages: list[dict[str, str]], max_length: int | None = None) -> Scored:
        """The scalar reward of one conversation (a sequence-classification head: the first logit),
        rendered with the model's chat template; ``max_length``: tokens kept at most (cut at the end).

        Only backends that load a reward model implement it; the others refuse with what to do."""
        raise BackendError(
            f"the {self.name} backend cannot score responses with a reward model: judge with --judge scalar-rm on "
            "the transformers or vllm backend and a sequence-classification model (rrm-ui dev tiny-rm DIR builds one)"
        )

    async def check(self) -> tuple[bool, list[str]]:
        """Whether the model can be used right now, and what is wrong (one sentence with its fix each).

        In-process backends have nothing to check once started; a server-backed one asks its servers.
        """
        return True, []

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model and connections."""

    async def __aenter__(self) -> Backend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def context_overflow(prompt_tokens: int, budget: int, limit: int | None) -> str | None:
    """Why a prompt cannot be judged within the model's context length, with the numbers; else None.

    The prompt and the thinking budget (``max_tokens``) must fit in ``limit`` together: a model
    given less room than its budget would be cut off before ``</think>`` anyway.
    """
    if limit is None or prompt_tokens + budget <= limit:
        return None
    if prompt_tokens >= limit:
        return (f"the prompt is {prompt_tokens:,} tokens, over the model's limit of {limit:,} tokens (with a "
                f"thinking budget of {budget:,} tokens on top): shorten the query or the responses")  # fmt: skip
    return (f"the prompt is {prompt_tokens:,} tokens and the thinking budget {budget:,} tokens: together "
            f"{prompt_tokens + budget:,}, over the model's limit of {limit:,} tokens; lower the thinking budget "
            f"to {limit - prompt_tokens:,} or less, or shorten the texts")  # fmt: skip


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

    def __init__(
        self, sample: int, *, backend: str, model: str, sampling: Sampling, seed: int | None, answering: bool = False
    ) -> None:
        """``answering``: the text starts after ``</think>`` (a continuation after a forced close)."""
        self.sample = sample
        self.backend = backend
        self.model = model
        self.sampling = sampling
        self.seed = seed
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.splitter = ThinkSplitter()
        self.splitter.closed = answering
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
        if "\x00" in reasoning or "\x00" in answer:  # as stored (domain.NUL_STAND_IN): the panel shows that text
            reasoning, answer = reasoning.replace("\x00", NUL_STAND_IN), answer.replace("\x00", NUL_STAND_IN)
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
