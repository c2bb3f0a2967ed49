"""Build a tiny random-weight judge model offline, for wiring, streaming and throughput checks.

The model is a ``Qwen2ForCausalLM`` (hidden 256, 4 heads of dim 64, 2 layers) with a
byte-level BPE tokenizer trained here and an R1-Distill-style chat template whose
generation prompt ends ``<｜Assistant｜><think>\\n``, like the real RRM models. It loads in
transformers and in vLLM. Its text is noise: never use it to judge quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER_TAG = "<｜User｜>"
ASSISTANT_TAG = "<｜Assistant｜>"
PAD = "<｜pad｜>"
_MISSING = (
    "building the tiny model needs torch, tokenizers and transformers ({exc}); "
    "install an extra: pip install -e '.[cpu]' (or '.[hf]')"
)

# The shape of DeepSeek-R1-Distill's template: system text after BOS, then turns, and a
# generation prompt that opens the thinking block.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<｜Assistant｜>' + m['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    from rrm_ui.protocol.rrm import SYSTEM, USER

    words = (
        "Let me analyze both responses step by step. Assistant 1 answers the question directly, "
        "while Assistant 2 adds details that were not asked for. The instruction asks for a short list. "
        "Therefore the better response is \\boxed{Assistant 1} or \\boxed{Assistant 2}. "
        "def main(): return sum(range(10)) # code 0123456789 {} [] () <> = + - * / , . ; : ! ?"
    )
    return [SYSTEM, USER, words] * 20


def build_tokenizer(out_dir: str | Path | None = None, *, vocab_size: int = 2048) -> Any:
    """The byte-level BPE tokenizer with the R1-Distill-style chat template, saved to ``out_dir`` if given.

    Shared by the tiny random model and the demo judge (rrm_ui.dev.demo_judge), so both read
    the same tokens.
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(_MISSING.format(exc=exc)) from exc

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, USER_TAG, ASSISTANT_TAG],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    # <think> and </think> are ordinary (non-special) tokens, as in R1-Distill, so they survive decoding.
    fast.add_tokens(["<think>", "</think>"], special_tokens=False)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 32768
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(out)
    return fast


def qwen2_config(
    tokenizer: Any, *, layers: int = 2, hidden: int = 256, heads: int = 4, tie_embeddings: bool = True
) -> Any:
    """The tiny ``Qwen2Config`` (head_dim 64: vLLM's CPU attention rejects 16) for ``tokenizer``."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=32768,
        tie_word_embeddings=tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
    )


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 2048, layers: int = 2) -> Path:
    """Write a tiny model (config, safetensors weights, tokenizer, chat template) to ``out_dir``."""
    try:
        import torch
        from transformers import Qwen2ForCausalLM
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(_MISSING.format(exc=exc)) from exc

    out = Path(out_dir)
    fast = build_tokenizer(out, vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(qwen2_config(fast, layers=layers))
    model.save_pretrained(out)
    (out / "RRM_UI_TINY_MODEL.json").write_text(
        json.dumps({"note": "random weights: output is noise, for wiring checks only", "seed": seed}) + "\n"
    )
    return out
