"""What a measurement row's labels say about the checkpoint and the run. Meta's FP8 Llama 3.1 405B keeps its
attention in BF16 (The Llama 3 Herd of Models, sec. 6.2): weight bytes and decode traffic against transformers'
own parameter count of the attention sublayers and hand arithmetic. A stated FP8 KV cache, speculative decoding
and Q4_1 files."""

from __future__ import annotations

import pytest
import torch
import transformers

from retarget.hw_profiles import load_profile
from retarget.models.spec import ModelSpec
from retarget.perf import predict
from retarget.perf.model import resolve_formats, weight_bytes
from retarget.perf.validate import model_spec, plan_row

ROW = {"source_url": "https://example.org/t", "model": "Llama-3.1-405B", "params": "405B",
       "hardware": "NVIDIA H100 SXM 80GB", "num_devices": "8", "engine": "vLLM 0.6.3.post2 (TP 8)",
       "phase": "decode", "batch_size": "4", "input_len": "128", "output_len": "2048",
       "metric": "output tokens/s", "value": "100"}


def _transformers_attention_params(spec_config: dict) -> int:
    """Parameters of every layer's self-attention projections, counted by transformers."""
    config = transformers.LlamaConfig(**spec_config)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    return sum(p.numel() for name, p in model.named_parameters()
               if ".self_attn." in name)


def test_attention_params_match_transformers() -> None:
    """A small GQA Llama: attention_params counts what transformers' LlamaAttention holds, for every layer."""
    small = dict(hidden_size=256, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
                 intermediate_size=512, vocab_size=1000, tie_word_embeddings=False)
    spec = ModelSpec.from_hf_config({"model_type": "llama", **small})
    assert spec.attention_params == _transformers_attention_params(small)


def test_meta_fp8_checkpoint_keeps_attention_wide() -> None:
    """The format rule reads Meta's checkpoint name: FP8 matrices, BF16 attention projections, BF16 KV."""
    plan = plan_row({**ROW, "quant_format": "FP8 (meta-llama/Llama-3.1-405B-FP8 checkpoint)"})
    assert (plan.kwargs["weight_format"], plan.kwargs["attention_format"]) == ("fp8", "bf16")
    other = plan_row({**ROW, "quant_format": "FP8 (amd/Llama-3.1-405B-Instruct-FP8-KV Quark checkpoint)"})
    assert other.kwargs["attention_format"] is None


def test_wide_attention_adds_its_bytes_to_weights_and_decode() -> None:
    """Llama-3.1-405B: 126 layers of q/o 16384^2 and k/v 16384 x 1024 projections are one byte wider
    each; a batch-1 decode step on 8 x H100 reads 1/8 of those extra bytes per device at the memory rate."""
    spec = model_spec("llama-3.1-405b")
    extra = 126 * (2 * 16384 * 16384 + 2 * 16384 * 1024)
    assert spec.attention_params == extra
    fp8, mixed = resolve_formats("fp8", "bf16", None), resolve_formats("fp8", "bf16", None, "bf16")
    assert weight_bytes(spec, mixed) - weight_bytes(spec, fp8) == pytest.approx(extra)
    h100 = load_profile("h100-sxm")
    ideal = {"compute": 100.0, "memory": 1.0, "overhead_us_per_layer": 0.0}
    kw = dict(batch=1, ctx=1, prompt_len=1, devices=8, weight_format="fp8", kv_format="bf16",
              engine_factors=ideal)
    gemm = {name: next(op for op in predict(spec, h100, attention_format=fmt, **kw).decode.ops
                       if op.op_class == "gemm") for name, fmt in (("fp8", None), ("mixed", "bf16"))}
    assert gemm["mixed"].bytes - gemm["fp8"].bytes == pytest.approx(extra / 8, rel=1e-6)


def test_row_labels_state_kv_cache_and_speculative_decoding() -> None:
    """A stated `--kv-cache-dtype fp8` sets the cache format whatever the engine's default; a run with speculative
    decoding is skipped with the reason; a Q4_1 GGUF is read at ggml's 20 bytes per 32 weights."""
    base = {**ROW, "model": "Llama-3.1-8B", "num_devices": "1", "quant_format": "FP8 (some checkpoint)"}
    assert plan_row(base).kwargs["kv_format"] == "bf16"
    assert plan_row({**base, "engine": "vLLM 0.5.4 (TP 1; --kv-cache-dtype fp8)"}).kwargs["kv_format"] == "fp8"
    skipped = plan_row({**base, "engine": "TensorRT-LLM (TP 8; MTP speculative decoding, 3 draft tokens)"})
    assert isinstance(skipped, str) and skipped.startswith("speculative decoding")
    gguf = plan_row({**base, "engine": "llama.cpp (CUDA, build 5000)", "quant_format": "Q4_1 (llama 8B Q4_1)"})
    assert gguf.kwargs["weight_format"] == "q4_1"


# llama.cpp's quantize tool: file size in GiB of Llama-3-8B (8.03B weights) per type (QUANT_OPTIONS, quantize.cpp)
QUANTIZE_TOOL_GIB = {"q2_k": 2.96, "q3_k_s": 3.41, "q3_k_m": 3.74, "q3_k_l": 4.03, "q4_k_s": 4.37, "q4_k_m": 4.58,
                     "q5_k_s": 5.21, "q5_k_m": 5.33, "q6_k": 6.14, "q5_0": 5.21, "q5_1": 5.65}


@pytest.mark.parametrize("name", sorted(QUANTIZE_TOOL_GIB))
def test_gguf_types_match_the_quantize_tools_file_sizes(name: str) -> None:
    """Each GGUF type's bits per weight, whether from its block layout (q5_0, q5_1, q6_k) or from the file size
    (the k-quant mixes), matches the size llama.cpp's quantize tool lists for Llama-3-8B within 1.5% (the block
    types' files keep the LM head in a wider type); a row or a GGUF file type naming it maps to it."""
    from retarget.models.from_gguf import FILE_TYPES
    from retarget.perf.formats import get_format

    assert get_format(name).bits == pytest.approx(QUANTIZE_TOOL_GIB[name] * 2**30 * 8 / 8.03e9, rel=0.015)
    assert name in FILE_TYPES.values()
    base = {**ROW, "model": "Llama-3.1-8B", "num_devices": "1", "engine": "llama.cpp (CUDA, build 5000)"}
    label = f"{name.upper()} (llama 8B {name.upper()})"
    assert plan_row({**base, "quant_format": label}).kwargs["weight_format"] == name


@pytest.mark.parametrize("name, bpw", [("iq4_nl", 4.50), ("iq4_xs", 4.25)])
def test_non_linear_gguf_types_take_the_quantize_tools_bits(name: str, bpw: float) -> None:
    """llama.cpp's quantize tool states the IQ4 types in bits per weight ("4.50 bpw non-linear quantization");
    their GGUF file types (25, 30) and row labels map to them."""
    from retarget.models.from_gguf import FILE_TYPES
    from retarget.perf.formats import get_format

    assert get_format(name).bits == bpw
    assert FILE_TYPES[{"iq4_nl": 25, "iq4_xs": 30}[name]] == name
    base = {**ROW, "model": "Llama-3.1-8B", "num_devices": "1", "engine": "llama.cpp (CUDA, build 5000)"}
    label = f"{name.upper()} (llama 8B {name.upper()})"
    assert plan_row({**base, "quant_format": label}).kwargs["weight_format"] == name
