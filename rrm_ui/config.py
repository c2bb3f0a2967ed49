"""Settings: read once (environment, then command-line flags) into one object and passed down.

No other module reads ``os.environ``. Every field is documented in docs/configuration.md;
a test checks that each one is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

ENV_PREFIX = "RRM_UI_"


def _opt(
    default: Any,
    doc: str,
    *,
    flag: str | None = None,
    metavar: str | None = None,
    choices: Any = None,
    cli: bool = True,
) -> Any:
    """A setting with its one-line doc; ``cli``: also a command-line flag (``--name-with-dashes``, or
    ``flag``) of the commands that load a model, built by ``cli.options.add_settings_options``."""
    meta = {"help": doc, "flag": flag, "metavar": metavar, "choices": choices, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    # storage
    database_url: str = _opt("sqlite:///db/rrm_ui.db", "any SQLAlchemy URL; postgresql+psycopg://... for teams",
                             cli=False)  # fmt: skip
    # backend and model
    backend: str = _opt("auto", "auto (default): openai with --endpoint, vllm on a GPU or for a local model when "
                        "vLLM is installed, transformers otherwise",
                        choices=("auto", "vllm", "openai", "transformers"))  # fmt: skip
    model: str | None = _opt(None, "local model directory or hub id (openai: served model name)")
    endpoints: tuple[str, ...] = _opt((), "OpenAI-compatible base URL; repeat to spread requests over replicas",
                                      flag="--endpoint", metavar="URL")  # fmt: skip
    api_key: str | None = _opt(None, "API key of the OpenAI-compatible endpoints")
    judge_format: str = _opt("rrm", "the judge format (prompt and parser), by name", flag="--judge",
                             metavar="NAME")  # fmt: skip
    dtype: str | None = _opt(None, "e.g. float32 (CPU), bfloat16 (GPU); default: the backend chooses")
    device: str | None = _opt(None, "transformers: cpu or cuda (default: cuda when available)")
    max_model_len: int | None = _opt(None, "the model's context length (default: the model's own)")
    gpu_memory_utilization: float = _opt(0.9, "vllm: share of the GPU's memory the engine may take")
    tensor_parallel_size: int = _opt(1, "vllm: GPUs one model is split over")
    enforce_eager: bool = _opt(False, "vllm: no CUDA graphs (starts faster)")
    max_batch: int = _opt(8, "transformers: rows per generate() call", cli=False)
    per_endpoint_concurrency: int = _opt(32, "openai: requests in flight per endpoint", cli=False)
    max_retries: int = _opt(4, "openai: retries on connection errors and 5xx", cli=False)
    request_timeout_s: float = _opt(600.0, "openai: read timeout per request", cli=False)
    server_metrics_s: float = _opt(2.0, "openai: how often each endpoint's /metrics is read for its load at most "
                                   "(0: never; only this app's own requests are counted)", cli=False)  # fmt: skip
    affinity_header: str = _opt("X-Session-ID", "openai: the header that carries a prompt's key to session-aware "
                                "routers (empty: none)", cli=False)  # fmt: skip
    priority_scheduling: bool = _opt(False, "openai: the servers run vLLM's --scheduling-policy priority: interactive "
                                     "judging is sent ahead of batch jobs", cli=False)  # fmt: skip
    concurrency: int | None = _opt(None, "requests in flight (default: the backend's)")
    retries: int = _opt(2, "tries again of a judgment whose server or stream broke")
    retry_wait_s: float = _opt(10.0, "wait before the first try again, doubled for each further one",
                               flag="--retry-wait", metavar="SECONDS")  # fmt: skip
    hf_offline: bool = _opt(False, "from HF_HUB_OFFLINE: never try to download weights", cli=False)
    # decoding (defaults of the RRM paper's evaluation)
    temperature: float = _opt(0.6, "sampling temperature")
    top_p: float = _opt(1.0, "nucleus sampling: the share of probability mass sampled from")
    max_tokens: int = _opt(8192, "thinking budget: most new tokens per judgment")
    seed: int | None = _opt(None, "run seed: sample k of an item's ordered pair is seeded from a hash of it, the item "
                            "and the order, + k")  # fmt: skip
    # the app
    host: str = _opt("127.0.0.1", "address the app listens on", cli=False)
    port: int = _opt(7860, "port the app listens on", cli=False)
    annotation_overlap: int = _opt(1, "how many different annotators label each item in the annotation queue",
                                   cli=False)  # fmt: skip
    metrics_token: str | None = _opt(None, "a bearer token that lets a scraper read GET /metrics without a login",
                                     cli=False)  # fmt: skip
    job_lease_s: float = _opt(30.0, "seconds an app process holds a batch job without renewing its lease; "
                              "then another app process on the database takes the job over", cli=False)  # fmt: skip
    job_beat_s: float = _opt(2.0, "how often an app process renews its jobs' leases and reads whether another "
                             "process paused or cancelled them", cli=False)  # fmt: skip
    demo_judge_dir: str = _opt("db/demo-judge", "where the no-model banner's one-click demo judge is built and "
                               "loaded from", cli=False)  # fmt: skip

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
_FLOAT = {
    "gpu_memory_utilization",
    "request_timeout_s",
    "server_metrics_s",
    "retry_wait_s",
    "temperature",
    "top_p",
    "job_lease_s",
    "job_beat_s",
}


def _coerce(name: str, raw: str) -> Any:
    try:
        if name in _INT:
            return int(raw)
        if name in _FLOAT:
            return float(raw)
        if name in {"enforce_eager", "hf_offline", "priority_scheduling"}:
            return _BOOL[raw.strip().lower()]
        if name == "endpoints":
            return tuple(u.strip() for u in raw.split(",") if u.strip())
    except (ValueError, KeyError):
        raise ValueError(f"environment variable {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {name}") from None
    return raw
