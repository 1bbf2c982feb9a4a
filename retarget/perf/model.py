"""`predict`: roofline time per op class for prefill and decode, memory fit, multi-device cost.

Per op class: time = max(FLOPs / (eta_c * peak), bytes / (eta_m * BW)); engines whose streaming kernels keep
too few loads in flight also pay bytes / (k * fp32 peak). A step is the sum over op classes, plus collectives
(ring all-reduce for tensor parallelism: bandwidth and a latency per call, a larger one for the hop across
nodes; a hand-off per stage boundary for layer split) and the engine's fixed costs: per layer (kernel
launches, synchronisation), per expert a token visits in each MoE layer, and per step; the first token also
pays a cost per layer once per request. Tensor parallelism beyond one node all-reduces hierarchically over the
nodes' NICs; pipeline stages of tensor-parallel groups (TP x PP) instead hand the activations from stage to
stage, over the NIC between nodes. GEMMs at an FP8/FP4 peak reach a family-specific share of the
16-bit efficiency, and an engine whose decode attention has no GQA kernel for the model's query heads per KV
head reads the KV cache once per query head. Efficiency factors, kernel attributes and node assumptions:
efficiency.yaml."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

from retarget.errors import RetargetError
from retarget.hw_profiles.schema import HardwareProfile
from retarget.models.spec import BlockGroup, ModelSpec
from retarget.perf.efficiency import Efficiency, capped, efficiency, kernel_attributes, multi_node
from retarget.perf.formats import NumberFormat, compute_format, get_format
from retarget.perf.ops import ACT_BYTES, OpCost, Step, reads_per_query_head, step_costs
from retarget.perf.prediction import MemoryBreakdown, OpTime, PhaseTime, Prediction

USABLE_MEMORY = 0.90  # assumed: share of device memory left for weights, cache and activations
PREFILL_CHUNK = 8192  # assumed: engines prefill in chunks of at most this many tokens per sequence...
STEP_TOKENS = 8192  # ...and hold at most this many tokens' activations per forward (max_num_batched_tokens)

NARROW_FLOAT_PEAKS = ("fp8_e4m3", "fp4")  # peaks whose GEMMs reach `Efficiency.narrow_float_gemm` of the 16-bit share
Parallelism = Literal["tp", "pp", "ep"]


def _op_time(op: OpCost, eff: Efficiency, profile: HardwareProfile, peak_tflops: float) -> OpTime:
    t_compute = op.flops / (eff.compute(op.op_class) * peak_tflops * 1e12) if op.flops else 0.0
    t_memory = op.bytes / (eff.streaming(op.op_class) * profile.mem_bw_gb_s * 1e9)  # type: ignore[operator]
    vector_tflops = profile.peak_tflops.get("fp32", 0.0)
    if eff.stream_gb_s_per_fp32_tflop > 0 and vector_tflops:  # streaming limited by the SMs' loads in flight
        t_memory += op.bytes / (eff.stream_gb_s_per_fp32_tflop * vector_tflops * 1e9)
    bound = "compute" if t_compute >= t_memory else "memory"
    return OpTime(op.op_class, op.flops, op.bytes, max(t_compute, t_memory), bound)


def tiled_matmul(op: OpCost, tokens: int, eff: Efficiency) -> OpCost:
    """OP (dense matmuls over TOKENS tokens) as the engine's kernels run it: beyond `matvec_tokens` tokens a tiled
    kernel whose multiply-adds cover the tokens padded up to whole tiles of `matmul_token_tile`."""
    tile = eff.matmul_token_tile
    if not tile or tokens <= max(1, eff.matvec_tokens):
        return op
    return replace(op, flops=op.flops * math.ceil(tokens / tile) * tile / tokens)


def _link(profile: HardwareProfile, eff: Efficiency) -> float:
    """Bytes/s one way over the device-to-device link, at the engine's share of it."""
    if not profile.interconnect_gb_s:
        raise RetargetError(f"{profile.id} has no device-to-device bandwidth; set --set interconnect_gb_s=...",
                            field="interconnect_gb_s")
    return profile.interconnect_gb_s / 2 * 1e9 * eff.interconnect


