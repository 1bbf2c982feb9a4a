"""HF `config.json` -> ModelSpec, one small registered class per architecture family.

Each class inherits from its closest relative and overrides only what differs: a key map (renamed config
keys), defaults, and the per-layer `attention` / `mlp` / `ssm` rules. `spec_from_hf_config` builds one
block per layer and run-length encodes them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import ValidationError

from retarget.errors import RetargetError
from retarget.models.spec import AttentionSpec, BlockGroup, MlpSpec, ModelSpec, SsmSpec

_ARCHS: dict[str, type[DecoderArch]] = {}


def register_arch(*model_types: str):
    """Class decorator: handle HF configs whose `model_type` is one of MODEL_TYPES."""

    def wrap(cls: type[DecoderArch]) -> type[DecoderArch]:
        for t in model_types:
            _ARCHS[t] = cls
        return cls

    return wrap


def supported_model_types() -> list[str]:
    return sorted(_ARCHS)


def arch_class(model_type: str) -> type[DecoderArch] | None:
    """The registered class that reads configs of MODEL_TYPE."""
    return _ARCHS.get(model_type)


# Canonical (Llama-style) key -> the names other configs use for it, in the order they are tried.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "n_layers", "num_layers"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_attention_heads": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "kv_n_heads",
                            "multi_query_group_num"),
    "intermediate_size": ("intermediate_size", "ffn_hidden_size", "n_inner", "ffn_dim"),
    "head_dim": ("head_dim", "kv_channels", "attention_head_dim"),
    "max_position_embeddings": ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
    "n_routed_experts": ("n_routed_experts", "num_experts", "num_local_experts", "moe_num_experts"),
    "num_experts_per_tok": ("num_experts_per_tok", "moe_topk", "moe_top_k", "moe_k", "num_selected_experts"),
    "n_shared_experts": ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts",
                         "num_shared_expert"),
}


class Config:
    """Read access to a config dict through a key map; missing or bad fields raise RetargetError."""

    def __init__(self, raw: dict[str, Any], key_map: dict[str, str], source: str | None) -> None:
        self.raw, self.key_map, self.source = raw, key_map, source

    def key(self, key: str) -> str:
        """The config's own name for canonical KEY: the arch's key map first, else the first of the key's
        common aliases (GPT-2's `n_embd`, Falcon's `num_kv_heads`, ...) that the config sets."""
        if key in self.key_map:
            return self.key_map[key]
        return next((a for a in KEY_ALIASES.get(key, ()) if self.raw.get(a) is not None), key)

    def has(self, key: str) -> bool:
        return self.raw.get(self.key(key)) is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.raw.get(self.key(key))
        return default if value is None else value

    def per_layer(self, key: str, layers: int) -> list[Any] | None:
        """A list with one entry per layer (e.g. `layer_types`), or None when absent."""
        value = self.get(key)
        if value is not None and (not isinstance(value, list) or len(value) != layers):
            raise RetargetError(f"expected a list of {layers} entries (one per layer)", source=self.source,
                                field=self.key(key))
        return value

    def int(self, key: str, default: int | None = None, layer: int | None = None) -> int:
        """A positive-or-zero integer; a per-layer list is indexed by LAYER."""
        value = self.get(key, default)
        if isinstance(value, list) and layer is not None and len(value) > layer:
            value = value[layer]
        if value is None:
            raise RetargetError("missing required field", source=self.source, field=self.key(key))
        numeric = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not numeric or value < 0 or value != int(value):
            raise RetargetError(f"expected a non-negative integer, got {value!r}", source=self.source,
                                field=self.key(key))
        return int(value)


class DecoderArch:
    """Llama-style decoder: GQA/MHA/MQA attention, dense SwiGLU MLP in every layer."""

    KEY_MAP: ClassVar[dict[str, str]] = {}
    TIED_DEFAULT: ClassVar[bool] = False
    QK_NORM: ClassVar[bool] = False
    SINKS: ClassVar[bool] = False  # learned attention-sink logits on every layer

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    # -- dims ----------------------------------------------------------------------------------------------
    def num_layers(self) -> int:
        return self.cfg.int("num_hidden_layers")

    def heads(self) -> int:
        return self.cfg.int("num_attention_heads")

    def kv_heads(self) -> int:
        return self.cfg.int("num_key_value_heads", self.heads())

    def head_dim(self) -> int:
        if self.cfg.has("head_dim"):
            return self.cfg.int("head_dim")
        hidden, heads = self.cfg.int("hidden_size"), self.heads()
        if heads == 0 or hidden % heads:
            raise RetargetError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}",
                                source=self.cfg.source, field=self.cfg.key("num_attention_heads"))
        return hidden // heads

    def window(self, layer: int) -> int | None:
        """Sliding window of LAYER in tokens, or None for full attention."""
        return None

    # -- per-layer parts -------------------------------------------------------------------------------------
    def attention(self, layer: int) -> AttentionSpec | None:
        heads, kv = self.heads(), self.kv_heads()
        window = self.window(layer)
        layout = "mha" if kv == heads else "mqa" if kv == 1 else "gqa"
        kind = "sliding" if window else "sinks" if self.SINKS else layout
        return AttentionSpec(kind=kind, heads=heads, kv_heads=kv, head_dim=self.head_dim(), window=window,
                             sinks=self.SINKS, chunked=self.chunked(layer),
                             qk_norm=bool(self.cfg.get("use_qk_norm", self.QK_NORM)))

    def chunked(self, layer: int) -> bool:
        return False

    def mlp(self, layer: int) -> MlpSpec | None:
        return MlpSpec(kind="dense", intermediate=self.cfg.int("intermediate_size"))

    def ssm(self, layer: int) -> SsmSpec | None:
        return None

    def layer_blocks(self) -> list[BlockGroup]:
        """One BlockGroup(count=1) per layer."""
        return [BlockGroup(count=1, attention=self.attention(i), ssm=self.ssm(i), mlp=self.mlp(i))
                for i in range(self.num_layers())]

    def tied(self) -> bool:
        return bool(self.cfg.get("tie_word_embeddings", self.TIED_DEFAULT))

    def position_rows(self) -> int:
        """Rows of a learned absolute-position embedding table (0: rotary or no positions)."""
        return 0


def _run_length(layers: list[BlockGroup]) -> list[BlockGroup]:
    groups: list[BlockGroup] = []
    for block in layers:
        if groups and groups[-1].model_copy(update={"count": 1}) == block:
            groups[-1] = groups[-1].model_copy(update={"count": groups[-1].count + 1})
        else:
            groups.append(block)
    return groups


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs (Gemma 3, Llama 4) nest the language model under `text_config`."""
    text = config.get("text_config")
    if isinstance(text, dict):
        return {**{k: v for k, v in config.items() if k != "text_config"}, **text,
                "model_type": config.get("model_type")}
    return config


