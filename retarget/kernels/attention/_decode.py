"""Split-KV decode: each program scans one slice of one sequence's cache for all query heads of one KV head,
and leaves a partial output with its log-sum-exp; `_combine` merges the slices (flash-decoding)."""

import triton
import triton.language as tl


@triton.jit
def online_softmax_step(qk, m_i, l_i, acc, v):
    """Fold one block of scores QK [H, N] (masked entries -inf) and values V [N, D] into the running max M_I,
    denominator L_I and output ACC; rows with nothing unmasked yet stay at zero."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.exp(qk - m_safe[:, None])
    alpha = tl.exp(m_i - m_safe)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i * alpha + tl.sum(p, 1), acc


@triton.jit
def decode_split_kernel(
    q_ptr,               # [B, Hq, D] one query per sequence
    k_ptr, v_ptr,        # [B, Hkv, T, D] caches
    lens_ptr,            # *i32 [B] live entries per sequence
    o_ptr,               # *fp32 [B, Hq, SPLITS, D] partial outputs
    lse_ptr,             # *fp32 [B, Hq, SPLITS] their log-sum-exp (-inf for an empty slice)
    sm_scale, window,    # window: keys older than len - window are masked (a huge value: no window)
    stride_qb, stride_qh, stride_kb, stride_kh, stride_kt, stride_vb, stride_vh, stride_vt,
    stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(lens_ptr + b)
    lo = tl.maximum(seq_len - window, 0)
    per = tl.cdiv(tl.cdiv(seq_len - lo, tl.num_programs(2)), BLOCK_N) * BLOCK_N
    start = lo + split * per
    end = tl.minimum(start + per, seq_len)

    offs_g = tl.arange(0, BLOCK_H)
    offs_h = kvh * GROUP + offs_g
    offs_d = tl.arange(0, BLOCK_D)
    h_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + offs_h[:, None] * stride_qh + offs_d[None, :],
                mask=h_mask[:, None] & d_mask[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh
    m_i = tl.full((BLOCK_H,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_H,), tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_D), tl.float32)
    for s in range(start, end, BLOCK_N):
        offs_n = s + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        k = tl.load(k_base + offs_n[None, :] * stride_kt + offs_d[:, None], mask=n_mask[None, :] & d_mask[:, None],
                    other=0.0)
        qk = tl.where(n_mask[None, :], tl.dot(q, k) * sm_scale, float("-inf"))
        v = tl.load(v_base + offs_n[:, None] * stride_vt + offs_d[None, :], mask=n_mask[:, None] & d_mask[None, :],
                    other=0.0)
        m_i, l_i, acc = online_softmax_step(qk, m_i, l_i, acc, v)

    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(l_i > 0, m_i + tl.log(l_safe), float("-inf"))
    o_rows = o_ptr + b * stride_ob + offs_h[:, None] * stride_oh + split * stride_os + offs_d[None, :]
    tl.store(o_rows, out, mask=h_mask[:, None] & d_mask[None, :])
    tl.store(lse_ptr + b * stride_lb + offs_h * stride_lh + split, lse, mask=h_mask)
