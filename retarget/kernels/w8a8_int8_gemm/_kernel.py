"""Tiled INT8 GEMM: int8 x int8 -> int32 on the tensor cores;
both scales and the bias are fused into the epilogue."""

import triton
import triton.language as tl

from retarget.kernels._tl import tile_ids


@triton.jit
def int8_gemm_kernel(
    x_ptr,               # *i8 activations [M, K], unit stride along K
    w_ptr,               # *i8 weight [N, K], unit stride along K (the Linear layout: K-major B operand)
    sx_ptr,              # *fp32 per-token scales [M]
    sw_ptr,              # *fp32 per-channel scales [N]
    b_ptr,               # bias [N] (ignored unless HAS_BIAS)
    y_ptr,               # output [M, N] (fp16 / bf16)
    M, N, K,
    stride_xm, stride_wn, stride_ym,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0)
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + offs_k[:, None],
                    mask=(offs_n[None, :] < N) & (offs_k[:, None] < K), other=0)
        acc = tl.dot(x, w, acc, out_dtype=tl.int32)
    sx = tl.load(sx_ptr + offs_m, mask=offs_m < M, other=0.0)
    sw = tl.load(sw_ptr + offs_n, mask=offs_n < N, other=0.0)
    y = acc.to(tl.float32) * sx[:, None] * sw[None, :]
    if HAS_BIAS:
        y += tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
