"""FP8 E4M3 W8A8 GEMM with per-channel scales, or DeepSeek 1x128 / 128x128 block scales (float32 or UE8M0).

Public: `fp8_gemm` (launch), `fp8_gemm_ref` / `quantize` (torch reference), `flops` / `bytes`, `aot_cases`.
"""

from typing import Any

from retarget.kernels.fp8_gemm.reference import bytes, flops, fp8_gemm_ref, quantize

_LAUNCH = ("aot_cases", "choose", "fp8_gemm")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.fp8_gemm import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["aot_cases", "bytes", "choose", "flops", "fp8_gemm", "fp8_gemm_ref", "quantize"]
