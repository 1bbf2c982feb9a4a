"""Describers: a transformers causal LM of each supported model_type as block descriptions.

Most families share one layout (model.layers.N.{self_attn, mlp, input_layernorm, post_attention_layernorm});
`describe_standard` reads it from the config and the modules, and each family states only where it differs.
Rotary embeddings must be static (inv_freq independent of the sequence length: default, linear, llama3, yarn);
dynamic-NTK and LongRoPE tables change with the length and are refused.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from retarget.export.decoder.blocks import Attention, Block, Decoder, GatedMlp, Layer, MoE, Norm, Rope
from retarget.export.decoder.registry import Unsupported, family

STATIC_ROPE_TYPES = {"default", "linear", "llama3", "yarn"}
SHARED_NAMES = ("shared_expert", "shared_experts", "shared_mlp")
GELU_TANH = {"gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu_fast"}


def _activation(config: Any) -> str:
    act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
    return "gelu_tanh" if act in GELU_TANH else act


def _rope(model: nn.Module, path: str, head_dim: int, layer: int, interleaved: bool = False) -> Rope:
    config = model.config
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in STATIC_ROPE_TYPES:
        raise Unsupported(f"layer {layer}: rotary embedding type {rope_type!r} (sequence-length dependent) has no "
                          "lowering yet", field="rope_scaling")
    dim = 2 * int(model.get_submodule(path).inv_freq.shape[0])
    if dim > head_dim:
        raise Unsupported(f"layer {layer}: rotary dim {dim} exceeds head_dim {head_dim}", field="rope_scaling")
    return Rope(path, dim, interleaved)


def _window(config: Any, attn: nn.Module, layer: int) -> int | None:
    """The sliding window of LAYER's attention (None: global)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return config.sliding_window if layer_types[layer] == "sliding_attention" else None
    if getattr(config, "use_sliding_window", True) and getattr(config, "sliding_window", None):
        return int(config.sliding_window)
    return None


def _attention(model: nn.Module, path: str, attn: nn.Module, layer: int, *, norm_offset: float = 0.0,
               rope_path: str = "model.rotary_emb", interleaved: bool = False, use_rope: bool = True) -> Attention:
    config = model.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    qk_norm = None
    if hasattr(attn, "q_norm") and attn.q_norm is not None:
        qk_norm = "head" if attn.q_norm.weight.shape[0] == head_dim else "projection"
    scale = float(getattr(attn, "scaling", head_dim**-0.5))
    return Attention(path, attn, heads=heads, kv_heads=kv_heads, head_dim=head_dim, scale=scale,
                     rope=_rope(model, rope_path, head_dim, layer, interleaved) if use_rope else None,
                     window=_window(config, attn, layer), qk_norm=qk_norm,
                     norm_eps=float(getattr(config, "rms_norm_eps", 1e-6)), norm_offset=norm_offset,
                     sinks=hasattr(attn, "sinks"), softcap=getattr(config, "attn_logit_softcapping", None))


def _mlp(model: nn.Module, path: str, mlp: nn.Module, layer: int) -> Block:
    """A dense gated MLP or a mixture of experts, from the module's attributes."""
    config = model.config
    act = _activation(config)
    if not hasattr(mlp, "experts"):
        return GatedMlp(path, mlp, activation=act)
    shared = next((n for n in SHARED_NAMES if getattr(mlp, n, None) is not None), None)
    common: dict[str, Any] = {
        "experts": len(mlp.experts) if isinstance(mlp.experts, nn.ModuleList) else
        int(getattr(config, "num_local_experts", None) or getattr(config, "num_experts", 0)),
        "top_k": int(getattr(config, "num_experts_per_tok", None) or mlp.top_k), "activation": act,
        "normalize": bool(getattr(config, "norm_topk_prob", True)),
        "shared": GatedMlp(f"{path}.{shared}", getattr(mlp, shared), activation=act) if shared else None,
        "shared_gate": hasattr(mlp, "shared_expert_gate")}
    experts = mlp.experts
    router = getattr(mlp, "gate", None)
    if router is not None and hasattr(router, "e_score_correction_bias"):  # GLM-4.5 / DeepSeek-V3 style router
        common |= {"experts": int(config.n_routed_experts), "routing": "sigmoid", "correction_bias": True,
                   "groups": int(config.n_group), "topk_groups": int(config.topk_group),
                   "scaling": float(config.routed_scaling_factor)}
    if isinstance(experts, nn.ModuleList):
        names = ("w1", "w3", "w2") if hasattr(experts[0], "w1") else ("gate_proj", "up_proj", "down_proj")
        return MoE(path, mlp, **common, expert_names=names)
    if hasattr(experts, "gate_up_proj") and hasattr(mlp, "router") and not hasattr(experts, "limit"):
        # Llama 4: sigmoid top-1 weight on the expert's input, [gate | up] halves
        return MoE(path, mlp, **common | {"routing": "sigmoid"}, scale_input=True, router="router",
                   fused_experts="halves")
    if hasattr(experts, "gate_up_proj") and hasattr(experts, "limit"):  # gpt-oss: clamped SwiGLU, biases
        return MoE(path, mlp, **common | {"activation": "swiglu_clamp", "normalize": True}, limit=float(experts.limit),
                   alpha=float(experts.alpha), expert_bias=True, router="router", router_bias=True,
                   fused_experts="interleaved")
    raise Unsupported(f"layer {layer}: expert layout {type(experts).__name__} of {path} has no lowering yet",
                      field="experts")


