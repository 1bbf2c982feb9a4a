"""W8A8 INT8 GEMM with per-token activation scales and per-channel weight scales, in torch.

    y[m, n] = sx[m] * sw[n] * sum_k xq[m, k] * wq[n, k] + bias[n]     (xq, wq int8; exact int32 sums)

Per call the kernel reads M*K + N*K bytes of int8 and 4*(M + N) bytes of scales, writes M*N outputs
(2 B), and does 2*M*N*K integer ops. The point is INT8 tensor-core rate (2x BF16 on A100 / H100) where
there is no FP8, e.g. A100 and Ascend (SmoothQuant, https://arxiv.org/abs/2211.10438).
"""

from __future__ import annotations

import torch


def quantize_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (codes int8 [R, C], scale float32 [R]) with t ~= codes * scale[:, None]."""
    scale = t.float().abs().amax(dim=-1).clamp(min=1e-8) / 127.0
    codes = (t.float() / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return codes, scale


def int8_gemm_ref(xq: torch.Tensor, sx: torch.Tensor, wq: torch.Tensor, sw: torch.Tensor,
                  bias: torch.Tensor | None = None, out_dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """xq int8 [M, K] (scale sx [M]) times wq int8 [N, K] (scale sw [N]) transposed, in float64."""
    acc = xq.double() @ wq.double().T              # exact: |sum| < 2**53
    y = acc * sx.double()[:, None] * sw.double()[None, :]
    if bias is not None:
        y = y + bias.double()
    return y.to(out_dtype)


def flops(m: int, n: int, k: int) -> int:
    """Integer multiply-adds counted as 2 ops."""
    return 2 * m * n * k


def bytes(m: int, n: int, k: int, out_bytes: int = 2) -> int:
    """Minimum DRAM traffic: int8 operands, float32 scales, output."""
    return m * k + n * k + 4 * (m + n) + m * n * out_bytes
