"""The analytic model against hand-computed rooflines and published architecture facts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retarget.hw_profiles import list_profiles, load_profile
from retarget.models.registry import get_spec, load_registry
from retarget.perf import predict
from retarget.perf.ops import Step, attention_pairs, expected_experts, step_costs

IDEAL = {"compute": 100.0, "memory": 100.0, "overhead_us_per_layer": 0.0}  # every efficiency capped at 1.0
H100_BW, H100_BF16 = 3.35e12, 989.5e12  # NVIDIA H100 SXM datasheet (dense), as in hw_specs.csv


def test_llama8b_decode_is_weights_over_bandwidth() -> None:
    """Batch-1 decode at peak efficiency = (weights + KV cache) / HBM bandwidth, from published sizes."""
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    pred = predict(spec, h100, batch=1, ctx=4096, engine_factors=IDEAL)
    embedding = 128256 * 4096  # vocab x hidden: a gather of one row, not streamed
    weights = (8.03e9 - embedding) * 2  # Meta's 8.03B parameters in bf16
    kv = 4096 * 32 * 2 * 8 * 128 * 2  # ctx x layers x (K,V) x kv_heads x head_dim x bytes
    hand = (weights + kv) / H100_BW
    assert pred.tpot_s == pytest.approx(hand, rel=0.03)
    assert pred.bottlenecks["decode"]["gemm"] == "memory"


def test_llama8b_prefill_is_flops_over_peak() -> None:
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    t = 4096
    pred = predict(spec, h100, batch=1, prompt_len=t, engine_factors=IDEAL)
    table = 128256 * 4096  # embedding (a gather, no FLOPs) and LM head (only the last position)
    matmul = 2 * (8.03e9 - 2 * table) * t + 2 * table
    attention = 32 * 4 * 32 * 128 * t * (t + 1) / 2  # layers x 4 x heads x head_dim x causal pairs
    assert pred.ttft_s == pytest.approx((matmul + attention) / H100_BF16, rel=0.03)
    assert pred.bottlenecks["prefill"]["gemm"] == "compute"


def test_default_efficiency_is_slower_than_ideal_but_within_2x() -> None:
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    ideal, real = predict(spec, h100, engine_factors=IDEAL), predict(spec, h100)
    assert ideal.tpot_s < real.tpot_s < 2 * ideal.tpot_s


def test_mla_cache_is_70kb_per_token_and_absorption_saves_flops() -> None:
    """DeepSeek-V3 caches 70,272 bytes per token in bf16 (arXiv 2505.09343, Table 1)."""
    spec = get_spec("deepseek-v3")
    assert spec.kv_cache_bytes_per_token(2) == 70272
    step = Step(batch=1, new_tokens=1, past=8192)
    absorbed = step_costs(spec, step, 1, 1, 2, 2)["attention"]
    assert absorbed.bytes == pytest.approx(8193 * 70272, rel=1e-6)
    expanded = step_costs(spec, Step(1, 1, 8192, mla_absorb=False), 1, 1, 2, 2)["attention"]
    assert expanded.flops > 10 * absorbed.flops and expanded.bytes == absorbed.bytes


def test_sliding_window_bounds_decode_attention() -> None:
    spec = get_spec("gemma-3-27b")
    local = next(g.attention for g in spec.blocks if g.attention.window)
    assert attention_pairs(local, Step(1, 1, 32768)) == local.window
    assert attention_pairs(local, Step(1, 10, 0)) == 55  # causal 1+2+...+10
    full = next(g.attention for g in spec.blocks if not g.attention.window)
    assert attention_pairs(full, Step(1, 1, 32768)) == 32769


def test_expected_experts_matches_simulation() -> None:
    """E * (1 - (1 - k/E)^N) against sampling top-k without replacement."""
    rng = np.random.default_rng(0)
    for experts, k, tokens in ((128, 8, 1), (128, 8, 16), (256, 8, 64), (8, 2, 3)):
        hits = [
            len({int(e) for _ in range(tokens) for e in rng.choice(experts, k, replace=False)})
            for _ in range(400)
        ]
        assert expected_experts(experts, k, tokens) == pytest.approx(np.mean(hits), rel=0.03)


def test_moe_decode_reads_only_touched_experts() -> None:
    spec, h200 = get_spec("qwen3-30b-a3b"), load_profile("h200-sxm")
    b1 = predict(spec, h200, batch=1, ctx=1024).decode.ops
    b64 = predict(spec, h200, batch=64, ctx=1024).decode.ops
    moe1, moe64 = (next(o for o in ops if o.op_class == "moe") for ops in (b1, b64))
    assert moe64.bytes > 5 * moe1.bytes  # 8 of 128 experts at batch 1, most of them at batch 64


def test_tensor_parallel_pays_for_the_link() -> None:
    """Same chip, slower NVLink (H800 400 GB/s vs H100 900 GB/s): TP8 decode is slower, TP1 identical."""
    spec = get_spec("llama-3.1-70b")
    h100, h800 = load_profile("h100-sxm"), load_profile("h800-sxm")
    assert predict(spec, h800, devices=8, batch=32).tpot_s > predict(spec, h100, devices=8, batch=32).tpot_s
    assert predict(spec, h100, devices=8).tpot_s < predict(spec, h100, devices=1).tpot_s


def test_memory_fit_and_devices_needed() -> None:
    spec, h100 = get_spec("llama-3.1-70b"), load_profile("h100-sxm")
    one = predict(spec, h100, batch=1, ctx=4096)
    assert not one.memory.fits and one.memory.devices_needed == 2  # 141 GB of bf16 weights, 72 GB usable
    assert predict(spec, h100, devices=2).memory.fits


def test_fp8_without_fp8_units_runs_at_bf16_rate() -> None:
    spec = get_spec("llama-3.1-8b")
    a100, h100 = load_profile("a100-80g-sxm"), load_profile("h100-sxm")
    fp8_a100 = predict(spec, a100, prompt_len=8192, weight_format="fp8")
    bf16_a100 = predict(spec, a100, prompt_len=8192)
    assert fp8_a100.ttft_s == pytest.approx(bf16_a100.ttft_s, rel=0.05)
    assert (  # GEMMs at twice the peak x 0.75 (efficiency.yaml `narrow_float_gemm_factor`): 0.67x; attention bf16
        predict(spec, h100, prompt_len=8192, weight_format="fp8").ttft_s
        < 0.8 * predict(spec, h100, prompt_len=8192).ttft_s
    )
    assert any("no fp8_e4m3 peak" in a for a in fp8_a100.assumptions)


def test_to_dict_is_json_with_provenance() -> None:
    pred = predict(get_spec("mixtral-8x7b"), load_profile("mi300x"), batch=4)
    data = json.loads(json.dumps(pred.to_dict()))
    assert data["decode_tokens_s"]["provenance"] == "predicted"
    assert data["memory"]["fits"] is True and data["bottlenecks"]["decode"]


def test_whole_grid_predicts_every_pair() -> None:
    """Every registry model on every profile gets a prediction (its speed is timed in bench/test_validate.py)."""
    specs, profiles = list(load_registry().values()), list_profiles()
    predictions = [predict(spec, profile) for spec in specs for profile in profiles]
    assert len(predictions) == len(specs) * len(profiles) >= 30 * 27
    assert all(p.decode_tokens_s > 0 for p in predictions if p.memory.fits)


def test_llama_cpp_gemms_run_at_the_fp16_accumulate_rate_on_geforce() -> None:
    """ggml-cuda multiplies in fp16 with fp16 accumulation; Ada's whitepaper lists that at 330.3 dense TFLOPS,
    2x the 165.2 of fp32 accumulation. Without a published fp16_acc16 peak the rate is unchanged."""
    spec, rtx = get_spec("llama-3.1-8b"), load_profile("rtx-4090")
    without = rtx.model_copy(update={"peak_tflops": {k: v for k, v in rtx.peak_tflops.items() if k != "fp16_acc16"}})

    def gemm_s(profile: object, engine: str) -> float:
        pred = predict(spec, profile, prompt_len=4096, weight_format="fp16", engine=engine, engine_factors=IDEAL)
        return next(op.time_s for op in pred.prefill.ops if op.op_class == "gemm")

    assert gemm_s(without, "llama.cpp") / gemm_s(rtx, "llama.cpp") == pytest.approx(330.3 / 165.2, rel=0.01)
    assert gemm_s(rtx, "tuned") == pytest.approx(gemm_s(without, "tuned"))  # tuned stacks accumulate in fp32
    h100 = load_profile("h100-sxm")  # Hopper: same rate for both accumulations, so no fp16_acc16 entry
    assert gemm_s(h100, "llama.cpp") == pytest.approx(gemm_s(h100, "tuned"))


def test_tensor_parallel_across_two_nodes_adds_the_nic_hop() -> None:
    """TP16 on 8-GPU nodes: each all-reduce moves the intra-node ring bytes plus, per device, its 1/8 shard
    across the two nodes (2 * (2-1)/2 of it) over a NIC of at most 50 GB/s (DGX H100: one 400 Gb/s port per
    GPU)."""
    spec, h100 = get_spec("llama-3.1-70b"), load_profile("h100-sxm")

    def comm(devices: int) -> object:
        pred = predict(spec, h100, batch=64, ctx=1024, devices=devices, weight_format="fp8", engine_factors=IDEAL)
        return next(op for op in pred.decode.ops if op.op_class == "comm")

    calls, msg = 2 * 80, 64 * 8192 * 2  # (attention + MLP) x 80 layers; 64 tokens x hidden 8192 x bf16
    ring = calls * 2 * 7 / 8 * msg
    across = calls * 2 * (1 / 2) * msg / 8
    assert comm(8).bytes == pytest.approx(ring)
    assert comm(16).bytes == pytest.approx(ring + across)
    assert comm(16).time_s - comm(8).time_s >= across / 50e9
