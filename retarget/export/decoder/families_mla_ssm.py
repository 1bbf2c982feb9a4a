"""Describers of the latent-attention and state-space families: DeepSeek-V3 / Kimi K2 (MLA, DeepSeek MoE),
Falcon-H1 (Mamba-2 beside attention in every layer) and Jamba (Mamba and attention layers, MoE layers)."""

from __future__ import annotations

import dataclasses

from torch import nn

from retarget.export.decoder import hybrid, lightning, longcat, mla, ssm
from retarget.export.decoder.blocks import Decoder, GatedMlp, Layer, MoE
from retarget.export.decoder.families import _activation, _attention, _mlp, _norm, _rope, describe_standard
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


def _mamba2(model: nn.Module, path: str, mixer: nn.Module) -> ssm.Mamba2:
    config = model.config
    norm = "none"
    if getattr(config, "mamba_rms_norm", False):
        norm = "before_gate" if config.mamba_norm_before_gate else "after_gate"
    return ssm.Mamba2(path, mixer, inner=int(mixer.intermediate_size), d_state=int(mixer.ssm_state_size),
                      conv_kernel=int(mixer.conv_kernel_size), activation=str(mixer.activation),
                      heads=int(mixer.num_heads), head_dim=int(mixer.head_dim), groups=int(mixer.n_groups),
                      in_scale=float(mixer.ssm_in_multiplier), mup=getattr(mixer, "mup_vector", None), norm=norm,
                      norm_eps=float(mixer.layer_norm_epsilon))


@family("falcon_h1")
def describe_falcon_h1(model: nn.Module) -> Decoder:
    """Falcon-H1: attention and Mamba-2 in parallel in every layer, muP multipliers on the embedding, the
    attention's input, keys and output, the SSM's input, projections and output, the MLP's gate and down
    projection, and lm_head (folded into the final norm's weight)."""
    config = model.config
    gate_scale, down_scale = (float(m) for m in config.mlp_multipliers)
    layers = []
    for i, layer in enumerate(model.model.layers):
        scope = f"model.layers.{i}"
        attn = _attention(model, f"{scope}.self_attn", layer.self_attn, i)
        attn = dataclasses.replace(attn, scale=attn.scale * float(config.key_multiplier))  # k * m: scores * m
        mixer = hybrid.ParallelMixers(scope, layer, attention=attn, ssm=_mamba2(model, f"{scope}.mamba", layer.mamba),
                                      attention_in=float(config.attention_in_multiplier),
                                      attention_out=float(config.attention_out_multiplier),
                                      ssm_out=float(config.ssm_out_multiplier))
        mlp = hybrid.ScaledMlp(f"{scope}.feed_forward", layer.feed_forward, activation=_activation(config),
                               gate_scale=gate_scale, down_scale=down_scale)
        layers.append(Layer(i, mixer, mlp, _norm(model, f"{scope}.input_layernorm"),
                            _norm(model, f"{scope}.pre_ff_layernorm")))
    final = _norm(model, "model.final_layernorm")
    final = dataclasses.replace(final, weight=final.weight * float(config.lm_head_multiplier))  # lm_head(n(h)) * m
    return Decoder(config.model_type, "model.embed_tokens", layers, final, int(config.vocab_size),
                   int(config.max_position_embeddings), embed_scale=_unless_one(config.embedding_multiplier))


def _unless_one(value: float) -> float | None:
    return None if float(value) == 1.0 else float(value)


