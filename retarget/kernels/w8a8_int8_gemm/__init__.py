"""W8A8 INT8 GEMM with per-token x per-channel scales.

Public: `int8_gemm` (launch), `int8_gemm_ref` and `quantize_rows` (torch reference), `flops` / `bytes`,
`aot_cases`.
"""

from typing import Any

from retarget.kernels.w8a8_int8_gemm.reference import bytes, flops, int8_gemm_ref, quantize_rows

_LAUNCH = ("aot_cases", "choose", "int8_gemm")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.w8a8_int8_gemm import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["aot_cases", "bytes", "choose", "flops", "int8_gemm", "int8_gemm_ref", "quantize_rows"]
