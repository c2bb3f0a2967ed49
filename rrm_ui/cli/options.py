"""Options shared by the commands that load a model (``judge`` and ``serve``)."""

from __future__ import annotations

import argparse
from typing import Any

from rrm_ui.config import Settings


def add_backend_options(j: argparse.ArgumentParser) -> None:
    g = j.add_argument_group("backend")
    g.add_argument("--backend", choices=["auto", "vllm", "openai", "transformers"],
                   help="auto (default): openai with --endpoint, vllm on a GPU or for a local model when vLLM is "
                        "installed, transformers otherwise")  # fmt: skip
    g.add_argument("--model", help="local model directory or hub id (openai: served model name)")
    g.add_argument("--endpoint", action="append", dest="endpoints", metavar="URL",
                   help="OpenAI-compatible base URL; repeat to spread requests over replicas")  # fmt: skip
    g.add_argument("--api-key")
    g.add_argument("--dtype", help="e.g. float32 (CPU), bfloat16 (GPU)")
    g.add_argument("--device", help="transformers: cpu or cuda")
    g.add_argument("--max-model-len", type=int)
    g.add_argument("--gpu-memory-utilization", type=float)
    g.add_argument("--tensor-parallel-size", type=int)
    g.add_argument("--enforce-eager", action="store_true", default=None)
    g.add_argument("--concurrency", type=int, help="requests in flight (default: the backend's)")
    g.add_argument("--retries", type=int,
                   help="tries again of a judgment whose server or stream broke (default 2)")  # fmt: skip
    g.add_argument("--retry-wait", type=float, dest="retry_wait_s", metavar="SECONDS",
                   help="wait before the first try again, doubled for each further one (default 10)")  # fmt: skip
    d = j.add_argument_group("decoding (paper defaults: temperature 0.6, top_p 1.0, 8192 tokens)")
    d.add_argument("--temperature", type=float)
    d.add_argument("--top-p", type=float)
    d.add_argument("--max-tokens", type=int, help="thinking budget: most new tokens per judgment")
    d.add_argument("--seed", type=int)


def settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    """The environment's settings with the command line's backend and decoding options on top."""
    return Settings.from_env().but(
        backend=args.backend,
        model=args.model,
        endpoints=tuple(args.endpoints) if args.endpoints else None,
        api_key=args.api_key,
        dtype=args.dtype,
        device=args.device,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
        enforce_eager=args.enforce_eager,
        concurrency=args.concurrency,
        retries=args.retries,
        retry_wait_s=args.retry_wait_s,
        temperature=args.temperature,
        top_p=args.top_p,
        max_tokens=args.max_tokens,
        seed=args.seed,
        **extra,
    )