def _comm_time(
    spec: ModelSpec,
    step: Step,
    devices: int,
    parallelism: Parallelism,
    eff: Efficiency,
    profile: HardwareProfile,
    stages: int = 1,
) -> OpTime:
    """Collectives of one step: tensor parallel = one ring all-reduce of the step's activations after each
    mixer and after each MLP (routed experts are expert-parallel inside the TP group: each rank runs its
    experts on the tokens it already holds, and the combine is that same all-reduce); pipeline = one
    activation hop per stage boundary; expert parallel = two all-to-alls per MoE layer (`_all_to_all`).
    STAGES > 1: DEVICES is one pipeline stage's group; the step also hands its activations from each stage to
    the next (`_stage_hops`)."""
    if stages > 1:
        group = _comm_time(spec, step, devices, parallelism, eff, profile)
        hops = _stage_hops(spec, step, devices, stages, eff, profile)
        return OpTime("comm", 0.0, group.bytes + hops.bytes, group.time_s + hops.time_s, "interconnect")
    if devices == 1:
        return OpTime("comm", 0.0, 0.0, 0.0, "interconnect")
    if parallelism == "pp":  # a layer split: every device is a stage of its own
        return _stage_hops(spec, step, 1, devices, eff, profile)
    link = _link(profile, eff)
    latency = eff.collective_latency_us * 1e-6
    msg = step.tokens * spec.hidden_size * ACT_BYTES
    if parallelism == "ep":
        return _all_to_all(spec, step, devices, eff, link)
    calls = sum(g.count * (1 + (g.mlp is not None)) for g in spec.blocks)
    node = multi_node()
    local = min(devices, node.devices_per_node)
    moved = calls * 2 * (local - 1) / local * msg
    seconds = moved / link + calls * latency
    if devices > local:  # hierarchical: each device all-reduces its 1/local shard across nodes over its NIC
        nodes = math.ceil(devices / local)
        across = calls * 2 * (nodes - 1) / nodes * msg / local
        moved += across
        seconds += across / (link * node.nic_per_link) + calls * eff.internode_latency_us * 1e-6
    return OpTime("comm", 0.0, moved, seconds, "interconnect")


def _stage_hops(spec: ModelSpec, step: Step, group: int, stages: int, eff: Efficiency,
                profile: HardwareProfile) -> OpTime:
    """The STAGES - 1 activation hand-offs of a step whose layers are split into STAGES pipeline stages of GROUP
    devices each, the stages filling nodes in order: a boundary between two nodes goes over the NIC at the
    cross-node latency, the others point to point over the device link."""
    link = _link(profile, eff)
    node = multi_node()
    msg = step.tokens * spec.hidden_size * ACT_BYTES
    across = min(stages - 1, math.ceil(group * stages / node.devices_per_node) - 1)  # boundaries between nodes
    seconds = (across * (msg / (link * node.nic_per_link) + (eff.internode_latency_us + eff.stage_hop_us) * 1e-6)
               + (stages - 1 - across) * (msg / link + (eff.collective_latency_us + eff.stage_hop_us) * 1e-6))
    return OpTime("comm", 0.0, msg * (stages - 1), seconds, "interconnect")


def _moe_groups(spec: ModelSpec) -> list[BlockGroup]:
    """The block groups whose MLP is a mixture of experts."""
    return [g for g in spec.blocks if g.mlp is not None and g.mlp.kind == "moe"]


def _moe_layers(spec: ModelSpec, dense: bool = False) -> list[tuple[int, float]]:
    """(layers, real experts each token is routed to, or every real expert when DENSE) per MoE block group."""
    return [(g.count, g.mlp.experts_per_token(dense)) for g in _moe_groups(spec)]


