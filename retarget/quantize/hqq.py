"""HQQ, half-quadratic quantization (Badri & Shaji 2023, https://mobiusml.github.io/hqq_blog/): calibration-free
group-wise integers whose zero points minimise a sparsity-promoting l_p error (p < 1) of the weights.

With the scale s fixed by each group's min/max, HQQ solves  min_z ||W - s (Q(W/s + z) - z)||_p^p  by
half-quadratic splitting: an auxiliary error W_e alternates with a closed-form zero point.

    W_q = clamp(round(W / s + z));  W_r = s (W_q - z)
    W_e = shrink_p(W - W_r, beta) = sign * relu(|x| - |x|^(p - 1) / beta)   (generalised soft threshold)
    z   = mean over the group of (W_q - (W - W_e) / s);   beta *= kappa

The defaults (p = 0.7, beta = 10, kappa = 1.01, 20 iterations, stop when the mean |W - W_r| stops
improving) are HQQ's. Zero points stay floats, as in HQQ and ONNX Runtime's HQQ mode; the MatMulNBits
lowering carries them (4-bit). We keep the zero point of the best iteration, not of the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import IntWeightOnlyConfig, QuantConfig, register_recipe_name
from retarget.quantize.weight import QuantizedWeight


@dataclass(frozen=True)
class HQQConfig(IntWeightOnlyConfig):
    """HQQ asymmetric integer weights (float zero points); lm_head as in the RTN recipes."""

    lp: float = 0.7
    beta: float = 10.0
    kappa: float = 1.01
    iters: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.symmetric:
            raise ValueError("HQQ optimises the zero point: it is asymmetric only")

    @property
    def name(self) -> str:
        return f"hqq-{super().name}"


def _shrink(x: torch.Tensor, beta: float, p: float) -> torch.Tensor:
    return torch.sign(x) * torch.relu(x.abs() - x.abs().clamp_min(1e-12).pow(p - 1) / beta)


def _hqq_groups(g: torch.Tensor, bits: int, config: HQQConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) [N, G] for weights grouped as [N, G, g]."""
    qmax = 2**bits - 1
    lo, hi = g.amin(dim=2, keepdim=True), g.amax(dim=2, keepdim=True)
    scale = ((hi - lo) / qmax).clamp_min(1e-8)
    zero = -lo / scale
    best_zero, best_err, beta = zero, torch.full_like(zero, float("inf")), config.beta
    for _ in range(config.iters):
        q = (g / scale + zero).round().clamp(0, qmax)
        err = (g - (q - zero) * scale).abs().mean(dim=2, keepdim=True)
        better = err < best_err
        if not better.any():
            break
        best_zero, best_err = torch.where(better, zero, best_zero), torch.where(better, err, best_err)
        residual = _shrink(g - (q - zero) * scale, beta, config.lp)
        zero = (q - (g - residual) / scale).mean(dim=2, keepdim=True)
        beta *= config.kappa
    return scale[..., 0], best_zero[..., 0]


def hqq_quantize(w: torch.Tensor, bits: int, group_size: int, config: HQQConfig | None = None) -> QuantizedWeight:
    """HQQ of W [N, K] in groups of GROUP_SIZE along K (a shorter last group is solved on its own)."""
    config = config or HQQConfig(bits=bits, group_size=group_size)
    w = w.detach().float()
    n, k = w.shape
    full = k - k % group_size
    parts = [w[:, :full].reshape(n, -1, group_size)] + ([w[:, full:].reshape(n, 1, -1)] if full < k else [])
    scales, zeros = zip(*(_hqq_groups(part, bits, config) for part in parts), strict=True)
    scale, zero = torch.cat(scales, dim=1), torch.cat(zeros, dim=1)
    qw = QuantizedWeight(torch.zeros(n, k, dtype=torch.uint8), scale, zero, bits, group_size)
    codes = (w / qw.expand(scale) + qw.expand(zero)).round().clamp(0, 2**bits - 1)
    return QuantizedWeight(codes.to(torch.uint8), scale, zero, bits, group_size)


@register_handler(HQQConfig)
def _hqq(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, HQQConfig)
    return hqq_quantize(linear.weight, config.bits, config.group_size or linear.in_features, config)


register_recipe_name(r"hqq-int(?P<bits>\d+)-(?:g(?P<group>\d+)|channel)-asym",
                     lambda m: HQQConfig(bits=int(m["bits"]), group_size=int(m["group"]) if m["group"] else None),
                     "hqq-int4-{g64,g128}-asym, hqq-int3-g64-asym")
