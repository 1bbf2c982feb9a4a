"""W8A8 INT8: per-channel INT8 weights times per-token dynamic INT8 activations, optionally with SmoothQuant
(Xiao et al. 2022, https://arxiv.org/abs/2211.10438).

A few input channels of an LLM's Linears carry activations far larger than the rest, so one INT8 scale per
token wastes most of its range on them. SmoothQuant moves that range into the weight, where per-channel
scales absorb it: y = (x / s) (W diag(s))^T with, per input channel j,

    s_j = max|x_j|^alpha / max_n |W_nj|^(1 - alpha)     (alpha 0.5 by default; max|x_j| from calibration)

Here 1 / s stays an explicit multiplier in each QuantLinear (`smooth`), applied before the activations are
quantized; each Linear gets its own s (from its own weight), so nothing outside the layer changes. (The paper
folds 1 / s into the preceding norm, which needs one s shared by q/k/v and by gate/up, and changes float
weights that `retarget compile` exports from the unquantized model; a lowering may still fold the constant
multiplier into its producer.)

    y = int8_token(x * smooth) @ int8_channel(W diag(s)).T   (retarget.quantize.modules.QuantLinear)

Weights are symmetric INT8 per output channel (codes 1..255 around 128, i.e. -127..127, like
retarget.kernels.w8a8_int8_gemm). lm_head keeps float activations (INT8 weights only): calibration does not
run it, as llm-compressor's W8A8 schemes leave it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import QuantConfig, register_recipe_name
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import quantize_rtn

MIN_SCALE = 1e-5


def smoothing_scale(act_max: torch.Tensor, weight: torch.Tensor, alpha: float) -> torch.Tensor:
    """s [K] = max|x_j|^alpha / max_n |W_nj|^(1 - alpha); channels never seen active keep s = 1."""
    w_max = weight.detach().float().abs().amax(dim=0).clamp(min=MIN_SCALE)
    s = act_max.float().clamp(min=MIN_SCALE).pow(alpha) / w_max.pow(1 - alpha)
    return torch.where(act_max > 0, s.clamp(min=MIN_SCALE), torch.ones_like(s))


def w8a8_linear(linear: nn.Linear, smooth: torch.Tensor | None = None) -> QuantLinear:
    """LINEAR as INT8 per-channel weights with per-token INT8 activations; SMOOTH = s folds W diag(s)."""
    w = linear.weight.detach().float()
    if smooth is not None:
        w = w * smooth[None, :]
    qweight = quantize_rtn(w, 8, linear.in_features, symmetric=True)
    return QuantLinear(qweight, linear.bias, act="int8", smooth=None if smooth is None else 1 / smooth)


@dataclass(frozen=True)
class W8A8Int8Config(QuantConfig):
    """W8A8 INT8 without smoothing: per-channel weights, per-token dynamic activations (no calibration)."""

    @property
    def name(self) -> str:
        return "w8a8-int8"


@dataclass(frozen=True)
class SmoothQuantConfig(W8A8Int8Config):
    """W8A8 INT8 after SmoothQuant smoothing with migration strength ALPHA (0: none, 1: all into weights)."""

    needs_calibration: ClassVar[bool] = True
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")

    @property
    def name(self) -> str:
        return "w8a8-smoothquant" + ("" if self.alpha == 0.5 else f"-a{self.alpha:g}")


@register_handler(W8A8Int8Config)
def _w8a8(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantLinear:
    if name == "lm_head":
        return QuantLinear(quantize_rtn(linear.weight, 8, linear.in_features, symmetric=True), linear.bias)
    if isinstance(config, SmoothQuantConfig) and ctx.stats is not None:
        return w8a8_linear(linear, smoothing_scale(ctx.stats.abs_max, linear.weight, config.alpha))
    return w8a8_linear(linear)


register_recipe_name("w8a8-int8", lambda m: W8A8Int8Config(), "w8a8-int8")
register_recipe_name(r"w8a8-smoothquant(?:-a(?P<alpha>[01](?:\.\d+)?))?",
                     lambda m: SmoothQuantConfig(alpha=float(m["alpha"] or 0.5)), "w8a8-smoothquant[-a0.8]")
