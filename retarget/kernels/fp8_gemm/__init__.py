"""FP8 E4M3 W8A8 GEMM with per-channel scales, or DeepSeek 1x128 / 128x128 block scales (float32 or UE8M0).

Public: `fp8_gemm` (launch), `fp8_gemm_ref` / `quantize` (torch reference), `flops` / `bytes`, `aot_cases`.
"""

from retarget.kernels.fp8_gemm.op import aot_cases, choose, fp8_gemm
from retarget.kernels.fp8_gemm.reference import bytes, flops, fp8_gemm_ref, quantize

__all__ = ["aot_cases", "bytes", "choose", "flops", "fp8_gemm", "fp8_gemm_ref", "quantize"]
