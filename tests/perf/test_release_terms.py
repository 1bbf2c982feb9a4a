"""Release terms and KV placement, each against a hand-computed case: the KV cache per device under tensor
parallelism, the tile cost of few-token experts, TF32 SGEMM prompts, inherited engines, engine rules by label,
source and format, outliers by substring."""

from __future__ import annotations

import pytest

from retarget.hw_profiles import load_profile
from retarget.models.registry import get_spec
from retarget.perf import predict
from retarget.perf.efficiency import efficiency, engine_entry, kernel_attributes
from retarget.perf.model import cache_bytes_per_device, tile_share
from retarget.perf.ops import Step
from retarget.perf.validate import is_outlier, plan_row

IDEAL = {"compute": 100.0, "memory": 100.0, "overhead_us_per_layer": 0.0}
ROW = {"source_url": "https://example.org/t", "num_devices": "1", "phase": "decode", "batch_size": "1",
       "input_len": "0", "output_len": "128", "metric": "tokens/s", "value": "100"}


def test_mla_latent_is_copied_on_every_tensor_parallel_rank() -> None:
    """DeepSeek-V3 caches 512 + 64 values per layer and token (61 layers, bf16): 70,272 bytes a token, all of
    them on each of 8 ranks; split over a layer split or expert-parallel (data-parallel attention) devices."""
    spec = get_spec("deepseek-v3")
    per_token = 61 * (512 + 64) * 2
    assert cache_bytes_per_device(spec, 1000, 2, 8, "tp") == pytest.approx(1000 * per_token)
    assert cache_bytes_per_device(spec, 1000, 2, 8, "pp") == pytest.approx(1000 * per_token / 8)
    assert cache_bytes_per_device(spec, 1000, 2, 8, "ep") == pytest.approx(1000 * per_token / 8)


def test_gqa_cache_splits_by_kv_head_and_is_copied_beyond_them() -> None:
    """Llama-3.1-70B (8 KV heads of 128, 80 layers): split 8 ways on TP8, each rank keeps 1/8; Qwen3-235B-A22B
    (4 KV heads, 94 layers) on TP8 keeps 1/4 per rank: two ranks share each KV head."""
    llama, qwen = get_spec("llama-3.1-70b"), get_spec("qwen3-235b-a22b")
    assert cache_bytes_per_device(llama, 100, 2, 8) == pytest.approx(100 * 80 * 2 * 8 * 128 * 2 / 8)
    assert cache_bytes_per_device(qwen, 100, 2, 8) == pytest.approx(100 * 94 * 2 * 4 * 128 * 2 / 4)
    assert cache_bytes_per_device(llama, 100, 2, 1) == pytest.approx(llama.kv_cache_bytes(100, 2))


def test_copied_caches_fill_memory() -> None:
    """DeepSeek-V3 on 8 x H200 at batch 64 and 4k tokens: each device holds its eighth of the weights, its
    activations and the whole latent cache of all 64 sequences (eight copies in all)."""
    spec, h200 = get_spec("deepseek-v3"), load_profile("h200-sxm")
    mem = predict(spec, h200, batch=64, ctx=4096, devices=8, weight_format="fp8").memory
    latent = 64 * 4096 * 61 * 576 * 2
    assert mem.kv_cache_gb * 1e9 == pytest.approx(8 * latent, rel=1e-9)
    assert (mem.per_device_gb - mem.weights_gb / 8 - mem.activations_gb) * 1e9 == pytest.approx(latent, rel=1e-9)


def test_few_tokens_per_expert_pay_the_tile_cost() -> None:
    """gpt-oss-120b (128 experts, top-4) in a 512-token forward: 16 tokens per expert; with a tile cost worth
    32 tokens its experts run at (16 / 48) / (512 / 544) of the dense per-token rate; none for <= 8 tokens."""
    spec = get_spec("gpt-oss-120b")
    eff = efficiency("nvidia-blackwell", "llama.cpp", {**IDEAL, "moe_tile_tokens": 32.0})
    assert tile_share(spec, Step(1, 512, 0), eff) == pytest.approx((16 / 48) / (512 / 544))
    assert tile_share(spec, Step(8, 1, 100), eff) == 1.0
    assert tile_share(get_spec("llama-3.1-8b"), Step(1, 512, 0), eff) == 1.0


