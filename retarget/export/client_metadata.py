"""What the standard clients need to open an artifact: optimum's ORTModelForCausalLM (config.json,
generation_config.json, no required input it does not know) and onnxruntime-genai (genai_config.json), with
tokenizer files that name the model's own special tokens.

A GGUF's tokenizer conversion in transformers labels <|im_start|> (the BOS) as end-of-sequence too, while the
GGUF's own eos_token_id is <|im_end|>: the files written here take every special token id from the model's
config, so any loop that stops on the tokenizer's EOS ends where the model does.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

LOGITS_TO_KEEP = "logits_to_keep"
GENAI_CONFIG = "genai_config.json"


def optional_logits_to_keep(proto: onnx.ModelProto) -> None:
    """Give PROTO's logits_to_keep input a default (0: logits at every position, transformers' meaning) as an
    initializer of the same name. ONNX Runtime then lists it as an overridable initializer, not a required
    input: clients that do not know it run without it, retarget's runtime still feeds 1 to decode."""
    graph = proto.graph
    if LOGITS_TO_KEEP not in {i.name for i in graph.input} or LOGITS_TO_KEEP in {i.name for i in graph.initializer}:
        return
    graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.int64), LOGITS_TO_KEEP))


def write_client_files(loaded: Any, out_dir: Path, model_file: str = "model.onnx") -> list[str]:
    """Write the tokenizer (special tokens from the model's config), config.json, generation_config.json and,
    when onnxruntime-genai can drive the graph, genai_config.json into OUT_DIR; returns the names written."""
    out_dir = Path(out_dir)
    config = loaded.model.config
    tokenizer = tokenizer_with_model_tokens(loaded.tokenizer, config)
    written = set(tokenizer.save_pretrained(out_dir))
    client_config = copy.deepcopy(config)
    client_config.architectures = [type(loaded.model).__name__]
    client_config.use_cache = True
    client_config.save_pretrained(out_dir)
    generation = copy.deepcopy(loaded.model.generation_config)
    generation.bos_token_id, generation.eos_token_id = config.bos_token_id, config.eos_token_id
    generation.pad_token_id = _first(config.pad_token_id if config.pad_token_id is not None else config.eos_token_id)
    generation.save_pretrained(out_dir)
    genai = genai_config(config, generation, onnx.load(str(out_dir / model_file), load_external_data=False),
                         model_file)
    if genai is not None:
        (out_dir / GENAI_CONFIG).write_text(json.dumps(genai, indent=2) + "\n")
    names = {Path(p).name for p in written} | {"config.json", "generation_config.json"}
    return sorted(names | ({GENAI_CONFIG} if genai is not None else set()))


def tokenizer_with_model_tokens(tokenizer: Any, config: Any) -> Any:
    """A copy of TOKENIZER whose bos / eos / pad tokens are the ones CONFIG's ids name (the first EOS id where
    there are several). A byte-level BPE gets the plain ByteLevel decoder: the GGUF conversion chains
    SentencePiece steps (byte fallback, '▁' to space) before it, which transformers skips past but which make
    onnxruntime-genai's tokenizer treat the vocabulary as SentencePiece (unknown ids, 'Ġ' left in the text)."""
    tokenizer = copy.deepcopy(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    byte_level = (spec.get("pre_tokenizer") or {}).get("type") == "ByteLevel"
    if byte_level and (spec.get("decoder") or {}).get("type") != "ByteLevel":
        from tokenizers import decoders

        backend.decoder = decoders.ByteLevel()
    for role in ("bos", "eos", "pad"):
        token_id = _first(getattr(config, f"{role}_token_id", None))
        if token_id is not None:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    return tokenizer


def genai_config(config: Any, generation: Any, graph: onnx.ModelProto, model_file: str) -> dict[str, Any] | None:
    """onnxruntime-genai's genai_config.json for GRAPH (the layout its model builder writes: model geometry,
    input/output names, search defaults from GENERATION), or None for a cache genai does not manage: it keeps
    per-head key/value tensors only, not a quantized cache's codes and row scales, MLA's latent or SSM states."""
    inputs = {i.name for i in graph.graph.input} - {i.name for i in graph.graph.initializer}
    past = [name for name in inputs if name.startswith("past_key_values.")]
    if any(re.fullmatch(r"past_key_values\.\d+\.(key|value)", name) is None for name in past):
        return None
    shares_buffer = any(n.op_type == "GroupQueryAttention" for n in graph.graph.node)
    names = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    if "position_ids" in inputs:
        names["position_ids"] = "position_ids"
    context = int(config.max_position_embeddings)
    head_size = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {
        "model": {
            "bos_token_id": config.bos_token_id,
            "context_length": context,
            "decoder": {
                # 0: ONNX Runtime's default, one intra-op thread per core; genai runs one thread when the config
                # names none (SmolLM2 keep, 2-core EPYC: 48 -> 73 decode tokens/s in genai's loop)
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": [],
                                    "intra_op_num_threads": 0},
                "filename": model_file,
                "head_size": head_size,
                "hidden_size": config.hidden_size,
                "inputs": {**names, "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": config.num_attention_heads,
                "num_hidden_layers": config.num_hidden_layers,
                "num_key_value_heads": config.num_key_value_heads,
            },
            "eos_token_id": config.eos_token_id,
            "pad_token_id": generation.pad_token_id,
            "type": config.model_type,
            "vocab_size": config.vocab_size,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": bool(generation.do_sample),
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": context,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": generation.num_beams or 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": shares_buffer,
            "repetition_penalty": generation.repetition_penalty or 1.0,
            "temperature": generation.temperature if generation.temperature is not None else 1.0,
            "top_k": generation.top_k if generation.top_k is not None else 50,
            "top_p": generation.top_p if generation.top_p is not None else 1.0,
        },
    }


def _first(ids: int | list[int] | None) -> int | None:
    return ids[0] if isinstance(ids, list) else ids
