"""Triton kernels for quantized linear layers, and their ahead-of-time portability matrix.

Nothing in `retarget` imports this package at import time. `weight_only_linear` is the entry point
QuantLinear uses: Triton kernels on CUDA/ROCm, the torch reference elsewhere. `accelerate_(model)` runs a
transformers model's attention, MLA, MoE and Mamba2 modules on the kernels (retarget.kernels.accelerate).

Tolerance between the two paths: the kernels keep scale / zero in the activation dtype and
accumulate in float32, so outputs agree with the reference to about 1e-2 relative in fp16 and
3e-2 in bf16 (see tests/kernels/test_w4a16_gemm.py).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from retarget.kernels.w4a16_gemm import PackedWeight

T = TypeVar("T")

_PACKED: dict[int, tuple[weakref.ref, int, torch.dtype, Any]] = {}


def repacked(source: torch.Tensor, dtype: torch.dtype, build: Callable[[], T]) -> T:
    """BUILD()'s kernel-layout copy of weights whose codes are SOURCE, made once per (SOURCE tensor, its version,
    activation DTYPE) and dropped with SOURCE."""
    key = id(source)
    hit = _PACKED.get(key)
    if hit is not None and hit[0]() is source and hit[1] == source._version and hit[2] == dtype:
        return hit[3]
    packed = build()
    _PACKED[key] = (weakref.ref(source, lambda _: _PACKED.pop(key, None)), source._version, dtype, packed)
    return packed


def _packed_for(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group_size: int,
                dtype: torch.dtype) -> PackedWeight:
    """Kernel-layout weight, repacked once per (qweight tensor, version, activation dtype)."""
    from retarget.kernels.w4a16_gemm import pack

    return repacked(qweight, dtype, lambda: pack(qweight, scale, zero, bits, group_size, dtype=dtype))


def weight_only_linear(x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor,
                       bits: int, group_size: int, bias: torch.Tensor | None = None, *,
                       packed: PackedWeight | None = None) -> torch.Tensor:
    """y = x @ W.T + bias with W [N, K] = (qweight - zero) * scale group-wise along K (project layout).

    On CUDA/ROCm runs the W4A16/W8A16 Triton kernels (split-K GEMV for <= 16 rows, tiled above),
    repacking the weight on first use (cached per tensor) unless PACKED is given; elsewhere, and for
    group sizes that are not multiples of 16, runs the torch reference. Returns x's dtype.
    """
    from retarget.kernels.w4a16_gemm.layout import supported_group

    if not x.is_cuda or not supported_group(group_size):
        from retarget.kernels.w4a16_gemm.reference import w4a16_gemm_ref

        return w4a16_gemm_ref(x, qweight, scale, zero, group_size, bias)
    from retarget.kernels.w4a16_gemm import w4a16_gemm

    if packed is None:
        packed = _packed_for(qweight, scale, zero, bits, group_size, x.dtype)
    return w4a16_gemm(x, packed, bias)


def __getattr__(name: str) -> Any:
    """`accelerate_` imports transformers' model classes: load it on first use."""
    if name == "accelerate_":
        from retarget.kernels.accelerate import accelerate_

        return accelerate_
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["accelerate_", "weight_only_linear"]
