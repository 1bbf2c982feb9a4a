"""Split-KV MLA decode over the latent cache: each program takes BLOCK_H query heads of one sequence and one
slice of its cache; each latent row is loaded once and serves as both key (with the rope part) and value."""

import triton
import triton.language as tl

from retarget.kernels.attention._decode import online_softmax_step


@triton.jit
def mla_split_kernel(
    ql_ptr,              # [B, H, R] absorbed queries (q_nope @ W_UK)
    qr_ptr,              # [B, H, P] rope queries
    c_ptr,               # [B, T, R + P] latent cache: latent row then rope key
    lens_ptr,            # *i32 [B]
    o_ptr,               # *fp32 [B, H, SPLITS, R] partial latent outputs
    lse_ptr,             # *fp32 [B, H, SPLITS]
    sm_scale, H,
    stride_qlb, stride_qlh, stride_qrb, stride_qrh, stride_cb, stride_ct,
    stride_ob, stride_oh, stride_os, stride_lb, stride_lh,
    RANK: tl.constexpr, ROPE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_P: tl.constexpr,
):
    b = tl.program_id(0)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    split = tl.program_id(2)
    seq_len = tl.load(lens_ptr + b)
    per = tl.cdiv(tl.cdiv(seq_len, tl.num_programs(2)), BLOCK_N) * BLOCK_N
    start = split * per
    end = tl.minimum(start + per, seq_len)

    offs_r = tl.arange(0, BLOCK_R)
    offs_p = tl.arange(0, BLOCK_P)
    h_mask = offs_h < H
    r_mask = offs_r < RANK
    p_mask = offs_p < ROPE
    ql = tl.load(ql_ptr + b * stride_qlb + offs_h[:, None] * stride_qlh + offs_r[None, :],
                 mask=h_mask[:, None] & r_mask[None, :], other=0.0)
    qr = tl.load(qr_ptr + b * stride_qrb + offs_h[:, None] * stride_qrh + offs_p[None, :],
                 mask=h_mask[:, None] & p_mask[None, :], other=0.0)
    c_base = c_ptr + b * stride_cb
    m_i = tl.full((BLOCK_H,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_H,), tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_R), tl.float32)
    for s in range(start, end, BLOCK_N):
        offs_n = s + tl.arange(0, BLOCK_N)
        n_mask = offs_n < end
        lat = tl.load(c_base + offs_n[:, None] * stride_ct + offs_r[None, :],
                      mask=n_mask[:, None] & r_mask[None, :], other=0.0)          # [N, R]: key and value
        pe = tl.load(c_base + offs_n[None, :] * stride_ct + RANK + offs_p[:, None],
                     mask=n_mask[None, :] & p_mask[:, None], other=0.0)          # [P, N]
        qk = (tl.dot(ql, tl.trans(lat)) + tl.dot(qr, pe)) * sm_scale
        qk = tl.where(n_mask[None, :], qk, float("-inf"))
        m_i, l_i, acc = online_softmax_step(qk, m_i, l_i, acc, lat)

    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    lse = tl.where(l_i > 0, m_i + tl.log(l_safe), float("-inf"))
    tl.store(o_ptr + b * stride_ob + offs_h[:, None] * stride_oh + split * stride_os + offs_r[None, :], out,
             mask=h_mask[:, None] & r_mask[None, :])
    tl.store(lse_ptr + b * stride_lb + offs_h * stride_lh + split, lse, mask=h_mask)
