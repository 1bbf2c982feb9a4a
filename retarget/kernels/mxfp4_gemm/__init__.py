"""MXFP4 weight GEMM (OCP 32-element blocks, E8M0 scales): tl.dot_scaled where native, dequant elsewhere.

Public: `pack` / `MxWeight`, `mxfp4_gemm` (launch), `mxfp4_gemm_ref`, `quantize_mxfp4`, `quantize_mxfp8`,
`dequantize` (torch reference), `flops` / `bytes`, `aot_cases`.
"""

from typing import Any

from retarget.kernels.mxfp4_gemm.reference import (
    bytes,
    dequantize,
    flops,
    mxfp4_gemm_ref,
    quantize_mxfp4,
    quantize_mxfp8,
)

_LAUNCH = ("MxWeight", "aot_cases", "choose", "mxfp4_gemm", "pack")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.mxfp4_gemm import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MxWeight", "aot_cases", "bytes", "choose", "dequantize", "flops", "mxfp4_gemm", "mxfp4_gemm_ref",
           "pack", "quantize_mxfp4", "quantize_mxfp8"]