def spec_from_hf_config(config: dict[str, Any], name: str | None = None, *, source: str | None = None,
                        native_format: dict[str, str] | None = None) -> ModelSpec:
    """Build a ModelSpec from an HF config dict. Unknown model types and bad fields raise RetargetError."""
    if not isinstance(config, dict):
        raise RetargetError("config must be a JSON object", source=source)
    raw = _flatten_nested(_text_config(config))
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise RetargetError("missing model_type", source=source, field="model_type")
    if raw.get("is_encoder_decoder"):
        raise RetargetError(f"{model_type} is an encoder-decoder model; only decoder-only LLMs are modelled",
                            source=source, field="is_encoder_decoder")
    arch_cls = _ARCHS.get(model_type, GenericArch)
    arch = arch_cls(Config(raw, arch_cls.KEY_MAP, source))
    cfg = arch.cfg
    try:
        blocks = _run_length(arch.layer_blocks())
        return ModelSpec(
            name=name or str(raw.get("_name_or_path") or model_type), model_type=model_type,
            hidden_size=cfg.int("hidden_size"), vocab_size=cfg.int("vocab_size"),
            tie_word_embeddings=arch.tied(),
            max_position_embeddings=cfg.get("max_position_embeddings"), blocks=blocks,
            position_embeddings=arch.position_rows(),
            native_format=native_format or _native_format(raw), source=source)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise RetargetError(first["msg"], source=source, field=field) from None


def _native_format(raw: dict[str, Any]) -> dict[str, str]:
    """Checkpoint format per tensor group from `quantization_config` / `torch_dtype` (bf16 if neither)."""
    q = raw.get("quantization_config") or {}
    method = str(q.get("quant_method", "")).lower()
    if method == "fp8":
        block = q.get("weight_block_size")
        fmt = f"fp8-e4m3-block{block[0]}" if block else "fp8-e4m3"
        return {"linear": fmt, "other": "bf16"}
    if method == "mxfp4":
        return {"experts": "mxfp4", "other": "bf16"}
    dtypes = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
    return {"all": dtypes.get(str(raw.get("torch_dtype")), "bf16")}


