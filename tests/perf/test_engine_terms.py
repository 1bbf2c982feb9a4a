"""Engine terms beyond the roofline, each against a hand-computed case: SM-limited streaming (llama.cpp),
the hand-off per pipeline stage, the fixed cost per step."""

from __future__ import annotations

from dataclasses import replace

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


def test_per_query_head_kernel_reads_a_gqa_cache_once_per_query_head() -> None:
    """Without a GQA kernel for its group size, Llama-2-70B (64 query / 8 KV heads) reads 8x the cached KV bytes
    (TP2: 32 query on 4 KV heads per rank), the new token's write does not grow; at TP16 each rank holds 4 query
    heads on one replicated KV head: 4x. A GQA kernel for 8 query heads per KV head reads it once; MHA
    (Llama-2-7B) is unchanged."""
    from dataclasses import replace

    from retarget.perf.ops import Step, step_costs
    from retarget.perf.validate import model_spec  # Llama-2-70B: a validation-only spec

    def attention_bytes(name: str, step: Step) -> float:
        return step_costs(model_spec(name), step, 1.0, 1.0, 2.0, 1.0)["attention"].bytes

    spec = model_spec("llama-2-70b")
    per_token = sum(g.count * g.attention.kv_bytes_per_token(1.0) for g in spec.blocks)  # fp8 cache, all layers
    for tp, reads in ((2, 8), (16, 4)):
        step = Step(batch=4, new_tokens=1, past=1000, tp=tp)
        plain, per_head = attention_bytes("llama-2-70b", step), attention_bytes(
            "llama-2-70b", replace(step, gqa_kernel_groups=()))
        kv_split = min(tp, 8)
        assert plain == pytest.approx(4 * (1000 + 1) * per_token / kv_split)
        assert per_head == pytest.approx(4 * (1000 * reads + 1) * per_token / kv_split)
        assert attention_bytes("llama-2-70b", replace(step, gqa_kernel_groups=(8,))) == plain
        assert attention_bytes("llama-2-70b", replace(step, gqa_kernel_groups=(4,))) == per_head
    mha = Step(batch=4, new_tokens=1, past=1000)
    assert attention_bytes("llama-2-7b", replace(mha, gqa_kernel_groups=())) == attention_bytes("llama-2-7b", mha)


def test_tensorrt_llm_releases_map_to_their_gqa_kernels() -> None:
    """v0.5/v0.6: no GQA kernel; v0.7-v0.9: XQA for 8 query heads per KV head only; 1.0: every group size."""
    from retarget.perf.efficiency import efficiency
    from retarget.perf.validate import plan_row

    assert efficiency("nvidia-hopper", "tensorrt-llm-0.6").gqa_kernel_group_sizes == ()
    assert efficiency("nvidia-hopper", "tensorrt-llm-0.9").gqa_kernel_group_sizes == (8,)
    assert efficiency("nvidia-hopper", "tensorrt-llm").gqa_kernel_group_sizes is None
    row = {"source_url": "u", "model": "Llama-2-70B", "quant_format": "FP8", "hardware": "NVIDIA H100 SXM 80GB",
           "num_devices": "2", "phase": "decode", "batch_size": "64", "input_len": "2048", "output_len": "2048",
           "metric": "output tokens/s", "value": "1"}
    engines = {label: plan_row({**row, "engine": label}).kwargs["engine"]  # type: ignore[union-attr]
               for label in ("TensorRT-LLM v0.5", "TensorRT-LLM v0.6.1", "TensorRT-LLM v0.9.0",
                             "TensorRT-LLM 0.7.1 (Windows)", "TensorRT-LLM 1.0")}
    assert engines == {"TensorRT-LLM v0.5": "tensorrt-llm-0.6", "TensorRT-LLM v0.6.1": "tensorrt-llm-0.6",
                       "TensorRT-LLM v0.9.0": "tensorrt-llm-0.9", "TensorRT-LLM 0.7.1 (Windows)": "tensorrt-llm-0.9",
                       "TensorRT-LLM 1.0": "tensorrt-llm"}


