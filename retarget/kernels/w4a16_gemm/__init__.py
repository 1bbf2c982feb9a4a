"""W4A16 / W8A16 group-wise GEMM: split-K GEMV for M <= 16, tiled tensor-core GEMM above.

Public: `pack` (project layout -> kernel layout), `w4a16_gemm` (launch), `w4a16_gemm_ref` and
`dequantize` (torch reference), `flops` / `bytes` (counts shared by perf and bench), `aot_cases`.
"""

from typing import Any

from retarget.kernels.w4a16_gemm.layout import PackedWeight, pack
from retarget.kernels.w4a16_gemm.reference import bytes, dequantize, flops, w4a16_gemm_ref

_LAUNCH = ("aot_cases", "choose", "w4a16_gemm")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.w4a16_gemm import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PackedWeight", "aot_cases", "bytes", "choose", "dequantize", "flops", "pack", "w4a16_gemm",
           "w4a16_gemm_ref"]
