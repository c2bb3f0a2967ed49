"""A local model in transformers, on CPU or GPU, streamed token by token and batched.

Requests wait in a queue; one worker thread takes up to ``max_batch`` rows that share the
same sampling settings but for the seed (an ``n=k`` request is k rows), left-pads them into one batch and
runs ``model.generate`` with a streamer that receives the new token of every row at each
step. Each row's text is detokenised incrementally and sent back to the event loop.

Cancelling a request marks its rows; a stopping criterion ends those rows at the next step
(the whole ``generate`` call ends when every row is done or cancelled).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from rrm_ui.backends.base import Backend, BackendError, Event, SampleTracker, Scored, context_overflow
from rrm_ui.backends.models import (
    is_reward_model,
    not_a_reward_model,
    request_prompt_ids,
    reward_model_cannot_generate,
    score_prompt_ids,
)
from rrm_ui.domain import GenRequest, Sampling

_seeds = itertools.count(1)


@dataclass
class _Row:
    prompt_ids: list[int]
    sampling: Sampling
    tracker: SampleTracker
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Event | None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    ids: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0
    done: bool = False

    def send(self, ev: Event | None) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, ev)


def _unseeded(s: Sampling) -> Sampling:
    return s.with_seed(None)


class TransformersBackend(Backend):
    name = "transformers"
    continues = True  # GenRequest.continuation: appended to the prompt's tokens (backends.models)

    def __init__(self, model: str, *, device: str | None = None, dtype: str | None = None, max_batch: int = 8) -> None:
        super().__init__(model)
        self.device = device
        self.dtype = dtype
        self.max_batch = max_batch
        self.concurrency = max_batch
        self._model: Any = None
        self._tok: Any = None
        self._queue: queue.Queue[_Row | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        # Two requests at once (both orders of a pair) both find no model: one loads, the other
        # waits. Two concurrent from_pretrained calls of one model break transformers 5's loading
        # (its meta-device init is process-wide: a tied lm_head was left on the meta device).
        self._load_lock = threading.Lock()
        #: the model is a sequence-classification reward model (scores, never generates; --judge scalar-rm)
        self.reward_model = False
        self._score_lock = threading.Lock()  # one forward at a time on the shared model
        #: observable state (tests, /health): rows in the running generate() call, tokens made so far
        self.active_rows = 0
        self.tokens_generated = 0

    async def start(self) -> None:
        if self._model is not None:
            return
        await asyncio.to_thread(self._load_once)

    def _load_once(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            self._load()
            self._worker = threading.Thread(target=self._work, name="rrm-ui-transformers", daemon=True)
            self._worker.start()

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise BackendError(
                f"the transformers backend needs torch and transformers ({exc}): pip install -e '.[hf]'"
            ) from exc
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, self.dtype) if self.dtype else (torch.bfloat16 if device == "cuda" else torch.float32)
        self._tok = AutoTokenizer.from_pretrained(self.model)
        self._tok.padding_side = "left"
        self.reward_model = is_reward_model(AutoConfig.from_pretrained(self.model))
        auto = AutoModelForSequenceClassification if self.reward_model else AutoModelForCausalLM
        model = auto.from_pretrained(self.model, dtype=dtype)
        model = model.to(device).eval()
        self.device = device
        self.max_context = getattr(model.config, "max_position_embeddings", None)
        self._model = model  # last: a request that sees the model sees everything it needs

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        await self.start()
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Event | None] = asyncio.Queue()
        prompt_ids = request_prompt_ids(self._tok, request)
        s = request.sampling
        if self.reward_model:  # a reward model has no language-model head: it scores, it does not write
            for k in range(request.n):
                tracker = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=s.seed)
                yield tracker.finish("error", error=reward_model_cannot_generate(self.model))
            return
        rows = []
        for k in range(request.n):
            tracker = SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=s.seed,
                                    answering=request.continuation is not None)  # fmt: skip
            tracker.prompt_tokens = len(prompt_ids)
            rows.append(_Row(prompt_ids, s, tracker, loop, out))
        too_long = context_overflow(len(prompt_ids), s.max_tokens, self.max_context)
        if too_long is not None:  # refused before it reaches the one generate() everybody shares
            for row in rows:
                yield row.tracker.finish("error", error=too_long)
            return
        for row in rows:
            self._queue.put(row)
        finished = 0
        try:
            while finished < len(rows):
                ev = await out.get()
                if ev is None:
                    finished += 1
                else:
                    yield ev
        finally:
            for row in rows:
                row.cancelled.set()

    async def score(self, messages: list[dict[str, str]], max_length: int | None = None) -> Scored:
        await self.start()
        if not self.reward_model:
            raise BackendError(not_a_reward_model(self.model))
        ids, cut = score_prompt_ids(self._tok, messages, max_length)
        return await asyncio.to_thread(self._score, ids, cut)

    def _score(self, ids: list[int], cut: bool) -> Scored:
        import time

        import torch

        started = time.perf_counter()
        with self._score_lock, torch.inference_mode():
            logits = self._model(input_ids=torch.tensor([ids], device=self._model.device)).logits
            value = float(logits[0][0].float().item())
        return Scored(value, len(ids), time.perf_counter() - started, cut)

    # --- worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        held: list[_Row] = []
        while True:
            first = held.pop(0) if held else self._queue.get()
            if first is None:
                return
            # rows of other requests join a batch whatever their seed (each request has its own): the
            # batch is seeded once, with its first row's seed (torch.manual_seed, _generate). Rows of other
            # sampling wait in ``held``, each looked at once per batch (a row put back and taken again
            # spun this loop forever as soon as two samplings waited at once: a forced close's answer
            # budget beside judgments still thinking).
            batch, waiting = [first], []
            for row in held:
                fits = len(batch) < self.max_batch and _unseeded(row.sampling) == _unseeded(first.sampling)
                (batch if fits else waiting).append(row)
            held = waiting
            while len(batch) < self.max_batch:
                try:
                    row = self._queue.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    self._queue.put(None)
                    break
                (batch if _unseeded(row.sampling) == _unseeded(first.sampling) else held).append(row)
            batch = [r for r in batch if not self._skip_cancelled(r)]
            if batch:
                self._generate(batch)

    @staticmethod
    def _skip_cancelled(row: _Row) -> bool:
        if row.cancelled.is_set():
            row.send(row.tracker.finish("abort"))
            row.send(None)
            return True
        return False

    def _generate(self, batch: list[_Row]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        tok, model = self._tok, self._model
        s = batch[0].sampling
        seed = s.seed if s.seed is not None else next(_seeds)  # the first row's: rows share all but the seed
        for row in batch:
            row.tracker.seed = seed
        width = max(len(r.prompt_ids) for r in batch)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch])
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch])
        eos = tok.eos_token_id
        backend = self

        class Streamer(BaseStreamer):
            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first sends the prompt
                    self.prompt_seen = True
                    return
                for row, token in zip(batch, value.view(-1).tolist(), strict=True):
                    backend._push(row, token, eos)
                backend.tokens_generated += len(batch)

            def end(self) -> None:
                pass

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.tensor([r.cancelled.is_set() for r in batch], device=input_ids.device)

        torch.manual_seed(seed)
        self.active_rows = len(batch)
        try:
            with torch.inference_mode():
                model.generate(
                    input_ids=input_ids.to(model.device),
                    attention_mask=mask.to(model.device),
                    do_sample=s.temperature > 0,
                    temperature=s.temperature if s.temperature > 0 else None,
                    top_p=s.top_p,
                    top_k=0,
                    max_new_tokens=s.max_tokens,
                    pad_token_id=pad,
                    eos_token_id=eos,
                    streamer=Streamer(),
                    stopping_criteria=StoppingCriteriaList([Cancelled()]),
                )
            error = None
        except Exception as exc:  # noqa: BLE001 - reported on every row of the batch
            error = f"{type(exc).__name__}: {exc}"
        self.active_rows = 0
        for row in batch:
            if not row.done:
                row.done = True
                self._flush(row)
                if error:
                    row.send(row.tracker.finish("error", error=error))
                elif row.cancelled.is_set():
                    row.send(row.tracker.finish("abort"))
                else:
                    row.send(row.tracker.finish("length"))
                row.send(None)

    def _push(self, row: _Row, token: int, eos: int) -> None:
        if row.done:
            return
        if row.cancelled.is_set():
            row.done = True
            row.send(row.tracker.finish("abort"))
            row.send(None)
            return
        if token == eos:
            row.done = True
            self._flush(row)
            row.tracker.completion_tokens += 1
            row.send(row.tracker.finish("stop"))
            row.send(None)
            return
        row.ids.append(token)
        text = self._detokenize(row)
        delta = row.tracker.add_text(text, 1)
        if delta is not None:
            row.send(delta)

    def _detokenize(self, row: _Row) -> str:
        """Incremental decoding (as in TGI/vLLM): decode a short window, emit only settled text."""
        tok = self._tok
        prefix = tok.decode(row.ids[row.prefix_offset : row.read_offset], skip_special_tokens=True)
        full = tok.decode(row.ids[row.prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            row.prefix_offset, row.read_offset = row.read_offset, len(row.ids)
            return full[len(prefix) :]
        return ""

    def _flush(self, row: _Row) -> None:
        """Send text still held back by the incremental decoder (e.g. an unfinished character)."""
        prefix = self._tok.decode(row.ids[row.prefix_offset : row.read_offset], skip_special_tokens=True)
        full = self._tok.decode(row.ids[row.prefix_offset :], skip_special_tokens=True)
        row.prefix_offset = row.read_offset = len(row.ids)
        delta = row.tracker.add_text(full[len(prefix) :], 0) if len(full) > len(prefix) else None
        if delta is not None:
            row.send(delta)

    async def close(self) -> None:
        if self._worker is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._worker.join, 30)
            self._worker = None
        self._model = None
