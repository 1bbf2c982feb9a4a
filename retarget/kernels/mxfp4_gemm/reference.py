"""MXFP4 weight GEMM in torch (OCP Microscaling v1.0, https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf).

Weights are E2M1 codes (1 sign, 2 exponent, 1 mantissa bit: 0, 0.5, 1, 1.5, 2, 3, 4, 6) in blocks of
32 along K, each block sharing an E8M0 scale 2 ** (code - 127). Activations are fp16 / bf16, or MXFP8
(E4M3 with their own E8M0 scale per 32 along K, the W4A8 form Blackwell and MI355 run natively).

    y[m, n] = sum_k xhat[m, k] * e2m1(q[n, k]) * 2 ** (s[n, k // 32] - 127) + bias[n]

Per call: reads M*K activations (2 B, or 1 B + M*K/32 scales), N*K/2 bytes of codes and N*K/32 scale
bytes, writes M*N outputs (2 B); 2*M*N*K flops.
"""

from __future__ import annotations

import math

import torch

BLOCK = 32
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _e2m1_table() -> torch.Tensor:
    pos = torch.tensor(E2M1_VALUES)
    return torch.cat([pos, -pos])


def _block_scale(t: torch.Tensor, emax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """E8M0 code per 32-block along the last dim (OCP: floor(log2(amax)) - emax) and the padded blocks."""
    r, c = t.shape
    blocks = math.ceil(c / BLOCK)
    padded = t.new_zeros(r, blocks * BLOCK, dtype=torch.float32)
    padded[:, :c] = t.float()
    padded = padded.view(r, blocks, BLOCK)
    amax = padded.abs().amax(dim=2).clamp(min=2.0**-126)
    code = (torch.floor(torch.log2(amax)) - emax + 127).clamp(1, 254)
    return code.to(torch.uint8), padded


def quantize_mxfp4(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """W [N, K] -> (E2M1 codes uint8 [N, K] in 0..15, E8M0 scales uint8 [N, ceil(K/32)]), round to nearest."""
    n, k = w.shape
    code, padded = _block_scale(w, emax=2)
    scaled = padded / torch.exp2(code.float() - 127)[..., None]
    grid = torch.tensor(E2M1_VALUES, device=w.device)
    mag = torch.bucketize(scaled.abs(), (grid[1:] + grid[:-1]) / 2)    # nearest magnitude (clamps at 6)
    codes = (mag + 8 * (scaled < 0)).to(torch.uint8).view(n, -1)[:, :k]
    return codes.contiguous(), code


def quantize_mxfp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X [M, K] -> (E4M3 [M, K], E8M0 scales uint8 [M, ceil(K/32)])."""
    m, k = x.shape
    code, padded = _block_scale(x, emax=8)
    scaled = padded / torch.exp2(code.float() - 127)[..., None]
    return scaled.view(m, -1)[:, :k].to(torch.float8_e4m3fn).contiguous(), code


def dequantize(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Float32 [R, C] from E2M1 codes (uint8 0..15) or E4M3 values, and E8M0 scales [R, ceil(C/32)]."""
    c = codes.shape[1]
    base = _e2m1_table().to(codes.device)[codes.long()] if codes.dtype == torch.uint8 else codes.float()
    return base * torch.exp2(scales.float() - 127).repeat_interleave(BLOCK, dim=1)[:, :c]


def mxfp4_gemm_ref(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor,
                   bias: torch.Tensor | None = None, x_scales: torch.Tensor | None = None,
                   out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x [M, K] (fp16/bf16, or E4M3 with X_SCALES) times the MXFP4 weight [N, K] transposed, in float32."""
    xf = dequantize(x, x_scales) if x_scales is not None else x.float()
    y = xf @ dequantize(codes, scales).T
    if bias is not None:
        y = y + bias.float()
    return y.to(out_dtype or x.dtype)


def flops(m: int, n: int, k: int) -> int:
    return 2 * m * n * k


def bytes(m: int, n: int, k: int, act_bytes: int = 2, out_bytes: int = 2) -> int:
    """Minimum DRAM traffic (see module docstring); act_bytes=1 means MXFP8 activations."""
    x_scales = m * math.ceil(k / BLOCK) if act_bytes == 1 else 0
    return m * k * act_bytes + x_scales + n * k // 2 + n * math.ceil(k / BLOCK) + m * n * out_bytes
