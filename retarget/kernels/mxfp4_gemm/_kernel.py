"""Tiled MXFP4-weight GEMM. DOT_SCALED hands packed E2M1 and E8M0 scales to tl.dot_scaled (block-scaled
MMA on sm_100+ / gfx950, compiler-inserted upcast elsewhere); otherwise the kernel decodes E2M1 and
applies the scales in registers, then runs an ordinary tl.dot in the output dtype."""

import triton
import triton.language as tl

from retarget.kernels._tl import e8m0_to_float


@triton.jit
def _e2m1_to_float(c):
    """E2M1 nibble (uint8 0..15) to float32: sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0."""
    mag = c & 7
    e = (mag >> 1).to(tl.float32)
    m = (mag & 1).to(tl.float32)
    v = tl.where(e == 0.0, 0.5 * m, (1.0 + 0.5 * m) * tl.exp2(e - 1.0))
    return tl.where((c & 8) != 0, -v, v)


@triton.jit
def _expand_k(s, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr):
    """[BLOCK_R, BLOCK_K // 32] per-block values -> [BLOCK_R, BLOCK_K] per element."""
    s = tl.broadcast_to(s[:, :, None], (BLOCK_R, BLOCK_K // 32, 32))
    return tl.reshape(s, (BLOCK_R, BLOCK_K))


@triton.jit
def mxfp4_gemm_kernel(
    x_ptr,               # activations [M, K]: fp16 / bf16, or fp8 e4m3 (ACT_FORMAT "e4m3")
    xs_ptr,              # *u8 E8M0 activation scales [M, ceil(K/32)] (e4m3 only)
    w_ptr,               # *u8 packed E2M1 codes [ceil(K/2), N], low nibble = even k (tl.dot_scaled order)
    ws_ptr,              # *u8 E8M0 weight scales [N, ceil(K/32)]
    b_ptr,               # bias [N] (ignored unless HAS_BIAS)
    y_ptr,               # output [M, N] (fp16 / bf16); also the dtype of the dequantized MMA
    M, N, K,
    stride_xm, stride_xsm, stride_wk, stride_wsn, stride_ym,
    ACT_FORMAT: tl.constexpr,  # "fp16", "bf16" or "e4m3"
    DOT_SCALED: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < N
    k_blocks = tl.cdiv(K, 32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        offs_b = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        offs_s = k0 // 32 + tl.arange(0, BLOCK_K // 32)
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :],
                    mask=m_mask[:, None] & (offs_k[None, :] < K), other=0.0)
        packed = tl.load(w_ptr + offs_b[:, None] * stride_wk + offs_n[None, :],
                         mask=(offs_b[:, None] < (K + 1) // 2) & n_mask[None, :], other=0)
        ws = tl.load(ws_ptr + offs_n[:, None] * stride_wsn + offs_s[None, :],
                     mask=n_mask[:, None] & (offs_s[None, :] < k_blocks), other=127)
        if ACT_FORMAT == "e4m3":
            xs = tl.load(xs_ptr + offs_m[:, None] * stride_xsm + offs_s[None, :],
                         mask=m_mask[:, None] & (offs_s[None, :] < k_blocks), other=127)
        if DOT_SCALED:
            if ACT_FORMAT == "e4m3":
                acc = tl.dot_scaled(x, xs, "e4m3", packed, ws, "e2m1", acc)
            else:
                acc = tl.dot_scaled(x, None, ACT_FORMAT, packed, ws, "e2m1", acc)
        else:
            codes = tl.reshape(tl.permute(tl.join(packed & 0xF, packed >> 4), (0, 2, 1)), (BLOCK_K, BLOCK_N))
            w = _e2m1_to_float(codes) * tl.trans(_expand_k(e8m0_to_float(ws), BLOCK_K, BLOCK_N))
            if ACT_FORMAT == "e4m3":
                x = x.to(tl.float32) * _expand_k(e8m0_to_float(xs), BLOCK_K, BLOCK_M)
            acc = tl.dot(x.to(y_ptr.dtype.element_ty), w.to(y_ptr.dtype.element_ty), acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])
