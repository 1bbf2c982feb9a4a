"""GGUF metadata (llama.cpp key names) -> an HF-style config dict, so GGUF files share the config path.

Covers the llama family as llama.cpp names it: llama (also Mistral/Mixtral/SmolLM2), qwen2, qwen3,
qwen3moe, qwen2moe, olmo2. Keys follow llama.cpp's gguf-py constants (`{arch}.block_count`, ...):
https://github.com/ggml-org/llama.cpp/blob/master/gguf-py/gguf/constants.py
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from retarget.errors import RetargetError

# llama.cpp architecture -> (HF model_type, HF model_type when it has experts, HF key for the expert count)
GGUF_ARCHS = {
    "llama": ("llama", "mixtral", "num_local_experts"),
    "qwen2": ("qwen2", "qwen2_moe", "num_experts"),
    "qwen2moe": ("qwen2_moe", "qwen2_moe", "num_experts"),
    "qwen3": ("qwen3", "qwen3_moe", "num_experts"),
    "qwen3moe": ("qwen3_moe", "qwen3_moe", "num_experts"),
    "olmo2": ("olmo2", "olmo2", "num_experts"),
}
# `{arch}.<key>` -> HF config key
KEY_MAP = {
    "block_count": "num_hidden_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "attention.key_length": "head_dim",
    "attention.sliding_window": "sliding_window",
    "context_length": "max_position_embeddings",
    "vocab_size": "vocab_size",
    "expert_used_count": "num_experts_per_tok",
    "expert_feed_forward_length": "moe_intermediate_size",
}


def hf_config_from_gguf(metadata: dict[str, Any], tensor_names: Iterable[str] | None = None,
                        source: str | None = None) -> dict[str, Any]:
    """Translate GGUF metadata ({key: value}) to an HF config dict.

    The vocabulary size comes from `{arch}.vocab_size` or the length of `tokenizer.ggml.tokens`; the
    embeddings are tied when TENSOR_NAMES is given and holds no `output.weight` (llama.cpp omits it)."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or arch not in GGUF_ARCHS:
        raise RetargetError(f"unsupported GGUF architecture {str(arch)[:40]!r}; supported: {', '.join(GGUF_ARCHS)}",
                            source=source, field="general.architecture")
    model_type, moe_type, experts_key = GGUF_ARCHS[arch]
    config: dict[str, Any] = {hf: metadata[f"{arch}.{key}"] for key, hf in KEY_MAP.items()
                              if f"{arch}.{key}" in metadata}
    if "vocab_size" not in config and "tokenizer.ggml.tokens" in metadata:
        config["vocab_size"] = len(metadata["tokenizer.ggml.tokens"])
    experts = metadata.get(f"{arch}.expert_count", 0)
    if experts:
        config[experts_key] = experts
        if moe_type == "mixtral":  # Mixtral's config names the expert width `intermediate_size`
            config["intermediate_size"] = config.pop("moe_intermediate_size", config.get("intermediate_size"))
    if tensor_names is not None:
        config["tie_word_embeddings"] = "output.weight" not in set(tensor_names)
    from retarget.models.checks import check_config

    return check_config({"model_type": moe_type if experts else model_type, **config}, source or "GGUF")
