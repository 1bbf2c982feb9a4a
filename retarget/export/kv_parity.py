"""Parity of a quantized-KV-cache graph (retarget.export.kv_cache_graph) with torch's QuantizedKVCache.

Each runtime quantizes every new key and value row from its own float states. Those agree to ~1e-6, but a
state that close to a rounding boundary lands on the neighbouring code in one runtime only, and that step
(1/127 of the row's max for INT8) spreads through the later layers and tokens: on SmolLM2-135M the two
runtimes, each quantizing on its own, differ by about as much as the cache quantization changes the logits
(docs/onnx-lowerings.md). So parity is checked in two parts that are each exact:

    attention: torch runs over the prompt with ORT's cache replayed (every layer reads the keys and values
        ORT stored, dequantized, instead of its own), so the logits differ by summation order only
    storage: ORT's scales are torch's (max |row| / qmax of torch's own states in that same pass) up to
        float noise, and ORT's codes are those states rounded with ORT's scales, except for the rare state
        within float noise of a rounding boundary
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from retarget.export.runtime import OrtCausalLM
from retarget.quantize.activations import QMAX, fake_quantize

# stored codes allowed to differ from torch's rounding: the states agree to ~1e-6 and a rounding step is ~1e-2
# of a row's max, so only ~1e-5 of the codes sit that close to a boundary (measured on SmolLM2-135M: 2.6e-5
# INT8, 4.7e-5 FP8); a wrong rounding mode, scale or layout changes most of them
CODE_MISMATCH_TOLERANCE = 1e-3
SCALE_RTOL = 1e-3  # ORT's row scales against torch's: float noise, measured up to 2.1e-5 (int4 weights)


def _dequantized(present: dict[str, np.ndarray], name: str, element: str) -> tuple[torch.Tensor, torch.Tensor]:
    """ORT's stored rows of NAME ('present.N.key') as float32 [B, kv_heads, L, head_dim], and their scales."""
    codes = torch.from_numpy(present[name])
    values = codes.view(torch.float8_e4m3fn).float() if element == "e4m3" else codes.float()
    scale = torch.from_numpy(present[f"{name}_scale"])
    return values * scale, scale


def replay_parity(runtime: OrtCausalLM, model: nn.Module, element: str, ids: torch.Tensor) -> dict[str, Any]:
    """MODEL (a transformers causal LM) against RUNTIME's ELEMENT-cache graph on IDS [1, L]: the max |logit
    difference| with ORT's cache replayed in torch, the largest relative difference of ORT's row scales from
    torch's, and the fraction of stored codes that differ from torch's rounding of its own states (with ORT's
    scales)."""
    from transformers import DynamicCache

    logits, present = runtime.prompt_cache(ids)
    layers = len(model.model.layers)
    stored = [[_dequantized(present, f"present.{i}.{part}", element) for part in ("key", "value")]
              for i in range(layers)]
    states: list[tuple[torch.Tensor, torch.Tensor]] = []

    class ReplayCache(DynamicCache):
        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
                   cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            states.append((key_states, value_states))
            (keys, _), (values, _) = stored[layer_idx]
            return super().update(keys, values, layer_idx, cache_kwargs)

    with torch.inference_mode():
        reference = model(input_ids=ids, past_key_values=ReplayCache(), use_cache=True).logits[0]
    differing = total = 0
    scale_diff = 0.0
    for layer_states, layer_stored in zip(states, stored, strict=True):
        for state, (values, scale) in zip(layer_states, layer_stored, strict=True):
            own_scale = (state.float().abs().amax(-1, keepdim=True) / QMAX[element]).clamp(min=1e-12)
            scale_diff = max(scale_diff, ((scale - own_scale).abs() / own_scale).max().item())
            differing += int((fake_quantize(state, element, scale) != values).sum())
            total += values.numel()
    return {"max_abs_logit_diff": (logits - reference).abs().max().item(), "scale_max_rel_diff": scale_diff,
            "code_mismatch_fraction": differing / total, "codes": total}
