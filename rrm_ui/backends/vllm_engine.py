"""In-process vLLM (``AsyncLLM``): continuous batching, prefix caching, ``n=k`` samples per request.

The k votes of one ordered pair are one request with ``n=k``, so the prompt is prefilled
once; prefix caching shares the long system prompt across pairs. Closing the stream aborts
the request inside the engine.

vLLM starts worker processes: scripts that create this backend must keep their entry
point under ``if __name__ == "__main__":``. A watchdog (:mod:`rrm_ui.backends.orphans`) ends
them if the app is killed before it can shut them down.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from rrm_ui.backends import orphans
from rrm_ui.backends.base import Backend, BackendError, Event, SampleTracker, Scored, context_overflow
from rrm_ui.backends.models import (
    is_reward_model,
    not_a_reward_model,
    request_prompt_ids,
    reward_model_cannot_generate,
    score_prompt_ids,
)
from rrm_ui.domain import GenRequest

_ids = itertools.count()


NATIVE_CLOSE = "\n</think>"  # what vLLM forces at a thinking budget: Compute.close_text's default
CPU_KV_SEQUENCES = 8  # full-context sequences the CPU KV cache holds (short ones share its blocks)
_MIB = 1024**2


def cpu_kv_cache_bytes(config: Any, dtype: str | None, max_model_len: int | None,
                       sequences: int = CPU_KV_SEQUENCES) -> int:  # fmt: skip
    """The KV cache for vLLM on CPU, from the model (layers x KV heads x head size x 2 for keys and values x
    bytes per value) and its context (``max_model_len``, else the model's longest): ``sequences`` full
    contexts, rounded up to 64 MiB, at least 256 MiB."""
    text = getattr(config, "text_config", None) or config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    stored = getattr(text, "dtype", None) or getattr(text, "torch_dtype", None)  # transformers 5 / 4
    name = str(dtype if dtype not in (None, "auto") else stored or "bfloat16")
    width = 4 if "32" in name else 2
    context = int(max_model_len or getattr(text, "max_position_embeddings", None) or 4096)
    per_token = 2 * int(text.num_hidden_layers) * kv_heads * head_dim * width
    wanted = per_token * context * sequences
    return max(256 * _MIB, -(-wanted // (64 * _MIB)) * 64 * _MIB)


def _has_think_tokens(tokenizer: Any) -> bool:
    """Whether ``<think>`` and ``</think>`` are single tokens (vLLM's deepseek_r1 reasoning parser needs them)."""
    vocab = tokenizer.get_vocab()
    return "<think>" in vocab and "</think>" in vocab


class VLLMBackend(Backend):
    name = "vllm"
    continues = True  # GenRequest.continuation: appended to the prompt's tokens; the prefix cache holds the rest
    concurrency = 64  # until the engine has started: then its max_num_seqs

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model)
        self._engine_kwargs = dict(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            **(engine_kwargs or {}),
        )
        self._engine: Any = None
        self._tokenizer: Any = None
        self._close_tokens = 0
        self._watchdog: Any = None
        #: the model is a sequence-classification reward model, run by vLLM's pooling runner (``classify``
        #: without the activation: the raw first logit); it scores (--judge scalar-rm) and never generates
        self.reward_model = False

    async def start(self) -> None:
        if self._engine is not None:
            return
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise BackendError(
                f"the vllm backend needs vLLM ({exc}): pip install -e '.[cpu]' on CPU or '.[cuda]' on a GPU"
            ) from exc
        from transformers import AutoConfig, AutoTokenizer
        from vllm.platforms import current_platform

        kwargs = dict(self._engine_kwargs)
        self.reward_model = is_reward_model(AutoConfig.from_pretrained(self.model))
        if self.reward_model:
            kwargs.setdefault("runner", "pooling")
        if current_platform.is_cpu():
            # On CPU, a seeded request whose prompt is prefilled in chunks makes vLLM rewind a
            # CUDA-only generator offset ("CPU Generator does not use offset"), which kills the
            # whole engine. Without chunked prefill, seeded judging runs (tests/test_backends_real.py).
            kwargs.setdefault("enable_chunked_prefill", False)
            # vLLM sizes the CPU KV cache from the machine's memory (17.3 GiB for a 1M-parameter model on
            # a 128 GiB host); size it from the model and its context instead. VLLM_CPU_KVCACHE_SPACE, when
            # set, still wins (vLLM's CPU platform reads it after these arguments).
            if kwargs.get("kv_cache_memory_bytes") is None:
                config = AutoConfig.from_pretrained(self.model)
                kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(config, kwargs.get("dtype"),
                                                                     kwargs.get("max_model_len"))  # fmt: skip
        self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        if "reasoning_parser" not in kwargs and not self.reward_model and _has_think_tokens(self._tokenizer):
            # vLLM's thinking budget (SamplingParams.thinking_token_budget) needs a reasoning parser and the
            # string it forces; it then does budget forcing in one request (GenRequest.thinking_budget)
            from vllm.config.reasoning import ReasoningConfig

            kwargs["reasoning_parser"] = "deepseek_r1"
            kwargs["reasoning_config"] = ReasoningConfig(reasoning_end_str=NATIVE_CLOSE)
        before = orphans.children()
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self._watchdog = orphans.guard(before)  # the engine's processes end if the app is killed
        model_config = getattr(self._engine, "model_config", None)
        self.max_context = getattr(model_config, "max_model_len", None)
        # as many requests in flight as the engine runs sequences at once (256 on a GPU by default):
        # the engine's default concurrency, and with it how many items a job keeps open
        scheduler = getattr(getattr(self._engine, "vllm_config", None), "scheduler_config", None)
        self.concurrency = int(getattr(scheduler, "max_num_seqs", None) or self.concurrency)
        reasoning = getattr(getattr(self._engine, "vllm_config", None), "reasoning_config", None)
        if kwargs.get("reasoning_config") is not None and reasoning is not None:
            self.native_close = reasoning.reasoning_end_str
            self._close_tokens = len(self._tokenizer(self.native_close, add_special_tokens=False)["input_ids"])

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        await self.start()
        s = request.sampling
        if self.reward_model:  # the pooling runner scores; it has no language-model head to write with
            for k in range(request.n):
                yield SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=s.seed).finish(
                    "error", error=reward_model_cannot_generate(self.model))  # fmt: skip
            return
        params = SamplingParams(
            n=request.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens + (self._close_tokens if request.thinking_budget is not None else 0),
            seed=s.seed,
            thinking_token_budget=request.thinking_budget,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=True,
        )
        prompt_ids = request_prompt_ids(self._tokenizer, request)
        request_id = f"{request.request_id}-{next(_ids)}"
        trackers = [
            # vLLM seeds sample k of a seeded n-sample request seed + k (ParentRequest's children)
            SampleTracker(
                k,
                backend=self.name,
                model=self.model,
                sampling=s,
                seed=None if s.seed is None else s.seed + k,
                answering=request.continuation is not None,
            )
            for k in range(request.n)
        ]
        for t in trackers:
            t.prompt_tokens = len(prompt_ids)
        too_long = context_overflow(len(prompt_ids), s.max_tokens, self.max_context)
        if too_long is not None:
            for t in trackers:
                yield t.finish("error", error=too_long)
            return
        done: set[int] = set()
        try:
            async for out in self._engine.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id):
                for comp in out.outputs:
                    tracker = trackers[comp.index]
                    delta = tracker.add_text(comp.text, len(comp.token_ids))
                    if delta is not None:
                        yield delta
                    if comp.finish_reason is not None and comp.index not in done:
                        done.add(comp.index)
                        record = tracker.finish(comp.finish_reason)
                        budget = request.thinking_budget
                        if budget is not None and record.think_closed and (record.reasoning_tokens or 0) > budget:
                            record = replace(record, forced_at=budget)  # closed by vLLM after the budget
                        yield record
        except Exception as exc:  # noqa: BLE001 - a failed request is data, not a crash
            for t in trackers:
                if t.sample not in done:
                    done.add(t.sample)
                    yield t.finish("error", error=f"{type(exc).__name__}: {exc}")
        finally:
            if len(done) < request.n and self._engine is not None:
                await self._engine.abort(request_id)

    async def score(self, messages: list[dict[str, str]], max_length: int | None = None) -> Scored:
        """The first logit of the sequence-classification head: the pooling runner's ``classify`` task with
        ``use_activation=False`` (with it, vLLM would return the sigmoid of a one-label head)."""
        import time

        from vllm.inputs import TokensPrompt
        from vllm.pooling_params import PoolingParams

        await self.start()
        if not self.reward_model:
            raise BackendError(not_a_reward_model(self.model))
        ids, cut = score_prompt_ids(self._tokenizer, messages, max_length)
        too_long = context_overflow(len(ids), 0, self.max_context)
        if too_long is not None:
            raise BackendError(too_long)
        started = time.perf_counter()
        last = None
        params = PoolingParams(task="classify", use_activation=False)
        async for out in self._engine.encode(TokensPrompt(prompt_token_ids=ids), params, f"score-{next(_ids)}"):
            last = out
        if last is None:
            raise BackendError("the vLLM engine ended the scoring request without a result")
        value = float(last.outputs.data.view(-1)[0].item())
        return Scored(value, len(ids), time.perf_counter() - started, cut)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog = None
