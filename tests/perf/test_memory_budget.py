"""How much of a device's memory a serving engine gives its KV cache, against hand arithmetic: capacity in
binary GB, vLLM's pool (90% of the device less weights and activations) and TensorRT-LLM's (90% of what the
weights and activations leave, https://nvidia.github.io/TensorRT-LLM/examples/kvcacheconfig.html)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from retarget.hw_profiles import load_profile
from retarget.perf import predict
from retarget.perf.model import USABLE_MEMORY, activation_bytes, generation_tokens_s, resolve_formats, weight_bytes
from retarget.perf.validate import max_batch, model_spec, plan_row, predict_plan

ROW = {"source_url": "https://example.org/t", "model": "Llama-3.1-70B", "params": "70B",
       "quant_format": "FP8 (some checkpoint)", "hardware": "NVIDIA H100 SXM 80GB", "num_devices": "1",
       "phase": "offline-throughput", "batch_size": "max", "input_len": "1000", "output_len": "1000",
       "metric": "output tokens/s", "value": "100"}


def test_an_fp8_70b_model_fits_one_h100_of_80_gib() -> None:
    """Llama-3.1-70B in FP8 (bf16 embedding and head) is about 72.7 GB: over 90% of 80e9 bytes, under 90% of
    80 GiB."""
    spec, h100 = model_spec("llama-3.1-70b"), load_profile("h100-sxm")
    weights = weight_bytes(spec, resolve_formats("fp8", "fp8", None))
    assert 0.9 * 80e9 < weights < 0.9 * 80 * 2**30
    assert predict(spec, h100, batch=1, ctx=2000, prompt_len=1000, weight_format="fp8", kv_format="fp8").memory.fits


@pytest.mark.parametrize("engine_label", ["vLLM 0.6.3 (TP 1)", "TensorRT-LLM 1.0 (TP1; PyTorch backend)"])
def test_kv_pool_per_engine(engine_label: str) -> None:
    """Sequences of 2000 tokens in the pool: (0.9 x 80 GiB - placed) for vLLM, 0.9 x (80 GiB - placed) for
    TensorRT-LLM, each over the FP8 cache of one sequence (80 layers x 8 KV heads x 128 x 2 x 1 byte a token)."""
    plan = plan_row({**ROW, "engine": engine_label})
    spec = plan.spec
    fmts = resolve_formats("fp8", plan.kwargs["kv_format"], None)
    placed = activation_bytes(spec, plan.max_batch, 1000, 1) + weight_bytes(spec, fmts)
    per_seq = 2000 * 80 * 8 * 128 * 2 * fmts["kv"].bytes
    capacity = 80 * 2**30
    pool = 0.9 * (capacity - placed) if engine_label.startswith("TensorRT") else USABLE_MEMORY * capacity - placed
    assert max_batch(plan) == min(plan.max_batch, int(pool // per_seq))


def test_predict_fits_by_the_engines_own_pool() -> None:
    """12 sequences of 4096 tokens of Llama-3.1-70B in FP8 (7.9 GB of FP8 cache) on one H100: more than vLLM's
    pool (90% of 80 GiB less 72.7 GB of weights and the activations), less than TensorRT-LLM's (90% of what
    they leave); the vLLM-style engine needs a second device."""
    spec, h100 = model_spec("llama-3.1-70b"), load_profile("h100-sxm")
    kw = dict(batch=12, ctx=4096, prompt_len=4096, weight_format="fp8", kv_format="fp8")
    kv = 12 * 4096 * 80 * 8 * 128 * 2 * 1.0
    trt, vllm = (predict(spec, h100, engine=e, **kw).memory for e in ("tensorrt-llm", "tuned"))
    assert trt.kv_cache_gb * 1e9 == pytest.approx(kv)
    placed = (trt.per_device_gb - trt.kv_cache_gb) * 1e9
    assert trt.usable_per_device_gb * 1e9 == pytest.approx(placed + 0.9 * (80 * 2**30 - placed))
    assert vllm.usable_per_device_gb * 1e9 == pytest.approx(0.9 * 80 * 2**30)
    assert trt.fits and not vllm.fits and vllm.devices_needed == 2


def test_expert_parallel_devices_hold_every_non_expert_weight() -> None:
    """Under expert parallelism (attention data-parallel) each of 8 devices holds all non-expert weights of
    DeepSeek-V3 (attention, dense layers, shared experts, embedding and head) and 1/8 of the routed experts, and
    1/8 of the sequences' latent cache; the KV pool is what that leaves, not what splitting every weight 8 ways
    would leave."""
    long = {**ROW, "model": "DeepSeek-V3/R1", "num_devices": "8", "hardware": "NVIDIA B200 180GB",
            "input_len": "16000", "output_len": "16000", "engine": "TensorRT-LLM 1.0 (DEP: DEP8; PyTorch backend)"}
    plan = plan_row(long)
    spec, fmts = plan.spec, resolve_formats("fp8", plan.kwargs["kv_format"], None)
    assert plan.kwargs["parallelism"] == "ep"
    assert spec.expert_params == 58 * 256 * 3 * 7168 * 2048  # 58 MoE layers of 256 routed experts
    experts = spec.expert_params * fmts["experts"].bytes
    weights = weight_bytes(spec, fmts)
    act = activation_bytes(spec, plan.max_batch, 16000, 8)
    capacity = load_profile("b200").memory_bytes
    per_seq = 61 * (512 + 64) * fmts["kv"].bytes * 32000 / 8  # one latent + rope key a token and layer
    held = 0.9 * (capacity - act - (weights - experts) - experts / 8) // per_seq
    split = 0.9 * (capacity - act - weights / 8) // per_seq
    assert max_batch(plan) == int(held) < int(split) < plan.max_batch


@pytest.mark.parametrize("prompts", [40, 1000])
def test_offline_run_processes_its_stated_prompts_in_waves_of_what_fits(prompts: int) -> None:
    """An offline run that states its prompt count hands them all over at once: the engine runs waves of what
    its KV pool holds, so the run's throughput is prompts x output over the summed time of the full waves and
    the last partial one, each timed at its own batch by generation_tokens_s."""
    plan = plan_row({**ROW, "num_devices": "4",
                     "engine": f"vLLM 0.6.3 (TP 4; offline benchmark_throughput, {prompts} prompts)"})
    fits = max_batch(plan)
    assert 40 < fits < 1000  # one case below the pool, one above it
    full, rest = divmod(prompts, fits)
    k = {key: plan.kwargs[key] for key in ("devices", "weight_format", "kv_format", "engine", "parallelism")}
    seconds = sum(waves * size * 1000 / generation_tokens_s(plan.spec, plan.profile, batch=size, input_len=1000,
                                                            output_len=1000, **k)
                  for waves, size in ((full, fits), (1, rest)) if waves and size)
    assert predict_plan(plan)[0] == pytest.approx(prompts * 1000 / seconds)


@pytest.mark.parametrize("engine_label", ["TensorRT-LLM 1.2.0 (trtllm-serve", "SGLang v0.5.3 (launch_server"])
def test_serving_engines_admit_only_requests_whose_cache_fits(engine_label: str) -> None:
    """100 prompts of 32000 tokens sent at once to Qwen3-32B in BF16 on one A100 80GB: the 65.5 GB of weights
    leave room for the cache (256 kB a token, 8.2 GB a request) of one or two requests, so TensorRT-LLM (its
    default GUARANTEED_NO_EVICT policy) and SGLang run what the KV pool holds and queue the rest."""
    plan = plan_row({**ROW, "model": "Qwen3-32B", "quant_format": "BF16 (--dtype auto)",
                     "hardware": "NVIDIA A100 SXM 80GB", "phase": "decode", "batch_size": "100",
                     "input_len": "32000", "output_len": "79", "metric": "TPOT ms",
                     "engine": f"{engine_label}; 100 prompts at --max-concurrency 100)"})
    assert plan.spec.kv_cache_bytes(1, 2) == 64 * 8 * 128 * 2 * 2  # 64 layers, 8 KV heads of 128, K and V
    concurrent = predict_plan(plan)[1]["concurrent"]
    assert concurrent in (1, 2) and concurrent == max_batch(replace(plan, max_batch=100))
