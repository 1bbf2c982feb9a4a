"""Fused mixture-of-experts: routing (softmax / sigmoid, group-limited top-k, bias, renormalisation), token
sort/align by expert, and a grouped expert GEMM with fp16/bf16, W4A16/W8A16 (group-quantized) or FP8-block
expert weights.

Public: `route`, `moe_align`, `moe_gemm`, `fused_moe`, `ExpertWeights` (launch), `route_ref`, `moe_ref`,
`flops` / `bytes` (torch reference), `aot_cases`.
"""

from typing import Any

from retarget.kernels.fused_moe.align import Alignment, moe_align
from retarget.kernels.fused_moe.reference import bytes, flops, moe_ref, route_ref

_LAUNCH = ("ExpertWeights", "aot_cases", "choose", "fused_moe", "moe_gemm", "route")


def __getattr__(name: str) -> Any:
    """The launch side imports triton: load it on first use, so the torch reference stays light."""
    if name in _LAUNCH:
        from retarget.kernels.fused_moe import op

        return getattr(op, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Alignment", "ExpertWeights", "aot_cases", "bytes", "choose", "flops", "fused_moe", "moe_align",
           "moe_gemm", "moe_ref", "route", "route_ref"]
