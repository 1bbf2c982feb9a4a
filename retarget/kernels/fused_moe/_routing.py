"""Routing: scores, group-limited top-k and weight normalisation for one token per program."""

import triton
import triton.language as tl


@triton.jit
def routing_kernel(
    logits_ptr,          # [T, E]
    bias_ptr,            # *fp32 [E] selection bias (ignored unless HAS_BIAS)
    w_ptr,               # *fp32 [T, TOP_K] routing weights
    ids_ptr,             # *i32 [T, TOP_K] expert ids, best first
    stride_lt, routed_scaling,
    EXPERTS_PER_GROUP: tl.constexpr, N_GROUP: tl.constexpr, TOPK_GROUP: tl.constexpr, TOP_K: tl.constexpr,
    SIGMOID: tl.constexpr, HAS_BIAS: tl.constexpr, GROUP_TOP2: tl.constexpr, RENORMALIZE: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_EG: tl.constexpr, BLOCK_K: tl.constexpr,
):
    t = tl.program_id(0)
    offs_g = tl.arange(0, BLOCK_G)
    offs_e = tl.arange(0, BLOCK_EG)
    valid = (offs_g[:, None] < N_GROUP) & (offs_e[None, :] < EXPERTS_PER_GROUP)
    expert = offs_g[:, None] * EXPERTS_PER_GROUP + offs_e[None, :]
    x = tl.load(logits_ptr + t * stride_lt + expert, mask=valid, other=float("-inf")).to(tl.float32)
    if SIGMOID:
        scores = tl.where(valid, tl.sigmoid(x), 0.0)
    else:
        ex = tl.exp(x - tl.max(tl.max(x, 1), 0))
        scores = ex / tl.sum(tl.sum(ex, 1), 0)
    choice = scores
    if HAS_BIAS:
        choice += tl.load(bias_ptr + expert, mask=valid, other=0.0)
    choice = tl.where(valid, choice, float("-inf"))

    # group score: best choice in the group, or the sum of its best two
    best = tl.max(choice, 1)
    group_score = best
    if GROUP_TOP2:
        first = tl.argmax(choice, 1)
        group_score += tl.max(tl.where(offs_e[None, :] == first[:, None], float("-inf"), choice), 1)
    group_score = tl.where(offs_g < N_GROUP, group_score, float("-inf"))
    keep = offs_g < 0
    for _ in tl.static_range(TOPK_GROUP):
        g = tl.argmax(group_score, 0)
        keep = keep | (offs_g == g)
        group_score = tl.where(offs_g == g, float("-inf"), group_score)
    choice = tl.where(keep[:, None], choice, float("-inf"))

    flat_choice = tl.reshape(choice, (BLOCK_G * BLOCK_EG,))
    flat_scores = tl.reshape(scores, (BLOCK_G * BLOCK_EG,))
    flat = tl.arange(0, BLOCK_G * BLOCK_EG)
    offs_k = tl.arange(0, BLOCK_K)
    weights = tl.zeros((BLOCK_K,), tl.float32)
    ids = tl.zeros((BLOCK_K,), tl.int32)
    for j in tl.static_range(TOP_K):
        i = tl.argmax(flat_choice, 0)
        w = tl.sum(tl.where(flat == i, flat_scores, 0.0), 0)
        weights = tl.where(offs_k == j, w, weights)
        ids = tl.where(offs_k == j, (i // BLOCK_EG) * EXPERTS_PER_GROUP + i % BLOCK_EG, ids)
        flat_choice = tl.where(flat == i, float("-inf"), flat_choice)
    if RENORMALIZE:
        weights = weights / tl.sum(weights, 0)
    k_mask = offs_k < TOP_K
    tl.store(w_ptr + t * TOP_K + offs_k, weights * routed_scaling, mask=k_mask)
    tl.store(ids_ptr + t * TOP_K + offs_k, ids, mask=k_mask)
