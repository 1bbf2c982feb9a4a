"""Describers of the latent-attention and state-space families: DeepSeek-V3 / Kimi K2 (MLA, DeepSeek MoE),
Falcon-H1 (Mamba-2 beside attention in every layer) and Jamba (Mamba and attention layers, MoE layers)."""

from __future__ import annotations

from torch import nn

from retarget.export.decoder import mla
from retarget.export.decoder.blocks import Decoder, Layer
from retarget.export.decoder.families import _mlp, _norm, _rope
from retarget.export.decoder.registry import family


def _latent_attention(model: nn.Module, path: str, attn: nn.Module, layer: int) -> mla.LatentAttention:
    config = model.config
    return mla.LatentAttention(
        path, attn, heads=int(config.num_attention_heads), q_rank=config.q_lora_rank, kv_rank=int(config.kv_lora_rank),
        nope_dim=int(config.qk_nope_head_dim), rope_dim=int(config.qk_rope_head_dim), v_dim=int(config.v_head_dim),
        scale=float(attn.scaling), norm_eps=float(attn.kv_a_layernorm.variance_epsilon),
        rope=_rope(model, "model.rotary_emb", int(config.qk_rope_head_dim), layer,
                   interleaved=bool(getattr(config, "rope_interleave", False))))


@family("deepseek_v3")
def describe_deepseek_v3(model: nn.Module) -> Decoder:
    """DeepSeek-V3 / Kimi K2: MLA in every layer; dense MLPs in the first first_k_dense_replace layers, then
    sigmoid group-limited routing with a correction bias, a shared expert and the routed scaling factor."""
    config = model.config
    layers = []
    for i, layer in enumerate(model.model.layers):
        scope = f"model.layers.{i}"
        layers.append(Layer(i, _latent_attention(model, f"{scope}.self_attn", layer.self_attn, i),
                            _mlp(model, f"{scope}.mlp", layer.mlp, i), _norm(model, f"{scope}.input_layernorm"),
                            _norm(model, f"{scope}.post_attention_layernorm")))
    return Decoder(config.model_type, "model.embed_tokens", layers, _norm(model, "model.norm"),
                   int(config.vocab_size), int(config.max_position_embeddings))