# ---- architectures -------------------------------------------------------------------------------------

@register_arch("llama", "mistral", "olmo2")
class LlamaArch(DecoderArch):
    def window(self, layer: int) -> int | None:
        return self.cfg.get("sliding_window")


@register_arch("qwen2")
class Qwen2Arch(LlamaArch):

    def window(self, layer: int) -> int | None:
        if not self.cfg.get("use_sliding_window", False):
            return None
        return self.cfg.get("sliding_window") if layer >= self.cfg.int("max_window_layers", 0) else None


class MoeMixin(DecoderArch):
    """Routed experts; `is_moe_layer` decides which layers, `dense_width` what the others use."""

    def is_moe_layer(self, layer: int) -> bool:
        return layer >= self.cfg.int("first_k_dense_replace", 0)

    def shared(self, layer: int) -> tuple[int, int]:
        """(number of shared experts, width of each)."""
        return self.cfg.int("n_shared_experts", 0), self.cfg.int("moe_intermediate_size")

    def expert_width(self, layer: int) -> int:
        return self.cfg.int("moe_intermediate_size", layer=layer)

    def mlp(self, layer: int) -> MlpSpec | None:
        if not self.is_moe_layer(layer):
            return super().mlp(layer)
        n_shared, shared_width = self.shared(layer)
        return MlpSpec(kind="moe", experts=self.cfg.int("n_routed_experts", layer=layer),
                       top_k=self.cfg.int("num_experts_per_tok", layer=layer),
                       expert_intermediate=self.expert_width(layer),
                       shared_experts=n_shared, shared_intermediate=shared_width if n_shared else 0,
                       zero_experts=self.cfg.int("zero_expert_num", 0))


@register_arch("qwen3")
class Qwen3Arch(Qwen2Arch):
    QK_NORM = True


@register_arch("qwen3_moe", "qwen2_moe")
class Qwen3MoeArch(MoeMixin, Qwen3Arch):
    KEY_MAP = {"n_routed_experts": "num_experts"}

    def is_moe_layer(self, layer: int) -> bool:
        step = self.cfg.int("decoder_sparse_step", 1)
        return layer not in self.cfg.get("mlp_only_layers", []) and (layer + 1) % step == 0

    def shared(self, layer: int) -> tuple[int, int]:
        width = self.cfg.int("shared_expert_intermediate_size", 0)
        return (1, width) if width else (0, 0)


@register_arch("mixtral", "minimax_m2")
class MixtralArch(MoeMixin, LlamaArch):
    """Experts in every layer; `intermediate_size` is the expert width."""

    KEY_MAP = {"n_routed_experts": "num_local_experts", "moe_intermediate_size": "intermediate_size"}

    def is_moe_layer(self, layer: int) -> bool:
        return True


@register_arch("glm4_moe")
class Glm4MoeArch(MoeMixin, LlamaArch):
    pass


