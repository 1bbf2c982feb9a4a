"""Attention with a causal sliding window and per-head sink logits, in torch: what the kernels reproduce.

Query i of sequence b sits at absolute position pos[b, i] and may attend key j when

    j < len[b]  and  j <= pos[b, i]  and  pos[b, i] - j < window        (window None: no lower bound)

The softmax denominator also holds exp(sink[h]) (gpt-oss's learned attention sinks, a logit with no value
row: https://github.com/openai/gpt-oss/blob/main/gpt_oss/torch/model.py). Grouped-query attention: query
head h reads key/value head h // (Hq / Hkv).

Decode reads the whole live cache once per step: 2 * len * Hkv * D * 2 B per sequence; the kernel is
memory-bound and its roof is that traffic at HBM bandwidth.
"""

from __future__ import annotations

import math

import torch


def masked_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor,
                         lens: torch.Tensor, window: int | None = None, sinks: torch.Tensor | None = None,
                         scale: float | None = None) -> torch.Tensor:
    """q [B, Hq, Sq, D], k / v [B, Hkv, T, D], pos [B, Sq], lens [B] -> [B, Hq, Sq, D], in float64."""
    b, hq, sq, d = q.shape
    hkv = k.shape[1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    kk = k.double().repeat_interleave(hq // hkv, dim=1)
    vv = v.double().repeat_interleave(hq // hkv, dim=1)
    logits = torch.einsum("bhqd,bhkd->bhqk", q.double(), kk) * scale
    j = torch.arange(k.shape[2], device=k.device)
    p = pos[:, None, :, None].long()
    allowed = (j < lens[:, None, None, None]) & (j <= p)
    if window is not None:
        allowed &= p - j < window
    logits = logits.masked_fill(~allowed, float("-inf"))
    if sinks is not None:
        sink = sinks.double()[None, :, None, None].expand(b, hq, sq, 1)
        probs = torch.softmax(torch.cat([logits, sink], dim=-1), dim=-1)[..., :-1]
    else:
        probs = torch.softmax(logits, dim=-1)
    return torch.einsum("bhqk,bhkd->bhqd", probs, vv)


def decode_attention_ref(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, lens: torch.Tensor,
                         window: int | None = None, sinks: torch.Tensor | None = None,
                         scale: float | None = None) -> torch.Tensor:
    """One new token per sequence: q [B, Hq, D] over the cache [B, Hkv, T, D] of LENS live entries
    (the new token's own key included), returned in q's dtype."""
    pos = (lens - 1)[:, None]
    out = masked_attention_ref(q[:, :, None], k_cache, v_cache, pos, lens, window, sinks, scale)
    return out[:, :, 0].to(q.dtype)


def prefill_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int | None = None,
                          sinks: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Causal attention of q [B, Hq, Sq, D] over k / v [B, Hkv, Sk, D], Sq <= Sk: the queries are the last
    Sq positions (a prefix of Sk - Sq tokens already cached). Returned in q's dtype."""
    b, _, sq, _ = q.shape
    sk = k.shape[2]
    pos = torch.arange(sk - sq, sk, device=q.device).expand(b, sq)
    lens = torch.full((b,), sk, device=q.device)
    return masked_attention_ref(q, k, v, pos, lens, window, sinks, scale).to(q.dtype)


def decode_bytes(lens: torch.Tensor, hkv: int, d: int, elem: int = 2, window: int | None = None) -> int:
    """Minimum DRAM traffic of one decode step: every live key and value row once."""
    live = lens.clamp(max=window) if window is not None else lens
    return int(live.sum()) * 2 * hkv * d * elem
