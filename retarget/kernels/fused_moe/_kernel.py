"""Grouped expert GEMM over sorted, block-aligned (token, slot) rows: each program computes one BLOCK_M x
BLOCK_N output tile of one expert, gathering its activation rows; the weight format is a constexpr."""

import triton
import triton.language as tl

from retarget.kernels._tl import e8m0_to_float, tile_ids
from retarget.kernels.mxfp4_gemm._kernel import _e2m1_to_float, _expand_k
from retarget.kernels.w4a16_gemm._dequant import dequant_tile

FLOAT, INT_GROUP, FP8_BLOCK, MXFP4 = 0, 1, 2, 3   # W_FORMAT values (see op.ExpertWeights)


@triton.jit
def mxfp4_tile(w_ptr, s_ptr, k0, offs_n, K, N, stride_wk, stride_sn, BLOCK_K: tl.constexpr,
               BLOCK_N: tl.constexpr, OUT: tl.constexpr):
    """[BLOCK_K, BLOCK_N] of an MXFP4 weight (mxfp4_gemm layout: K-packed E2M1 [ceil(K/2), N], E8M0 scales
    [N, ceil(K/32)]) decoded in registers; BLOCK_K is a multiple of 32."""
    offs_b = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    offs_s = k0 // 32 + tl.arange(0, BLOCK_K // 32)
    n_mask = offs_n < N
    packed = tl.load(w_ptr + offs_b[:, None] * stride_wk + offs_n[None, :],
                     mask=(offs_b[:, None] < (K + 1) // 2) & n_mask[None, :], other=0)
    scale = tl.load(s_ptr + offs_n[:, None] * stride_sn + offs_s[None, :],
                    mask=n_mask[:, None] & (offs_s[None, :] < tl.cdiv(K, 32)), other=127)
    codes = tl.reshape(tl.permute(tl.join(packed & 0xF, packed >> 4), (0, 2, 1)), (BLOCK_K, BLOCK_N))
    return (_e2m1_to_float(codes) * tl.trans(_expand_k(e8m0_to_float(scale), BLOCK_K, BLOCK_N))).to(OUT)


@triton.jit
def moe_gemm_kernel(
    a_ptr,               # [rows, K] activations (rows = T: row of pair p is p // TOP_K)
    w_ptr,               # FLOAT / FP8_BLOCK: [E, N, K]; INT_GROUP: packed codes [E, ceil(K * BITS / 8), N];
                         # MXFP4: packed E2M1 [E, ceil(K/2), N]
    s_ptr, z_ptr,        # INT_GROUP: scale / zero [E, G, N]; FP8_BLOCK: scale fp32 [E, ceil(N/128), ceil(K/128)];
                         # MXFP4: E8M0 scales [E, N, ceil(K/32)]
    c_ptr,               # [T * TOP_K, N] output, one row per (token, slot) pair
    rw_ptr,              # *fp32 [T * TOP_K] routing weights (read if MUL_ROUTED)
    sorted_ptr,          # *i32 [padded] pair indices grouped by expert (pad value = num_pairs)
    expert_ptr,          # *i32 [padded / BLOCK_M]
    padded, num_pairs, N, K,
    stride_am, stride_we, stride_wr, stride_se, stride_sr, stride_cm,
    TOP_K: tl.constexpr, MUL_ROUTED: tl.constexpr, W_FORMAT: tl.constexpr, BITS: tl.constexpr,
    GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    pid_m, pid_n = tile_ids(tl.program_id(0), padded, N, BLOCK_M, BLOCK_N, GROUP_M)
    if pid_m * BLOCK_M >= padded:
        return
    pairs = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    m_mask = pairs < num_pairs
    expert = tl.load(expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    a_rows = a_ptr + (pairs // TOP_K).to(tl.int64)[:, None] * stride_am
    w_base = w_ptr + expert * stride_we
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        a = tl.load(a_rows + offs_k[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        if W_FORMAT == 1:
            w = dequant_tile(w_base, s_ptr + expert * stride_se, z_ptr + expert * stride_se, k0, offs_n, K, N,
                             stride_wr, stride_sr, BITS, GROUP, BLOCK_K, BLOCK_N, a_ptr.dtype.element_ty)
        elif W_FORMAT == 3:
            w = mxfp4_tile(w_base, s_ptr + expert * stride_se, k0, offs_n, K, N, stride_wr, stride_sr, BLOCK_K,
                           BLOCK_N, a_ptr.dtype.element_ty)
        else:
            w = tl.load(w_base + offs_n[None, :] * stride_wr + offs_k[:, None],
                        mask=n_mask[None, :] & k_mask[:, None], other=0.0)
            if W_FORMAT == 2:   # 128 x 128 blocks: BLOCK_K divides 128, so one scale column per step
                s = tl.load(s_ptr + expert * stride_se + (offs_n // 128) * stride_sr + k0 // 128, mask=n_mask,
                            other=0.0)
                w = (w.to(tl.float32) * s[None, :]).to(a_ptr.dtype.element_ty)
        acc = tl.dot(a, w, acc)
    if MUL_ROUTED:
        acc *= tl.load(rw_ptr + pairs, mask=m_mask, other=0.0)[:, None]
    tl.store(c_ptr + pairs.to(tl.int64)[:, None] * stride_cm + offs_n[None, :], acc.to(c_ptr.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])