def tile_share(spec: ModelSpec, step: Step, eff: Efficiency) -> float:
    """The routed experts' matmul rate relative to the dense matmuls' in a tiled forward: each weight tile is
    loaded and dequantised once per forward whatever the tokens it serves, a cost worth `moe_tile_tokens` (n0)
    tokens, so n tokens run at n / (n + n0) of the per-token rate; an expert gets top-k / experts of the
    forward's tokens, a dense matrix all of them. Matrix-vector forwards (few tokens) have no tiles: 1."""
    groups = _moe_groups(spec)
    if not eff.moe_tile_tokens or not groups or step.tokens <= eff.matvec_tokens:
        return 1.0
    experts = sum(g.count * g.mlp.experts for g in groups)
    per_expert = step.tokens * sum(layers * k for layers, k in _moe_layers(spec, eff.dense_experts)) / experts

    def rate(n: float) -> float:
        return n / (n + eff.moe_tile_tokens)

    return rate(per_expert) / rate(step.tokens)


def moe_expert_slots(spec: ModelSpec, dense: bool = False) -> float:
    """Experts one token visits per step, summed over the MoE layers: routed (top-k, identity experts excluded;
    every real expert when DENSE) plus shared. The engine's fixed MoE cost is paid per slot: at decode batch
    sizes each visited expert is a small latency-bound GEMM in the fused kernels (weight-tile fetch, scales),
    however few tokens it gets."""
    return sum(layers * k + g.count * g.mlp.shared_experts
               for (layers, k), g in zip(_moe_layers(spec, dense), _moe_groups(spec), strict=True))


def _all_to_all(spec: ModelSpec, step: Step, devices: int, eff: Efficiency, link: float) -> OpTime:
    """Expert parallelism with data-parallel attention: per MoE layer a dispatch and a combine all-to-all.
    Each device sends the tokens of its share of STEP's sequences to the devices holding their top-k
    experts, (devices - 1) / devices of them off-device; beyond one node the share bound for
    other nodes crosses the NIC. Each all-to-all also pays one collective latency (the cross-node one when
    the group spans nodes)."""
    node = multi_node()
    local = min(devices, node.devices_per_node)
    cross = (devices - local) / devices  # share of the peers that sit on other nodes
    latency = (eff.internode_latency_us if devices > local else eff.collective_latency_us) * 1e-6
    tokens = math.ceil(step.batch / devices) * step.new_tokens
    moved = seconds = 0.0
    for layers, k in _moe_layers(spec):
        per_call = tokens * k * spec.hidden_size * ACT_BYTES * (devices - 1) / devices
        calls = 2 * layers
        moved += calls * per_call
        seconds += calls * (per_call * (1 - cross) / link + per_call * cross / (link * node.nic_per_link) + latency)
    return OpTime("comm", 0.0, moved, seconds, "interconnect")


def _step_costs(spec: ModelSpec, step: Step, fmts: dict[str, NumberFormat], devices: int,
                parallelism: Parallelism) -> dict[str, OpCost]:
    """Per-device op-class costs. Expert parallel: everything but the routed experts runs on this device's
    share of the sequences with whole weights; the routed experts see every device's tokens, 1/devices of
    the experts each (the tensor-parallel expert cost at the global batch)."""
    widths = (fmts["weights"].bytes, fmts["experts"].bytes, fmts["head"].bytes, fmts["kv"].bytes,
              fmts["attention"].bytes)
    if parallelism != "ep" or devices == 1:
        return step_costs(spec, step, *widths)
    local = replace(step, batch=math.ceil(step.batch / devices), tp=1)
    costs = step_costs(spec, local, *widths)
    if "moe" in costs:
        costs["moe"] = step_costs(spec, replace(step, tp=devices), *widths)["moe"]
    return costs


