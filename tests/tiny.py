"""A tiny random Llama for unit tests of training code (no checkpoint, seconds on a CPU)."""

from __future__ import annotations

from transformers import LlamaConfig


def tiny_llama_config(vocab: int, hidden: int = 32, layers: int = 2, heads: int = 4) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
    )
