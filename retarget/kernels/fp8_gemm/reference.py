"""FP8 E4M3 W8A8 GEMM in torch, with per-channel or DeepSeek-style block scales.

    channel: y[m, n] = sx[m] * sw[n] * sum_k x[m, k] w[n, k]
    block:   y[m, n] = sum_kb sx[m, kb] * sw[n // 128, kb] * sum_{k in block kb} x[m, k] w[n, k]
             (1 x 128 activation blocks, 128 x 128 weight blocks, DeepSeek-V3, https://arxiv.org/abs/2412.19437)

Scales are float32, or UE8M0 (uint8 exponent codes, value 2 ** (code - 127), DeepSeek-V3.1's
power-of-two scales). Per call the kernel reads M*K + N*K bytes of fp8 plus the scales (4 B or 1 B
each: M + N per-channel, M*ceil(K/128) + ceil(N/128)*ceil(K/128) blockwise), writes M*N outputs
(2 B) and does 2*M*N*K flops.
"""

from __future__ import annotations

import math

import torch

BLOCK = 128
E4M3_MAX = 448.0


def decode_scale(scale: torch.Tensor) -> torch.Tensor:
    """Float32 value of a float32 scale or of a UE8M0 code (uint8)."""
    if scale.dtype == torch.uint8:
        return torch.exp2(scale.float() - 127.0)
    return scale.float()


def _scale_for(amax: torch.Tensor, fmax: float, ue8m0: bool) -> torch.Tensor:
    scale = amax.float().clamp(min=1e-12) / fmax
    if ue8m0:  # round up to a power of two so nothing overflows; store the biased exponent
        return (torch.ceil(torch.log2(scale)) + 127).clamp(0, 254).to(torch.uint8)
    return scale


def quantize(t: torch.Tensor, block: tuple[int, int] | None, ue8m0: bool = False,
             dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize a 2-D tensor to fp8 with one scale per row (block None) or per (rows x cols) block.

    Returns (codes [R, C] in DTYPE, scale [R] or [ceil(R/rows), ceil(C/cols)]: float32, or uint8 UE8M0).
    """
    fmax = torch.finfo(dtype).max
    r, c = t.shape
    if block is None:
        scale = _scale_for(t.abs().amax(dim=1), fmax, ue8m0)
        full = decode_scale(scale)[:, None]
    else:
        br, bc = block
        gr, gc = math.ceil(r / br), math.ceil(c / bc)
        padded = t.new_zeros(gr * br, gc * bc, dtype=torch.float32)
        padded[:r, :c] = t.float()
        amax = padded.view(gr, br, gc, bc).abs().amax(dim=(1, 3))
        scale = _scale_for(amax, fmax, ue8m0)
        full = decode_scale(scale).repeat_interleave(br, 0).repeat_interleave(bc, 1)[:r, :c]
    codes = (t.float() / full).clamp(-fmax, fmax).to(dtype)
    return codes, scale


def expand_scales(scale: torch.Tensor, rows: int, cols: int, block: tuple[int, int] | None) -> torch.Tensor:
    """A [rows, cols] float32 tensor holding each element's scale."""
    s = decode_scale(scale)
    if block is None:
        return s[:, None].expand(rows, cols)
    return s.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)[:rows, :cols]


def fp8_gemm_ref(x: torch.Tensor, sx: torch.Tensor, w: torch.Tensor, sw: torch.Tensor, blockwise: bool,
                 bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """x fp8 [M, K] and w fp8 [N, K] with their scales (see module docstring), computed in float64."""
    (m, k), n = x.shape, w.shape[0]
    xs = expand_scales(sx, m, k, (1, BLOCK) if blockwise else None)
    ws = expand_scales(sw, n, k, (BLOCK, BLOCK) if blockwise else None)
    y = (x.double() * xs.double()) @ (w.double() * ws.double()).T
    if bias is not None:
        y = y + bias.double()
    return y.to(out_dtype)


def flops(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def bytes(m: int, n: int, k: int, blockwise: bool = True, scale_bytes: int = 4, out_bytes: int = 2) -> int:
    """Minimum DRAM traffic: fp8 operands, scales, output."""
    kb, nb = math.ceil(k / BLOCK), math.ceil(n / BLOCK)
    scales = (m * kb + nb * kb) if blockwise else (m + n)
    return m * k + n * k + scales * scale_bytes + m * n * out_bytes