@family("jamba")
def describe_jamba(model: nn.Module) -> Decoder:
    """Jamba: Mamba layers with an attention layer (no position embedding) every attn_layer_period layers,
    a mixture of experts (softmax top-k, not renormalized) every expert_layer_period layers."""
    config = model.config
    layers = []
    for i, layer in enumerate(model.model.layers):
        scope = f"model.layers.{i}"
        if hasattr(layer, "self_attn"):
            mixer = _attention(model, f"{scope}.self_attn", layer.self_attn, i, use_rope=False)
        else:
            m = layer.mamba
            mixer = ssm.Mamba1(f"{scope}.mamba", m, inner=int(m.intermediate_size), d_state=int(m.ssm_state_size),
                               conv_kernel=int(m.conv_kernel_size), activation=str(m.activation),
                               dt_rank=int(m.time_step_rank), norm_eps=float(m.dt_layernorm.variance_epsilon))
        mlp = _mlp(model, f"{scope}.feed_forward", layer.feed_forward, i)
        if isinstance(mlp, MoE):
            mlp = dataclasses.replace(mlp, router="router", normalize=False)
        layers.append(Layer(i, mixer, mlp, _norm(model, f"{scope}.input_layernorm"),
                            _norm(model, f"{scope}.pre_ff_layernorm")))
    return Decoder(config.model_type, "model.embed_tokens", layers, _norm(model, "model.final_layernorm"),
                   int(config.vocab_size), int(config.max_position_embeddings))


@family("minimax")
def describe_minimax(model: nn.Module) -> Decoder:
    """MiniMax-Text-01 / M1: lightning attention layers (linear attention, fixed per-head decay) between softmax
    attention layers, 8-of-N softmax experts, each block's normalized input as the residual (alpha / beta
    factors per layer kind)."""
    config = model.config
    decoder = describe_standard(model)
    layers = []
    for layer in decoder.layers:
        module = layer.mixer.module
        linear = config.layer_types[layer.index] == "linear_attention"
        mixer = lightning.LightningAttention(layer.mixer.path, module, heads=int(module.num_attention_heads),
                                             head_dim=int(module.head_dim), activation=_activation(config),
                                             norm_eps=float(module.norm.variance_epsilon)) if linear else layer.mixer
        kind = "linear_attn" if linear else "full_attn"
        scales = tuple(float(getattr(config, f"{k}_{f}_factor")) for k in (kind, "mlp") for f in ("alpha", "beta"))
        layers.append(dataclasses.replace(layer, mixer=mixer, normed_residual=scales))
    return dataclasses.replace(decoder, layers=layers)


@family("longcat_flash")
def describe_longcat_flash(model: nn.Module) -> Decoder:
    """LongCat-Flash: every layer two sublayers (MLA with LoRA scales and interleaved rotary, dense MLP), the
    first MLP input also routed to experts (zero-computation ones included) whose sum joins after the second."""
    config = model.config
    layers = []
    for i, layer in enumerate(model.model.layers):
        scope = f"model.layers.{i}"
        moe = longcat.ZeroExpertMoE(
            f"{scope}.mlp", layer.mlp, experts=int(config.n_routed_experts), top_k=int(config.moe_topk),
            normalize=False, activation=_activation(config), router="router.classifier", correction_bias=True,
            scaling=float(config.routed_scaling_factor), zero_experts=int(config.zero_expert_num or 0))
        for j in (0, 1):
            attn = layer.self_attn[j]
            mixer = _latent_attention(model, f"{scope}.self_attn.{j}", attn, 2 * i + j)
            mixer = dataclasses.replace(mixer, rope=dataclasses.replace(mixer.rope, interleaved=True),
                                        q_scale=float(attn.mla_scale_q_lora), kv_scale=float(attn.mla_scale_kv_lora))
            dense = GatedMlp(f"{scope}.mlps.{j}", layer.mlps[j], activation=_activation(config))
            mlp = longcat.Shortcut(dense.path, dense.module, dense=dense, moe=moe if j == 0 else None,
                                   shortcut=f"/{moe.path}/output")
            layers.append(Layer(2 * i + j, mixer, mlp, _norm(model, f"{scope}.input_layernorm.{j}"),
                                _norm(model, f"{scope}.post_attention_layernorm.{j}")))
    return Decoder(config.model_type, "model.embed_tokens", layers, _norm(model, "model.norm"),
                   int(config.vocab_size), int(config.max_position_embeddings))
