"""FP4 E2M1 weights in small blocks along in_features: MXFP4 and NVFP4.

    MXFP4 (OCP Microscaling v1.0): 32-element blocks sharing an E8M0 power-of-two scale
        2 ** (floor(log2(amax)) - 2)   (2 = emax of E2M1, whose largest value is 6 = 1.5 * 2**2);
        computed by retarget.kernels.mxfp4_gemm.reference.quantize_mxfp4, whose codes our MXFP4 GEMM reads.
    NVFP4 (NVIDIA, as in TensorRT Model Optimizer): 16-element blocks, each with an E4M3 scale, times one
        float32 scale per tensor: tensor_scale = amax(W) / (448 * 6), block scale = nearest E4M3 to
        amax(block) / 6 / tensor_scale. The finer, non-power-of-two scale fits each block more closely.

lm_head is quantized as FP8 E4M3 per channel (8-bit, as the integer recipes keep lm_head at 8 bits).

    quantize_(model, Fp4WeightConfig(scheme="mxfp4"))  # "mxfp4"
    quantize_(model, Fp4WeightConfig(scheme="nvfp4"))  # "nvfp4"
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from retarget.kernels.mxfp4_gemm.reference import BLOCK as MX_BLOCK
from retarget.kernels.mxfp4_gemm.reference import quantize_mxfp4
from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import QuantConfig, register_recipe_name
from retarget.quantize.float_formats import MAX, encode_e2m1, round_to
from retarget.quantize.fp8 import quantize_fp8
from retarget.quantize.weight import QuantizedWeight

NV_BLOCK = 16
SCHEMES = ("mxfp4", "nvfp4")
E4M3_MIN = 2.0**-9  # smallest positive E4M3 (subnormal)


def quantize_mxfp4_weight(w: torch.Tensor) -> QuantizedWeight:
    """W [N, K] as MXFP4: E2M1 codes, one E8M0 scale per 32 along K."""
    codes, exponents = quantize_mxfp4(w.detach())
    scale = torch.exp2(exponents.float() - 127)
    return QuantizedWeight(codes, scale, torch.zeros_like(scale), bits=4, group_size=MX_BLOCK, element="e2m1",
                           scale_format="e8m0")


def quantize_nvfp4(w: torch.Tensor) -> QuantizedWeight:
    """W [N, K] as NVFP4: E2M1 codes, one E4M3 scale per 16 along K, times a float32 tensor scale."""
    n, k = w.shape
    groups = -(-k // NV_BLOCK)
    padded = w.detach().float().new_zeros(n, groups * NV_BLOCK)
    padded[:, :k] = w.detach().float()
    blocks = padded.view(n, groups, NV_BLOCK)
    amax = float(blocks.abs().max())
    tensor_scale = amax / (MAX["e4m3"] * MAX["e2m1"]) if amax > 0 else 1.0
    block = round_to(blocks.abs().amax(dim=2) / MAX["e2m1"] / tensor_scale, "e4m3").clamp(min=E4M3_MIN)
    scale = block * tensor_scale
    codes = encode_e2m1(blocks / scale[..., None]).view(n, -1)[:, :k].contiguous()
    return QuantizedWeight(codes, scale, torch.zeros_like(scale), bits=4, group_size=NV_BLOCK, element="e2m1",
                           scale_format="e4m3", tensor_scale=tensor_scale)


@dataclass(frozen=True)
class Fp4WeightConfig(QuantConfig):
    """FP4 E2M1 weight-only (W4A16) in SCHEME's blocks; lm_head as FP8 E4M3 per channel."""

    scheme: str = "nvfp4"

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")

    @property
    def name(self) -> str:
        return self.scheme



@register_handler(Fp4WeightConfig)
def _fp4(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, Fp4WeightConfig)
    if name == "lm_head":
        return quantize_fp8(linear.weight, "channel")
    return quantize_mxfp4_weight(linear.weight) if config.scheme == "mxfp4" else quantize_nvfp4(linear.weight)


register_recipe_name(r"(?P<s>mxfp4|nvfp4)", lambda m: Fp4WeightConfig(scheme=m["s"]), "mxfp4, nvfp4")
