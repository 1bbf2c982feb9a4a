"""Engine terms beyond the roofline, each against a hand-computed case: SM-limited streaming (llama.cpp),
the hand-off per pipeline stage, the fixed cost per step."""

from __future__ import annotations

import pytest

from retarget.hw_profiles import load_profile
from retarget.models.registry import get_spec
from retarget.perf import predict

IDEAL = {"compute": 100.0, "memory": 100.0, "overhead_us_per_layer": 0.0}  # every efficiency capped at 1.0


def test_streaming_limited_by_sm_concurrency_adds_bytes_over_k_fp32() -> None:
    """Batch-1 decode is all streaming, so the term scales the step by 1 + BW / (k x fp32 peak) exactly."""
    spec, a100 = get_spec("llama-3.1-8b"), load_profile("a100-80g-sxm")
    kw = dict(batch=1, ctx=1024, weight_format="q4_k_m", kv_format="fp16", engine="llama.cpp")
    plain = predict(spec, a100, engine_factors=IDEAL, **kw)
    limited = predict(spec, a100, engine_factors={**IDEAL, "stream_gb_s_per_fp32_tflop": 50.0}, **kw)
    bw, fp32 = a100.mem_bw_gb_s, a100.peak_tflops["fp32"]  # 2039 GB/s, 19.5 TFLOPS
    assert limited.tpot_s / plain.tpot_s == pytest.approx(1 + bw / (50.0 * fp32), rel=1e-9)


def test_layer_split_pays_one_hand_off_per_stage_boundary() -> None:
    spec, rtx = get_spec("llama-3.1-70b"), load_profile("rtx-4090")
    kw = dict(batch=1, ctx=1024, devices=4, weight_format="q4_k_m", kv_format="fp16", parallelism="pp",
              engine="llama.cpp")
    base = predict(spec, rtx, engine_factors=IDEAL, **kw)
    hops = predict(spec, rtx, engine_factors={**IDEAL, "stage_hop_us": 300.0}, **kw)
    assert hops.tpot_s - base.tpot_s == pytest.approx(3 * 300e-6, rel=1e-9)  # 4 stages, 3 boundaries


def test_fixed_cost_per_step_is_paid_once_per_forward() -> None:
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    base = predict(spec, h100, batch=8, ctx=512, prompt_len=512, engine_factors=IDEAL)
    stepped = predict(spec, h100, batch=8, ctx=512, prompt_len=512,
                      engine_factors={**IDEAL, "overhead_us_per_step": 2000.0})
    assert stepped.tpot_s - base.tpot_s == pytest.approx(2e-3, rel=1e-9)
    assert stepped.ttft_s - base.ttft_s == pytest.approx(2e-3, rel=1e-9)  # one prefill chunk: one step


def test_portable_kernels_reach_a_smaller_share_of_hopper() -> None:
    """llama.cpp's mma.sync kernels on Hopper: the family GEMM prior x the engine's scale x 0.57 (FlashAttention-2
    at 35% of the H100 peak against ~61.5% of the A100's); other families and engines are unscaled."""
    from retarget.perf.efficiency import efficiency, engine_entry

    scale = engine_entry("llama.cpp")["compute"]
    assert efficiency("nvidia-hopper", "llama.cpp").gemm == pytest.approx(0.78 * scale * 0.57)
    assert efficiency("nvidia-ampere", "llama.cpp").gemm == pytest.approx(0.70 * scale)
    assert efficiency("nvidia-hopper", "tensorrt-llm").gemm == pytest.approx(
        0.78 * engine_entry("tensorrt-llm")["compute"])