def test_mistral_reads_its_cache_per_query_head_on_tensorrt_llm_09_only() -> None:
    """Mistral-7B (32 query / 8 KV heads = 4, no v0.9 XQA kernel): decode attention bytes on `tensorrt-llm-0.9` are
    the 4x cache reads of `tensorrt-llm-0.6`, and 4x those of the 1.0 engine (XQA for every size)."""
    from retarget.perf.validate import model_spec

    spec, h100 = model_spec("mistral-7b-v0.1"), load_profile("h100-sxm")

    def attention_bytes(engine: str) -> float:
        pred = predict(spec, h100, batch=64, ctx=2048, weight_format="fp8", kv_format="fp8", engine=engine)
        return next(op.bytes for op in pred.decode.ops if op.op_class == "attention")

    once, per_query = attention_bytes("tensorrt-llm"), attention_bytes("tensorrt-llm-0.9")
    assert per_query == attention_bytes("tensorrt-llm-0.6")
    new_token = 64 * spec.kv_cache_bytes(1, 1.0)
    assert per_query - new_token == pytest.approx(4 * (once - new_token))


def test_fp8_gemms_on_hopper_reach_the_published_share_of_the_bf16_one() -> None:
    """A compute-bound prefill: FP8 GEMMs take bf16 peak / (fp8 peak x 0.75) of the BF16 time on H100; on an
    A100 (no FP8 peak) FP8 weights run at the bf16 rate and the factor does not apply."""
    spec, h100, a100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm"), load_profile("a100-80g-sxm")
    kw = dict(batch=8, ctx=4096, prompt_len=4096, kv_format="bf16", engine_factors=IDEAL)

    def gemm_s(profile: object, fmt: str) -> float:
        ops = predict(spec, profile, weight_format=fmt, **kw).prefill.ops  # type: ignore[arg-type]
        return next(op.time_s for op in ops if op.op_class == "gemm")

    peaks = h100.peak_tflops
    assert gemm_s(h100, "fp8") / gemm_s(h100, "bf16") == pytest.approx(peaks["bf16"] / (peaks["fp8_e4m3"] * 0.75))
    assert gemm_s(a100, "fp8") == pytest.approx(gemm_s(a100, "bf16"))


def test_first_token_cost_is_paid_once_per_request_per_layer() -> None:
    """TTFT grows by the cost x layers, also when the prompt takes several prefill chunks; decode does not."""
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    for prompt in (512, 20000):  # one chunk; three chunks of <= 8192
        kw = dict(batch=1, ctx=prompt, prompt_len=prompt)
        base = predict(spec, h100, engine_factors=IDEAL, **kw)
        paid = predict(spec, h100, engine_factors={**IDEAL, "prefill_overhead_us_per_layer": 100.0}, **kw)
        assert paid.ttft_s - base.ttft_s == pytest.approx(100e-6 * spec.num_layers, rel=1e-9)
        assert paid.tpot_s == base.tpot_s


def test_refit_keeps_kernel_attributes(tmp_path) -> None:
    from retarget.perf.calibrate import write_factors
    from retarget.perf.efficiency import EFFICIENCY_FILE

    copy = tmp_path / "efficiency.yaml"
    copy.write_text(EFFICIENCY_FILE.read_text())
    write_factors("tensorrt-llm-0.6", {"compute": 0.5, "prefill_overhead_us_per_layer": 7.0}, copy)
    line = next(x for x in copy.read_text().splitlines() if x.startswith("  tensorrt-llm-0.6:"))
    assert line == ("  tensorrt-llm-0.6: {compute: 0.5, prefill_overhead_us_per_layer: 7.0, "
                    "gqa_kernel_group_sizes: []}")