@register_arch("hunyuan", "hunyuan_v1_moe")
class HunyuanArch(MoeMixin, LlamaArch):
    """Hunyuan-A13B: per-layer lists allowed for experts/top-k/widths; one shared expert by default."""

    KEY_MAP = {"n_routed_experts": "num_experts", "num_experts_per_tok": "moe_topk",
               "first_k_dense_replace": "moe_layer_num_skipped", "head_dim": "attention_head_dim"}
    QK_NORM = True

    def head_dim(self) -> int:
        return self.cfg.int("head_dim") if self.cfg.has("head_dim") else (
            self.cfg.int("hidden_size") // self.heads())

    def expert_width(self, layer: int) -> int:
        """The official config has `moe_intermediate_size`; transformers' port uses `intermediate_size`."""
        key = "moe_intermediate_size" if self.cfg.has("moe_intermediate_size") else "intermediate_size"
        return self.cfg.int(key, layer=layer)

    def shared(self, layer: int) -> tuple[int, int]:
        mixed = self.cfg.get("use_mixed_mlp_moe", True)
        return (self.cfg.int("num_shared_expert", 1, layer=layer) if mixed else 0), self.expert_width(layer)


@register_arch("deepseek_v3", "deepseek_v2", "kimi_k2")
class DeepseekV3Arch(MoeMixin, LlamaArch):
    """MLA attention; leading dense layers (`first_k_dense_replace`), shared experts."""

    def attention(self, layer: int) -> AttentionSpec | None:
        c = self.cfg
        return AttentionSpec(kind="mla", heads=self.heads(), kv_heads=1,
                             head_dim=c.int("qk_nope_head_dim") + c.int("qk_rope_head_dim"),
                             q_lora_rank=c.get("q_lora_rank") or None, kv_lora_rank=c.int("kv_lora_rank"),
                             qk_nope_head_dim=c.int("qk_nope_head_dim"),
                             qk_rope_head_dim=c.int("qk_rope_head_dim"),
                             v_head_dim=c.int("v_head_dim"))

    def is_moe_layer(self, layer: int) -> bool:
        dense_first = self.cfg.int("first_k_dense_replace", 0)
        return layer >= dense_first and layer % self.cfg.int("moe_layer_freq", 1) == 0


@register_arch("longcat_flash")
class LongcatArch(DeepseekV3Arch):
    """LongCat-Flash: each of `num_layers` layers holds 2 MLA sublayers, 2 dense FFNs and one MoE (with
    zero experts) in parallel. Modelled as 2*num_layers blocks; the MoE rides on the even ones."""

    KEY_MAP = {"num_experts_per_tok": "moe_topk", "moe_intermediate_size": "expert_ffn_hidden_size",
               "intermediate_size": "ffn_hidden_size"}

    def num_layers(self) -> int:
        return 2 * self.cfg.int("num_layers")

    def mlp(self, layer: int) -> MlpSpec | None:
        dense = self.cfg.int("intermediate_size")
        if layer % 2:
            return MlpSpec(kind="dense", intermediate=dense)
        return MlpSpec(kind="moe", intermediate=dense, experts=self.cfg.int("n_routed_experts"),
                       top_k=self.cfg.int("num_experts_per_tok"),
                       expert_intermediate=self.cfg.int("moe_intermediate_size"),
                       zero_experts=self.cfg.int("zero_expert_num", 0))


@register_arch("gemma3", "gemma3_text")
class Gemma3Arch(LlamaArch):
    """Local sliding-window layers with a global layer every `sliding_window_pattern` (or `layer_types`)."""

    TIED_DEFAULT = True
    QK_NORM = True

    def window(self, layer: int) -> int | None:
        types = self.cfg.per_layer("layer_types", self.num_layers())
        if types:
            return self.cfg.int("sliding_window") if types[layer] == "sliding_attention" else None
        pattern = self.cfg.int("sliding_window_pattern", 6)
        return None if (layer + 1) % pattern == 0 else self.cfg.int("sliding_window")


@register_arch("gpt_oss")
class GptOssArch(MixtralArch):
    """Alternating 128-token banded / full attention, learned sinks on every layer, MXFP4 experts."""

    SINKS = True

    def window(self, layer: int) -> int | None:
        types = self.cfg.per_layer("layer_types", self.num_layers())
        sliding = types[layer] == "sliding_attention" if types else layer % 2 == 0  # even layers are banded
        return self.cfg.int("sliding_window") if sliding else None


@register_arch("llama4", "llama4_text")
class Llama4Arch(MoeMixin, LlamaArch):
    """Top-1 routed + 1 shared expert; MoE every `interleave_moe_layer_step`; dense layers are
    `intermediate_size_mlp` wide; chunked local attention on RoPE layers, global NoPE every 4th."""

    KEY_MAP = {"n_routed_experts": "num_local_experts", "moe_intermediate_size": "intermediate_size",
               "intermediate_size": "intermediate_size_mlp"}
    QK_NORM = False

    def is_moe_layer(self, layer: int) -> bool:
        layers = self.cfg.get("moe_layers")
        if layers is not None:
            return layer in layers
        step = self.cfg.int("interleave_moe_layer_step", 1)
        return (layer + 1) % step == 0

    def shared(self, layer: int) -> tuple[int, int]:
        return 1, self.cfg.int("moe_intermediate_size")

    def _is_rope_layer(self, layer: int) -> bool:
        flags = self.cfg.per_layer("no_rope_layers", self.num_layers())
        if flags:
            return bool(flags[layer])
        return (layer + 1) % self.cfg.int("no_rope_layer_interval", 4) != 0

    def window(self, layer: int) -> int | None:
        chunk = self.cfg.get("attention_chunk_size")
        return chunk if chunk and self._is_rope_layer(layer) else None

    def chunked(self, layer: int) -> bool:
        return self.window(layer) is not None


@register_arch("minimax", "minimax_m1")
class MiniMaxM1Arch(MixtralArch):
    """Lightning (linear) attention with a softmax GQA layer every 8th
    (`attn_type_list`: 0 linear, 1 softmax; or transformers' `layer_types`)."""

    def _is_linear(self, layer: int) -> bool:
        types = self.cfg.per_layer("attn_type_list", self.num_layers())
        if types is not None:
            return types[layer] == 0
        layer_types = self.cfg.per_layer("layer_types", self.num_layers())
        return bool(layer_types) and layer_types[layer] == "linear_attention"

    def attention(self, layer: int) -> AttentionSpec | None:
        spec = super().attention(layer)
        if self._is_linear(layer) and spec is not None:
            return spec.model_copy(update={"kind": "linear", "kv_heads": spec.heads})
        return spec


class MambaLayers(DecoderArch):
    """Mixin for configs with `mamba_*` fields."""

    def d_inner(self) -> int:
        return self.cfg.int("mamba_expand", 2) * self.cfg.int("hidden_size")


@register_arch("falcon_h1")
class FalconH1Arch(MambaLayers, LlamaArch):
    """Parallel hybrid: every layer has GQA attention *and* a Mamba-2 mixer side by side, then an MLP."""

    def ssm(self, layer: int) -> SsmSpec | None:
        c = self.cfg
        n_heads = c.int("mamba_n_heads")
        d_ssm = c.int("mamba_d_ssm") if c.has("mamba_d_ssm") else self.d_inner()
        head = c.get("mamba_d_head", "auto")
        head_dim = d_ssm // n_heads if head == "auto" else c.int("mamba_d_head")
        return SsmSpec(kind="mamba2", d_inner=n_heads * head_dim, d_state=c.int("mamba_d_state"),
                       d_conv=c.int("mamba_d_conv", 4), n_heads=n_heads, head_dim=head_dim,
                       n_groups=c.int("mamba_n_groups", 1), chunk_size=c.get("mamba_chunk_size"))


@register_arch("jamba")
class JambaArch(MambaLayers, MoeMixin, LlamaArch):
    """Attention where i % attn_layer_period == attn_layer_offset, Mamba-1 elsewhere; MoE where
    i % expert_layer_period == expert_layer_offset; `intermediate_size` is both dense and expert width."""

    KEY_MAP = {"n_routed_experts": "num_experts", "moe_intermediate_size": "intermediate_size"}

    def is_moe_layer(self, layer: int) -> bool:
        return layer % self.cfg.int("expert_layer_period", 2) == self.cfg.int("expert_layer_offset", 1)

    def _is_attention(self, layer: int) -> bool:
        return layer % self.cfg.int("attn_layer_period", 8) == self.cfg.int("attn_layer_offset", 4)

    def attention(self, layer: int) -> AttentionSpec | None:
        return super().attention(layer) if self._is_attention(layer) else None

    def ssm(self, layer: int) -> SsmSpec | None:
        if self._is_attention(layer):
            return None
        c = self.cfg
        auto = c.get("mamba_dt_rank", "auto") == "auto"
        dt_rank = math.ceil(c.int("hidden_size") / 16) if auto else c.int("mamba_dt_rank")
        return SsmSpec(kind="mamba1", d_inner=self.d_inner(), d_state=c.int("mamba_d_state", 16),
                       d_conv=c.int("mamba_d_conv", 4), dt_rank=dt_rank)


# Keys that mark recurrent or SSM layers GenericArch cannot see the layout of (Bamba, Zamba, LFM2, RWKV, ...).
_RECURRENT_KEYS = ("mamba_d_state", "mamba_n_heads", "ssm_cfg", "state_size", "layers_block_type", "block_types",
                   "attn_layer_indices", "conv_L_cache", "lru_width", "linear_num_value_heads", "attention_hidden_size")
# Attention layer types of transformers' `layer_types` that GenericArch models; anything else is named.
_ATTENTION_LAYER_TYPES = {"full_attention", "sliding_attention", "chunked_attention", "attention"}


class GenericArch(MoeMixin, DecoderArch):
    """Any other decoder config, read through `KEY_ALIASES`: full or sliding attention (per `layer_types`,
    else `sliding_window` unless `use_sliding_window` is false), MQA where `multi_query` says so, MLA where
    `kv_lora_rank` is set, and routed experts where an expert count is set (layer rules of Qwen, DeepSeek and
    ERNIE; shared experts by count or width). Layer types it does not model raise one error naming them."""

    GATED: ClassVar[bool] = True

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        marker = next((k for k in _RECURRENT_KEYS if cfg.raw.get(k) is not None), None)
        if marker:
            raise RetargetError("recurrent (SSM / linear-recurrence) layers of this model type are not modelled",
                                source=cfg.source, field=marker)

    def layer_types(self) -> list[str] | None:
        types = self.cfg.per_layer("layer_types", self.num_layers())
        if types:
            unknown = sorted({str(t) for t in types} - _ATTENTION_LAYER_TYPES)
            if unknown:
                raise RetargetError(f"layer types not modelled: {', '.join(unknown)}", source=self.cfg.source,
                                    field=self.cfg.key("layer_types"))
        return types

    def kv_heads(self) -> int:
        multi_query = self.cfg.get("multi_query") and not self.cfg.get("new_decoder_architecture")
        return 1 if multi_query else super().kv_heads()

    def window(self, layer: int) -> int | None:
        types = self.layer_types()
        if types is not None:
            return self.cfg.get("sliding_window") if types[layer] != "full_attention" else None
        return self.cfg.get("sliding_window") if self.cfg.get("use_sliding_window", True) else None

    def attention(self, layer: int) -> AttentionSpec | None:
        if self.cfg.has("kv_lora_rank"):
            return DeepseekV3Arch.attention(self, layer)  # type: ignore[arg-type]
        return super().attention(layer)

    def is_moe_layer(self, layer: int) -> bool:
        c = self.cfg
        if not c.int("n_routed_experts", 0):
            return False
        if c.has("moe_layer_start_index"):  # ERNIE 4.5
            return (c.int("moe_layer_start_index") <= layer <= c.int("moe_layer_end_index", layer)
                    and (layer + 1) % c.int("moe_layer_interval", 1) == 0)
        return (layer >= c.int("first_k_dense_replace", 0) and layer not in c.get("mlp_only_layers", [])
                and (layer + 1) % c.int("decoder_sparse_step", 1) == 0)

    def expert_width(self, layer: int) -> int:
        key = "moe_intermediate_size" if self.cfg.has("moe_intermediate_size") else "intermediate_size"
        return self.cfg.int(key, layer=layer)

    def shared(self, layer: int) -> tuple[int, int]:
        for key in ("shared_expert_intermediate_size", "shared_intermediate_size"):
            if self.cfg.int(key, 0):
                return 1, self.cfg.int(key)
        return self.cfg.int("n_shared_experts", 0), self.expert_width(layer)

    def mlp(self, layer: int) -> MlpSpec | None:
        if self.is_moe_layer(layer):
            spec = super().mlp(layer)
        else:
            width = self.cfg.int("intermediate_size") if self.cfg.has("intermediate_size") else (
                4 * self.cfg.int("hidden_size"))  # GPT-2's n_inner=None means 4 x hidden
            spec = MlpSpec(kind="dense", intermediate=width)
        return spec.model_copy(update={"gated": self.GATED}) if spec is not None else None


@register_arch("gptj", "gpt_neox", "phi", "falcon", "starcoder2", "persimmon", "nemotron", "arcee", "apertus",
               "bloom", "codegen", "mpt")
class PlainMlpArch(GenericArch):
    """Decoders whose FFN is up/down only (GELU, ReLU^2 or xIELU, no gate)."""

    GATED = False


@register_arch("gpt2", "gpt_bigcode", "gpt_neo", "opt", "biogpt")
class LearnedPositionsArch(PlainMlpArch):
    """GPT-2 style: plain FFN and a learned absolute-position table of `max_position_embeddings` rows."""

    def position_rows(self) -> int:
        return self.cfg.int("max_position_embeddings")


def _flatten_nested(config: dict[str, Any]) -> dict[str, Any]:
    """DBRX-style configs keep attention/FFN fields in nested `attn_config` / `ffn_config` dicts."""
    out = dict(config)
    for key in ("attn_config", "ffn_config"):
        nested = config.get(key)
        if isinstance(nested, dict):
            out |= {k: v for k, v in nested.items() if k not in out}
    return out
