"""Load one [BLOCK_K, BLOCK_N] tile of packed group-quantized weights and dequantize it in registers."""

import triton
import triton.language as tl


@triton.jit
def dequant_tile(
    w_ptr,               # *u8 packed codes, [ceil(K*BITS/8), N] row-major (see layout.py)
    s_ptr, z_ptr,        # *fp16/bf16 scale and zero point, [G, N] row-major
    k0,                  # first K row of the tile (a multiple of BLOCK_K, so the tile lies in one group)
    offs_n,              # [BLOCK_N] output-channel indices
    K, N,
    stride_wk,           # row stride of the packed codes
    stride_sg,           # row stride of scale / zero
    BITS: tl.constexpr, GROUP: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
    OUT: tl.constexpr,   # dtype of the returned tile
):
    n_mask = offs_n < N
    if BITS == 4:
        rows = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        byte = tl.load(w_ptr + rows[:, None] * stride_wk + offs_n[None, :],
                       mask=(rows[:, None] < (K + 1) // 2) & n_mask[None, :], other=0)
        # interleave low / high nibbles back into K order: row 2j <- low, 2j + 1 <- high
        q = tl.reshape(tl.permute(tl.join(byte & 0xF, byte >> 4), (0, 2, 1)), (BLOCK_K, BLOCK_N))
    else:
        rows = k0 + tl.arange(0, BLOCK_K)
        q = tl.load(w_ptr + rows[:, None] * stride_wk + offs_n[None, :],
                    mask=(rows[:, None] < K) & n_mask[None, :], other=0)
    # rows past K (masked codes) dequantize to -zero * scale; the masked activations there are 0
    g = k0 // GROUP
    s = tl.load(s_ptr + g * stride_sg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + g * stride_sg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    return ((q.to(tl.float32) - z[None, :]) * s[None, :]).to(OUT)
