"""Quantized KV cache on a tiny random Llama: logits close to the float model, and recipe composition."""

from __future__ import annotations

import pytest
import torch

from retarget.errors import RetargetError
from retarget.quantize import FloatConfig, IntWeightOnlyConfig, KVCacheConfig, kv_logits_fn, split_recipe
from retarget.quantize.kv_cache import quantized_cache_class


# tolerance: a few times the rounding step (int8: 1/254 of each row's max; e4m3: up to 2**-4 of each value)
@pytest.mark.parametrize("element, tolerance", [("int8", 0.01), ("fp8", 0.04)])
def test_quantized_cache_logits_close_to_float(tiny_llama, element: str, tolerance: float) -> None:
    ids = torch.randint(0, 101, (1, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = tiny_llama(input_ids=ids, use_cache=False).logits[0]
        got = kv_logits_fn(tiny_llama, KVCacheConfig(element=element))(ids)
    rel = float((got - ref).norm() / ref.norm())
    assert 0 < rel < tolerance  # changed (the cache is quantized) but close


def test_decoding_reads_quantized_states(tiny_llama) -> None:
    """Prefill then one decode step through the cache gives the same logits as one pass over all tokens."""
    ids = torch.randint(0, 101, (1, 17), generator=torch.Generator().manual_seed(1))
    cls = quantized_cache_class()
    config = KVCacheConfig(element="int8")
    with torch.inference_mode():
        full = tiny_llama(input_ids=ids, past_key_values=cls(config), use_cache=True).logits[0, -1]
        cache = cls(config)
        tiny_llama(input_ids=ids[:, :-1], past_key_values=cache, use_cache=True)
        step = tiny_llama(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True).logits[0, -1]
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)  # per-token scales: the split does not matter
    keys = cache.layers[0].keys
    # stored keys are int8 grid points: key / (row max / 127) is an integer
    scaled = keys / (keys.abs().amax(-1, keepdim=True) / 127)
    torch.testing.assert_close(scaled, scaled.round(), rtol=0, atol=1e-3)


def test_split_recipe() -> None:
    weights, kv = split_recipe("int4-g128-asym+kv-int8")
    assert isinstance(weights, IntWeightOnlyConfig) and weights.name == "int4-g128-asym"
    assert kv == KVCacheConfig(element="int8")
    weights, kv = split_recipe("kv-fp8")
    assert kv is weights and kv.name == "kv-fp8"
    assert split_recipe("fp32") == (FloatConfig(), None)
    with pytest.raises(RetargetError):
        split_recipe("int4-g128-asym+int8-channel-sym")
