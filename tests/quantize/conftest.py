"""A tiny random Llama (grouped-query attention, odd sizes) and calibration tokens for algorithm tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_llama():
    """2 layers, hidden 96, 4 query heads over 2 value heads of 24 channels, MLP 160, vocab 101 (float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=101, hidden_size=96, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=24, max_position_embeddings=128,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


@pytest.fixture
def tiny_tokens() -> list[int]:
    """1024 token ids (uniform over the vocabulary): two default-length calibration sequences."""
    return torch.randint(0, 101, (1024,), generator=torch.Generator().manual_seed(1)).tolist()
