"""The cache transformers' own cached decode of a model takes: a DynamicCache, or for the SSM hybrids their
own class holding conv and SSM states beside the attention K/V (Falcon-H1, Jamba). Their caches report a
sequence length of 0, so each call must pass cache_position explicitly (`positions`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

HYBRID_CACHES = {"falcon_h1": "FalconHybridMambaAttentionDynamicCache", "jamba": "HybridMambaAttentionDynamicCache"}


def reference_cache(model: nn.Module) -> Any:
    """An empty batch-1 float32 cache for MODEL's transformers forward."""
    from transformers import DynamicCache

    name = HYBRID_CACHES.get(model.config.model_type)
    if model.config.model_type == "minimax":  # its lightning layers' states beside the attention K/V
        return __import__(type(model).__module__, fromlist=["MiniMaxCache"]).MiniMaxCache()
    if name is None:
        return DynamicCache()
    cache_class = getattr(__import__(type(model).__module__, fromlist=[name]), name)
    devices = [["cpu"] * model.config.num_hidden_layers] if model.config.model_type == "falcon_h1" else []
    return cache_class(model.config, 1, torch.float32, *devices)


def positions(start: int, length: int) -> torch.Tensor:
    """cache_position of LENGTH new tokens after START cached ones."""
    return torch.arange(start, start + length)
