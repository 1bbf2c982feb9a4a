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


@triton.jit
def tile_scale_zero(s_ptr, z_ptr, k0, offs_n, N, stride_sg, GROUP: tl.constexpr):
    """The one scale and zero point per output channel of the tile starting at K row K0, in float32."""
    n_mask = offs_n < N
    g = k0 // GROUP
    s = tl.load(s_ptr + g * stride_sg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + g * stride_sg + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    return s, z


@triton.jit
def tile_code_products(
    x_ptr, w_ptr,
    offs_m, k0, offs_n,  # [BLOCK_M] rows, first K row of the tile, [BLOCK_N] output channels
    M, K, N,
    stride_xm, stride_wk,
    BITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """(sum_k x[m, k] q[k, n] over the tile's raw codes [BLOCK_M, BLOCK_N], sum_k x[m, k] [BLOCK_M]), float32.

    A tile lies in one group, so it adds s * (products - sums * z) with its scale s and zero z: no dequantization
    per weight. For 4-bit codes the low nibbles meet the even-K activations and the high nibbles the odd ones,
    so the packed bytes are never interleaved back into K order. BLOCK_M = 1 multiplies on the vector units,
    larger BLOCK_M on the tensor cores (codes up to 255 are exact in fp16 / bf16)."""
    m_mask = offs_m[:, None] < M
    n_mask = offs_n[None, :] < N
    if BITS == 4:
        half = tl.arange(0, BLOCK_K // 2)
        rows = k0 // 2 + half
        byte = tl.load(w_ptr + rows[:, None] * stride_wk + offs_n[None, :],
                       mask=(rows[:, None] < (K + 1) // 2) & n_mask, other=0)
        k_even = k0 + 2 * half
        x_even = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_even[None, :],
                         mask=m_mask & (k_even[None, :] < K), other=0.0)
        x_odd = tl.load(x_ptr + offs_m[:, None] * stride_xm + k_even[None, :] + 1,
                        mask=m_mask & (k_even[None, :] + 1 < K), other=0.0)
        lo, hi = byte & 0xF, byte >> 4
        if BLOCK_M == 1:
            products = (tl.sum(tl.trans(x_even.to(tl.float32)) * lo.to(tl.float32), axis=0)
                        + tl.sum(tl.trans(x_odd.to(tl.float32)) * hi.to(tl.float32), axis=0))[None, :]
        else:
            products = tl.dot(x_even, lo.to(x_even.dtype))
            products = tl.dot(x_odd, hi.to(x_odd.dtype), products)
        sums = tl.sum(x_even.to(tl.float32), axis=1) + tl.sum(x_odd.to(tl.float32), axis=1)
    else:
        offs_k = k0 + tl.arange(0, BLOCK_K)
        q = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :], mask=(offs_k[:, None] < K) & n_mask,
                    other=0)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :], mask=m_mask & (offs_k[None, :] < K),
                    other=0.0)
        if BLOCK_M == 1:
            products = tl.sum(tl.trans(x.to(tl.float32)) * q.to(tl.float32), axis=0)[None, :]
        else:
            products = tl.dot(x, q.to(x.dtype))
        sums = tl.sum(x.to(tl.float32), axis=1)
    return products, sums
