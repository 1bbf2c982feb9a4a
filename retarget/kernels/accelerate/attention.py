"""Grouped-query attention with sliding windows and sinks on kernels/attention.

The module keeps its own forward (projections, q/k norms, RoPE, cache update) and reaches the kernels through
transformers' attention interface: its config (a copy, so the model's other modules are untouched) names
`kernel_attention` in place of eager or SDPA. The mask follows from positions (causal, window, sinks); padded
batches are refused before the model runs."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.models.falcon_h1.modeling_falcon_h1 import FalconH1Attention
from transformers.models.gemma3.modeling_gemma3 import Gemma3Attention
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssAttention
from transformers.models.mixtral.modeling_mixtral import MixtralAttention
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeAttention

from retarget.kernels.accelerate import _ops
from retarget.kernels.accelerate._registry import register

NAME = "retarget-kernels"


def kernel_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     sliding_window: int | None = None, s_aux: torch.Tensor | None = None,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention-interface signature: q [B, Hq, Sq, D], k / v [B, Hkv, Sk, D] -> ([B, Sq, Hq, D],
    no weights). S_AUX: gpt-oss's per-head sink logits."""
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    out = _ops.attention(query, key, value, sliding_window, s_aux, scale)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, kernel_attention)


@register(GptOssAttention, Gemma3Attention, FalconH1Attention, Qwen3MoeAttention, MixtralAttention,
          kernels=("attention",))
def use_kernel_attention(module: nn.Module) -> None:
    """Point the module's attention call at `kernel_attention`."""
    config = copy.copy(module.config)
    config._attn_implementation = NAME
    module.config = config
