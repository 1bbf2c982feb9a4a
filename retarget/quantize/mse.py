"""MSE clipping search: calibration-free group-wise integers whose range minimises the weights' squared error.

Each group's min/max range is shrunk by the ratio in {1, 0.95, ..., 0.55} (retarget.quantize.awq.CLIP_RATIOS)
that minimises ||W_g - Q(W_g)||^2, then quantized round-to-nearest: llama.cpp's and ModelOpt's "mse"
idea, on AWQ's clip grid. It is AWQ's clip search with the identity in place of the input Hessian, so
it needs no calibration text and gives the same QuantizedWeight layout, size and lowering as `int*-g*-*`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.awq import search_clip
from retarget.quantize.configs import INT_NAME, IntWeightOnlyConfig, QuantConfig, int_fields, register_recipe_name
from retarget.quantize.weight import QuantizedWeight


@dataclass(frozen=True)
class MSEConfig(IntWeightOnlyConfig):
    """Integer weights with MSE-searched clipping ranges; lm_head as in the RTN recipes."""

    @property
    def name(self) -> str:
        return f"mse-{super().name}"


@register_handler(MSEConfig)
def _mse(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, MSEConfig)
    group = config.group_size or linear.in_features
    return search_clip(linear.weight, None, config.bits, group, config.symmetric)


register_recipe_name(f"mse-{INT_NAME}", lambda m: MSEConfig(**int_fields(m)),
                     "mse-int4-{g64,g128}-asym, mse-int3-g64-asym")
