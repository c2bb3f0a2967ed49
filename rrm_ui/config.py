"""Settings: read once (environment, then command-line flags) into one object and passed down.

No other module reads ``os.environ``. Every field is documented in docs/configuration.md;
a test checks that each one is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

ENV_PREFIX = "RRM_UI_"


@dataclass(frozen=True)
class Settings:
    # storage
    database_url: str = "sqlite:///db/rrm_ui.db"  # any SQLAlchemy URL; postgresql+psycopg://... for teams
    # backend and model
    backend: str = "auto"  # auto | vllm | openai | transformers (auto: see backends.choose_backend)
    model: str | None = None  # local directory or hub id; for openai, the served model name
    endpoints: tuple[str, ...] = ()  # OpenAI-compatible base URLs, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None
    judge_format: str = "rrm"
    dtype: str | None = None  # e.g. float32 on CPU, bfloat16 on GPU; None lets the backend choose
    device: str | None = None  # transformers: cpu | cuda; None picks cuda when available
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    max_batch: int = 8  # transformers: rows per generate() call
    per_endpoint_concurrency: int = 32  # openai: requests in flight per endpoint
    max_retries: int = 4  # openai: retries on connection errors and 5xx
    request_timeout_s: float = 600.0  # openai: read timeout per request
    concurrency: int | None = None  # requests in flight overall; None uses the backend's default
    retries: int = 2  # engine: tries again of a sample that failed for a transient reason (server gone)
    retry_wait_s: float = 10.0  # engine: wait before the first try again, doubled for each further one
    hf_offline: bool = False  # from HF_HUB_OFFLINE: never try to download weights
    # decoding (defaults of the RRM paper's evaluation)
    temperature: float = 0.6
    top_p: float = 1.0
    max_tokens: int = 8192
    seed: int | None = None
    # the app
    host: str = "127.0.0.1"
    port: int = 7860
    annotation_overlap: int = 1  # how many different annotators label each item in the annotation queue

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``RRM_UI_*`` variables (and ``HF_HUB_OFFLINE``), then explicit overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.name, raw)
        if "hf_offline" not in values and env.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
            values["hf_offline"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def but(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
_INT = {
    "tensor_parallel_size",
    "max_batch",
    "per_endpoint_concurrency",
    "max_retries",
    "concurrency",
    "retries",
    "max_tokens",
    "seed",
    "max_model_len",
    "port",
    "annotation_overlap",
}
_FLOAT = {"gpu_memory_utilization", "request_timeout_s", "retry_wait_s", "temperature", "top_p"}


def _coerce(name: str, raw: str) -> Any:
    try:
        if name in _INT:
            return int(raw)
        if name in _FLOAT:
            return float(raw)
        if name in {"enforce_eager", "hf_offline"}:
            return _BOOL[raw.strip().lower()]
        if name == "endpoints":
            return tuple(u.strip() for u in raw.split(",") if u.strip())
    except (ValueError, KeyError):
        raise ValueError(f"environment variable {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {name}") from None
    return raw
