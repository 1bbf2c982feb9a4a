"""Merge the split-KV partial outputs of one (sequence, query head), with the head's sink logit in the
denominator. Shared by decode attention and MLA decode."""

import triton
import triton.language as tl


@triton.jit
def combine_kernel(
    o_ptr,               # *fp32 [B, H, SPLITS, D] partial outputs
    lse_ptr,             # *fp32 [B, H, SPLITS]
    sink_ptr,            # *fp32 [H] sink logits (ignored unless HAS_SINK)
    out_ptr,             # [B, H, D]
    SPLITS, HEAD_DIM,
    stride_ob, stride_oh, stride_os, stride_lb, stride_lh, stride_yb, stride_yh,
    HAS_SINK: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < SPLITS
    d_mask = offs_d < HEAD_DIM
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + offs_s, mask=s_mask, other=float("-inf"))
    m = tl.max(lse, 0)
    if HAS_SINK:
        sink = tl.load(sink_ptr + h).to(tl.float32)
        m = tl.maximum(m, sink)
    w = tl.exp(lse - m)
    denom = tl.sum(w, 0)
    if HAS_SINK:
        denom += tl.exp(sink - m)
    o = tl.load(o_ptr + b * stride_ob + h * stride_oh + offs_s[:, None] * stride_os + offs_d[None, :],
                mask=s_mask[:, None] & d_mask[None, :], other=0.0)
    y = tl.sum(o * w[:, None], 0) / denom
    tl.store(out_ptr + b * stride_yb + h * stride_yh + offs_d, y.to(out_ptr.dtype.element_ty), mask=d_mask)
