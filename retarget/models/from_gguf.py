"""GGUF metadata (llama.cpp key names) -> an HF-style config dict, so GGUF files share the config path.

Covers the llama family as llama.cpp names it: llama (also Mistral/Mixtral/SmolLM2), qwen2, qwen3,
qwen3moe, qwen2moe, olmo2. Keys follow llama.cpp's gguf-py constants (`{arch}.block_count`, ...):
https://github.com/ggml-org/llama.cpp/blob/master/gguf-py/gguf/constants.py
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

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


# GGUF value types (gguf-py GGUFValueType) -> struct format; 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
# general.file_type (llama.cpp LLAMA_FTYPE) -> the weight format retarget.perf knows it as
FILE_TYPES = {0: "fp32", 1: "fp16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k", 11: "q3_k_s",
              12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k",
              25: "iq4_nl", 30: "iq4_xs", 32: "bf16"}


class _Cursor:
    """Little-endian reads from an open GGUF file."""

    def __init__(self, f: BinaryIO, source: str) -> None:
        self.f, self.source = f, source

    def read(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise RetargetError("truncated GGUF header", source=self.source)
        return struct.unpack("<" + fmt, data)[0]

    def string(self) -> str:
        n = self.read("Q")
        return self.f.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool = True) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item, count = self.read("I"), self.read("Q")
            if not keep and item in _SCALARS:  # skip scalar arrays without decoding them
                self.f.seek(count * struct.calcsize("<" + _SCALARS[item]), 1)
                return count
            if not keep and item == _STRING:
                for _ in range(count):
                    self.f.seek(self.read("Q"), 1)
                return count
            return [self.value(item) for _ in range(count)]
        if vtype not in _SCALARS:
            raise RetargetError(f"unknown GGUF value type {vtype}", source=self.source)
        return self.read(_SCALARS[vtype])


def read_gguf_header(path: Path) -> tuple[dict[str, Any], list[str]]:
    """Metadata ({key: value}) and tensor names of a GGUF file, read from its header only (no tensor data).

    Token lists are not decoded: `tokenizer.ggml.*` arrays are replaced by their length."""
    source = str(path)
    try:
        with Path(path).open("rb") as f:
            if f.read(4) != b"GGUF":
                raise RetargetError("not a GGUF file (no GGUF magic)", source=source)
            cur = _Cursor(f, source)
            version = cur.read("I")
            if version < 2:
                raise RetargetError(f"GGUF version {version} not supported (2 or later)", source=source)
            n_tensors, n_kv = cur.read("Q"), cur.read("Q")
            metadata: dict[str, Any] = {}
            for _ in range(n_kv):
                key = cur.string()
                metadata[key] = cur.value(cur.read("I"), keep=not key.startswith("tokenizer.ggml."))
            names = []
            for _ in range(n_tensors):
                names.append(cur.string())
                dims = cur.read("I")
                f.seek(8 * dims + 4 + 8, 1)  # dims, type, offset
            return metadata, names
    except OSError as err:
        raise RetargetError(f"cannot read: {err.strerror}", source=source) from None


def spec_config_from_gguf_file(path: Path) -> tuple[dict[str, Any], str | None, dict[str, str]]:
    """(HF-style config, model name, native format) of a GGUF file."""
    metadata, names = read_gguf_header(path)
    tokens = metadata.get("tokenizer.ggml.tokens")
    if isinstance(tokens, int):  # the header reader keeps the length only
        metadata["tokenizer.ggml.tokens"] = range(tokens)
    config = hf_config_from_gguf(metadata, names, source=str(path))
    fmt = FILE_TYPES.get(metadata.get("general.file_type", -1))
    native = {"linear": fmt, "embeddings": fmt} if fmt else {"all": "bf16"}
    return config, metadata.get("general.name"), native
