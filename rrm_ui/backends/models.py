"""Finding model weights: a local path, the local Hugging Face cache, or a clear error at once.

A hub id that cannot be downloaded (offline machine, no such repo) must fail in seconds
with a message that names the fixes, not after a minute of retries inside a library.
"""

from __future__ import annotations

from pathlib import Path

from rrm_ui.backends.base import BackendError
from rrm_ui.domain import GenRequest

FIXES = (
    "pass a local model directory with --model PATH, an OpenAI-compatible server with "
    "--backend openai --endpoint URL, or build a wiring-check model with "
    "`rrm-ui dev tiny-model ./tiny-model` (its verdicts are noise)"
)


def resolve_model(model: str, *, offline: bool, probe_timeout_s: float = 5.0) -> str:
    """Return a local directory for ``model`` or raise :class:`BackendError` quickly."""
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BackendError(f"{path} has no config.json: it is not a model directory; {FIXES}")
        return str(path)
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise BackendError(f"model path {model!r} does not exist; {FIXES}")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(model, local_files_only=True)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - not in the local cache; decide below
        pass
    if offline:
        raise BackendError(f"{model!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; {FIXES}")
    import httpx

    try:
        httpx.head(f"https://huggingface.co/api/models/{model}", timeout=probe_timeout_s)
    except httpx.HTTPError as exc:
        raise BackendError(
            f"cannot download {model!r}: the Hugging Face hub is unreachable ({type(exc).__name__}); {FIXES}"
        ) from None
    return model  # reachable: let the backend download it


def chat_prompt_ids(tokenizer: object, messages: list[dict[str, str]]) -> list[int]:
    """Render messages with the model's own chat template and tokenize without adding BOS twice."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]


def is_reward_model(config: object) -> bool:
    """A sequence-classification model (a scalar reward model's head): its config's architecture says so."""
    return any(str(a).endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ())


def reward_model_cannot_generate(model: str) -> str:
    return (f"{model} is a sequence-classification reward model: it scores responses and cannot write a "
            "judgment; judge it with --judge scalar-rm")  # fmt: skip


def not_a_reward_model(model: str) -> str:
    return (f"{model} is not a sequence-classification reward model (its config's architectures name no "
            "...ForSequenceClassification): the scalar-rm judge needs one, e.g. `rrm-ui dev tiny-rm DIR`")  # fmt: skip


def score_prompt_ids(
    tokenizer: object, messages: list[dict[str, str]], max_length: int | None
) -> tuple[list[int], bool]:
    """A conversation as a reward model reads it: its chat template without a generation prompt (as
    RewardBench's ``prepare_dialogue_from_tokenizer``), tokenized without adding special tokens again; at
    most ``max_length`` tokens, cut at the end. Also whether it was cut."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)  # type: ignore[attr-defined]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    if max_length is not None and len(ids) > max_length:
        return ids[:max_length], True
    return ids, False


def request_prompt_ids(tokenizer: object, request: GenRequest) -> list[int]:
    """A request's prompt tokens: its raw ``prompt`` tokenized as the official code's text prompt is
    (the tokenizer's special tokens added once, as vLLM's ``LLM.generate`` does with a text prompt),
    else its chat messages through the model's chat template; then its ``continuation`` (budget forcing:
    the reasoning so far and the forced close), tokenized without special tokens and appended."""
    if request.prompt is not None:
        ids = list(tokenizer(request.prompt)["input_ids"])  # type: ignore[operator]
    else:
        ids = chat_prompt_ids(tokenizer, list(request.messages))
    if request.continuation:
        ids += tokenizer(request.continuation, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    return ids