def _phase(
    spec: ModelSpec,
    profile: HardwareProfile,
    step: Step,
    fmts: dict[str, NumberFormat],
    eff: Efficiency,
    devices: int,
    parallelism: Parallelism,
    stages: int = 1,
) -> PhaseTime:
    """One step of STEP: the op classes of every layer on one device of a DEVICES group (a pipeline stage's group
    when STAGES > 1: a token passes every stage in turn), their collectives and the engine's fixed costs."""
    costs = _step_costs(spec, step, fmts, devices, parallelism)
    for name, tokens in (("gemm", step.tokens), ("head", step.batch)):
        if name in costs:
            costs[name] = tiled_matmul(costs[name], tokens, eff)

    rates = profile.peak_tflops if eff.narrow_float_peaks else {
        k: v for k, v in profile.peak_tflops.items() if k not in NARROW_FLOAT_PEAKS}

    def peak(fmt: NumberFormat) -> float:
        if eff.matmul_peak:  # the engine's matmuls run at one peak whatever the format (e.g. TF32 SGEMM)
            return rates.get(eff.matmul_peak) or compute_format(get_format("fp32"), rates)[1]
        if fmt.block_scaled and eff.block_fp8_vs_bf16:  # the engine's block-scaled FP8 kernels
            return peak(get_format("bf16")) * eff.block_fp8_vs_bf16
        name, rate = compute_format(fmt, rates)
        if eff.fp16_accumulate and name in ("bf16", "fp16"):  # weights dequantised to fp16, fp16 accumulate
            return max(rate, profile.peak_tflops.get("fp16_acc16", 0.0))
        return rate * eff.narrow_float_gemm if name in NARROW_FLOAT_PEAKS else rate

    bf16 = peak(get_format("bf16"))
    peaks = {
        "gemm": peak(fmts["weights"]),
        "moe": peak(fmts["experts"]),
        "head": peak(fmts["head"]),
        "attention": bf16,
        "ssm": bf16,
    }
    eff = replace(eff, moe=eff.moe * tile_share(spec, step, eff))
    ops = [_op_time(op, eff, profile, peaks[name]) for name, op in costs.items()]
    ops.append(_comm_time(spec, step, devices, parallelism, eff, profile, stages))
    fixed = (eff.overhead_us_per_layer * spec.num_layers
             + eff.moe_overhead_us_per_expert * moe_expert_slots(spec, eff.dense_experts)
             + eff.overhead_us_per_step) * 1e-6
    if eff.host_issued:  # the device works while the host issues: only the host time it does not cover is added
        fixed = max(0.0, fixed - sum(op.time_s for op in ops))
    ops.append(OpTime("overhead", 0.0, 0.0, fixed, "fixed"))
    return PhaseTime(ops)


def weight_bytes(spec: ModelSpec, fmts: dict[str, NumberFormat]) -> float:
    """Bytes of all weights: embedding/LM head at the head format, routed experts at the expert format,
    attention sublayers at the attention format."""
    emb = spec.params_embedding + spec.params_lm_head
    experts, attention = spec.expert_params, spec.attention_params
    rest = spec.params_total - emb - experts - attention
    return (emb * fmts["head"].bytes + experts * fmts["experts"].bytes + attention * fmts["attention"].bytes
            + rest * fmts["weights"].bytes)


def activation_bytes(spec: ModelSpec, batch: int, prompt_len: int, devices: int) -> float:
    """Peak activation workspace per device: residual stream, attention and MLP intermediates of one
    forward of at most STEP_TOKENS tokens, plus fp32 logits of the last position of each sequence."""
    widest = max((max(g.mlp.intermediate, g.mlp.expert_intermediate) if g.mlp else 0) for g in spec.blocks)
    tokens = min(batch * prompt_len, STEP_TOKENS)
    return tokens * (4 * spec.hidden_size + 2 * widest / devices) * ACT_BYTES + batch * spec.vocab_size * 4