def test_a_prompt_found_in_the_prefix_cache_costs_no_prefill() -> None:
    """`cached_prompt`: end-to-end tokens/s is BATCH x OUT over OUT decode steps alone (costed at the same mean
    cache length, so the prompt's KV is still read); without it the prefill adds its own time."""
    from retarget.perf import generation_tokens_s

    spec, mi300x = get_spec("llama-3.1-70b"), load_profile("mi300x")
    kw = dict(batch=64, input_len=2048, output_len=2048, devices=8, weight_format="fp8", kv_format="bf16",
              engine="vllm-rocm-v1")
    step = predict(spec, mi300x, batch=64, ctx=2048 + 1024, prompt_len=2048, devices=8, weight_format="fp8",
                   kv_format="bf16", engine="vllm-rocm-v1")
    cached = generation_tokens_s(spec, mi300x, cached_prompt=True, **kw)
    assert cached == pytest.approx(64 / step.tpot_s, rel=1e-12)
    assert generation_tokens_s(spec, mi300x, **kw) == pytest.approx(64 * 2048 / (step.ttft_s + 2048 * step.tpot_s))


def test_vllm_v1_latency_runs_on_rocm_hit_the_prefix_cache_and_throughput_runs_keep_their_batch_limit() -> None:
    """AMD's vLLM 0.10 latency rows (benchmark_latency re-sends its warm-up prompts; V1 caches prefixes by default)
    are planned without prefill; its offline rows take the max-num-seqs their label states and an FP8 cache; the
    2024 V0 rows keep the old engine and a prefill."""
    from retarget.perf.validate import plan_row

    row = {"source_url": "u", "model": "Llama-3.1-70B-Instruct", "quant_format": "FP8", "hardware": "AMD MI300X",
           "num_devices": "8", "phase": "decode", "batch_size": "8", "input_len": "2048", "output_len": "2048",
           "metric": "output tokens/s", "value": "1"}
    latency = plan_row({**row, "engine": "vLLM (ROCm) v0.10.0 (rocm/vllm-dev, TP8)"})
    older = plan_row({**row, "engine": "vLLM (ROCm)"})
    offline = plan_row({**row, "engine": "vLLM (ROCm) v0.10.0 (rocm/vllm-dev, TP8, max-num-seqs 1500)",
                        "phase": "offline-throughput", "batch_size": "max"})
    assert (latency.kwargs["engine"], latency.cached_prompt) == ("vllm-rocm-v1", True)  # type: ignore[union-attr]
    assert (older.kwargs["engine"], older.cached_prompt) == ("vllm-rocm", False)  # type: ignore[union-attr]
    assert (offline.max_batch, offline.kwargs["kv_format"], offline.cached_prompt) == (  # type: ignore[union-attr]
        1500, "fp8", False)



def test_llama_cpp_row_split_is_skipped_with_its_reason() -> None:
    """A row of llama.cpp's pre-2024 row split is not predicted: plan_row returns the reason (host-bound gathers)."""
    from retarget.perf.validate import plan_row

    row = {"source_url": "u", "model": "Llama-2-70B", "quant_format": "Q4_0", "hardware": "NVIDIA RTX 4090 24GB",
           "num_devices": "2", "phase": "decode", "batch_size": "1", "input_len": "494", "output_len": "1023",
           "metric": "tokens/s", "value": "1"}
    skipped = plan_row({**row, "engine": "llama.cpp (CUDA, row split across GPUs: pre-split-mode Dec-2023 build)"})
    assert isinstance(skipped, str) and "row split" in skipped and "not predicted" in skipped
    layer_split = plan_row({**row, "engine": "llama.cpp (CUDA)"})
    assert layer_split.kwargs["parallelism"] == "pp"  # type: ignore[union-attr]


