"""Mixture-of-experts blocks on kernels/fused_moe: routing (softmax or sigmoid scores, group-limited top-k,
selection bias, renormalisation, scaling) and the grouped expert GEMMs.

Install stacks each block's experts once into W13 [E, 2I, H] and W2 [E, H, I] (plus biases), kept as
non-persistent buffers (out of the state dict): float weights, or quantized codes and scales (int4 / int8,
FP8 128 x 128 blocks, MXFP4: retarget.kernels.accelerate._experts) that run the grouped GEMM of their format.
Per-expert weights (Linear, QuantLinear, the QuantizedWeights of quantized fused experts) become views of the
stacks; gpt-oss's float fused 3-D experts are stored [E, H, 2I], so their stacks are a transposed second copy.
Call `accelerate_` last: after loading, quantizing and moving the weights (a later `.to()` moves views and stacks
as separate copies)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from transformers.activations import SiLUActivation
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts, GptOssMLP
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from retarget.kernels.accelerate import _ops
from retarget.kernels.accelerate._experts import ExpertFormat, QuantExperts, gemm_for
from retarget.kernels.accelerate._registry import register
from retarget.kernels.fused_moe.reference import Activation, silu_and_mul
from retarget.quantize.api import FUSED_ATTR
from retarget.quantize.experts import FUSED_EXPERTS, expert_key
from retarget.quantize.modules import QuantLinear
from retarget.quantize.weight import QuantizedWeight

Linears = Callable[[nn.Module], tuple[nn.Linear, nn.Linear, nn.Linear]]  # an expert MLP's (gate, up, down)
QUANT_FIELDS = ("codes", "scale", "zero")


def _gate_up_down(mlp: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return mlp.gate_proj, mlp.up_proj, mlp.down_proj


def _w1_w3_w2(mlp: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return mlp.w1, mlp.w3, mlp.w2


def _install(module: nn.Module, forward: Callable, rule: _ops.Routing, w13: _ops.Experts, w2: _ops.Experts,
             act: Activation = silu_and_mul, bias13: torch.Tensor | None = None,
             bias2: torch.Tensor | None = None) -> None:
    """Keep the stacks as non-persistent buffers (quantized experts: codes / scale / zero) and swap the forward."""
    module.expert_formats = {}
    for name, stack in (("w13", w13), ("w2", w2), ("bias13", bias13), ("bias2", bias2)):
        if isinstance(stack, QuantExperts):
            module.expert_formats[name] = stack.format
            tensors = {f"{name}_{field}": getattr(stack, field) for field in QUANT_FIELDS}
        else:
            tensors = {name: stack}
        for key, tensor in tensors.items():
            module.register_buffer(f"stacked_{key}", None if tensor is None else tensor.detach().contiguous(),
                                   persistent=False)
    module.routing, module.expert_act = rule, act
    module.forward = forward.__get__(module)


def _stack(module: nn.Module, name: str) -> _ops.Experts:
    if name not in module.expert_formats:
        return getattr(module, f"stacked_{name}")
    codes, scale, zero = (getattr(module, f"stacked_{name}_{field}") for field in QUANT_FIELDS)
    return QuantExperts(codes, scale, zero, module.expert_formats[name])


def _experts(module: nn.Module, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return _ops.experts(x, _stack(module, "w13"), _stack(module, "w2"), weights, ids, module.expert_act,
                        module.stacked_bias13, module.stacked_bias2)


def _stack_into(mats: list[list[Any]], fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per field, expert e's matrices MATS[e] (Linear, QuantLinear or QuantizedWeight) concatenated along rows and
    stacked over experts; each matrix's field then becomes a view of the stack (one copy of the experts in memory,
    the state dict unchanged)."""
    stacks = {f: torch.stack([torch.cat([getattr(m, f) for m in ms]) for ms in mats]).detach() for f in fields}
    for e, ms in enumerate(mats):
        start = 0
        for m in ms:
            rows = slice(start, start + getattr(m, fields[0]).shape[0])
            start = rows.stop
            for f in fields:
                view = stacks[f][e, rows]
                setattr(m, f, nn.Parameter(view, requires_grad=False) if f == "weight" else view)
    return stacks


