"""Quantized experts on fused_moe's grouped GEMMs: which weight formats each GEMM takes, and the stacked codes.

A MoE block's quantized experts (QuantLinear layers, or the QuantizedWeights quantize_ keeps for fused 3-D
experts; from a recipe or from a native checkpoint's source blocks) are stacked in retarget.quantize's layout and
handed to the GEMM of their format, without a dequantized float copy:

| format (retarget.quantize.weight) | recipes | fused_moe GEMM |
|---|---|---|
| int, 4 or 8 bits, groups a multiple of 16 along K | int4-*, int8-*, GGUF keep | W4A16 / W8A16 (`from_int`) |
| e4m3 in 128 x 128 blocks, float32 or UE8M0 scales | fp8-block128[-ue8m0], DeepSeek-V3 / Kimi K2 keep | FP8-block |
| e2m1 in blocks of 32 along K, E8M0 scales | mxfp4, gpt-oss keep | MXFP4 |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from retarget.kernels.fp8_gemm.reference import BLOCK as FP8_BLOCK
from retarget.kernels.mxfp4_gemm.reference import BLOCK as MX_BLOCK
from retarget.kernels.w4a16_gemm.layout import supported_group
from retarget.quantize import float_formats


@dataclass(frozen=True)
class ExpertFormat:
    """How one stack of experts is coded: retarget.quantize.weight's fields of every expert matrix in it."""

    element: str
    bits: int
    group_size: int
    scale_format: str = "fp32"
    block_rows: int = 1

    @classmethod
    def of(cls, w: Any) -> ExpertFormat:
        """The format of a QuantizedWeight or QuantLinear W."""
        return cls(w.element, w.bits, w.group_size, w.scale_format, w.block_rows)

    def describe(self) -> str:
        name = f"int{self.bits}" if self.element == "int" else self.element
        rows = f"x{self.block_rows}" if self.block_rows > 1 else ""
        scale = f" {self.scale_format} scales" if self.element != "int" else ""
        return f"{name}-g{self.group_size}{rows}{scale}"


@dataclass(frozen=True)
class QuantExperts:
    """Stacked experts in retarget.quantize's layout: codes uint8 [E, N, K], scale / zero float32 [E, N, G] (a
    row per output channel, block scales repeated over their rows); W = (value(codes) - zero) * scale."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    format: ExpertFormat

    def dense(self) -> torch.Tensor:
        """The float32 weights [E, N, K] (the torch reference path)."""
        k, g = self.codes.shape[-1], self.format.group_size
        values = self.codes.float() if self.format.element == "int" else \
            float_formats.decode(self.codes, self.format.element)
        s, z = (t.float().repeat_interleave(g, dim=-1)[..., :k] for t in (self.scale, self.zero))
        return (values - z) * s


@dataclass(frozen=True)
class ExpertGemm:
    """One of fused_moe's quantized grouped GEMMs: the formats it TAKES and how WEIGHTS lays a stack out for it."""

    name: str
    takes: Callable[[ExpertFormat], bool]
    weights: Callable[[QuantExperts, torch.dtype], Any]  # -> fused_moe.op.ExpertWeights


def _int_weights(q: QuantExperts, dtype: torch.dtype) -> Any:
    from retarget.kernels.fused_moe import op

    return op.ExpertWeights.from_int(q.codes, q.scale, q.zero, q.format.bits, q.format.group_size, dtype)


def _fp8_block_weights(q: QuantExperts, dtype: torch.dtype) -> Any:
    """The codes as float8_e4m3fn (a view) with the stored scales [E, ceil(N / 128), ceil(K / 128)]."""
    from retarget.kernels.fused_moe import op

    return op.ExpertWeights.from_fp8_block(q.codes.view(torch.float8_e4m3fn), q.scale[:, ::FP8_BLOCK])


def _mxfp4_weights(q: QuantExperts, dtype: torch.dtype) -> Any:
    """The codes with their E8M0 exponents (scale = 2 ** (e - 127)), packed two per byte along K."""
    from retarget.kernels.fused_moe import op

    return op.ExpertWeights.from_mxfp4(q.codes, (q.scale.log2().round() + 127).to(torch.uint8))


GEMMS: dict[str, ExpertGemm] = {  # by element
    "int": ExpertGemm("W4A16/W8A16", lambda f: f.bits in (4, 8) and supported_group(f.group_size), _int_weights),
    "e4m3": ExpertGemm("FP8-block", lambda f: f.group_size == f.block_rows == FP8_BLOCK, _fp8_block_weights),
    "e2m1": ExpertGemm("MXFP4", lambda f: f.group_size == MX_BLOCK and f.scale_format == "e8m0", _mxfp4_weights),
}


def gemm_for(fmt: ExpertFormat) -> ExpertGemm | None:
    """The grouped GEMM that takes experts of format FMT, or None."""
    gemm = GEMMS.get(fmt.element)
    return gemm if gemm is not None and gemm.takes(fmt) else None


def kernel_weights(q: QuantExperts, dtype: torch.dtype) -> Any:
    """fused_moe's ExpertWeights for Q, laid out once per codes tensor and activation dtype."""
    from retarget.kernels import repacked

    gemm = gemm_for(q.format)
    if gemm is None:
        raise ValueError(f"no fused_moe GEMM takes {q.format.describe()} experts")
    return repacked(q.codes, dtype, lambda: gemm.weights(q, dtype))
