"""DeepSeek-V3 / Kimi K2 multi-head latent attention over a latent cache, on kernels/mla_decode (one new token)
and kernels/attention (prompts).

The cache keeps per token what MLA compresses to: the normed latent c [R] and the rotated shared key k_pe [P],
one [R + P] row (576 values per token at DeepSeek-V3's shape, against 128 heads x (192 + 128) expanded). It
lives in the model's ordinary dynamic cache: the layer's key slot holds the rows as one head [B, 1, T, R + P], its
value slot is empty, so generate(), the masks and get_seq_length() work unchanged. Decode absorbs W_UK into the
query and W_UV into the output and reads only those rows; a prompt expands them to per-head keys and values."""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds

from retarget.kernels.accelerate import _ops
from retarget.kernels.accelerate._registry import register
from retarget.quantize.modules import QuantLinear


def _latent(module: nn.Module, hidden: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
            past_key_values, q_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rotated q_pe [B, H, S, P], latent rows [B, T, R + P] of every token so far, this step's appended)."""
    b, s, _ = hidden.shape
    c, k_pe = module.kv_a_proj_with_mqa(hidden).split([module.kv_lora_rank, module.qk_rope_head_dim], dim=-1)
    rotate = ds.apply_rotary_pos_emb_interleave if module.config.rope_interleave else ds.apply_rotary_pos_emb
    q_pe, k_pe = rotate(q_pe, k_pe.view(b, 1, s, -1), *position_embeddings)
    rows = torch.cat([module.kv_a_layernorm(c), k_pe[:, 0]], dim=-1)[:, None]
    if past_key_values is not None:
        rows, _ = past_key_values.update(rows, rows.new_empty(b, 1, s, 0), module.layer_idx)
    return q_pe, rows[:, 0]


def _absorbed(module: nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """kv_b_proj split into W_UK [H, Dn, R] and W_UV [H, Dv, R] (views of its weight, or of a weight-only
    QuantLinear's cached dequantized weight, read at each call)."""
    proj = module.kv_b_proj
    w = proj.reference_weight(dtype) if isinstance(proj, QuantLinear) else proj.weight
    w = w.view(module.num_heads, module.qk_nope_head_dim + module.v_head_dim, -1)
    return w[:, :module.qk_nope_head_dim], w[:, module.qk_nope_head_dim:]


def _expanded(module: nn.Module, q_nope: torch.Tensor, q_pe: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Prompt attention: per-head keys [c W_UK^T, k_pe] and values c W_UV^T (padded to the key width for the
    kernel) from the latent rows -> [B, H, S, Dv]."""
    rank, dv = module.kv_lora_rank, module.v_head_dim
    c, k_pe = rows[..., :rank], rows[..., rank:]
    w_uk, w_uv = _absorbed(module, rows.dtype)
    k_nope = torch.einsum("btr,hdr->bhtd", c, w_uk)
    v = torch.einsum("btr,hdr->bhtd", c, w_uv)
    k = torch.cat([k_nope, k_pe[:, None].expand(-1, k_nope.shape[1], -1, -1)], dim=-1)
    v = nn.functional.pad(v, (0, k.shape[-1] - dv))
    return _ops.attention(torch.cat([q_nope, q_pe], dim=-1), k, v, None, None, module.scaling)[..., :dv]


def mla_forward(self: nn.Module, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: torch.Tensor | None, past_key_values=None, cache_position=None,
                **kwargs) -> tuple[torch.Tensor, None]:
    """DeepseekV3Attention.forward's contract, over the latent cache."""
    b, s, _ = hidden_states.shape
    q = self.q_proj(hidden_states) if self.q_lora_rank is None else \
        self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))
    q_nope, q_pe = q.view(b, s, -1, self.qk_head_dim).transpose(1, 2).split(
        [self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
    q_pe, rows = _latent(self, hidden_states, position_embeddings, past_key_values, q_pe)
    if s == 1:
        w_uk, w_uv = _absorbed(self, rows.dtype)
        out = _ops.mla_decode(q_nope[:, :, 0], q_pe[:, :, 0], rows, w_uk, w_uv, self.scaling)[:, :, None]
    else:
        out = _expanded(self, q_nope, q_pe, rows)
    return self.o_proj(out.transpose(1, 2).reshape(b, s, -1)), None


def _absorbable(module: nn.Module) -> str | None:
    """Blocker: W_UK / W_UV can move into the query and output only if kv_b_proj is a plain linear map of c."""
    proj = module.kv_b_proj
    if type(proj) is nn.Linear or (isinstance(proj, QuantLinear) and proj.act is None and proj.smooth is None):
        return None
    return f"kv_b_proj is {type(proj).__name__} with quantized or smoothed inputs: it cannot be absorbed"


@register(ds.DeepseekV3Attention, kernels=("mla_decode", "attention"), blocker=_absorbable)
def use_latent_attention(module: nn.Module) -> None:
    """Run the module over the latent cache (its weights stay as they are)."""
    module.forward = mla_forward.__get__(module)