def test_llama_cpp_across_devices_is_predicted_as_a_layer_split_only() -> None:
    """`predict` refuses llama.cpp with --parallelism tp on several devices (the row split is not modelled) and
    keeps the layer split and the one-device case."""
    from retarget.errors import RetargetError

    spec, rtx = get_spec("llama-3.1-8b"), load_profile("rtx-4090")
    kw = dict(batch=1, ctx=512, weight_format="q4_k_m", kv_format="fp16", engine="llama.cpp")
    with pytest.raises(RetargetError) as err:
        predict(spec, rtx, devices=2, parallelism="tp", **kw)
    assert err.value.field == "--parallelism"
    assert predict(spec, rtx, devices=2, parallelism="pp", **kw).tpot_s > 0
    assert predict(spec, rtx, devices=1, parallelism="tp", **kw).tpot_s > 0


def _pipelined_makespan(chunks: int, stages: int, in_flight: int) -> float:
    """Independent reference: simulate CHUNKS forwards through STAGES equal stages (each 1/STAGES of a pass),
    one chunk per stage at a time, at most IN_FLIGHT chunks started and not finished; time in whole passes."""
    stage_free = [0.0] * stages
    finished: list[float] = []
    for c in range(chunks):
        t = finished[c - in_flight] if c >= in_flight else 0.0  # a copy is freed when an earlier chunk ends
        for s in range(stages):
            t = max(t, stage_free[s]) + 1 / stages
            stage_free[s] = t
        finished.append(t)
    return finished[-1]


@pytest.mark.parametrize("chunks,stages,in_flight", [(8, 8, 4), (4, 8, 4), (2, 8, 4), (6, 2, 4), (5, 3, 3)])
def test_pipelined_prefill_share_matches_a_simulated_pipeline(chunks: int, stages: int, in_flight: int) -> None:
    from retarget.perf.model import pipelined_share

    share = pipelined_share(chunks, stages, in_flight)
    assert share * chunks == pytest.approx(_pipelined_makespan(chunks, stages, in_flight), rel=1e-9)


def test_llama_cpp_layer_split_overlaps_the_prompts_forwards() -> None:
    """A 4096-token prompt is 8 forwards of 512 tokens; across 8 GPUs at most 4 are in flight (n_copies=4), so
    the forwards pass in two waves of four, one stage (1/8 pass) apart: (2 + 3/8) / 8 of the sequential time;
    one 512-token forward cannot overlap."""
    from retarget.perf.model import PREFILL_CHUNK

    spec, mi300x = get_spec("llama-3.1-70b"), load_profile("mi300x")
    kw = dict(batch=1, ctx=4096, devices=8, weight_format="q4_k_m", kv_format="fp16", parallelism="pp",
              engine_factors=IDEAL)
    split = predict(spec, mi300x, prompt_len=4096, engine="llama.cpp-rocm", **kw)
    serial = predict(spec, mi300x, prompt_len=4096, engine="llama.cpp-2023", tokens_per_forward=512, **kw)
    assert split.ttft_s / serial.ttft_s == pytest.approx((2 + 3 / 8) / 8, rel=1e-9)
    one = predict(spec, mi300x, prompt_len=512, engine="llama.cpp-rocm", **kw)
    assert one.ttft_s == pytest.approx(
        predict(spec, mi300x, prompt_len=512, engine="llama.cpp-2023", **kw).ttft_s, rel=1e-9)
    assert PREFILL_CHUNK > 512  # the serving engines prefill in larger forwards


def test_llama_cpp_runs_mxfp4_at_the_16_bit_rate_not_the_fp4_peak() -> None:
    """Before native FP4 MMA (llama.cpp PR 17906) MXFP4 goes through MMQ: removing the RTX 5090's FP4 peak
    changes nothing for llama.cpp, while a vendor stack's MXFP4 prefill slows without it."""
    spec, rtx = get_spec("gpt-oss-20b"), load_profile("rtx-5090")
    no_fp4 = rtx.model_copy(update={"peak_tflops": {k: v for k, v in rtx.peak_tflops.items() if k != "fp4"}})
    kw = dict(batch=1, ctx=2048, prompt_len=2048, weight_format="mxfp4", kv_format="fp16")
    assert predict(spec, rtx, engine="llama.cpp", **kw).ttft_s == pytest.approx(
        predict(spec, no_fp4, engine="llama.cpp", **kw).ttft_s, rel=1e-12)
    assert predict(spec, rtx, engine="tuned", **kw).ttft_s < predict(spec, no_fp4, engine="tuned", **kw).ttft_s


