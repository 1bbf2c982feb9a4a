"""FLOPs and memory traffic of one forward step, per op class, from a ModelSpec's public fields.

A step processes `new_tokens` tokens for each of `batch` sequences whose caches already hold `past` tokens
(prefill: past=0, new=prompt; decode: past=ctx, new=1). Costs are per device under `tp`-way sharding
(heads, FFN columns and experts split evenly; expert parallelism for MoE). Conventions:

* GEMM: 2 FLOPs per multiply-accumulate; weights are read once per step; activation traffic is
  approximated as 2 elements (in + out) per weight column, i.e. 2 * P / hidden elements per token.
* Attention (FlashAttention-style, scores never hit memory): 4 * head_dim FLOPs per (query, key) pair and
  head for MHA/GQA/MQA; the cache is read once and the new tokens written once per step. Pairs follow the
  causal mask, clipped by a sliding/chunked window. Attention sinks add one logit per head (ignored).
  A kernel that runs one query head per thread block (masked MHA, where the engine has no GQA kernel for the
  layer's query heads per KV head, `Step.gqa_kernel_groups`) reads each KV head's cache once per query head
  sharing it: heads / kv_heads times for GQA.
* MLA (DeepSeek-V2/V3, https://arxiv.org/abs/2405.04434 sec. 2.1): the cache holds kv_lora_rank +
  qk_rope_head_dim per token for all heads. With weight absorption (decode default) scores and values are
  computed in the latent space: 2 * heads * (2 * rank + rope) FLOPs per pair. Without it the cached latents
  are expanded to K/V every step (2 * rank * heads * (nope + v) FLOPs per cached token) and attention runs
  at 2 * heads * (nope + rope + v) per pair. Prefill always expands (one expansion per new token).
* MoE: tokens routed top-k of E experts touch, in expectation, E * (1 - (1 - k/E)^N) distinct experts for N
  routed tokens (uniform independent routing; the occupancy expectation of balls into bins,
  https://en.wikipedia.org/wiki/Balls_into_bins_problem). Only touched experts' weights are read.
* Mamba (SSD, https://arxiv.org/abs/2405.21060): SCAN_FLOPS = 5 FLOPs per token and state element
  (d_inner * d_state of them): the decay S *= exp(dt A) (1), the rank-1 update S += B (x) dt x (2) and the
  readout C . S (2), as the compiled graph's LinearAttention runs it (retarget.export.graph_cost); decode
  reads and writes the per-sequence state. Linear attention (MiniMax lightning) likewise keeps a
  head_dim x head_dim state per head with a per-head decay (5 * heads * head_dim^2 FLOPs per token).
"""

from __future__ import annotations

from dataclasses import dataclass

from retarget.models.spec import AttentionSpec, BlockGroup, ModelSpec

ACT_BYTES = 2  # activations in bf16
SCAN_FLOPS = 5  # per token and state element of a decayed linear recurrence: decay 1, update 2, readout 2


@dataclass
class OpCost:
    """One op class of one step on one device: FLOPs and bytes moved (weights included)."""

    op_class: str  # gemm | moe | attention | ssm | head
    flops: float = 0.0
    bytes: float = 0.0
    weight_bytes: float = 0.0

    def add(self, other: OpCost, times: float = 1.0) -> None:
        self.flops += other.flops * times
        self.bytes += other.bytes * times
        self.weight_bytes += other.weight_bytes * times


def reads_per_query_head(att: AttentionSpec, gqa_kernel_groups: tuple[int, ...] | None) -> bool:
    """Whether decode attention of ATT runs without a GQA kernel (GQA_KERNEL_GROUPS: the query heads per KV
    head an engine has one for; None: every size): one cache read per query head."""
    group = att.heads // att.kv_heads
    return gqa_kernel_groups is not None and group > 1 and group not in gqa_kernel_groups


@dataclass(frozen=True)
class Step:
    """One forward step: BATCH sequences, NEW_TOKENS each, caches holding PAST tokens."""

    batch: int
    new_tokens: int
    past: int
    tp: int = 1
    mla_absorb: bool = True
    gqa_kernel_groups: tuple[int, ...] | None = None  # query heads per KV head with a GQA decode kernel (None: all)
    dense_experts: bool = False  # every routed expert runs every token (the routing weights mask its output)

    @property
    def tokens(self) -> int:
        return self.batch * self.new_tokens


def _window_sum(n: int, window: int | None) -> float:
    """sum_{i=1..n} min(i, window): keys seen by n causal queries."""
    if window is None or n <= window:
        return n * (n + 1) / 2
    return window * (window + 1) / 2 + (n - window) * window


def attention_pairs(att: AttentionSpec, step: Step) -> float:
    """(query, key) pairs per sequence in this step under the causal mask and the layer's window."""
    return _window_sum(step.past + step.new_tokens, att.window) - _window_sum(step.past, att.window)