def _norm(model: nn.Module, path: str, offset: float = 0.0) -> Norm:
    module = model.get_submodule(path)
    eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", None) or model.config.rms_norm_eps
    return Norm(path, module.weight, float(eps), offset)


PRE_NORMS = {"pre_mixer": "input_layernorm", "pre_mlp": "post_attention_layernorm"}
SANDWICH_NORMS = {"pre_mixer": "input_layernorm", "post_mixer": "post_attention_layernorm",
                  "pre_mlp": "pre_feedforward_layernorm", "post_mlp": "post_feedforward_layernorm"}
POST_NORMS = {"pre_mixer": None, "pre_mlp": None, "post_mixer": "post_attention_layernorm",
              "post_mlp": "post_feedforward_layernorm"}


def describe_standard(model: nn.Module, *, norms: dict[str, str | None] = PRE_NORMS, norm_offset: float = 0.0,
                      embed_scale: float | None = None, local_rope: str | None = None) -> Decoder:
    """The shared layout. NORMS: which norm module sits at each Layer position (PRE_NORMS: Llama; SANDWICH_NORMS:
    Gemma's four; POST_NORMS: OLMo 2's); NORM_OFFSET: norm weights stored minus one; LOCAL_ROPE: the rotary
    module sliding layers use."""
    config = model.config
    layers = []
    for i, layer in enumerate(model.model.layers):
        scope = f"model.layers.{i}"
        rope_path = local_rope if local_rope and _window(config, layer.self_attn, i) else "model.rotary_emb"
        mixer = _attention(model, f"{scope}.self_attn", layer.self_attn, i, norm_offset=norm_offset,
                           rope_path=rope_path)
        mlp_name = next(n for n in ("mlp", "block_sparse_moe", "feed_forward") if hasattr(layer, n))
        mlp = _mlp(model, f"{scope}.{mlp_name}", getattr(layer, mlp_name), i)
        layers.append(Layer(i, mixer, mlp, **{k: v and _norm(model, f"{scope}.{v}", norm_offset)
                                              for k, v in norms.items()}))
    return Decoder(config.model_type, "model.embed_tokens", layers, _norm(model, "model.norm", norm_offset),
                   int(config.vocab_size), int(config.max_position_embeddings), embed_scale=embed_scale,
                   logit_softcap=getattr(config, "final_logit_softcapping", None))


@family("llama", "mistral", "qwen2", "qwen3", "phi3", "olmoe", "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss",
        "glm4_moe")
def describe_llama_like(model: nn.Module) -> Decoder:
    """Pre-norm decoders: Llama, Mistral, Qwen2/3 (biases, q/k norms), Phi-3 (fused projections), OLMoE,
    Mixtral, Qwen-MoE (shared experts), gpt-oss (sinks, alternating windows, clamped SwiGLU experts), GLM-4.5
    (partial rotary, dense first layers, sigmoid group-limited routing with shared experts)."""
    return describe_standard(model)


@family("gemma3_text")
def describe_gemma3(model: nn.Module) -> Decoder:
    """Gemma 3: four norms per layer with weights stored minus one, embeddings times sqrt(hidden), q/k norms,
    5 local (sliding window, own rotary base) : 1 global layers, tanh GELU."""
    return describe_standard(model, norms=SANDWICH_NORMS, norm_offset=1.0,
                             embed_scale=float(model.model.embed_tokens.embed_scale),
                             local_rope="model.rotary_emb_local")


@family("llama4_text")
def describe_llama4(model: nn.Module) -> Decoder:
    """Llama 4: chunked attention on rotary layers (interleaved rotary, weightless L2 q/k norm after it), NoPE
    layers with global attention and query temperature tuning, sigmoid top-1 experts plus a shared expert."""
    config = model.config
    decoder = describe_standard(model)
    layers = []
    for layer in decoder.layers:
        attn: Attention = layer.mixer  # type: ignore[assignment]
        module = attn.module
        rope = dataclasses.replace(attn.rope, interleaved=True) if module.use_rope else None
        chunked = config.layer_types[layer.index] == "chunked_attention"
        tuned = bool(config.attn_temperature_tuning) and not module.use_rope
        mixer = dataclasses.replace(
            attn, rope=rope, qk_norm="l2" if hasattr(module, "qk_norm") else None,
            chunk=int(config.attention_chunk_size) if chunked else None,
            temperature=(float(module.floor_scale), float(module.attn_scale)) if tuned else None)
        layers.append(dataclasses.replace(layer, mixer=mixer))
    return dataclasses.replace(decoder, layers=layers)


@family("hunyuan_v1_moe")
def describe_hunyuan(model: nn.Module) -> Decoder:
    """Hunyuan-A13B: q/k RMSNorm per head after rotary, softmax top-k experts (renormalized) plus a shared MLP,
    the router Linear inside `gate.wg`."""
    decoder = describe_standard(model)
    layers = []
    for layer in decoder.layers:
        mixer = dataclasses.replace(layer.mixer, qk_norm="head_rotated",
                                    qk_norm_names=("query_layernorm", "key_layernorm"))
        mlp = dataclasses.replace(layer.mlp, router="gate.wg") if isinstance(layer.mlp, MoE) else layer.mlp
        layers.append(dataclasses.replace(layer, mixer=mixer, mlp=mlp))
    return dataclasses.replace(decoder, layers=layers)


@family("olmo2")
def describe_olmo2(model: nn.Module) -> Decoder:
    """OLMo 2: each block's output normalized before the residual add (no norm on its input), q/k RMSNorm over
    the whole projections."""
    return describe_standard(model, norms=POST_NORMS)
