"""Causal prefill attention with a sliding window and sink logits (flash-attention forward): one program per
block of queries of one head; key blocks entirely outside the window are never loaded."""

import triton
import triton.language as tl

from retarget.kernels.attention._decode import online_softmax_step


@triton.jit
def prefill_kernel(
    q_ptr,               # [B, Hq, Sq, D]
    k_ptr, v_ptr,        # [B, Hkv, Sk, D], Sk >= Sq (the queries are the last Sq positions)
    sink_ptr,            # *fp32 [Hq] (ignored unless HAS_SINK)
    o_ptr,               # [B, Hq, Sq, D]
    Sq, Sk, sm_scale, window,
    stride_qb, stride_qh, stride_qs, stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
    stride_ob, stride_oh, stride_os,
    HQ: tl.constexpr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, HAS_SINK: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    b = tl.program_id(1) // HQ
    h = tl.program_id(1) % HQ
    kvh = h // GROUP
    offset = Sk - Sq
    offs_m = start_m + tl.arange(0, BLOCK_M)
    pos = offs_m + offset
    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=(offs_m[:, None] < Sq) & d_mask[None, :], other=0.0)
    k_base = k_ptr + b * stride_kb + kvh * stride_kh
    v_base = v_ptr + b * stride_vb + kvh * stride_vh
    lo = tl.maximum(start_m + offset - window + 1, 0) // BLOCK_N * BLOCK_N
    hi = tl.minimum(start_m + BLOCK_M + offset, Sk)
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    for s in range(lo, hi, BLOCK_N):
        offs_n = s + tl.arange(0, BLOCK_N)
        n_mask = offs_n < Sk
        k = tl.load(k_base + offs_n[None, :] * stride_ks + offs_d[:, None], mask=n_mask[None, :] & d_mask[:, None],
                    other=0.0)
        allowed = (n_mask[None, :] & (offs_n[None, :] <= pos[:, None])
                   & (pos[:, None] - offs_n[None, :] < window))
        qk = tl.where(allowed, tl.dot(q, k) * sm_scale, float("-inf"))
        v = tl.load(v_base + offs_n[:, None] * stride_vs + offs_d[None, :], mask=n_mask[:, None] & d_mask[None, :],
                    other=0.0)
        m_i, l_i, acc = online_softmax_step(qk, m_i, l_i, acc, v)
    if HAS_SINK:
        sink = tl.load(sink_ptr + h).to(tl.float32)
        m_f = tl.maximum(m_i, sink)
        alpha = tl.exp(m_i - m_f)
        acc = acc * alpha[:, None]
        l_i = l_i * alpha + tl.exp(sink - m_f)
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(o_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=(offs_m[:, None] < Sq) & d_mask[None, :])
