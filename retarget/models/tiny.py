"""Tiny random models of every decoder family: `retarget compile tiny:NAME` without a download.

Each family is one transformers config class with the dimensions scaled down (hidden 64, 2-6 layers) and the
family's distinguishing features kept on: sliding windows of 16 tokens (a 64-step decode crosses them), MoE with
8 experts, shared experts, dense first layers and group-limited routing, attention sinks, NoPE and chunked layers.
The vocabulary is the bundled SmolLM2 tokenizer's, so the evaluation corpus tokenizes.

Weights come from the model's own initialiser under a fixed seed per family; then every constant parameter
(zero biases, unit norms, sinks) gets noise so the graph that reads it is exercised, and the final norm is scaled
so logits have std ~4 and greedy tokens are decided by margins far above float summation-order noise
(tests/models/test_tiny.py). Built in about a second each on 2 CPU cores (6.4M parameters, 6.3M of them the
49,152 x 64 embedding and lm_head).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from retarget.errors import RetargetError
from retarget.models.load import LoadedModel, default_model_path

HIDDEN = 64
LOGIT_STD = 4.0  # std of a logit over random hidden states: lm_head rows get std LOGIT_STD / sqrt(HIDDEN)
NOISE = {"norm": 0.1, "bias": 0.02, "sinks": 1.0}  # std of the noise added to constant parameters, by kind
FINAL_NORMS = ("norm", "final_layernorm")  # the decoder's last norm, by attribute name
TOKENIZER_CACHE = "RETARGET_CACHE"  # environment variable: where the GGUF's tokenizer is kept as tokenizer.json

_BASE: dict[str, Any] = {"hidden_size": HIDDEN, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                         "intermediate_size": 128, "num_hidden_layers": 2, "max_position_embeddings": 4096,
                         "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None,
                         "rms_norm_eps": 1e-6}
_MOE = {"num_local_experts": 8, "num_experts_per_tok": 2}


@dataclass(frozen=True)
class TinyFamily:
    """One tiny model: its HF model_type, the config fields that differ from the shared tiny base, and why."""

    model_type: str
    config: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    seed: int = 0

    def hf_config(self, vocab_size: int) -> Any:
        """The transformers config object (float32, eager attention)."""
        from transformers import AutoConfig

        cfg = AutoConfig.for_model(self.model_type, **{**_BASE, "vocab_size": vocab_size, **self.config})
        cfg._attn_implementation = "eager"
        return cfg


_MLA = {"q_lora_rank": 32, "kv_lora_rank": 32, "qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "v_head_dim": 16,
        "head_dim": 8, "num_key_value_heads": 4}

# seeds: the first of seed, seed + 100, ... whose 32-token greedy reply to compile's chat prompt keeps every
# top-1/top-2 logit gap above 0.03 (test_greedy_margins_far_above_float_noise checks > 0.01)
TINY: dict[str, TinyFamily] = {
    "llama": TinyFamily("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
                        "dense GQA, Llama 3 RoPE scaling", seed=201),
    "mistral": TinyFamily("mistral", {"sliding_window": 16}, "dense GQA, 16-token sliding window", seed=102),
    "qwen2": TinyFamily("qwen2", {}, "dense GQA with q/k/v biases", seed=203),
    "qwen3": TinyFamily("qwen3", {"tie_word_embeddings": True, "initializer_range": 0.1},
                        "dense GQA, q/k RMSNorm, tied embedding (wider init: layers outweigh the embedding)", seed=4),
    "qwen3-moe": TinyFamily("qwen3_moe", {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                                          "mlp_only_layers": [0], "norm_topk_prob": True, "num_hidden_layers": 3},
                            "q/k norm, 8 experts top-2 (softmax, renormalised), dense first layer", seed=205),
    "mixtral": TinyFamily("mixtral", {**_MOE, "intermediate_size": 32}, "8 experts top-2, softmax routing", seed=406),
    "glm-4.5": TinyFamily("glm4_moe", {"n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
                                       "moe_intermediate_size": 32, "first_k_dense_replace": 1, "n_group": 2,
                                       "topk_group": 1, "routed_scaling_factor": 2.5, "partial_rotary_factor": 0.5,
                                       "use_qk_norm": True, "attention_bias": True, "num_hidden_layers": 3},
                          "partial RoPE, q/k norm, qkv biases, sigmoid group-limited routing, shared expert, "
                          "dense first layer", seed=7),
    "gpt-oss": TinyFamily("gpt_oss", {**_MOE, "intermediate_size": 32, "sliding_window": 16, "num_hidden_layers": 4,
                                      "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0,
                                                       "beta_slow": 1.0, "truncate": False,
                                                       "original_max_position_embeddings": 512}},
                          "attention sinks, alternating 16-token window / full, biases everywhere, clamped SwiGLU "
                          "experts (fused 3-D, gate/up interleaved), YaRN", seed=308),
    "gemma-3": TinyFamily("gemma3_text", {"num_hidden_layers": 6, "sliding_window": 16, "query_pre_attn_scalar": 16,
                                          "tie_word_embeddings": True, "hidden_activation": "gelu_pytorch_tanh"},
                          "5 local (16-token window) : 1 global, q/k norm, sandwich norms, embedding scale, GeGLU",
                          seed=209),
    "llama-4": TinyFamily("llama4_text", {"num_hidden_layers": 4, "num_local_experts": 4, "num_experts_per_tok": 1,
                                          "intermediate_size": 32, "intermediate_size_mlp": 128,
                                          "interleave_moe_layer_step": 2, "attention_chunk_size": 16,
                                          "no_rope_layer_interval": 4, "floor_scale": 16, "use_qk_norm": True},
                          "chunked attention (16), NoPE every 4th layer with temperature tuning, L2 q/k norm, "
                          "sigmoid top-1 experts + shared expert on alternate layers (fused 3-D experts)", seed=410),
    "phi-3": TinyFamily("phi3", {"sliding_window": 16, "pad_token_id": None},
                        "fused qkv and gate/up projections, 16-token sliding window", seed=11),
    "olmoe": TinyFamily("olmoe", {"num_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 32,
                                  "norm_topk_prob": False},
                        "q/k norm over all heads, 8 experts top-2 without renormalisation", seed=212),
    "olmo-2": TinyFamily("olmo2", {}, "post-sublayer norms, q/k norm over all heads", seed=213),
    "hunyuan": TinyFamily("hunyuan_v1_moe", {"num_experts": 8, "moe_topk": 2, "intermediate_size": 32,
                                             "pad_token_id": 0},
                          "q/k norm, 8 experts top-2 + shared MLP", seed=414),
    "minimax": TinyFamily("minimax", {**_MOE, "intermediate_size": 32, "block_size": 16,
                                      "layer_types": ["linear_attention", "full_attention"]},
                          "lightning (linear) attention alternating with full attention, 8 experts top-2", seed=15),
    "longcat-flash": TinyFamily("longcat_flash", {**_MLA, "num_layers": 2, "num_hidden_layers": 4,
                                                  "ffn_hidden_size": 128, "n_routed_experts": 8, "moe_topk": 2,
                                                  "zero_expert_num": 4, "expert_ffn_hidden_size": 32,
                                                  "routed_scaling_factor": 6.0},
                                "MLA, two attentions per layer, zero-computation experts", seed=416),
    "deepseek-v3": TinyFamily("deepseek_v3", {**_MLA, "num_hidden_layers": 3,
                                              "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
                                              "moe_intermediate_size": 32, "first_k_dense_replace": 1, "n_group": 4,
                                              "topk_group": 2, "routed_scaling_factor": 2.5},
                              "MLA, sigmoid group-limited routing (4 groups, 2 picked), shared expert, dense first "
                              "layer", seed=417),
    "kimi-k2": TinyFamily("deepseek_v3", {**_MLA, "num_hidden_layers": 2,
                                          "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
                                          "moe_intermediate_size": 32, "first_k_dense_replace": 1, "n_group": 1,
                                          "topk_group": 1, "routed_scaling_factor": 2.827},
                          "DeepSeek-V3 layout with one expert group (no group limit)", seed=618),
    "falcon-h1": TinyFamily("falcon_h1", {"mamba_d_ssm": 64, "mamba_n_heads": 8, "mamba_d_head": 8,
                                          "mamba_d_state": 16, "mamba_chunk_size": 16, "mamba_expand": 1},
                            "parallel Mamba-2 and attention in every layer, muP multipliers", seed=119),
    "jamba": TinyFamily("jamba", {"num_hidden_layers": 4, "attn_layer_period": 2, "attn_layer_offset": 1,
                                  "expert_layer_period": 2, "expert_layer_offset": 1, "num_experts": 4,
                                  "num_experts_per_tok": 2, "use_mamba_kernels": False, "mamba_d_state": 8,
                                  "mamba_dt_rank": 8, "pad_token_id": 0},
                        "Mamba layers with attention every 2nd layer, 4 experts top-2 every 2nd layer", seed=220),
}


def tiny_names() -> list[str]:
    """Every tiny family's name, in registry order."""
    return list(TINY)


