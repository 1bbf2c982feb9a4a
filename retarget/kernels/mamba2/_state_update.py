"""Single-step SSD update for decode: one program per (sequence, head, block of P channels) reads its state
slice once, updates it in place and emits y."""

import triton
import triton.language as tl


@triton.jit
def state_update_kernel(
    state_ptr,           # *fp32 [B, H, P, N], updated in place
    x_ptr,               # [B, H, P]
    dt_ptr,              # [B, H]
    a_ptr,               # *fp32 [H]
    b_ptr, c_ptr,        # [B, G, N]
    d_ptr,               # *fp32 [H] (read if HAS_D)
    y_ptr,               # [B, H, P]
    H, P,
    stride_sb, stride_sh, stride_sp, stride_xb, stride_xh, stride_db, stride_bb, stride_bg,
    HEADS_PER_GROUP: tl.constexpr, STATE_DIM: tl.constexpr, HAS_D: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    bh = tl.program_id(0)
    bi = bh // H
    h = bh % H
    g = h // HEADS_PER_GROUP
    offs_p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    p_mask = offs_p < P
    n_mask = offs_n < STATE_DIM
    s_ptrs = state_ptr + bi * stride_sb + h * stride_sh + offs_p[:, None] * stride_sp + offs_n[None, :]
    s_mask = p_mask[:, None] & n_mask[None, :]
    state = tl.load(s_ptrs, mask=s_mask, other=0.0)
    x = tl.load(x_ptr + bi * stride_xb + h * stride_xh + offs_p, mask=p_mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + bi * stride_db + h).to(tl.float32)
    bv = tl.load(b_ptr + bi * stride_bb + g * stride_bg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    cv = tl.load(c_ptr + bi * stride_bb + g * stride_bg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    state = state * tl.exp(dt * tl.load(a_ptr + h)) + (dt * x)[:, None] * bv[None, :]
    y = tl.sum(state * cv[None, :], 1)
    if HAS_D:
        y += tl.load(d_ptr + h) * x
    tl.store(s_ptrs, state, mask=s_mask)
    tl.store(y_ptr + bi * stride_xb + h * stride_xh + offs_p, y.to(y_ptr.dtype.element_ty), mask=p_mask)
