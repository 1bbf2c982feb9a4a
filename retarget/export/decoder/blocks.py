"""Block descriptions: what one decoder layer computes, decided once from the Hugging Face config and modules.

A decoder is embedding -> layers -> final norm -> lm_head; each layer is a token mixer (attention) and an
MLP (dense or mixture of experts) with their norms. Each description is a frozen dataclass whose fields are
the decisions a lowering needs (retarget.export.decoder.registry maps each description type to the class
that writes it as ONNX); MODULE points at the transformers module holding its weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class Rope:
    """Rotary position embedding: cos/sin tables of the model's rotary module at PATH (its inv_freq and
    attention scaling), applied to the first DIM channels of each head, INTERLEAVED pairs or split halves."""

    path: str
    dim: int
    interleaved: bool = False


@dataclass(frozen=True)
class Block:
    """A part of a layer: PATH of its module (node names and quantized weights use it) and the module."""

    path: str
    module: nn.Module = field(repr=False, compare=False)


@dataclass(frozen=True)
class Attention(Block):
    """Causal grouped-query attention (MHA when kv_heads == heads).

    rope None: no position embedding (NoPE layers). window: each query sees the last WINDOW keys (itself
    included). qk_norm 'head': RMSNorm over each head's channels of q and k before rotary (Qwen3, Gemma 3);
    'projection': over the whole q and k projections (OLMoE); 'l2': weightless RMSNorm per head after rotary
    (Llama 4); 'head_rotated': RMSNorm per head after rotary (Hunyuan). qk_norm_names: the q and k norm
    modules' names. sinks: a learned per-head logit added to the softmax denominator (gpt-oss). softcap: tanh capping
    of the scores. chunk: queries see only keys in their own CHUNK-token block (Llama 4). temperature
    (floor_scale, attn_scale): q scaled by 1 + attn_scale * log(1 + floor((position + 1) / floor_scale))
    (Llama 4's NoPE layers)."""

    heads: int = 0
    kv_heads: int = 0
    head_dim: int = 0
    scale: float = 1.0
    rope: Rope | None = None
    window: int | None = None
    qk_norm: str | None = None
    qk_norm_names: tuple[str, str] = ("q_norm", "k_norm")
    norm_eps: float = 1e-6
    norm_offset: float = 0.0
    sinks: bool = False
    softcap: float | None = None
    chunk: int | None = None
    temperature: tuple[float, float] | None = None


@dataclass(frozen=True)
class GatedMlp(Block):
    """down(act(gate(x)) * up(x)); ACTIVATION 'silu' (SwiGLU) or 'gelu_tanh' (GeGLU)."""

    activation: str = "silu"


@dataclass(frozen=True)
class MoE(Block):
    """A mixture of experts: the router picks TOP_K of EXPERTS per token.

    routing 'softmax' (softmax, top-k) or 'sigmoid'; normalize: top-k weights divided by their sum.
    activation 'silu' or gpt-oss's clamped SwiGLU ('swiglu_clamp': gate clamped to LIMIT, up to +-LIMIT,
    gate * sigmoid(ALPHA * gate) * (up + 1)). expert_bias: experts have biases. shared: a dense MLP every
    token also goes through (its output times sigmoid(shared_gate(x)) when SHARED_GATE). router: the routing
    Linear's name in the module (dotted: 'gate.wg'). Experts are a ModuleList of MLPs with EXPERT_NAMES (gate, up,
    down) Linears, or (FUSED_EXPERTS 'interleaved' / 'halves') 3-D parameters gate_up_proj [E, hidden, 2 * inter]
    (gate and up interleaved or in halves) and down_proj [E, inter, hidden]. scaling multiplies the routed experts' sum.
    scale_input: top-1 routing whose sigmoid weight scales the expert's input instead of its output (Llama 4).
    correction_bias: the router's e_score_correction_bias is added to the scores for choosing experts only;
    groups > 1: group-limited routing (experts chosen within the TOPK_GROUPS groups whose two best scores sum
    highest, DeepSeek-V3 / GLM-4.5)."""

    experts: int = 0
    top_k: int = 1
    routing: str = "softmax"
    normalize: bool = True
    activation: str = "silu"
    limit: float | None = None
    alpha: float = 1.0
    expert_bias: bool = False
    router_bias: bool = False
    shared: GatedMlp | None = None
    shared_gate: bool = False
    router: str = "gate"
    expert_names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    fused_experts: str | None = None
    scaling: float = 1.0
    scale_input: bool = False
    correction_bias: bool = False
    groups: int = 1
    topk_groups: int = 1


@dataclass(frozen=True)
class Norm:
    """An RMSNorm at PATH; the weight applied is OFFSET + w (Gemma stores w - 1)."""

    path: str
    weight: nn.Parameter = field(repr=False, compare=False)
    eps: float
    offset: float = 0.0


@dataclass(frozen=True)
class Layer:
    """One decoder layer: x += post_mixer(mixer(pre_mixer(x))); x += post_mlp(mlp(pre_mlp(x))).
    post_* norms are Gemma's extra norms and OLMo 2's only ones (None: no norm there). normed_residual (MiniMax):
    the residual is each block's normalized input, x = alpha * pre(x) + beta * block(pre(x)), with (mixer alpha,
    mixer beta, mlp alpha, mlp beta)."""

    index: int
    mixer: Block
    mlp: Block
    pre_mixer: Norm | None
    pre_mlp: Norm | None
    post_mixer: Norm | None = None
    post_mlp: Norm | None = None
    normed_residual: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Decoder:
    """A whole causal LM: embedding (times EMBED_SCALE) -> layers -> final norm -> lm_head (tanh-capped at
    LOGIT_SOFTCAP when set)."""

    model_type: str
    embedding: str
    layers: list[Layer]
    final_norm: Norm
    vocab_size: int
    max_positions: int
    embed_scale: float | None = None
    logit_softcap: float | None = None