def get_family(name: str) -> TinyFamily:
    """The family called NAME (RetargetError naming the known ones otherwise)."""
    if name not in TINY:
        raise RetargetError(f"unknown tiny model {name!r}; known: {', '.join(TINY)}", field="MODEL")
    return TINY[name]


def _tokenizer_folder() -> Path:
    """A folder holding the bundled GGUF's tokenizer as tokenizer.json: parsing the GGUF takes ~20 s, so the
    converted files are kept in $RETARGET_CACHE (default ~/.cache/retarget), keyed by the GGUF's size and mtime."""
    gguf = default_model_path()
    stat = gguf.stat()
    root = Path(os.environ.get(TOKENIZER_CACHE) or Path.home() / ".cache" / "retarget")
    folder = root / f"tokenizer-{gguf.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not (folder / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        from retarget.outdir import atomic_dir

        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(folder) as tmp:
            tokenizer.save_pretrained(tmp)
    return folder


@cache
def tiny_tokenizer() -> Any:
    """The bundled SmolLM2 tokenizer (loaded once per process)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_tokenizer_folder())


def build_tiny(name: str) -> Any:
    """The float32 eval-mode transformers model of family NAME, identical on every call."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    family = get_family(name)
    config = family.hf_config(len(tiny_tokenizer()))
    hf_logging.set_verbosity_error()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(family.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        _perturb_constants(model)
        _scale_logits(model)
    return model.eval()


def _perturb_constants(model: Any) -> None:
    """Add noise to every constant float tensor that an initialiser leaves all-equal (zero biases, unit or zero
    norm weights, sinks, router correction biases), so a graph that drops or misreads one fails parity."""
    import torch

    tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers()
                                                if n.endswith("bias") and b.is_floating_point()]
    with torch.no_grad():
        for name, tensor in tensors:
            if tensor.numel() < 2 or tensor.min() != tensor.max():
                continue
            kind = "sinks" if name.endswith("sinks") else "bias" if "bias" in name else "norm"
            tensor.add_(torch.randn_like(tensor) * NOISE[kind])


