"""AWQ, activation-aware weight quantization (Lin et al. 2023, https://arxiv.org/abs/2306.00978).

Two searches, both scored by the layer's output error on the calibration inputs through their Hessian
H = sum x x^T (retarget.quantize.calibration), so no activations are stored:

    ||(W - W_q) X^T||^2 = tr(dW H dW^T)

1. Scales (a model transform, before any layer is quantized). For a pair producer -> consumer where
   the consumer's input is the producer's output channel for channel, y = W_c (x / s) with the producer's
   rows divided by s leaves the float model unchanged, and quantizing W_c diag(s) protects the input
   channels with large activations. s = mean|x|^alpha (normalised), alpha on a grid in [0, 1] (alpha = 0
   is no change, so the search never loses on its objective). Pairs (Llama naming):
       v_proj -> o_proj   (grouped-query attention: one scale per value channel, shared by the query
                           heads that read it)
       up_proj -> down_proj
   Both ends are Linears that get quantized, so the folded scales live entirely in their QuantizedWeights:
   the exported float graph and the MatMulNBits lowering need nothing new. The paper's other pairs
   (input RMSNorm -> q/k/v, post-attention RMSNorm -> gate/up) would change the norms' float weights,
   which `retarget compile` exports from the unquantized model; they are left out.
2. Clipping (per layer): each group's range is shrunk by the ratio in {1, 0.95, ..., 0.55} that minimises
   its own share of the output error, sum_n dW_ng H_gg dW_ng^T (the group's diagonal block of H).
   Scales and zero points are then the round-to-nearest ones of the clipped weights. With `gptq=True`
   ("awq-gptq-*") each layer is quantized by GPTQ (retarget.quantize.gptq) instead, on the rescaled Hessian.
Either way: the same QuantizedWeight layout, size and lowering as `int*-g*-*`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from rich.progress import Progress
from torch import nn

from retarget.quantize.api import LayerContext, linear_layers, register_handler, register_transform
from retarget.quantize.calibration import LayerStats
from retarget.quantize.configs import INT_NAME, IntWeightOnlyConfig, QuantConfig, int_fields, register_recipe_name
from retarget.quantize.gptq import gptq_quantize
from retarget.quantize.weight import QuantizedWeight, quantize_rtn

SCORE_ROWS = 256  # rows of W scored per scale candidate (evenly spaced): the error is a sum over rows
CLIP_RATIOS = tuple(1 - i / 20 for i in range(10))  # AutoAWQ's grid: max_shrink 0.5 in steps of 1/20


@dataclass(frozen=True)
class AWQConfig(IntWeightOnlyConfig):
    """AWQ integer weights in the same format as IntWeightOnlyConfig (same lowering, same size)."""

    needs_calibration: ClassVar[bool] = True
    grid: int = 20  # alpha candidates: 0, 1/grid, ..., (grid - 1)/grid
    clip: bool = True
    gptq: bool = False  # after folding the scales, quantize each layer with GPTQ instead of the clip search

    @property
    def name(self) -> str:
        return f"awq-{'gptq-' if self.gptq else ''}{super().name}"


def output_error(dw: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """tr(dW H dW^T) = ||dW X^T||^2 for dW [N, K] and H = X^T X [K, K]."""
    return ((dw @ h) * dw).sum()


def _rtn_dequant(w: torch.Tensor, bits: int, group: int, symmetric: bool) -> torch.Tensor:
    return quantize_rtn(w, bits, group, symmetric).dequantize()


def search_scale(w: torch.Tensor, stats: LayerStats, bits: int, group: int, symmetric: bool, grid: int,
                 tie: int = 1, head_dim: int = 64) -> torch.Tensor:
    """The per-input-channel scale s [K] minimising tr(dW H dW^T) for W_q = Q(W diag(s)) diag(s)^-1.

    TIE > 1 (grouped-query attention): the input is TIE query heads of HEAD_DIM channels per value head;
    channels reading the same value channel get one scale (from their mean |x|), so it folds into one
    producer row.
    """
    rows = torch.linspace(0, w.shape[0] - 1, min(SCORE_ROWS, w.shape[0])).long()
    w, h = w[rows].float(), stats.hessian
    act = _untie(stats.abs_mean, tie, head_dim)
    best, best_err = torch.ones_like(stats.abs_mean), output_error(w - _rtn_dequant(w, bits, group, symmetric), h)
    for i in range(1, grid):
        s = act.clamp_min(1e-4).pow(i / grid)
        s = _retie(s / (s.max() * s.min()).sqrt(), tie, head_dim)
        err = output_error(w - _rtn_dequant(w * s, bits, group, symmetric) / s, h)
        if err < best_err:
            best, best_err = s, err
    return best


def _untie(v: torch.Tensor, tie: int, head_dim: int) -> torch.Tensor:
    """[kv * tie * head_dim] -> [kv * head_dim]: the mean over the TIE query heads sharing a value head."""
    return v if tie == 1 else v.view(-1, tie, head_dim).mean(1).reshape(-1)


def _retie(v: torch.Tensor, tie: int, head_dim: int) -> torch.Tensor:
    """[kv * head_dim] -> [kv * tie * head_dim], each value head's scales repeated for its query heads."""
    return v if tie == 1 else v.view(-1, 1, head_dim).expand(-1, tie, head_dim).reshape(-1)


