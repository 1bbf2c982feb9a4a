"""Chunked SSD scan: one program per (sequence, head, block of P channels) walks the chunks in order, carrying
the [BLOCK_P, N] state in registers; inside a chunk everything is three tensor-core products."""

import triton
import triton.language as tl


@triton.jit
def chunk_scan_kernel(
    x_ptr,               # [B, L, H, P]
    dt_ptr,              # [B, L, H] step sizes (after softplus)
    a_ptr,               # *fp32 [H] (negative)
    b_ptr, c_ptr,        # [B, L, G, N]
    d_ptr,               # *fp32 [H] skip (read if HAS_D)
    s0_ptr,              # *fp32 [B, H, P, N] initial state (read if HAS_INIT)
    y_ptr,               # [B, L, H, P]
    sT_ptr,              # *fp32 [B, H, P, N] final state
    L, H, P,
    stride_xb, stride_xl, stride_xh, stride_db, stride_dl, stride_bb, stride_bl, stride_bg,
    stride_sb, stride_sh, stride_sp,
    HEADS_PER_GROUP: tl.constexpr, STATE_DIM: tl.constexpr, HAS_D: tl.constexpr, HAS_INIT: tl.constexpr,
    CHUNK: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bh = tl.program_id(0)
    bi = bh // H
    h = bh % H
    g = h // HEADS_PER_GROUP
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    offs_l = tl.arange(0, CHUNK)
    p_mask = offs_p < P
    n_mask = offs_n < STATE_DIM
    a = tl.load(a_ptr + h)
    s_rows = bi * stride_sb + h * stride_sh + offs_p[:, None] * stride_sp + offs_n[None, :]
    s_mask = p_mask[:, None] & n_mask[None, :]
    if HAS_INIT:
        state = tl.load(s0_ptr + s_rows, mask=s_mask, other=0.0)
    else:
        state = tl.zeros((BLOCK_P, BLOCK_N), tl.float32)
    causal = offs_l[:, None] >= offs_l[None, :]
    for c0 in range(0, L, CHUNK):
        t = c0 + offs_l
        t_mask = t < L
        dt = tl.load(dt_ptr + bi * stride_db + t * stride_dl + h, mask=t_mask, other=0.0).to(tl.float32)
        cum = tl.cumsum(dt * a, 0)                     # log of the decay from the chunk start to t
        x = tl.load(x_ptr + bi * stride_xb + t[:, None] * stride_xl + h * stride_xh + offs_p[None, :],
                    mask=t_mask[:, None] & p_mask[None, :], other=0.0)
        bc_rows = bi * stride_bb + t[:, None] * stride_bl + g * stride_bg + offs_n[None, :]
        bc_mask = t_mask[:, None] & n_mask[None, :]
        bm = tl.load(b_ptr + bc_rows, mask=bc_mask, other=0.0)
        cm = tl.load(c_ptr + bc_rows, mask=bc_mask, other=0.0)
        # inside the chunk: y_i += sum_{j <= i} (C_i . B_j) exp(cum_i - cum_j) dt_j x_j
        decay = tl.exp(tl.where(causal, cum[:, None] - cum[None, :], float("-inf")))
        scores = tl.dot(cm, tl.trans(bm)) * decay * dt[None, :]
        y = tl.dot(scores.to(x.dtype), x)
        # from earlier chunks: y_i += exp(cum_i) C_i . S
        y += tl.exp(cum)[:, None] * tl.dot(cm, tl.trans(state.to(x.dtype)))
        if HAS_D:
            y += tl.load(d_ptr + h) * x.to(tl.float32)
        tl.store(y_ptr + bi * stride_xb + t[:, None] * stride_xl + h * stride_xh + offs_p[None, :],
                 y.to(y_ptr.dtype.element_ty), mask=t_mask[:, None] & p_mask[None, :])
        total = tl.sum(dt * a, 0)
        w = tl.exp(total - cum) * dt                   # what each step still weighs at the chunk end
        state = state * tl.exp(total) + tl.dot(tl.trans((x.to(tl.float32) * w[:, None]).to(x.dtype)), bm)
    tl.store(sT_ptr + s_rows, state, mask=s_mask)