def _stacked(mats: list[list[Any]]) -> _ops.Experts:
    """Float weights [E, N, K] for float Linears, else the quantized stack in its format."""
    if isinstance(mats[0][0], nn.Linear):
        return _stack_into(mats, ("weight",))["weight"]
    return QuantExperts(**_stack_into(mats, QUANT_FIELDS), format=ExpertFormat.of(mats[0][0]))


def _stack_swiglu(mlps: nn.ModuleList, linears: Linears) -> tuple[_ops.Experts, _ops.Experts]:
    """W13 (gate rows, then up rows) and W2 from per-expert (gate, up, down) layers, float Linear or weight-only
    QuantLinear."""
    parts = [linears(mlp) for mlp in mlps]
    return _stacked([[gate, up] for gate, up, _ in parts]), _stacked([[down] for _, _, down in parts])


def _unstackable(stacks: dict[str, list[Any]]) -> str | None:
    """Why the quantized expert matrices of STACKS (name -> matrices) cannot run a fused_moe GEMM: one format per
    stack, one that a GEMM takes (None if they can)."""
    for name, mats in stacks.items():
        formats = {ExpertFormat.of(m) for m in mats}
        if len(formats) > 1:
            return f"{name} experts mix formats {', '.join(sorted(f.describe() for f in formats))}"
        fmt = formats.pop()
        if gemm_for(fmt) is None:
            return f"{name} experts are {fmt.describe()}: no fused_moe GEMM takes that format"
    return None


def _describe(layer: nn.Module) -> str:
    if not isinstance(layer, QuantLinear):
        return type(layer).__name__
    act = f" with {layer.act} activations" if layer.act else ""
    smooth = " smoothed" if layer.smooth is not None else ""
    return f"QuantLinear {ExpertFormat.of(layer).describe()}{act}{smooth}"


def _swiglu_experts(linears: Linears) -> Callable[[nn.Module], str | None]:
    """Blocker: the block's experts must be SwiGLU MLPs of float Linear layers, or of weight-only QuantLinear
    layers of one GEMM-ready format for the gate/up layers and one for the down layers; FP8 blocks must not
    straddle the gate/up seam."""
    def blocker(module: nn.Module) -> str | None:
        act = module.experts[0].act_fn
        if not isinstance(act, (nn.SiLU, SiLUActivation)):
            return f"expert activation {type(act).__name__} is not SwiGLU"
        parts = [linears(mlp) for mlp in module.experts]
        layers = [layer for part in parts for layer in part]
        if all(type(layer) is nn.Linear and layer.weight.is_floating_point() for layer in layers):
            return None
        if not all(isinstance(layer, QuantLinear) and layer.act is None and layer.smooth is None for layer in layers):
            kinds = ", ".join(sorted({_describe(layer) for layer in layers}))
            return f"experts are {kinds}: not float Linear or weight-only QuantLinear layers"
        why = _unstackable({"gate/up": [layer for part in parts for layer in part[:2]],
                            "down": [part[2] for part in parts]})
        gate = parts[0][0]
        if why is None and gate.out_features % gate.block_rows:
            why = (f"expert width {gate.out_features} is not a multiple of the {gate.block_rows}-row scale blocks "
                   "(gate and up rows are stacked)")
        return why
    return blocker


# DeepSeek-V3 / Kimi K2: sigmoid scores + selection bias, best 2 per group pick topk_group groups, shared expert


def deepseek_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    x = hidden_states.view(-1, hidden_states.shape[-1])
    logits = nn.functional.linear(x.float(), self.gate.weight.float())
    weights, ids = _ops.route(logits, self.routing, self.gate.e_score_correction_bias)
    return _experts(self, x, weights, ids).view_as(hidden_states) + self.shared_experts(hidden_states)


@register(DeepseekV3MoE, kernels=("fused_moe",), blocker=_swiglu_experts(_gate_up_down))
def use_fused_deepseek(module: nn.Module) -> None:
    g = module.gate
    rule = _ops.Routing(g.top_k, "sigmoid", g.n_group, g.topk_group, group_top2=True, renormalize=g.norm_topk_prob,
                        routed_scaling=g.routed_scaling_factor)
    _install(module, deepseek_forward, rule,
             *_stack_swiglu(module.experts, _gate_up_down))


