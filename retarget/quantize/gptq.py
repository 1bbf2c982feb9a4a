"""GPTQ (Frantar et al. 2022, https://arxiv.org/abs/2210.17323): quantize a Linear column by column and
spread each column's rounding error over the columns not yet quantized, weighted by the inverse Hessian
of the layer's output error, H = sum_t x_t x_t^T over calibration inputs.

    H += damp * mean(diag H) * I;   U = chol(H^-1) (upper)
    for each column k (in blocks of 128, the rest updated lazily once per block):
        q_k = Q(w_k);  e = (w_k - q_k) / U[k, k];  w_{k+1:} -= e * U[k, k+1:]

Group scales and zero points are the round-to-nearest ones (retarget.quantize.weight.quantize_rtn) of the
group's columns as they are when GPTQ reaches the group, i.e. after the error of earlier groups was added.
With act_order the columns go in order of decreasing diag(H) and the group parameters are fixed up front
from the original weights ("static groups"), so every column keeps its group and the result is an
ordinary QuantizedWeight in the original column order (no g_idx).

Non-sequential: every layer's Hessian comes from the float model in one calibration pass (the paper
recomputes each block's inputs with the earlier blocks already quantized). lm_head keeps the integer
recipes' symmetric RTN blocks (applied by quantize_ ahead of the handler).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from retarget.quantize.api import LayerContext, register_handler
from retarget.quantize.configs import INT_NAME, IntWeightOnlyConfig, QuantConfig, int_fields, register_recipe_name
from retarget.quantize.weight import QuantizedWeight, quantize_rtn


@dataclass(frozen=True)
class GPTQConfig(IntWeightOnlyConfig):
    """GPTQ integer weights in the same format as IntWeightOnlyConfig (same lowering, same size)."""

    needs_calibration: ClassVar[bool] = True
    damp: float = 0.01  # relative dampening of the Hessian diagonal, as in the paper's reference code
    block_size: int = 128  # columns per lazy-update block
    act_order: bool = False

    @property
    def name(self) -> str:
        return f"gptq-{super().name}{'-actorder' if self.act_order else ''}"


def round_to_grid(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes of W on the grid (code - zero) * scale, clamped to [0, 2**bits - 1] (same arithmetic as RTN)."""
    return (w / scale + zero).round().clamp(0, 2**bits - 1)


def _inverse_hessian_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1."""
    h = h.clone()
    h.diagonal().add_(damp * h.diagonal().mean())
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


def gptq_quantize(w: torch.Tensor, hessian: torch.Tensor, bits: int, group_size: int, symmetric: bool,
                  damp: float = 0.01, block_size: int = 128, act_order: bool = False) -> QuantizedWeight:
    """GPTQ of W [N, K] against the input Hessian [K, K]; group_size K means one group per row."""
    n, k = w.shape
    w = w.detach().float().clone()
    h = hessian.detach().float().clone()
    dead = h.diagonal() == 0  # inputs that were always zero: the weight there never matters
    h[dead, dead] = 1
    w[:, dead] = 0
    groups = -(-k // group_size)
    scale = torch.empty(n, groups)
    zero = torch.empty(n, groups)
    group_of = torch.arange(k) // group_size
    if act_order:
        static = quantize_rtn(w, bits, group_size, symmetric)
        scale, zero = static.scale, static.zero
        perm = torch.argsort(h.diagonal(), descending=True)
        w, h, group_of = w[:, perm], h[perm][:, perm], group_of[perm]
    else:  # blocks hold whole groups, so a group's parameters see all of the error spread into it
        block_size = -(-block_size // group_size) * group_size
    u = _inverse_hessian_factor(h, damp)
    wt = w.T.contiguous()  # [K, N]: a column of W is a contiguous row here
    codes = torch.empty(k, n)
    for b0 in range(0, k, block_size):
        b1 = min(b0 + block_size, k)
        block, err, u_block = wt[b0:b1].clone(), torch.empty(b1 - b0, n), u[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            g = int(group_of[col])
            if not act_order and col % group_size == 0:
                first = quantize_rtn(block[i:i + group_size].T, bits, block[i:i + group_size].shape[0], symmetric)
                scale[:, g], zero[:, g] = first.scale[:, 0], first.zero[:, 0]
            s, z = scale[:, g], zero[:, g]
            q = round_to_grid(block[i], s, z, bits)
            codes[col] = q
            torch.div(block[i] - (q - z) * s, u_block[i, i], out=err[i])
            block[i:].addr_(u_block[i, i:], err[i], alpha=-1)
        wt[b1:].addmm_(u[b0:b1, b1:].T, err, alpha=-1)
    codes = codes.T
    if act_order:
        codes = codes[:, torch.argsort(perm)]
    return QuantizedWeight(codes.to(torch.uint8), scale, zero, bits, group_size)


@register_handler(GPTQConfig)
def _gptq(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, GPTQConfig)
    group = config.group_size or linear.in_features
    if ctx.stats is None:  # lm_head at the same width as the body: no statistics are collected for it
        return quantize_rtn(linear.weight, config.bits, group, config.symmetric)
    return gptq_quantize(linear.weight, ctx.stats.hessian, config.bits, group, config.symmetric,
                         config.damp, config.block_size, config.act_order)


register_recipe_name(f"gptq-{INT_NAME}(?P<act>-actorder)?",
                     lambda m: GPTQConfig(**int_fields(m), act_order=bool(m["act"])),
                     "gptq-int4-{g64,g128}-asym[-actorder], gptq-int4-g64-asym-head4-actorder, gptq-int3-g64-asym")