def expected_experts(experts: int, top_k: float, tokens: int) -> float:
    """Expected distinct experts touched by TOKENS tokens each routed to TOP_K of EXPERTS."""
    if tokens <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def _attention(att: AttentionSpec, hidden: int, step: Step, w_bytes: float, kv_bytes: float) -> list[OpCost]:
    tp = step.tp
    proj = att.params(hidden)
    gemm = OpCost("gemm", 2 * step.tokens * proj / tp, 0.0, proj * w_bytes / tp)
    gemm.bytes = gemm.weight_bytes + step.tokens * 2 * proj / hidden * ACT_BYTES / tp
    core = OpCost("attention")
    pairs = attention_pairs(att, step) * step.batch
    if att.kind == "linear":
        per_tok = SCAN_FLOPS * att.heads * att.head_dim**2
        core.flops = step.tokens * per_tok / tp
        core.bytes = step.batch * 2 * att.state_bytes(kv_bytes) / tp
        return [gemm, core]
    cached = min(step.past, att.window or step.past) * step.batch
    if att.kind == "mla":
        r, rope = att.kv_lora_rank or 0, att.qk_rope_head_dim or 0
        nope, v = att.qk_nope_head_dim or 0, att.v_head_dim or 0
        if step.mla_absorb and step.new_tokens == 1:
            core.flops = pairs * 2 * att.heads * (2 * r + rope) / tp
        else:
            expand = 2 * r * att.heads * (nope + v) * (cached if step.new_tokens == 1 else 0)
            core.flops = (pairs * 2 * att.heads * (nope + rope + v) + expand) / tp
        # the latent is shared by all heads: every TP rank reads the whole cache
        core.bytes = (cached + step.tokens) * att.kv_bytes_per_token(kv_bytes)
        return [gemm, core]
    core.flops = pairs * 4 * att.heads * att.head_dim / tp
    kv_split = min(tp, att.kv_heads)  # KV heads are replicated when there are fewer than TP ranks
    # query heads per KV head on one rank: how often a per-query-head kernel reads each cached KV head
    per_query_head = reads_per_query_head(att, step.gqa_kernel_groups)
    reads = max(1.0, att.heads * kv_split / (tp * att.kv_heads)) if per_query_head else 1.0
    core.bytes = (cached * reads + step.tokens) * att.kv_bytes_per_token(kv_bytes) / kv_split
    return [gemm, core]


def _mlp(group: BlockGroup, hidden: int, step: Step, w_bytes: float, expert_bytes: float) -> list[OpCost]:
    mlp, tp = group.mlp, step.tp
    if mlp is None:
        return []
    dense = mlp.matrices * hidden * (mlp.intermediate + mlp.shared_experts * mlp.shared_intermediate)
    if mlp.kind == "moe":
        dense += hidden * (mlp.experts + mlp.zero_experts)  # router
    out = []
    if dense:
        cost = OpCost("gemm", 2 * step.tokens * dense / tp, 0.0, dense * w_bytes / tp)
        cost.bytes = cost.weight_bytes + step.tokens * 2 * dense / hidden * ACT_BYTES / tp
        out.append(cost)
    if mlp.kind == "moe":
        k_real = mlp.experts_per_token(step.dense_experts)
        per_expert = mlp.expert_params(hidden)
        touched = expected_experts(mlp.experts, k_real, step.tokens)
        cost = OpCost(
            "moe", 2 * step.tokens * k_real * per_expert / tp, 0.0, touched * per_expert * expert_bytes / tp
        )
        cost.bytes = cost.weight_bytes + step.tokens * k_real * 2 * per_expert / hidden * ACT_BYTES / tp
        out.append(cost)
    return out


def _ssm(group: BlockGroup, hidden: int, step: Step, w_bytes: float, state_bytes: float) -> list[OpCost]:
    ssm, tp = group.ssm, step.tp
    if ssm is None:
        return []
    proj = ssm.params(hidden)
    gemm = OpCost("gemm", 2 * step.tokens * proj / tp, 0.0, proj * w_bytes / tp)
    gemm.bytes = gemm.weight_bytes + step.tokens * 2 * proj / hidden * ACT_BYTES / tp
    scan = OpCost("ssm", step.tokens * SCAN_FLOPS * ssm.d_inner * ssm.d_state / tp)
    scan.bytes = step.batch * 2 * ssm.state_bytes(state_bytes) / tp
    return [gemm, scan]


def step_costs(
    spec: ModelSpec, step: Step, w_bytes: float, expert_bytes: float, head_bytes: float, kv_bytes: float,
    attention_bytes: float | None = None,
) -> dict[str, OpCost]:
    """Per-device cost of one step, summed over layers, keyed by op class. ATTENTION_BYTES: the width of the
    attention projections when a checkpoint keeps them wider than the other matrices (else W_BYTES); their
    multiply-adds are timed with the other dense matmuls (op class gemm)."""
    totals: dict[str, OpCost] = {}
    hidden = spec.hidden_size
    for group, count in spec.layer_kinds:
        ops: list[OpCost] = []
        if group.attention is not None:
            ops += _attention(group.attention, hidden, step, attention_bytes or w_bytes, kv_bytes)
        ops += _ssm(group, hidden, step, w_bytes, kv_bytes)
        ops += _mlp(group, hidden, step, w_bytes, expert_bytes)
        for op in ops:
            totals.setdefault(op.op_class, OpCost(op.op_class))
            totals[op.op_class].add(op, count)
    # LM head on the last position of each sequence (prefill) or every new token (decode); the input
    # embedding is a gather of one row per token.
    head_tokens = step.batch
    head_params = spec.vocab_size * hidden
    head = OpCost("head", 2 * head_tokens * head_params / step.tp, 0.0, head_params * head_bytes / step.tp)
    head.bytes = head.weight_bytes + step.tokens * hidden * head_bytes + head_tokens * spec.vocab_size * 4
    totals["head"] = head
    return totals
