"""KV-cache quantization: keys and values stored as INT8 or FP8 E4M3, one scale per token and head.

It acts at run time, not on weights, so it is a separate config that composes with any weight recipe:
'int4-g128-asym+kv-int8' is the weight recipe 'int4-g128-asym' with an INT8 KV cache, 'kv-fp8' alone keeps
float weights (`split_recipe`). In torch it is a transformers DynamicCache whose `update` fake-quantizes the
new key and value states (after RoPE, as a cache stores them; retarget.quantize.activations, per
[batch, head, token] row over head_dim) before storing them, so attention reads the quantized values for
the prompt's own tokens as well as for later ones. `kv_logits_fn` scores a model that way with
retarget.eval. In ONNX the same storage is retarget.export.kv_cache_graph (ONNX Runtime's own quantized
GroupQueryAttention cache takes static scales only, not these per-row ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
from torch import nn

from retarget.errors import RetargetError
from retarget.eval.metrics import LogitsFn
from retarget.quantize.activations import fake_quantize
from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import QuantConfig, config_from_name, register_recipe_name

ELEMENTS = {"int8": "int8", "fp8": "e4m3"}  # recipe suffix -> activation element
SEPARATOR = "+"


@dataclass(frozen=True)
class KVCacheConfig(QuantConfig):
    """Quantized KV cache (ELEMENT 'int8' or 'fp8'); as a recipe of its own it leaves every weight float."""

    element: str = "int8"
    include_lm_head: bool = False

    def __post_init__(self) -> None:
        if self.element not in ELEMENTS:
            raise ValueError(f"KV-cache element must be one of {sorted(ELEMENTS)}, got {self.element!r}")

    @property
    def name(self) -> str:
        return f"kv-{self.element}"


@cache
def quantized_cache_class() -> type:
    """QuantizedKVCache(config): a transformers DynamicCache that stores keys and values quantized
    (fake-quantized: float tensors holding the values an INT8 / FP8 cache would return). Defined on first use,
    so importing retarget.quantize does not import transformers."""
    from transformers import DynamicCache

    class QuantizedKVCache(DynamicCache):
        def __init__(self, config: KVCacheConfig) -> None:
            super().__init__()
            self.element = ELEMENTS[config.element]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
                   cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            return super().update(fake_quantize(key_states, self.element),
                                  fake_quantize(value_states, self.element), layer_idx, cache_kwargs)

    return QuantizedKVCache


def kv_logits_fn(model: nn.Module, config: KVCacheConfig | None) -> LogitsFn:
    """LogitsFn of a transformers causal LM with a fresh quantized KV cache per call (CONFIG None: float)."""

    def run(ids: torch.Tensor) -> torch.Tensor:
        if config is None:
            return model(input_ids=ids, use_cache=False).logits[0]
        return model(input_ids=ids, past_key_values=quantized_cache_class()(config), use_cache=True).logits[0]

    return run


def split_recipe(name: str) -> tuple[QuantConfig, KVCacheConfig | None]:
    """'W+kv-int8' -> (config of W, KVCacheConfig('int8')); 'kv-fp8' -> (KVCacheConfig('fp8'), same);
    a plain weight recipe -> (its config, None)."""
    weights, plus, kv = name.rpartition(SEPARATOR)
    if not plus:
        config = config_from_name(name)
        return config, config if isinstance(config, KVCacheConfig) else None
    kv_config = config_from_name(kv)
    if not isinstance(kv_config, KVCacheConfig):
        raise RetargetError(f"{kv!r} after '{SEPARATOR}' in {name!r} is not a KV-cache recipe (kv-int8, kv-fp8)",
                            field="--recipe")
    return config_from_name(weights), kv_config


@register_handler(KVCacheConfig)
def _float_weights(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> None:
    return None


register_recipe_name(r"kv-(?P<e>int8|fp8)", lambda m: KVCacheConfig(element=m["e"]), "kv-{int8,fp8}")
