"""vLLM on CPU: the KV cache sized from the model and its context (issue 14), not from the host's memory.

The README's CPU demo line (tiny model, vLLM on CPU) held 18.9 GB of RAM because vLLM gave a 1M-parameter
model a 17.3 GiB KV cache. The figures are recomputed here by hand from the configs' numbers.
"""

from __future__ import annotations

from transformers import Qwen2Config

from rrm_ui.backends.vllm_engine import CPU_KV_SEQUENCES, cpu_kv_cache_bytes

MIB = 1024**2


def test_the_tiny_model_gets_a_cache_for_its_layers_and_context() -> None:
    tiny = Qwen2Config(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                       max_position_embeddings=32768, intermediate_size=512, vocab_size=715)  # fmt: skip
    # keys and values, 2 layers, 4 heads of 64, float32: 4,096 bytes a token; 8 contexts of 32,768 tokens
    assert cpu_kv_cache_bytes(tiny, "float32", None) == 2 * 2 * 4 * 64 * 4 * 32768 * CPU_KV_SEQUENCES == 1024 * MIB
    assert cpu_kv_cache_bytes(tiny, "float32", 2048) == 256 * MIB  # a short context: the 256 MiB floor
    assert cpu_kv_cache_bytes(tiny, "bfloat16", 16384) == 256 * MIB  # 2 bytes a value: 256 MiB exactly


def test_a_7b_judge_gets_what_its_grouped_query_heads_need() -> None:
    # Qwen2-7B (RRM-7B's base): 28 layers, 28 query heads of 128, 4 KV heads
    seven = Qwen2Config(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                        max_position_embeddings=32768, dtype="bfloat16")  # fmt: skip
    per_token = 2 * 28 * 4 * 128 * 2  # 57,344 bytes
    wanted = per_token * 8192 * CPU_KV_SEQUENCES
    got = cpu_kv_cache_bytes(seven, "auto", 8192)
    assert got >= wanted and got - wanted < 64 * MIB and got % (64 * MIB) == 0
