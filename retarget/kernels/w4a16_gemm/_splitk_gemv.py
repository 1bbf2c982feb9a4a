"""Split-K GEMV / skinny GEMM for M = 1..16: memory-bound, so the grid splits K as well as N to put
enough programs in flight to saturate DRAM (GemLite's split-K GEMV, https://github.com/mobiusml/gemlite).

Each program reduces a slice of K tiles for one BLOCK_N strip and atomically adds its partial sums
into a float32 workspace [M, N] (zeroed by the launcher). BLOCK_M = 1 multiplies on the vector units
(tl.sum); BLOCK_M = 16 pads the rows to the tensor-core minimum and uses tl.dot.
"""

import triton
import triton.language as tl

from retarget.kernels.w4a16_gemm._dequant import dequant_tile


@triton.jit
def splitk_gemv_kernel(
    x_ptr,               # *fp16/bf16 activations [M, K], unit stride along K
    w_ptr,               # *u8 packed codes (layout.py)
    s_ptr, z_ptr,        # scale / zero [G, N]
    acc_ptr,             # *fp32 workspace [M, N], zero-initialised
    M, N, K,
    stride_xm, stride_wk, stride_sg, stride_am,
    SPLIT_K,             # programs along K; each takes ceil(k_tiles / SPLIT_K) consecutive tiles
    BITS: tl.constexpr, GROUP: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    k_tiles = tl.cdiv(K, BLOCK_K)
    per_split = tl.cdiv(k_tiles, SPLIT_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for t in range(pid_k * per_split, tl.minimum((pid_k + 1) * per_split, k_tiles)):
        offs_k = t * BLOCK_K + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
        if BLOCK_M == 1:
            w = dequant_tile(w_ptr, s_ptr, z_ptr, t * BLOCK_K, offs_n, K, N, stride_wk, stride_sg,
                             BITS, GROUP, BLOCK_K, BLOCK_N, tl.float32)
            acc += tl.sum(tl.trans(x.to(tl.float32)) * w, axis=0)[None, :]
        else:
            w = dequant_tile(w_ptr, s_ptr, z_ptr, t * BLOCK_K, offs_n, K, N, stride_wk, stride_sg,
                             BITS, GROUP, BLOCK_K, BLOCK_N, x_ptr.dtype.element_ty)
            acc = tl.dot(x, w, acc)
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.atomic_add(acc_ptr + offs_m[:, None] * stride_am + offs_n[None, :], acc, mask=mask, sem="relaxed")
