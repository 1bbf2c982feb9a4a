"""FP8 E4M3 weights: one scale per tensor, per output channel, or per 128 x 128 block (float32 or UE8M0
power-of-two scales, DeepSeek-V3 / V3.1 style), optionally with FP8 activations (W8A8-FP8).

W8A8-FP8 ("w8a8-fp8") quantizes activations with one static scale per tensor, max|x| / 448 over the
calibration text: the form FP8 QDQ graphs carry (a constant QuantizeLinear scale) and TensorRT-class runtimes
fuse; per-token dynamic scales would be a little more accurate but need the scale computed in the graph.
lm_head keeps float activations (calibration does not run it).

Scales come from retarget.kernels.fp8_gemm.reference.quantize, the torch reference of our FP8 GEMM: amax / 448
(UE8M0: rounded up to a power of two, so nothing saturates), codes are the round-to-nearest E4M3 cast.

    quantize_(model, Fp8WeightConfig(granularity="channel"))                 # "fp8-channel"
    quantize_(model, Fp8WeightConfig(granularity="block128", ue8m0=True))  # "fp8-block128-ue8m0"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from retarget.kernels.fp8_gemm.reference import BLOCK, quantize
from retarget.quantize.activations import static_scale
from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import QuantConfig, register_recipe_name
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight

GRANULARITIES = ("tensor", "channel", "block128")


def quantize_fp8(w: torch.Tensor, granularity: str = "channel", ue8m0: bool = False) -> QuantizedWeight:
    """W [N, K] as E4M3 codes with one scale per tensor, per row, or per 128 x 128 block.

    Layout (retarget.quantize.weight): tensor: group_size K, block_rows N; channel: group_size K, block_rows 1;
    block128: group_size 128, block_rows 128. UE8M0 scales are exact powers of two (scale_format "e8m0").
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    n, k = w.shape
    block, group, rows = {"tensor": ((n, k), k, n), "channel": (None, k, 1),
                          "block128": ((BLOCK, BLOCK), BLOCK, BLOCK)}[granularity]
    codes, stored = quantize(w.detach(), block, ue8m0=ue8m0)
    scale = torch.exp2(stored.float() - 127) if ue8m0 else stored.float()
    scale = scale[:, None] if block is None else scale.repeat_interleave(rows, dim=0)[:n]
    return QuantizedWeight(codes.view(torch.uint8), scale.contiguous(), torch.zeros_like(scale), bits=8,
                           group_size=group, element="e4m3", scale_format="e8m0" if ue8m0 else "fp32",
                           block_rows=rows)


@dataclass(frozen=True)
class Fp8WeightConfig(QuantConfig):
    """FP8 E4M3 weight-only (W8A16) at GRANULARITY, every Linear including lm_head.

    ue8m0: power-of-two scales stored as E8M0 exponents (block128 only, the DeepSeek-V3.1 form)."""

    granularity: str = "channel"
    ue8m0: bool = False

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.ue8m0 and self.granularity != "block128":
            raise ValueError("UE8M0 scales are offered with 128 x 128 blocks only")

    @property
    def name(self) -> str:
        return f"fp8-{self.granularity}{'-ue8m0' if self.ue8m0 else ''}"



@register_handler(Fp8WeightConfig)
def _fp8(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, Fp8WeightConfig)
    return quantize_fp8(linear.weight, config.granularity, config.ue8m0)


@dataclass(frozen=True)
class W8A8Fp8Config(Fp8WeightConfig):
    """FP8 E4M3 weights (per channel) times FP8 activations with a static per-tensor scale from calibration."""

    needs_calibration: ClassVar[bool] = True

    @property
    def name(self) -> str:
        return "w8a8-fp8"


@register_handler(W8A8Fp8Config)
def _w8a8_fp8(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantLinear:
    assert isinstance(config, W8A8Fp8Config)
    qweight = quantize_fp8(linear.weight, config.granularity, config.ue8m0)
    if ctx.stats is None:  # lm_head: not calibrated, weight-only
        return QuantLinear(qweight, linear.bias)
    act_scale = static_scale(float(ctx.stats.abs_max.max()), "e4m3")
    return QuantLinear(qweight, linear.bias, act="e4m3", act_scale=act_scale)


register_recipe_name(r"fp8-(?P<g>tensor|channel|block128)(?P<e8>-ue8m0)?",
                     lambda m: Fp8WeightConfig(granularity=m["g"], ue8m0=bool(m["e8"])),
                     "fp8-{tensor,channel,block128,block128-ue8m0}")
register_recipe_name("w8a8-fp8", lambda m: W8A8Fp8Config(), "w8a8-fp8")
