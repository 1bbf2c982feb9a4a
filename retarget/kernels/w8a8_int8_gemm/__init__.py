"""W8A8 INT8 GEMM with per-token x per-channel scales.

Public: `int8_gemm` (launch), `int8_gemm_ref` and `quantize_rows` (torch reference), `flops` / `bytes`,
`aot_cases`.
"""

from retarget.kernels.w8a8_int8_gemm.op import aot_cases, choose, int8_gemm
from retarget.kernels.w8a8_int8_gemm.reference import bytes, flops, int8_gemm_ref, quantize_rows

__all__ = ["aot_cases", "bytes", "choose", "flops", "int8_gemm", "int8_gemm_ref", "quantize_rows"]
