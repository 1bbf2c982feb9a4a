"""Mixture-of-experts routing and expert MLPs in torch: the per-expert loop the fused kernels reproduce.

Routing (per token, E expert logits):
    scores   = softmax(logits) or sigmoid(logits)
    choice   = scores + bias                     (DeepSeek-V3's load-balancing bias; selection only)
    group-limited top-k: experts form n_group equal groups; a group's score is its best choice (or the sum of
    its best two, DeepSeek-V3); only the topk_group best groups compete; then top_k experts by choice.
    weights  = scores of the chosen experts, renormalized to sum 1 if asked, times routed_scaling
(DeepSeek-V3, https://arxiv.org/abs/2412.19437 section 2.1.2; DeepSeek-V2 device-limited routing.)

Expert MLP (SwiGLU): y = sum_k w_k * W2[e_k] (silu(W1[e_k] x) * W3[e_k] x), with W1 and W3 stacked as
W13 [E, 2I, H] (gate rows first) and W2 [E, H, I]; another activation of the [2I] products (gpt-oss's clamped
SwiGLU on interleaved rows) and per-expert biases may replace it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Activation = Callable[[torch.Tensor], torch.Tensor]  # gate/up products [P, 2I] -> expert MLP hidden [P, I]


def silu_and_mul(h: torch.Tensor) -> torch.Tensor:
    """SwiGLU on [P, 2I] with the gate columns first: silu(gate) * up."""
    inter = h.shape[-1] // 2
    return torch.nn.functional.silu(h[..., :inter]) * h[..., inter:]


def route_ref(logits: torch.Tensor, top_k: int, n_group: int = 1, topk_group: int = 1,
              scoring: str = "softmax", bias: torch.Tensor | None = None, group_top2: bool = False,
              renormalize: bool = True, routed_scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, top_k], expert ids int32 [T, top_k]) for LOGITS [T, E], best first."""
    t, e = logits.shape
    scores = torch.softmax(logits.float(), -1) if scoring == "softmax" else torch.sigmoid(logits.float())
    choice = scores + bias.float() if bias is not None else scores
    groups = choice.view(t, n_group, e // n_group)
    group_score = groups.topk(2, dim=-1).values.sum(-1) if group_top2 else groups.amax(-1)
    keep = torch.zeros(t, n_group, dtype=torch.bool, device=logits.device)
    keep.scatter_(1, group_score.topk(topk_group, dim=-1).indices, True)
    choice = groups.masked_fill(~keep[..., None], float("-inf")).view(t, e)
    ids = choice.topk(top_k, dim=-1).indices
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights * routed_scaling, ids.to(torch.int32)


def moe_ref(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
            act: Activation = silu_and_mul, bias13: torch.Tensor | None = None,
            bias2: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, H] through the chosen experts (float weights W13 [E, 2I, H], W2 [E, H, I], optional biases
    [E, 2I] / [E, H] as gpt-oss has), a loop over experts in float32, returned in x's dtype."""
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in ids.unique().tolist():
        tok, slot = (ids == e).nonzero(as_tuple=True)
        h = x[tok].float() @ w13[e].float().T
        if bias13 is not None:
            h = h + bias13[e].float()
        y = act(h) @ w2[e].float().T
        if bias2 is not None:
            y = y + bias2[e].float()
        out.index_add_(0, tok, y * weights[tok, slot].float()[:, None])
    return out.to(x.dtype)


def flops(tokens: int, top_k: int, hidden: int, inter: int) -> int:
    """Both expert GEMMs, multiply-adds counted as 2."""
    return 2 * tokens * top_k * 3 * hidden * inter


def bytes(tokens: int, top_k: int, experts: int, hidden: int, inter: int, weight_bytes: float = 2.0) -> int:
    """Minimum DRAM traffic: the weights of every expert some token picked (at most all E), activations."""
    touched = min(experts, tokens * top_k)
    return int(touched * 3 * hidden * inter * weight_bytes + tokens * hidden * 4 + tokens * top_k * inter * 6)