def test_sgemm_builds_run_prompts_at_the_tf32_peak() -> None:
    """llama.cpp's CUDA builds before the fp16 cuBLAS path ran prompt matmuls as SGEMM with TF32 allowed: with
    ideal efficiency the A100's prefill GEMMs run at its TF32 peak (156 TFLOPS), whatever the weight format."""
    spec, a100 = get_spec("llama-2-7b"), load_profile("a100-80g-pcie")
    ops = predict(spec, a100, batch=1, ctx=512, prompt_len=512, weight_format="q4_0", kv_format="fp16",
                  engine="llama.cpp-2023-sgemm", engine_factors=IDEAL).prefill.ops
    gemm = next(op for op in ops if op.op_class == "gemm")
    assert gemm.time_s == pytest.approx(gemm.flops / (a100.peak_tflops["tf32"] * 1e12), rel=1e-9)


def test_block_scaled_fp8_runs_on_the_releases_block_kernels() -> None:
    """Releases before DeepGEMM (`vllm-v0` here) run 128 x 128 block-scaled FP8 prompt matmuls at 0.6 of the bf16
    peak (vLLM PR 23280's H100 table); per-tensor FP8 on that engine, and block FP8 on `tuned`, keep the FP8 peak."""
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")

    def gemm(fmt: str, engine: str):
        ops = predict(spec, h100, batch=1, ctx=512, prompt_len=4096, weight_format=fmt, kv_format="bf16",
                      engine=engine, engine_factors=IDEAL).prefill.ops
        return next(op for op in ops if op.op_class == "gemm")

    block = gemm("fp8-e4m3-block128", "vllm-v0")
    assert block.time_s == pytest.approx(block.flops / (h100.peak_tflops["bf16"] * 0.6 * 1e12), rel=1e-9)
    fp8, narrow = gemm("fp8", "vllm-v0"), efficiency("nvidia-hopper", "vllm-v0").narrow_float_gemm
    assert fp8.time_s == pytest.approx(fp8.flops / (h100.peak_tflops["fp8_e4m3"] * narrow * 1e12), rel=1e-9)
    assert gemm("fp8-e4m3-block128", "tuned").time_s == pytest.approx(gemm("fp8", "tuned").time_s, rel=1e-9)
    assert kernel_attributes("vllm-rocm")["block_fp8_vs_bf16"] == 0.6  # the V0 engine on ROCm: the same kernels


def test_an_engine_inherits_its_parents_factors_and_attributes() -> None:
    awq, parent = engine_entry("vllm-v0-awq"), engine_entry("vllm-v0")
    assert awq == {**parent, "memory": awq["memory"]} and awq["memory"] < parent["memory"]
    assert kernel_attributes("vllm-v0-awq") == kernel_attributes("vllm-v0")
    assert engine_entry("vllm-v0")["overhead_us_per_layer"] == engine_entry("tuned")["overhead_us_per_layer"]
    rocm = engine_entry("vllm-rocm")  # the V0 engine on ROCm: vllm-v0's fused-MoE cost, its own scales
    assert rocm["moe_overhead_us_per_expert"] == engine_entry("vllm-v0")["moe_overhead_us_per_expert"]
    assert rocm["compute"] != engine_entry("vllm-v0")["compute"]