def test_a_stated_ubatch_is_the_prefill_forward_size() -> None:
    """`-ub 2048` in a llama.cpp label sets the tokens per forward; MoE weights are read once per forward, so
    a memory-bound MoE prefill at 512 tokens per forward reads them 4x as often as at 2048."""
    from retarget.perf.validate import plan_row

    row = {"source_url": "https://example.org/t", "model": "gpt-oss-20b", "quant_format": "MXFP4",
           "hardware": "NVIDIA RTX 4090 24GB", "num_devices": "1", "phase": "prefill", "batch_size": "1",
           "input_len": "2048", "output_len": "0", "metric": "tokens/s", "value": "1000",
           "engine": "llama.cpp (CUDA, build 6210; llama-bench -fa 1 -b 2048 -ub 2048)"}
    assert plan_row(row).kwargs["tokens_per_forward"] == 2048
    assert "tokens_per_forward" not in plan_row({**row, "engine": "llama.cpp (CUDA, build 6210)"}).kwargs
    spec, rtx = get_spec("gpt-oss-120b"), load_profile("rtx-pro-6000")
    kw = dict(batch=1, ctx=2048, prompt_len=2048, weight_format="mxfp4", kv_format="fp16", engine="llama.cpp",
              engine_factors=IDEAL)
    small = predict(spec, rtx, tokens_per_forward=512, **kw).prefill.ops
    large = predict(spec, rtx, tokens_per_forward=2048, **kw).prefill.ops
    moe_bytes = {op.op_class: op.bytes for op in small}["moe"] / {op.op_class: op.bytes for op in large}["moe"]
    assert 3.0 < moe_bytes <= 4.0  # expert weights read by each of 4 forwards; the activations once in all


def test_the_hip_build_has_its_own_engines() -> None:
    """llama.cpp's HIP build on CDNA (64-wide wavefronts) has its own fitted engine; on Radeon (RDNA, 32-wide
    like CUDA warps) it keeps every constant of the CUDA build but its cost per layer (no HIP graphs)."""
    from retarget.perf.efficiency import efficiency
    from retarget.perf.validate import plan_row

    row = {"source_url": "https://example.org/t", "model": "LLaMA v2 7B (llama.cpp arch label, 6.74B)",
           "quant_format": "Q4_0", "num_devices": "1", "phase": "decode", "batch_size": "1", "input_len": "0",
           "output_len": "128", "metric": "tokens/s", "value": "100", "engine": "llama.cpp (ROCm, build 3891)"}
    assert plan_row({**row, "hardware": "AMD Instinct MI300X 192GB"}).kwargs["engine"] == "llama.cpp-rocm"
    assert plan_row({**row, "hardware": "AMD Radeon RX 7900 XTX"}).kwargs["engine"] == "llama.cpp-hip"
    cuda, hip = efficiency("amd-rdna3", "llama.cpp"), efficiency("amd-rdna3", "llama.cpp-hip")
    assert hip.overhead_us_per_layer > cuda.overhead_us_per_layer
    assert replace(hip, overhead_us_per_layer=cuda.overhead_us_per_layer) == cuda


