"""Tiled GEMM for M > 16: each program owns a BLOCK_M x BLOCK_N output tile, dequantizes the weight
tile in registers every K step and feeds the tensor cores in the activation dtype; bias and the
cast to the output dtype are fused into the epilogue."""

import triton
import triton.language as tl

from retarget.kernels._tl import tile_ids
from retarget.kernels.w4a16_gemm._dequant import dequant_tile


@triton.jit
def tiled_kernel(
    x_ptr,               # *fp16/bf16 activations [M, K], unit stride along K
    w_ptr,               # *u8 packed codes (layout.py)
    s_ptr, z_ptr,        # scale / zero [G, N]
    b_ptr,               # bias [N] (ignored unless HAS_BIAS)
    y_ptr,               # output [M, N], activation dtype
    M, N, K,
    stride_xm, stride_wk, stride_sg, stride_ym,
    HAS_BIAS: tl.constexpr, BITS: tl.constexpr, GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        w = dequant_tile(w_ptr, s_ptr, z_ptr, k0, offs_n, K, N, stride_wk, stride_sg,
                         BITS, GROUP, BLOCK_K, BLOCK_N, x_ptr.dtype.element_ty)
        acc = tl.dot(x, w, acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)