@pytest.mark.parametrize("fields, engine", [
    ({"engine": "vLLM 0.4.2 (CUDA graphs; TP 1)", "quant_format": "AWQ (Qwen's -AWQ checkpoint)"}, "vllm-v0-awq"),
    ({"engine": "vLLM 0.4.2 (CUDA graphs; TP 1)", "quant_format": "GPTQ-Int4 (Qwen's checkpoint)"}, "vllm-v0"),
    ({"engine": "vLLM 0.6.3 (CUDA graphs; TP 1)", "quant_format": "AWQ (Qwen's -AWQ checkpoint)"}, "vllm-v0"),
    ({"engine": "llama.cpp (Metal)", "source_url": "https://github.com/ggml-org/llama.cpp/pull/2917"},
     "llama.cpp-metal-2023"),
    ({"engine": "llama.cpp (Metal)", "source_url": "https://github.com/ggml-org/llama.cpp/pull/3084"},
     "llama.cpp-metal"),
    ({"engine": "llama.cpp (CUDA, Jul-2023 build 845)"}, "llama.cpp-2023-sgemm"),
    ({"engine": "llama.cpp (CUDA, Dec-2023 build, main timings)"}, "llama.cpp-2023"),
    ({"engine": "vLLM (ROCm) 0.6.4 (--enforce-eager; TP 8)", "hardware": "AMD Instinct MI300X 192GB"},
     "vllm-eager"),
    ({"engine": "vLLM (ROCm) 0.6.4 (TP 8)", "hardware": "AMD Instinct MI300X 192GB"}, "vllm-rocm"),
    ({"engine": "vLLM (ROCm) v0.6.1 (built from the v0.6.1 tag with Dockerfile.rocm; TP 1)",
      "hardware": "AMD Instinct MI300X 192GB"}, "vllm-rocm-upstream"),
    ({"engine": "SGLang v0.4.1.post2", "model": "DeepSeek-V3", "quant_format": "FP8 (block)"}, "sglang-0.4.1"),
    ({"engine": "SGLang 0.4.6.post1"}, "sglang-0.4"),
    ({"engine": "SGLang 0.4.3.post2 (TP 8; bench_one_batch)"}, "sglang-0.4.1"),
    ({"engine": "SGLang 0.4.2.post4 (ROCm; TP 8)", "hardware": "AMD Instinct MI300X 192GB"}, "sglang-0.4.1"),
    ({"engine": "SGLang 0.4.3.post2 (TP 8; CUDA graphs off (--disable-cuda-graph))"}, "sglang-eager"),
    ({"engine": "vLLM 0.9.0.1 (V1 engine (0.9 default); TP 16)"}, "vllm-0.9"),
    ({"engine": "vLLM 0.8.2 (TP 8; CUDA graphs off (--enforce-eager); bench_serving)"}, "vllm-eager"),
    ({"engine": "vLLM (ROCm) 0.9.1 (rocm/vllm-dev 20250620_aiter release, V1 engine, TP8, benchmark_latency)",
      "hardware": "AMD Instinct MI300X 192GB"}, "vllm-rocm-v1"),
    ({"engine": "vLLM (ROCm) rocm/vllm:latest of Aug 2025 (V1 via VLLM_USE_V1=1; TP8)",
      "hardware": "AMD Instinct MI300X 192GB"}, "vllm-rocm-v1"),
    ({"engine": "vLLM (ROCm) v0.9.2.dev364 (V0 engine, VLLM_USE_V1=0; TP1)", "hardware": "AMD Instinct MI300X 192GB"},
     "vllm-rocm"),
    ({"engine": "vLLM v0.15.1 (V1 engine; TP8; vllm bench serve, 640 prompts at --max-concurrency 64)"}, "vllm-v1"),
    ({"engine": "vLLM 0.10.1.1 (V1 engine; TP1; vllm bench latency)"}, "vllm-v1"),
    ({"engine": "vLLM 0.23.0 (V1 engine; TP 1; vllm bench serve, 8 prompts at --max-concurrency 1)"}, "vllm-v1"),
    ({"engine": "vLLM 0.2.7 (TP 2)"}, "vllm-v0"),
    ({"engine": "vLLM (ROCm) v0.11.1rc (V1 engine; TP8; vllm bench latency)",
      "hardware": "AMD Instinct MI300X 192GB"}, "vllm-rocm-v1"),
    ({"engine": "TensorRT-LLM 1.2.0 (PyTorch backend; DEP4 = attention data parallel 4 + expert parallel 4)"},
     "tensorrt-llm"),
    ({"engine": "SGLang v0.5.12 (image lmsysorg/sglang:v0.5.12-cu130; TP8)"}, "sglang-0.5"),
    ({"engine": "SGLang v0.5.12 (ROCm build; image lmsysorg/sglang:v0.5.12-rocm700-mi30x; TP8)"}, "sglang-0.5-mi30x"),
    ({"engine": "SGLang v0.5.12 (ROCm build; image lmsysorg/sglang:v0.5.12-rocm700-mi35x; TP8)"}, "sglang-0.5"),
    ({"engine": "ATOM v0.1.1 (ROCm/ATOM openai_server; TP8)", "hardware": "AMD Instinct MI355X"}, "atom"),
])
def test_engine_rules_match_label_source_and_format(fields: dict[str, str], engine: str) -> None:
    row = {**ROW, "model": "Llama-2-7B", "quant_format": "FP16", "hardware": "NVIDIA A100 80GB PCIe", **fields}
    if "Metal" in row["engine"]:
        row["hardware"] = "Apple M2 Ultra (76-core GPU, 192GB)"
    assert plan_row(row).kwargs["engine"] == engine