def test_a_batch_larger_than_memory_holds_runs_in_waves_on_paged_kv_schedulers() -> None:
    """vLLM admits the sequences whose KV cache fits and queues the rest: 32 Hunyuan-A13B sequences of 2048 +
    14336 tokens on one H20 run as waves of what fits, each wave a prefill plus its decode. A static-batch
    engine (TensorRT-LLM v0.9) is predicted at the batch the row states."""
    from dataclasses import replace

    from retarget.perf.model import generation_tokens_s
    from retarget.perf.validate import max_batch, plan_row, predict_plan

    row = {"source_url": "https://example.org/t", "model": "Hunyuan-A13B-Instruct", "quant_format": "BF16",
           "hardware": "NVIDIA H20 96GB", "num_devices": "2", "phase": "decode", "batch_size": "32",
           "input_len": "2048", "output_len": "14336", "metric": "tokens/s", "value": "100",
           "engine": "vLLM (offline benchmark)"}
    plan = plan_row(row)
    fits = max_batch(replace(plan, max_batch=32))
    assert 1 <= fits < 32
    full, rest = divmod(32, fits)
    kw = dict(input_len=2048, output_len=14336, **plan.kwargs)
    seconds = full * fits * 14336 / generation_tokens_s(plan.spec, plan.profile, batch=fits, **kw)
    seconds += rest * 14336 / generation_tokens_s(plan.spec, plan.profile, batch=rest, **kw) if rest else 0.0
    value, details = predict_plan(plan)
    assert details["concurrent"] == fits
    assert value == pytest.approx(32 * 14336 / seconds, rel=1e-9)
    static = plan_row({**row, "engine": "TensorRT-LLM v0.9.0"})
    assert predict_plan(static)[1]["concurrent"] == 32


def _micro_batched_round(stages: int, micro_batches: int, stage_s: float, rounds: int = 6) -> float:
    """Independent reference: simulate MICRO_BATCHES micro-batches looping through STAGES stages (each stage
    busy STAGE_S per micro-batch, one at a time; a micro-batch starts its next token when it leaves the last
    stage); the steady-state time between two tokens of one micro-batch."""
    stage_free = [0.0] * stages
    ready = [0.0] * micro_batches
    finished: list[list[float]] = [[] for _ in range(micro_batches)]
    for _ in range(rounds):
        for m in range(micro_batches):
            t = ready[m]
            for s in range(stages):
                t = max(t, stage_free[s]) + stage_s
                stage_free[s] = t
            ready[m] = t
            finished[m].append(t)
    return finished[0][-1] - finished[0][-2]


