"""Build a tiny random-weight scalar reward model offline, for wiring tests of the ``scalar-rm`` judge.

The model is a ``Qwen2ForSequenceClassification`` with one label (the reward head of Skywork-Reward
and similar models: the last token's hidden state through a linear layer to one number), the shape of
the tiny judge model (hidden 256, 4 heads of dim 64: vLLM's CPU attention rejects 16, 2 layers) and its
byte-level tokenizer and chat template (:mod:`rrm_ui.dev.tiny_model`). It loads in transformers
(``AutoModelForSequenceClassification``) and in vLLM's pooling runner. Its scores are noise: never use
it to judge quality.
"""

from __future__ import annotations

import json
from pathlib import Path

from rrm_ui.dev.tiny_model import _MISSING, build_tokenizer, qwen2_config

MARKER = "RRM_UI_TINY_RM.json"


def build_tiny_rm(out_dir: str | Path, *, seed: int = 0, vocab_size: int = 2048, layers: int = 2) -> Path:
    """Write a tiny sequence-classification reward model (config, weights, tokenizer) to ``out_dir``."""
    try:
        import torch
        from transformers import Qwen2ForSequenceClassification
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SystemExit(_MISSING.format(exc=exc)) from exc

    out = Path(out_dir)
    fast = build_tokenizer(out, vocab_size=vocab_size)
    config = qwen2_config(fast, layers=layers, tie_embeddings=False)
    config.num_labels = 1  # one reward per sequence
    config.architectures = ["Qwen2ForSequenceClassification"]
    torch.manual_seed(seed)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():  # a visible spread of rewards (the default init gives scores near 0)
        model.score.weight.normal_(0.0, 1.0)
    model.save_pretrained(out)
    (out / MARKER).write_text(
        json.dumps({"note": "random weights: rewards are noise, for wiring checks only", "seed": seed}) + "\n"
    )
    return out