def test_outliers_match_by_substring_without_a_value() -> None:
    """SGLang 0.4.6's GPTQ path for MoE models was broken (sglang issue 6313): every such row is left out,
    a dense GPTQ row of the same table is not."""
    row = {**ROW, "model": "Qwen3-30B-A3B", "quant_format": "GPTQ-INT4 (Qwen's -GPTQ-Int4 checkpoint)",
           "hardware": "NVIDIA H20 96GB", "engine": "SGLang 0.4.6.post1 (sgl-kernel 0.1.0)", "value": "31.27"}
    assert "6313" in is_outlier(row)
    assert is_outlier({**row, "value": "30.03"})
    assert not is_outlier({**row, "model": "Qwen3-32B"})
    assert not is_outlier({**row, "quant_format": "FP8 (Qwen's -FP8 checkpoint)"})


def test_geforce_blackwell_accumulates_fp16_at_twice_the_fp32_accumulate_rate() -> None:
    for name in ("rtx-5080", "rtx-5090"):
        peaks = load_profile(name).peak_tflops
        assert peaks["fp16_acc16"] == pytest.approx(2 * peaks["fp16"], rel=1e-3)


@pytest.mark.parametrize("engine,parallelism,cached", [
    ("TensorRT-LLM 1.2.0 (PyTorch backend; DEP4 = attention data parallel 4 + expert parallel 4)", "ep", False),
    ("TensorRT-LLM 1.2.0 (PyTorch backend; pipeline parallel TP1 x PP4)", "pp", False),
    ("vLLM (ROCm) v0.11.1rc (V1 engine; TP8; vllm bench latency)", "tp", True),
    ("SGLang 0.4.3.post2 (TP 8; --enable-dp-attention (DP 8 attention))", "ep", False),
    ("vLLM (ROCm) v0.11.1rc (V1 engine; TP8; vllm bench throughput)", "tp", False),
    ("vLLM (ROCm) 0.9.1 (V1 engine, full CUDA graph compilation config, TP8, benchmark_latency)", "tp", True),
    ("vLLM (ROCm) 0.9.1 (V1 engine, TP8, benchmark_throughput)", "tp", False),
])
def test_release_labels_state_the_parallel_layout_and_the_prompt_cache(engine: str, parallelism: str,
                                                                       cached: bool) -> None:
    """Layouts and the V1 prompt cache are read from the label, whatever words come before them."""
    row = {**ROW, "model": "Llama-3.1-70B-Instruct", "quant_format": "FP8", "hardware": "AMD Instinct MI300X 192GB",
           "num_devices": "4", "engine": engine}
    plan = plan_row(row)
    assert plan.kwargs["parallelism"] == parallelism and plan.cached_prompt is cached


def test_amd_mxfp4_checkpoints_of_dense_models_quantise_every_linear_layer() -> None:
    """AMD's Quark MXFP4 Llama checkpoints are MXFP4 throughout (LM head aside); gpt-oss's MXFP4 is its experts'."""
    row = {**ROW, "model": "Llama-3.3-70B-Instruct", "hardware": "AMD Instinct MI355X",
           "engine": "vLLM (ROCm) main of Nov 2025 (--kv-cache-dtype fp8)",
           "quant_format": "MXFP4 (amd/Llama-3.3-70B-Instruct-MXFP4-Preview), FP8 KV cache"}
    dense = plan_row(row).kwargs
    assert (dense["weight_format"], dense["kv_format"]) == ("mxfp4", "fp8")
    moe = plan_row({**row, "model": "gpt-oss-120b", "quant_format": "MXFP4 (openai/gpt-oss-120b native)"}).kwargs
    assert (moe["weight_format"], moe["expert_format"]) == ("bf16", "mxfp4")