def _fold(producer: nn.Linear, consumer: nn.Linear, s: torch.Tensor, tie: int, head_dim: int) -> None:
    """consumer(x) -> consumer(x / s) with W_c *= s; producer's rows (its outputs) /= s."""
    s_rows = _untie(s, tie, head_dim)
    producer.weight.div_(s_rows[:, None])
    if producer.bias is not None:
        producer.bias.div_(s_rows)
    consumer.weight.mul_(s[None, :])


def _rescaled(stats: LayerStats, s: torch.Tensor) -> LayerStats:
    """The statistics of x / s."""
    return LayerStats(stats.hessian / (s[:, None] * s[None, :]), stats.abs_sum / s, stats.abs_max / s,
                      stats.tokens, list(stats.names))


def _pairs(model: nn.Module) -> list[tuple[str, str, int, int]]:
    """(producer, consumer, tie, head_dim) for every foldable pair, by Llama naming."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return []
    heads, kv_heads = cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    names = set(linear_layers(model, include_lm_head=False))
    pairs = []
    for name in sorted(names):
        prefix, _, leaf = name.rpartition(".")
        if leaf == "o_proj" and f"{prefix}.v_proj" in names:
            pairs.append((f"{prefix}.v_proj", name, heads // kv_heads, head_dim))
        elif leaf == "down_proj" and f"{prefix}.up_proj" in names:
            pairs.append((f"{prefix}.up_proj", name, 1, head_dim))
    return pairs


@register_transform(AWQConfig)
@torch.no_grad()
def _awq_scales(model: nn.Module, config: QuantConfig, stats: dict[str, LayerStats],
                progress: Progress | None) -> dict[str, LayerStats]:
    assert isinstance(config, AWQConfig)
    stats = dict(stats)
    pairs = _pairs(model)
    task = progress.add_task("AWQ scale search", total=len(pairs)) if progress else None
    for producer, consumer, tie, head_dim in pairs:
        if consumer not in stats:  # an expert no calibration token reached: quantize_ falls back to RTN
            continue
        layer = model.get_submodule(consumer)
        group = config.group_size or layer.in_features
        s = search_scale(layer.weight, stats[consumer], config.bits, group, config.symmetric, config.grid, tie,
                         head_dim)
        _fold(model.get_submodule(producer), layer, s, tie, head_dim)
        stats[consumer] = _rescaled(stats[consumer], s)
        if progress and task is not None:
            progress.advance(task)
    return stats


def search_clip(w: torch.Tensor, h: torch.Tensor | None, bits: int, group: int, symmetric: bool) -> QuantizedWeight:
    """RTN of W after clipping each group's range by the ratio in CLIP_RATIOS with the least output error
    through the group's diagonal block of H (None: the identity, i.e. the weights' own squared error)."""
    w = w.detach().float()
    n, k = w.shape
    groups = -(-k // group)
    pad = groups * group - k
    blocks = None
    if h is not None:
        hp = torch.nn.functional.pad(h, (0, pad, 0, pad))
        blocks = torch.stack([hp[i * group:(i + 1) * group, i * group:(i + 1) * group] for i in range(groups)])
    probe = quantize_rtn(w, bits, group, symmetric)
    lo = probe.expand(_group_reduce(w, group, torch.amin))
    hi = probe.expand(_group_reduce(w, group, torch.amax))
    best_err = torch.full((n, groups), float("inf"))
    best_ratio = torch.ones(n, groups)
    for ratio in CLIP_RATIOS:
        dw = w - _rtn_dequant(torch.clamp(w, lo * ratio, hi * ratio), bits, group, symmetric)
        dg = torch.nn.functional.pad(dw, (0, pad)).view(n, groups, group).transpose(0, 1)  # [G, N, g]
        err = (dg.square() if blocks is None else (dg @ blocks) * dg).sum(-1).T  # [N, G]
        better = err < best_err
        best_err, best_ratio = torch.where(better, err, best_err), torch.where(better, ratio, best_ratio)
    ratio = probe.expand(best_ratio)
    return quantize_rtn(torch.clamp(w, lo * ratio, hi * ratio), bits, group, symmetric)


def _group_reduce(w: torch.Tensor, group: int, fn) -> torch.Tensor:
    """FN (amin/amax) over each group of W [N, K] along K -> [N, G] (a short last group on its own)."""
    return torch.stack([fn(part, dim=1) for part in w.split(group, dim=1)], dim=1)


@register_handler(AWQConfig)
def _awq(name: str, linear: nn.Linear, config: QuantConfig, ctx: LayerContext) -> QuantizedWeight:
    assert isinstance(config, AWQConfig)
    group = config.group_size or linear.in_features
    if ctx.stats is None or not (config.clip or config.gptq):
        return quantize_rtn(linear.weight, config.bits, group, config.symmetric)
    if config.gptq:
        return gptq_quantize(linear.weight, ctx.stats.hessian, config.bits, group, config.symmetric)
    return search_clip(linear.weight, ctx.stats.hessian, config.bits, group, config.symmetric)


register_recipe_name(f"awq-(?P<gptq>gptq-)?{INT_NAME}", lambda m: AWQConfig(**int_fields(m), gptq=bool(m["gptq"])),
                     "awq-int4-{g64,g128}-asym, awq-int3-g64-asym")