# Qwen3-MoE and Mixtral: softmax over all experts, top-k, optional renormalisation; router logits returned


def softmax_block_forward(self: nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = hidden_states.view(-1, hidden_states.shape[-1])
    logits = self.gate(x)
    weights, ids = _ops.route(logits, self.routing)
    return _experts(self, x, weights, ids).view_as(hidden_states), logits


@register(Qwen3MoeSparseMoeBlock, kernels=("fused_moe",), blocker=_swiglu_experts(_gate_up_down))
def use_fused_qwen3_moe(module: nn.Module) -> None:
    _install(module, softmax_block_forward, _ops.Routing(module.top_k, renormalize=module.norm_topk_prob),
             *_stack_swiglu(module.experts, _gate_up_down))


@register(MixtralSparseMoeBlock, kernels=("fused_moe",), blocker=_swiglu_experts(_w1_w3_w2))
def use_fused_mixtral(module: nn.Module) -> None:
    _install(module, softmax_block_forward, _ops.Routing(module.top_k),
             *_stack_swiglu(module.experts, _w1_w3_w2))


# gpt-oss: router with bias, softmax over the top-k logits (= renormalised softmax), fused 3-D experts with
# biases and a clamped SwiGLU on interleaved gate/up columns


def clamped_swiglu(h: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's expert activation on [P, 2I] with gate and up columns interleaved."""
    gate, up = h[..., ::2].clamp(max=limit), h[..., 1::2].clamp(-limit, limit)
    return (up + 1) * gate * torch.sigmoid(gate * alpha)


def gpt_oss_forward(self: nn.Module, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = hidden_states.reshape(-1, hidden_states.shape[-1])
    logits = nn.functional.linear(x, self.router.weight, self.router.bias)
    weights, ids = _ops.route(logits, self.routing)
    scores = torch.zeros_like(logits).scatter_(1, ids.long(), weights.to(logits.dtype))
    return _experts(self, x, weights, ids).view_as(hidden_states), scores


def _fused_qweights(experts: nn.Module) -> dict[str, list[QuantizedWeight | None]]:
    """Per matrix of a fused expert module, the QuantizedWeight quantize_ keeps for each expert (None where it kept
    none); empty for float experts."""
    qweights = getattr(experts, FUSED_ATTR, {})
    if not qweights:
        return {}
    path = next(iter(qweights)).rsplit(".", 2)[0]  # keys are expert_key(path, matrix, e)
    return {matrix: [qweights.get(expert_key(path, matrix, e)) for e in range(experts.num_experts)]
            for matrix in FUSED_EXPERTS[type(experts).__name__].matrices}


def _gpt_oss_experts(module: nn.Module) -> str | None:
    """Blocker: GptOssExperts (not transformers' own MXFP4 module), float or quantized with every expert in one
    GEMM-ready format per matrix."""
    kind = type(module.experts)
    if kind is not GptOssExperts:
        return f"experts are {kind.__name__}, not GptOssExperts"
    stacks = _fused_qweights(module.experts)
    if any(w is None for mats in stacks.values() for w in mats):
        return "only some experts are quantized"
    return _unstackable(stacks)


@register(GptOssMLP, kernels=("fused_moe",), blocker=_gpt_oss_experts)
def use_fused_gpt_oss(module: nn.Module) -> None:
    e = module.experts
    stacks = _fused_qweights(e)
    if stacks:
        w13, w2 = (_stacked([[w] for w in mats]) for mats in stacks.values())  # (gate_up_proj, down_proj)
    else:
        w13, w2 = e.gate_up_proj.transpose(1, 2), e.down_proj.transpose(1, 2)
    _install(module, gpt_oss_forward, _ops.Routing(module.router.top_k), w13, w2,
             partial(clamped_swiglu, alpha=e.alpha, limit=e.limit), e.gate_up_proj_bias, e.down_proj_bias)