def _scale_logits(model: Any) -> None:
    """Scale the final norm so a logit over unit-RMS hidden states has std LOGIT_STD (the lm_head and a tied
    embedding keep their initial scale, so the residual stream is not dominated by the token's own embedding)."""
    import torch

    head_std = model.get_output_embeddings().weight.std().item()
    factor = LOGIT_STD / (head_std * model.config.hidden_size**0.5)
    norm = next(getattr(model.model, n) for n in FINAL_NORMS if hasattr(model.model, n))
    with torch.no_grad():
        if type(norm).__name__.startswith("Gemma"):  # Gemma's norms multiply by (1 + weight)
            norm.weight.copy_((1 + norm.weight) * factor - 1)
        else:
            norm.weight.mul_(factor)


def load_tiny(name: str) -> LoadedModel:
    """Family NAME as a LoadedModel (source_format "tiny"; its path is the pseudo-path `tiny:NAME`)."""
    return LoadedModel(f"tiny-{name}", Path(f"tiny:{name}"), "tiny", build_tiny(name), tiny_tokenizer())


def save_tiny(name: str, folder: Path) -> Path:
    """Write family NAME as a Hugging Face folder (config.json, model.safetensors, tokenizer files)."""
    folder = Path(folder)
    model = build_tiny(name)
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def greedy_margins(model: Any, input_ids: Any, steps: int = 32) -> tuple[list[int], list[float]]:
    """Greedy-decode STEPS tokens after INPUT_IDS [1, L] with the KV cache; returns the tokens and, per step,
    the gap between the top two logits (how far a token is from flipping under a perturbation)."""
    import torch

    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=steps,
                             min_new_tokens=steps, do_sample=False, output_logits=True, return_dict_in_generate=True,
                             pad_token_id=0)
    margins = [float(top[0] - top[1]) for top in (lg[0].topk(2).values for lg in out.logits)]
    return out.sequences[0, input_ids.shape[1]:].tolist(), margins
