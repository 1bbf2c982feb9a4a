"""Tiled FP8 GEMM. Per-channel scales are applied once in the epilogue; block scales are applied to
each 128-wide K step's partial product before it joins the float32 accumulator (the "promotion"
DeepGEMM does on CUDA cores, https://github.com/deepseek-ai/DeepGEMM)."""

import triton
import triton.language as tl

from retarget.kernels._tl import e8m0_to_float, tile_ids


@triton.jit
def _scale(ptr, offs, mask, E8M0: tl.constexpr):
    if E8M0:
        s = e8m0_to_float(tl.load(ptr + offs, mask=mask, other=127))
    else:
        s = tl.load(ptr + offs, mask=mask, other=0.0)
    return s


@triton.jit
def fp8_gemm_kernel(
    x_ptr,               # *fp8 activations [M, K], unit stride along K
    w_ptr,               # *fp8 weight [N, K], unit stride along K (K-major B operand, as fp8 MMAs want)
    sx_ptr,              # activation scales: [M] (channel) or [M, ceil(K/128)] (block); fp32 or u8 UE8M0
    sw_ptr,              # weight scales: [N] (channel) or [ceil(N/128), ceil(K/128)] (block)
    b_ptr,               # bias [N] (ignored unless HAS_BIAS)
    y_ptr,               # output [M, N] (bf16 / fp16)
    M, N, K,
    stride_xm, stride_wn, stride_ym,
    stride_sxm,          # row stride of the block activation scales
    stride_swn,          # row stride of the block weight scales
    BLOCKWISE: tl.constexpr, E8M0: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    SCALE_BLOCK: tl.constexpr = 128
    pid_m, pid_n = tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=m_mask[:, None] & (offs_k[None, :] < K), other=0.0)
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None],
                    mask=n_mask[None, :] & (offs_k[:, None] < K), other=0.0)
        if BLOCKWISE:  # BLOCK_K divides 128, so the whole step shares one scale column
            kb = k0 // SCALE_BLOCK
            sx = _scale(sx_ptr, offs_m * stride_sxm + kb, m_mask, E8M0)
            sw = _scale(sw_ptr, (offs_n // SCALE_BLOCK) * stride_swn + kb, n_mask, E8M0)
            acc += tl.dot(x, w) * sx[:, None] * sw[None, :]
        else:
            acc = tl.dot(x, w, acc)
    if not BLOCKWISE:
        acc *= _scale(sx_ptr, offs_m, m_mask, E8M0)[:, None] * _scale(sw_ptr, offs_n, n_mask, E8M0)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])
