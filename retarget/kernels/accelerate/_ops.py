"""The accelerated ops, one function each: the Triton kernel where Triton runs (a CUDA/ROCm tensor, or any tensor
under TRITON_INTERPRET=1), the kernel folder's torch reference elsewhere. Same arguments either way."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from retarget.kernels.accelerate._experts import QuantExperts, kernel_weights
from retarget.kernels.attention import reference as attention_ref
from retarget.kernels.fused_moe import reference as moe_reference
from retarget.kernels.mamba2 import reference as mamba2_ref
from retarget.kernels.mla_decode import reference as mla_ref


def triton_runs(t: torch.Tensor) -> bool:
    """True where the Triton kernels execute for tensor T: on the GPU, or in Triton's CPU interpreter."""
    return t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None, sinks: torch.Tensor | None,
              scale: float) -> torch.Tensor:
    """Causal q [B, Hq, Sq, D] over k / v [B, Hkv, Sk, D] whose last Sq rows are the queries' own tokens (a
    dynamic cache's contents) -> [B, Hq, Sq, D]. One query row: split-KV decode; more: the prefill kernel."""
    if q.shape[2] == 1:
        lens = torch.full((q.shape[0],), k.shape[2], dtype=torch.int32, device=q.device)
        if triton_runs(q):
            from retarget.kernels.attention import op

            return op.decode_attention(q[:, :, 0], k, v, lens, window, sinks, scale)[:, :, None]
        return attention_ref.decode_attention_ref(q[:, :, 0], k, v, lens.cpu(), window, sinks, scale)[:, :, None]
    if triton_runs(q):
        from retarget.kernels.attention import op

        return op.prefill_attention(q, k, v, window, sinks, scale)
    return attention_ref.prefill_attention_ref(q, k, v, window, sinks, scale)


def mla_decode(q_nope: torch.Tensor, q_pe: torch.Tensor, latent: torch.Tensor, w_uk: torch.Tensor,
               w_uv: torch.Tensor, scale: float) -> torch.Tensor:
    """One MLA decode step: q_nope [B, H, Dn], q_pe [B, H, P] over the latent cache [B, T, R + P] (all T rows
    live), W_UK [H, Dn, R] and W_UV [H, Dv, R] absorbed -> [B, H, Dv]."""
    lens = torch.full((latent.shape[0],), latent.shape[1], dtype=torch.int32, device=latent.device)
    if triton_runs(q_nope):
        from retarget.kernels.mla_decode import op

        return op.mla_decode(q_nope, q_pe, latent, w_uk, w_uv, lens, scale)
    rank = w_uk.shape[-1]
    return mla_ref.mla_decode_ref(q_nope, q_pe, latent[..., :rank], latent[..., rank:], w_uk, w_uv, lens.cpu(),
                                  scale)


@dataclass(frozen=True)
class Routing:
    """A MoE router's rule (reference.route_ref's arguments, bias apart)."""

    top_k: int
    scoring: str = "softmax"
    n_group: int = 1
    topk_group: int = 1
    group_top2: bool = False
    renormalize: bool = True
    routed_scaling: float = 1.0


def route(logits: torch.Tensor, rule: Routing, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights float32 [T, top_k], expert ids int32 [T, top_k]) for router LOGITS [T, E]."""
    if triton_runs(logits):
        from retarget.kernels.fused_moe import op

        return op.route(logits, bias=bias, **asdict(rule))
    return moe_reference.route_ref(logits, bias=bias, **asdict(rule))


Experts = torch.Tensor | QuantExperts  # float weights [E, N, K], or quantized ones


def _kernel_weights(w: Experts, dtype: torch.dtype) -> Any:
    """fused_moe's ExpertWeights for W (quantized codes laid out once per tensor and activation dtype)."""
    from retarget.kernels.fused_moe import op

    return op.ExpertWeights.from_float(w) if isinstance(w, torch.Tensor) else kernel_weights(w, dtype)


def experts(x: torch.Tensor, w13: Experts, w2: Experts, weights: torch.Tensor, ids: torch.Tensor,
            act: moe_reference.Activation = moe_reference.silu_and_mul, bias13: torch.Tensor | None = None,
            bias2: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, H] through the chosen experts W13 [E, 2I, H], W2 [E, H, I] (fused_moe.reference.moe_ref); quantized
    experts run the grouped GEMM of their format (W4A16 / W8A16, FP8-block, MXFP4), or are dequantized for the
    reference."""
    if triton_runs(x):
        from retarget.kernels.fused_moe import op

        k13, k2 = _kernel_weights(w13, x.dtype), _kernel_weights(w2, x.dtype)
        return op.fused_moe(x, k13, k2, weights, ids, k13.w.shape[0], act=act, bias13=bias13, bias2=bias2)
    dense = [w if isinstance(w, torch.Tensor) else w.dense() for w in (w13, w2)]
    return moe_reference.moe_ref(x, *dense, weights, ids, act=act, bias13=bias13, bias2=bias2)


def ssd_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
             d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba2 over a prompt from a zero state: (y [B, L, H, P], final state float32 [B, H, P, N])."""
    if triton_runs(x):
        from retarget.kernels.mamba2 import op

        return op.chunk_scan(x, dt.float(), a, b, c, d)
    return mamba2_ref.ssd_scan_ref(x, dt, a, b, c, d)


def ssd_step(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
             c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """One Mamba2 decode step: updates STATE [B, H, P, N] in place, returns y [B, H, P]."""
    if triton_runs(x):
        from retarget.kernels.mamba2 import op

        work = state if state.dtype == torch.float32 and state.is_contiguous() else state.float().contiguous()
        y = op.state_update(work, x, dt.float(), a, b, c, d)
    else:
        y, work = mamba2_ref.state_update_ref(state, x, dt, a, b, c, d)
    if work is not state:
        state.copy_(work)
    return y