def cache_bytes_per_device(spec: ModelSpec, context: int, bytes_per_elem: float, devices: int,
                           parallelism: Parallelism = "tp", stages: int = 1) -> float:
    """KV cache and recurrent state of one CONTEXT-token sequence held on each of DEVICES. A layer split or
    expert parallelism (data-parallel attention) spreads a sequence's cache over the devices; tensor
    parallelism splits it by KV head, so a layer with fewer KV heads than ranks keeps a copy per group of
    ranks and an MLA layer, whose one latent serves every head, a whole copy on every rank (the reason for
    SGLang's data-parallel attention, https://lmsys.org/blog/2024-12-04-sglang-v0-4/). STAGES > 1: the layers
    are split into that many pipeline stages of DEVICES / STAGES devices each, every stage holding its layers'
    share."""
    if stages > 1:
        return cache_bytes_per_device(spec, context, bytes_per_elem, devices // stages, parallelism) / stages
    state = spec.state_bytes_per_sequence(bytes_per_elem) / devices
    if parallelism != "tp" or devices == 1:
        return state + spec.kv_cache_bytes(context, bytes_per_elem) / devices
    kv = 0.0
    for g in spec.blocks:
        att = g.attention
        if att is None or att.kind == "linear":
            continue
        shards = 1 if att.kind == "mla" else min(devices, att.kv_heads)
        kv += g.count * att.kv_bytes_per_token(bytes_per_elem) * min(context, att.window or context) / shards
    return state + kv


def kv_pool_bytes(capacity: float, placed: float, eff: Efficiency) -> float:
    """Bytes a device's engine gives its KV cache once PLACED bytes (weights, activations) are in: the engine's
    `memory_fraction` (default USABLE_MEMORY) of CAPACITY less them (vLLM's gpu_memory_utilization, SGLang's
    mem_fraction_static), or, with `kv_share_of_free`, that share of what they leave (TensorRT-LLM's
    free_gpu_memory_fraction)."""
    if eff.kv_share_of_free:
        return eff.kv_share_of_free * (capacity - placed)
    return capacity * (eff.memory_fraction or USABLE_MEMORY) - placed


def placed_bytes(spec: ModelSpec, fmts: dict[str, NumberFormat], batch: int, prompt_len: int, devices: int,
                 parallelism: Parallelism, stages: int = 1) -> tuple[float, float]:
    """Bytes each of DEVICES holds before its KV cache, as (held whole, split over the devices): activations of
    one forward and, under expert parallelism, every non-expert weight of its pipeline stage are held whole; the
    rest of the weights is split over all DEVICES."""
    weights = weight_bytes(spec, fmts)
    act = activation_bytes(spec, batch, prompt_len, devices // stages)
    if parallelism != "ep":
        return act, weights
    experts = spec.expert_params * fmts["experts"].bytes
    return act + (weights - experts) / stages, experts


def _memory(
    spec: ModelSpec,
    profile: HardwareProfile,
    fmts: dict[str, NumberFormat],
    batch: int,
    ctx: int,
    prompt_len: int,
    devices: int,
    parallelism: Parallelism,
    eff: Efficiency,
    stages: int = 1,
) -> MemoryBreakdown:
    """Weights, KV cache and activations per device (a pipeline stage holds 1/STAGES of the layers)."""
    seq = max(ctx, prompt_len)
    kv = batch * devices * cache_bytes_per_device(spec, seq, fmts["kv"].bytes, devices, parallelism,
                                                  stages)  # all copies
    whole, split = placed_bytes(spec, fmts, batch, prompt_len, devices, parallelism, stages)
    placed = whole + split / devices
    pool = kv_pool_bytes(profile.memory_bytes, placed, eff)
    # devices needed: the fewest d with kv / d <= pool(d), where pool(d) = room - share * split / d
    room = kv_pool_bytes(profile.memory_bytes, whole, eff)
    share = eff.kv_share_of_free or 1.0
    needed = math.ceil((share * split + kv) / max(room, 1.0)) if room > 0 else -1
    act = activation_bytes(spec, batch, prompt_len, devices // stages)
    return MemoryBreakdown(weight_bytes(spec, fmts) / 1e9, kv / 1e9, act / 1e9, (placed + kv / devices) / 1e9,
                           (placed + pool) / 1e9, kv / devices <= pool, needed)


def prefill_chunk(engine: str, tokens_per_forward: int | None = None) -> int:
    """Prompt tokens ENGINE prefills per forward: TOKENS_PER_FORWARD where a run states it, else the engine's kernel
    attribute `tokens_per_forward`, else PREFILL_CHUNK (vLLM's max_num_batched_tokens, SGLang's chunked_prefill_size,
    TensorRT-LLM's max_num_tokens)."""
    return tokens_per_forward or int(kernel_attributes(engine).get("tokens_per_forward", 0)) or PREFILL_CHUNK


def pipelined_share(chunks: int, stages: int, in_flight: int) -> float:
    """Share of the sequential prefill time left when CHUNKS forwards stream through STAGES equal pipeline
    stages with at most IN_FLIGHT of them started and unfinished: a chunk enters the first stage once that
    stage is free and an earlier chunk has left the last one, so the chunks pass in waves of min(IN_FLIGHT,
    STAGES), one stage apart within a wave."""
    wave = min(in_flight, stages)
    passes = (chunks - 1) // wave + 1 + ((chunks - 1) % wave) / stages
    return passes / chunks


def micro_batch(batch: int, stages: int) -> int:
    """Sequences per micro-batch when BATCH sequences stream through STAGES pipeline stages as one micro-batch
    per stage: each stage then runs STAGES micro-batches of 1/STAGES of the layers per step, so a step takes
    one micro-batch's time through the whole model (with fewer sequences than stages, one sequence's)."""
    return math.ceil(batch / stages)


DEVICE_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)  # the device counts `smallest_fit` tries


def check_context(spec: ModelSpec, ctx: int, prompt_len: int) -> None:
    """A context longer than the model's `max_position_embeddings` is an error, not a prediction."""
    longest = max(ctx, prompt_len)
    if spec.max_position_embeddings and longest > spec.max_position_embeddings:
        raise RetargetError(f"{longest} tokens exceed {spec.name}'s maximum context of "
                            f"{spec.max_position_embeddings}", field="--ctx")


def smallest_fit(spec: ModelSpec, profile: HardwareProfile, formats: dict[str, dict[str, str | None]], *,
                 batch: int, ctx: int, prompt_len: int, engine: str = "tuned",
                 parallelism: Parallelism = "tp") -> dict[str, int]:
    """Per recipe of FORMATS (recipe -> weight_format/expert_format/kv_format), the fewest of DEVICE_COUNTS
    devices whose memory holds SPEC at this workload (ENGINE's KV pool); recipes that fit on none are left out."""
    out, eff = {}, efficiency(profile.family, engine)
    for recipe, kw in formats.items():
        fmts = resolve_formats(kw["weight_format"] or "bf16", kw["kv_format"] or "bf16", kw["expert_format"])
        fits = (d for d in DEVICE_COUNTS
                if _memory(spec, profile, fmts, batch, ctx, prompt_len, d, parallelism, eff).fits)
        if (devices := next(fits, None)) is not None:
            out[recipe] = devices
    return out


def resolve_formats(weight_format: str, kv_format: str, expert_format: str | None,
                    attention_format: str | None = None) -> dict[str, NumberFormat]:
    """Formats of the weights, routed experts, attention projections, LM head/embedding and KV cache."""
    weights = get_format(weight_format)
    return {
        "weights": weights,
        "experts": get_format(expert_format) if expert_format else weights,
        "attention": get_format(attention_format) if attention_format else weights,
        "head": get_format("bf16") if weights.head_bits else weights,
        "kv": get_format(kv_format),
    }


def predict(
    spec: ModelSpec,
    profile: HardwareProfile,
    *,
    batch: int = 1,
    ctx: int = 4096,
    prompt_len: int = 4096,
    devices: int = 1,
    weight_format: str = "bf16",
    kv_format: str = "bf16",
    expert_format: str | None = None,
    attention_format: str | None = None,
    parallelism: Parallelism = "tp",
    engine: str = "tuned",
    mla_absorb: bool = True,
    engine_factors: dict[str, float] | None = None,
    tokens_per_forward: int | None = None,
    stages: int = 1,
) -> Prediction:
    """Predict prefill (TTFT for BATCH prompts of PROMPT_LEN) and decode (one step with CTX cached tokens
    per sequence) of SPEC on DEVICES x PROFILE. `parallelism` 'tp' = tensor parallel attention/dense layers
    with expert parallel MoE; 'pp' = layers split across devices (llama.cpp's multi-GPU mode); 'ep' = data
    parallel attention with expert-parallel MoE and all-to-all dispatch/combine (DeepEP-style serving).
    STAGES > 1 (with tp or ep): the layers split into that many pipeline stages, each run by DEVICES / STAGES
    devices in that mode (vLLM's and TensorRT-LLM's multi-node layout: tensor parallel in a node, pipeline
    parallel across nodes)."""
    if min(batch, ctx, prompt_len, devices, stages) < 1:
        raise RetargetError("batch, ctx, prompt_len, devices and stages must be >= 1", field="workload")
    if parallelism not in ("tp", "pp", "ep"):
        raise RetargetError(f"unknown parallelism {parallelism!r}; choose tp, pp or ep", field="--parallelism")
    if stages > 1 and parallelism == "pp":
        raise RetargetError("pipeline stages split a tp or ep group's layers; --parallelism pp already splits them "
                            "over every device", field="--pp")
    if devices % stages:
        raise RetargetError(f"{devices} devices do not split into {stages} equal pipeline stages", field="--pp")
    if not profile.mem_bw_gb_s:
        raise RetargetError(
            f"{profile.id} has no memory bandwidth; set --set mem_bw_gb_s=...", field="mem_bw_gb_s"
        )
    fmts = resolve_formats(weight_format, kv_format, expert_format, attention_format)
    wfmt = fmts["weights"]
    eff = capped(efficiency(profile.family, engine, engine_factors))
    if devices > 1 and eff.parallelisms is not None and parallelism not in eff.parallelisms:
        raise RetargetError(f"{engine} on several devices is modelled with --parallelism "
                            f"{' or '.join(eff.parallelisms)} only", field="--parallelism")
    group = devices // stages  # the devices of one pipeline stage
    tp = group if parallelism == "tp" else 1
    kernels = dict(tp=tp, mla_absorb=mla_absorb, gqa_kernel_groups=eff.gqa_kernel_group_sizes,
                   dense_experts=eff.dense_experts)
    chunk = prefill_chunk(engine, tokens_per_forward)
    # micro-batched stages: a step of BATCH sequences takes as long as one micro-batch takes through every stage
    pipeline = devices if parallelism == "pp" else stages
    step_batch = micro_batch(batch, pipeline) if eff.micro_batched_pipeline else batch
    prefill_step = Step(step_batch, min(prompt_len, chunk), 0, **kernels)
    chunks = math.ceil(prompt_len / chunk)
    prefill = _phase(spec, profile, prefill_step, fmts, eff, group, parallelism, stages)
    if chunks > 1:  # later chunks attend to earlier ones; cost them at the mean cached length
        later = Step(step_batch, chunk, (prompt_len - chunk) // 2 + chunk // 2, **kernels)
        prefill = prefill.plus(_phase(spec, profile, later, fmts, eff, group, parallelism, stages), chunks - 1)
    if parallelism == "pp" and devices > 1 and chunks > 1 and eff.pipeline_copies > 1:
        prefill = prefill.scaled(pipelined_share(chunks, devices, eff.pipeline_copies))
    if eff.prefill_overhead_us_per_layer:  # the first-token cost: once per request, not per chunk
        first_token = eff.prefill_overhead_us_per_layer * spec.num_layers * 1e-6
        prefill = PhaseTime([*prefill.ops, OpTime("request", 0.0, 0.0, first_token, "fixed")])
    decode = _phase(spec, profile, Step(step_batch, 1, ctx, **kernels), fmts, eff, group, parallelism, stages)
    memory = _memory(spec, profile, fmts, batch, ctx, prompt_len, devices, parallelism, eff, stages)
    w_name, _ = compute_format(wfmt, profile.peak_tflops)
    node = multi_node()
    assumptions = [
        f"weights {wfmt.name} ({wfmt.bits:g} bits) with matmuls at the device's {w_name} rate"
        + ("" if w_name in wfmt.compute[:1] else f" (no {wfmt.compute[0]} peak on {profile.id})"),
        f"KV cache {fmts['kv'].name}; LM head/embedding {fmts['head'].name}"
        + (f"; attention projections {fmts['attention'].name} (their matmuls timed at the weights' rate)"
           if fmts["attention"] is not wfmt else ""),
        f"efficiency: family {profile.family}, engine {engine} "
        f"(gemm {eff.gemm:.2f}, memory {eff.memory:.2f}, "
        + (f"dense GEMM weights streamed at {eff.gemm_memory:.2f} of that, " if eff.gemm_memory != 1.0 else "")
        + f"overhead {eff.overhead_us_per_layer:g} us/layer"
        + (f" + {eff.moe_overhead_us_per_expert:g} us per visited expert per MoE layer"
           if spec.is_moe and eff.moe_overhead_us_per_expert else "")
        + (f" + {eff.overhead_us_per_step:g} us/step" if eff.overhead_us_per_step else "")
        + (f"; first token + {eff.prefill_overhead_us_per_layer:g} us/layer per request"
           if eff.prefill_overhead_us_per_layer else "")
        + ")",
        f"{devices} device(s), {parallelism}"
        + (f" within each of {stages} pipeline stages of {group} (layers split across the stages)" if stages > 1
           else "")
        + (", every expert runs every token (dense MoE kernel)" if spec.is_moe and eff.dense_experts else "")
        + (", MoE experts expert-parallel" if spec.is_moe and devices > 1 and parallelism == "tp" else "")
        + (", attention and dense layers data-parallel (weights replicated), routed experts split with a dispatch"
           " and a combine all-to-all per MoE layer" if parallelism == "ep" and devices > 1 else "")
        + (
            f", {math.ceil(devices / node.devices_per_node)} nodes of {node.devices_per_node}"
            f" (NIC = {node.nic_per_link:.3g} x device link)"
            if parallelism in ("tp", "ep") and group > node.devices_per_node
            else ""
        ),
        (f"KV cache pool {eff.kv_share_of_free:.0%} of the memory weights and activations leave"
         if eff.kv_share_of_free else f"usable memory {eff.memory_fraction or USABLE_MEMORY:.0%} of capacity")
        + f"; prefill in chunks of <= {chunk} tokens",
    ]
    if eff.block_fp8_vs_bf16 and (wfmt.block_scaled or fmts["experts"].block_scaled):
        assumptions.append(f"block-scaled FP8 matmuls at {eff.block_fp8_vs_bf16:g} x the bf16 rate, not the "
                           f"fp8_e4m3 rate ({engine}'s block kernels)")
    elif w_name in NARROW_FLOAT_PEAKS and eff.narrow_float_gemm != 1.0:
        assumptions.append(f"{w_name} GEMMs at {eff.narrow_float_gemm:g} x the 16-bit share of peak ({profile.family})")
    if spec.attention_kind != "mla" and any(g.attention is not None and reads_per_query_head(
            g.attention, eff.gqa_kernel_group_sizes) for g in spec.blocks):
        assumptions.append(f"{engine}: decode attention reads the KV cache once per query head (no GQA kernel for "
                           f"this model's query heads per KV head)")
    if spec.attention_kind == "mla":
        assumptions.append(f"MLA decode {'with' if mla_absorb else 'without'} weight absorption")
    return Prediction(
        spec.name,
        profile.id,
        dict(
            batch=batch,
            ctx=ctx,
            prompt_len=prompt_len,
            devices=devices,
            weight_format=wfmt.name,
            kv_format=fmts["kv"].name,
            expert_format=fmts["experts"].name,
            parallelism=parallelism,
            stages=stages,
            engine=engine,
        ),
        prefill,
        decode,
        memory,
        assumptions,
    )


def generation_tokens_s(
    spec: ModelSpec,
    profile: HardwareProfile,
    *,
    batch: int,
    input_len: int,
    output_len: int,
    cached_prompt: bool = False,
    **kwargs: object,
) -> float:
    """Output tokens/s of BATCH requests of INPUT_LEN prompt + OUTPUT_LEN generated tokens, end to end:
    prefill (if any) plus OUTPUT_LEN decode steps costed at the mean cache length. CACHED_PROMPT: the prompts'
    KV is already in the engine's prefix cache, so there is no prefill (the decode steps still read it)."""
    mean_ctx = max(1, input_len + output_len // 2)
    pred = predict(spec, profile, batch=batch, ctx=mean_ctx, prompt_len=max(input_len, 1), **kwargs)  # type: ignore[arg-type]
    prefill = pred.ttft_s if input_len > 0 and not cached_prompt else 0.0
    return batch * output_len / (prefill + output_len * pred.tpot_s)
