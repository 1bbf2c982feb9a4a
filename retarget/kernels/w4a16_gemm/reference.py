"""W4A16 / W8A16 group-wise GEMM in plain torch: the numbers the Triton kernels must reproduce.

    y[m, n] = sum_k x[m, k] * W[n, k] + bias[n],   W[n, k] = (q[n, k] - zero[n, k // g]) * scale[n, k // g]

Per call (M rows of activations, weight N x K, G = ceil(K / g) groups), the fused kernel
    reads  M*K activations (2 B), N*K codes (bits/8 B), 2*N*G scale and zero values (2 B in the packed layout)
    writes M*N outputs (2 B)
and does 2*M*N*K flops. At M = 1 the codes dominate, so a memory-bound 4-bit kernel can reach ~4x
the speed of fp16 cuBLAS (Marlin's argument, https://arxiv.org/abs/2408.11743).
"""

from __future__ import annotations

import torch


def dequantize(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
               group_size: int) -> torch.Tensor:
    """W [N, K] float32 from uint8 codes [N, K] and per-group scale / zero [N, G]."""
    k = qweight.shape[1]
    s = scale.float().repeat_interleave(group_size, dim=1)[:, :k]
    z = zero.float().repeat_interleave(group_size, dim=1)[:, :k]
    return (qweight.float() - z) * s


def w4a16_gemm_ref(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                   group_size: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., K] @ dequantized W.T (+ bias), computed in float32 and returned in x's dtype."""
    w = dequantize(qweight, scale, zero, group_size).to(x.dtype).float()
    y = x.float() @ w.T
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def flops(m: int, n: int, k: int) -> int:
    """Multiply-adds counted as 2 flops."""
    return 2 * m * n * k


def bytes(m: int, n: int, k: int, bits: int = 4, group_size: int = 128, act_bytes: int = 2) -> int:
    """Minimum DRAM traffic of one call in the packed layout (see the module docstring)."""
    groups = -(-k // group_size)
    return m * k * act_bytes + n * k * bits // 8 + 2 * n * groups * act_bytes + m * n * act_bytes