@pytest.mark.parametrize("batch,stages", [(64, 4), (256, 8), (3, 4)])
def test_micro_batched_pipeline_step_matches_a_simulated_pipeline(batch: int, stages: int) -> None:
    """TensorRT-LLM splits a pipeline-parallel step into one micro-batch per stage; the decode step (one token for
    every sequence) equals the simulated steady-state round of those micro-batches, each stage taking 1/STAGES
    of one device's whole-model step for a micro-batch (the stage hand-offs are the comm op, left out)."""
    spec, rtx = get_spec("llama-3.1-70b"), load_profile("rtx-pro-6000")
    kw = dict(ctx=2048, weight_format="fp8", kv_format="fp8", engine="tensorrt-llm", engine_factors=IDEAL)
    split = predict(spec, rtx, batch=batch, devices=stages, parallelism="pp", **kw)
    micro = -(-batch // stages)  # sequences per micro-batch; fewer sequences than stages leave stages idle
    whole = predict(spec, rtx, batch=micro, devices=1, **kw).decode.time_s
    round_s = _micro_batched_round(stages, min(stages, batch), whole / stages)
    step = sum(op.time_s for op in split.decode.ops if op.op_class != "comm")
    assert step == pytest.approx(round_s, rel=1e-9)


def test_layer_split_without_micro_batches_runs_the_whole_batch_through_each_stage_in_turn() -> None:
    """llama.cpp's layer split has no micro-batches: a step of 64 sequences costs one device's whole-model step
    for all 64 (hand-offs aside), so a compute-bound batch gains nothing from the stages, unlike TensorRT-LLM."""
    spec, rtx = get_spec("llama-3.1-70b"), load_profile("rtx-pro-6000")
    kw = dict(batch=64, ctx=2048, weight_format="q8_0", kv_format="fp16", engine_factors=IDEAL)
    split = predict(spec, rtx, devices=4, parallelism="pp", engine="llama.cpp", **kw)
    whole = predict(spec, rtx, devices=1, engine="llama.cpp", **kw).decode.time_s
    assert sum(op.time_s for op in split.decode.ops if op.op_class != "comm") == pytest.approx(whole, rel=1e-9)


def test_dense_gemm_streaming_share_slows_the_dense_gemms_only() -> None:
    """`gemm_memory` 0.5 doubles the memory-bound dense GEMM time of a batch-1 MoE decode step; the routed
    experts, attention and LM head keep their time."""
    spec, mi355x = get_spec("qwen3-30b-a3b"), load_profile("mi355x")
    kw = dict(batch=1, ctx=1024, weight_format="bf16", kv_format="bf16")
    base = {op.op_class: op for op in predict(spec, mi355x, engine_factors=IDEAL, **kw).decode.ops}
    slow = {op.op_class: op for op in predict(
        spec, mi355x, engine_factors={**IDEAL, "gemm_memory": 0.5}, **kw).decode.ops}
    assert base["gemm"].bound == "memory"
    assert slow["gemm"].time_s == pytest.approx(2 * base["gemm"].time_s, rel=1e-9)
    for op_class in ("moe", "attention", "head"):
        assert slow[op_class].time_s == pytest.approx(base[op_class].time_s, rel=1e-12)


def test_dense_experts_run_every_expert_on_every_token() -> None:
    """Optimum Habana up to 1.14 ran Mixtral's experts densely: the MoE multiply-adds and, at batch 1, the expert
    weights read are experts / top-k = 4x the routed kernel's; the other op classes and a dense model are unchanged."""
    mixtral, llama, gaudi2 = get_spec("mixtral-8x7b"), get_spec("llama-3.1-8b"), load_profile("gaudi2")
    mlp = next(g.mlp for g in mixtral.blocks if g.mlp is not None)
    kw = dict(batch=1, ctx=1024, prompt_len=512, weight_format="bf16", kv_format="bf16", engine_factors=IDEAL)
    routed, dense = (predict(mixtral, gaudi2, engine=e, **kw) for e in ("optimum-habana", "optimum-habana-1.14"))
    for phase in ("prefill", "decode"):
        before = {op.op_class: op for op in getattr(routed, phase).ops}
        after = {op.op_class: op for op in getattr(dense, phase).ops}
        assert after["moe"].flops == pytest.approx(before["moe"].flops * mlp.experts / mlp.top_k, rel=1e-12)
        for op_class in ("gemm", "attention", "head"):
            assert after[op_class].time_s == pytest.approx(before[op_class].time_s, rel=1e-12)
    moe_bytes = [next(op.bytes for op in p.decode.ops if op.op_class == "moe") for p in (routed, dense)]
    assert moe_bytes[1] == pytest.approx(moe_bytes[0] * mlp.experts / mlp.top_k, rel=1e-12)
    assert predict(llama, gaudi2, engine="optimum-habana-1.14", **kw).tpot_s == pytest.approx(
        predict(llama, gaudi2, engine="optimum-habana", **kw).tpot_s, rel=1e-12)


def test_an_engine_that_claims_less_of_the_device_has_a_smaller_kv_pool() -> None:
    """SGLang-Jax's runs set --mem-fraction-static 0.8 (`memory_fraction`): weights, activations and KV cache get
    80% of each chip, against the 90% vLLM's default gives; the weights and activations stay where they are."""
    spec, v6e = get_spec("qwen3-32b"), load_profile("tpu-v6e")
    kw = dict(batch=64, ctx=4096, devices=4, engine_factors=IDEAL)
    jax, vllm = (predict(spec, v6e, engine=e, **kw).memory for e in ("sglang-jax", "vllm-tpu"))
    assert jax.usable_per_device_gb == pytest.approx(0.8 * v6e.memory_bytes / 1e9, rel=1e-9)
    assert vllm.usable_per_device_gb == pytest.approx(0.9 * v6e.memory_bytes / 1e9, rel=1e-9)
    assert jax.per_device_gb == pytest.approx(vllm.per_device_gb, rel=1e-12)


def test_host_issued_kernels_take_the_longer_of_the_host_and_the_device() -> None:
    """Without CUDA graphs (`host_issued`) a step takes max(the host's issue time, the device's work): a small
    batch is host-bound at the fixed cost alone, a large one device-bound with no fixed cost added; with
    graphs (`tuned`) the two add up."""
    spec, h100 = get_spec("llama-3.1-8b"), load_profile("h100-sxm")
    host = {**IDEAL, "overhead_us_per_layer": 500.0}  # 16 ms per step over 32 layers
    kw = dict(ctx=1024, prompt_len=1024, engine_factors=host)
    for batch in (1, 512):
        device = predict(spec, h100, batch=batch, engine_factors=IDEAL, ctx=1024, prompt_len=1024).tpot_s
        summed = predict(spec, h100, batch=batch, **kw).tpot_s
        eager = predict(spec, h100, batch=batch, engine="vllm-eager", **kw).tpot_s
        assert summed == pytest.approx(device + 0.016, rel=1e-9)
        assert eager == pytest.approx(max(device, 0.016), rel=1e-9)
    assert predict(spec, h100, batch=1, engine_factors=IDEAL, ctx=1024).tpot_s < 0.016 < predict(
        spec, h100, batch=512, engine_factors=IDEAL, ctx=1024, prompt_len=1024).tpot_s


def _prefill_gemm_gflop(tokens: int, engine: str) -> float:
    pred = predict(get_spec("llama-3.1-8b"), load_profile("m2-ultra"), prompt_len=tokens, weight_format="q4_k_m",
                   engine=engine)
    return next(op.flops for op in pred.prefill.ops if op.op_class == "gemm") / 1e9


def test_metal_mul_mm_pads_tokens_to_tiles_of_32() -> None:
    """ggml-metal's mul_mm threadgroups each cover 32 tokens (llama.cpp PR 27441: "The stock tile pads N to 32");
    a matmul over 1 token, or up to 8 since PR 10581, runs mat-vec kernels with no tile."""
    one = _prefill_gemm_gflop(1, "llama.cpp-metal")
    # Llama-3.1-8B's dense matmuls: 2 x 6.98e9 FLOPs per token (its 8.03B less the 128256 x 4096 embedding and LM head)
    assert one == pytest.approx(2 * (8.03e9 - 2 * 128256 * 4096) / 1e9, rel=0.01)
    assert _prefill_gemm_gflop(8, "llama.cpp-metal") == pytest.approx(8 * one)
    assert _prefill_gemm_gflop(9, "llama.cpp-metal") == pytest.approx(32 * one)
    assert _prefill_gemm_gflop(33, "llama.cpp-metal") == pytest.approx(64 * one)
    assert _prefill_gemm_gflop(511, "llama.cpp-metal") == pytest.approx(512 * one)
    # before PR 10491 (2024-11-25) every matmul over more than one token ran mul_mm; until PR 10581, over 4
    assert _prefill_gemm_gflop(2, "llama.cpp-metal-2024") == pytest.approx(32 * one)
    assert _prefill_gemm_gflop(4, "llama.cpp-metal-2024-11") == pytest.approx(4 * one)
    assert _prefill_gemm_gflop(5, "llama.cpp-metal-2024-11") == pytest.approx(32 * one)
    assert _prefill_gemm_gflop(9, "llama.cpp") == pytest.approx(9 * one)  # the CUDA build's tiles are not padded
