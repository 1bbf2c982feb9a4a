"""Mixture-of-experts blocks on kernels/fused_moe: routing (softmax or sigmoid scores, group-limited top-k,
selection bias, renormalisation, scaling) and the grouped expert GEMMs.

Install stacks each block's experts once into W13 [E, 2I, H] and W2 [E, H, I] (plus biases), kept as
non-persistent buffers (out of the state dict). Per-expert Linear weights become views of the stacks; gpt-oss's
fused 3-D experts are stored [E, H, 2I], so its stacks are a transposed second copy. Call `accelerate_` last:
after loading, quantizing and moving the weights (a later `.to()` moves views and stacks as separate copies)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from transformers.activations import SiLUActivation
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts, GptOssMLP
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from retarget.kernels.accelerate import _ops
from retarget.kernels.accelerate._registry import register
from retarget.kernels.fused_moe.reference import Activation, silu_and_mul
from retarget.kernels.w4a16_gemm.layout import supported_group
from retarget.quantize.modules import QuantLinear

Linears = Callable[[nn.Module], tuple[nn.Linear, nn.Linear, nn.Linear]]  # an expert MLP's (gate, up, down)


def _gate_up_down(mlp: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return mlp.gate_proj, mlp.up_proj, mlp.down_proj


def _w1_w3_w2(mlp: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return mlp.w1, mlp.w3, mlp.w2


def _install(module: nn.Module, forward: Callable, rule: _ops.Routing, w13: _ops.Experts, w2: _ops.Experts,
             act: Activation = silu_and_mul, bias13: torch.Tensor | None = None,
             bias2: torch.Tensor | None = None) -> None:
    """Keep the stacks as non-persistent buffers (integer experts: codes / scale / zero) and swap the forward."""
    module.expert_formats = {}
    for name, stack in (("w13", w13), ("w2", w2), ("bias13", bias13), ("bias2", bias2)):
        if isinstance(stack, _ops.IntExperts):
            module.expert_formats[name] = (stack.bits, stack.group_size)
            tensors = {f"{name}_{field}": getattr(stack, field) for field in ("codes", "scale", "zero")}
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
    codes, scale, zero = (getattr(module, f"stacked_{name}_{field}") for field in ("codes", "scale", "zero"))
    return _ops.IntExperts(codes, scale, zero, *module.expert_formats[name])


def _experts(module: nn.Module, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return _ops.experts(x, _stack(module, "w13"), _stack(module, "w2"), weights, ids, module.expert_act,
                        module.stacked_bias13, module.stacked_bias2)


def _stack_swiglu(mlps: nn.ModuleList, linears: Linears) -> tuple[_ops.Experts, _ops.Experts]:
    """W13 (gate rows, then up rows) and W2 from per-expert (gate, up, down) layers, float Linear or integer
    QuantLinear; the layers' weights (codes, scale, zero) then become views of the stacks (one copy of the experts
    in memory, the state dict unchanged)."""
    parts = [linears(mlp) for mlp in mlps]
    fields = ("weight",) if isinstance(parts[0][0], nn.Linear) else ("codes", "scale", "zero")
    w13 = {f: torch.stack([torch.cat([getattr(g, f), getattr(u, f)]) for g, u, _ in parts]).detach() for f in fields}
    w2 = {f: torch.stack([getattr(down, f) for _, _, down in parts]).detach() for f in fields}
    inter = parts[0][0].out_features
    for e, (gate, up, down) in enumerate(parts):
        for layer, stack, rows in ((gate, w13, slice(0, inter)), (up, w13, slice(inter, None)),
                                   (down, w2, slice(None))):
            for f in fields:
                view = stack[f][e, rows]
                setattr(layer, f, nn.Parameter(view, requires_grad=False) if f == "weight" else view)
    if fields == ("weight",):
        return w13["weight"], w2["weight"]
    gate, _, down = parts[0]
    return (_ops.IntExperts(**w13, bits=gate.bits, group_size=gate.group_size),
            _ops.IntExperts(**w2, bits=down.bits, group_size=down.group_size))


def _int_weight_only(layer: nn.Module) -> bool:
    """A QuantLinear the W4A16 / W8A16 grouped GEMM takes: integer codes of 4 or 8 bits, float activations, a
    group size that is a multiple of 16."""
    return (isinstance(layer, QuantLinear) and layer.element == "int" and layer.bits in (4, 8) and layer.act is None
            and layer.smooth is None and supported_group(layer.group_size))


def _describe(layer: nn.Module) -> str:
    if not isinstance(layer, QuantLinear):
        return type(layer).__name__
    act = f" with {layer.act} activations" if layer.act else ""
    element = f"int{layer.bits}" if layer.element == "int" else layer.element
    return f"QuantLinear {element}-g{layer.group_size}{act}"


def _swiglu_experts(linears: Linears) -> Callable[[nn.Module], str | None]:
    """Blocker: the block's experts must be SwiGLU MLPs of float Linear layers, or of integer weight-only
    QuantLinear layers with one (bits, group size) for the gate/up layers and one for the down layers."""
    def blocker(module: nn.Module) -> str | None:
        act = module.experts[0].act_fn
        if not isinstance(act, (nn.SiLU, SiLUActivation)):
            return f"expert activation {type(act).__name__} is not SwiGLU"
        parts = [linears(mlp) for mlp in module.experts]
        layers = [layer for part in parts for layer in part]
        if all(type(layer) is nn.Linear and layer.weight.is_floating_point() for layer in layers):
            return None
        if all(_int_weight_only(layer) for layer in layers):
            gate_up = {(part[j].bits, part[j].group_size) for part in parts for j in (0, 1)}
            down = {(part[2].bits, part[2].group_size) for part in parts}
            if len(gate_up) == 1 and len(down) == 1:
                return None
        kinds = ", ".join(sorted({_describe(layer) for layer in layers}))
        return f"experts are {kinds}: not float Linear or integer weight-only QuantLinear layers of one format"
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


def _float_gpt_oss_experts(module: nn.Module) -> str | None:
    kind = type(module.experts)
    return None if kind is GptOssExperts else f"experts are {kind.__name__} (quantized), not float GptOssExperts"


@register(GptOssMLP, kernels=("fused_moe",), blocker=_float_gpt_oss_experts)
def use_fused_gpt_oss(module: nn.Module) -> None:
    e = module.experts
    _install(module, gpt_oss_forward, _ops.Routing(module.router.top_k), e.gate_up_proj.transpose(1, 2),
             e.down_proj.transpose(1, 2), partial(clamped_swiglu, alpha=e.alpha, limit=e.limit), e.gate_up_proj_bias,
             e.down_proj_bias)
