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
from typing import Any

from rrm_ui.backends import orphans
from rrm_ui.backends.base import Backend, BackendError, Event, SampleTracker
from rrm_ui.backends.models import chat_prompt_ids
from rrm_ui.domain import GenRequest

_ids = itertools.count()


class VLLMBackend(Backend):
    name = "vllm"
    concurrency = 64

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
        self._watchdog: Any = None

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
        from transformers import AutoTokenizer
        from vllm.platforms import current_platform

        kwargs = dict(self._engine_kwargs)
        if current_platform.is_cpu():
            # On CPU, a seeded request whose prompt is prefilled in chunks makes vLLM rewind a
            # CUDA-only generator offset ("CPU Generator does not use offset"), which kills the
            # whole engine. Without chunked prefill, seeded judging runs (tests/test_backends_real.py).
            kwargs.setdefault("enable_chunked_prefill", False)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        before = orphans.children()
        self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))
        self._watchdog = orphans.guard(before)  # the engine's processes end if the app is killed

    async def stream(self, request: GenRequest) -> AsyncIterator[Event]:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        await self.start()
        s = request.sampling
        params = SamplingParams(
            n=request.n,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            seed=s.seed,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=True,
        )
        prompt_ids = chat_prompt_ids(self._tokenizer, list(request.messages))
        request_id = f"{request.request_id}-{next(_ids)}"
        trackers = [
            SampleTracker(k, backend=self.name, model=self.model, sampling=s, seed=s.seed) for k in range(request.n)
        ]
        for t in trackers:
            t.prompt_tokens = len(prompt_ids)
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
                        yield tracker.finish(comp.finish_reason)
        except Exception as exc:  # noqa: BLE001 - a failed request is data, not a crash
            for t in trackers:
                if t.sample not in done:
                    done.add(t.sample)
                    yield t.finish("error", error=f"{type(exc).__name__}: {exc}")
        finally:
            if len(done) < request.n and self._engine is not None:
                await self._engine.abort(request_id)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
        if self._watchdog is not None:
            self._watchdog.terminate()
            self._watchdog = None
