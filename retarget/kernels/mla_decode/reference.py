"""Multi-head latent attention (DeepSeek-V2/V3) decode, in torch, in its original (non-absorbed) form.

The cache holds per token one latent row c [R] (kv_lora_rank) and one shared rope key k_pe [P]. Head h
expands them: k_h = [c @ W_UK[h].T, k_pe], v_h = c @ W_UV[h].T with W_UK [H, Dn, R], W_UV [H, Dv, R]. The
kernel instead absorbs W_UK into the query and W_UV into the output (q_lat = q_nope @ W_UK[h],
out = o_lat @ W_UV[h].T) so it reads only the [T, R + P] latent cache, once for all heads: per step
len * (R + P) * 2 B per sequence, against 2 * len * H * D * 2 B for the expanded cache
(DeepSeek-V2, https://arxiv.org/abs/2405.04434 section 2.1; FlashMLA).
"""

from __future__ import annotations

import math

import torch


def mla_decode_ref(q_nope: torch.Tensor, q_pe: torch.Tensor, ckv: torch.Tensor, k_pe: torch.Tensor,
                   w_uk: torch.Tensor, w_uv: torch.Tensor, lens: torch.Tensor,
                   scale: float | None = None) -> torch.Tensor:
    """q_nope [B, H, Dn], q_pe [B, H, P], ckv [B, T, R], k_pe [B, T, P], w_uk [H, Dn, R], w_uv [H, Dv, R],
    lens [B] -> [B, H, Dv] in q_nope's dtype, computed in float64 with the keys and values expanded."""
    dn, p = q_nope.shape[-1], q_pe.shape[-1]
    scale = 1 / math.sqrt(dn + p) if scale is None else scale
    k_nope = torch.einsum("btr,hdr->bhtd", ckv.double(), w_uk.double())
    v = torch.einsum("btr,hdr->bhtd", ckv.double(), w_uv.double())
    logits = (torch.einsum("bhd,bhtd->bht", q_nope.double(), k_nope)
              + torch.einsum("bhp,btp->bht", q_pe.double(), k_pe.double())) * scale
    live = torch.arange(ckv.shape[1], device=ckv.device)[None, None, :] < lens[:, None, None]
    probs = torch.softmax(logits.masked_fill(~live, float("-inf")), dim=-1)
    return torch.einsum("bht,bhtd->bhd", probs, v).to(q_nope.dtype)


def absorb_query(q_nope: torch.Tensor, w_uk: torch.Tensor) -> torch.Tensor:
    """q_lat [B, H, R] = q_nope [B, H, Dn] @ W_UK[h] [Dn, R], per head."""
    return torch.einsum("bhd,hdr->bhr", q_nope.float(), w_uk.float()).to(q_nope.dtype)


def absorb_output(o_lat: torch.Tensor, w_uv: torch.Tensor) -> torch.Tensor:
    """out [B, H, Dv] = o_lat [B, H, R] @ W_UV[h].T, per head."""
    return torch.einsum("bhr,hdr->bhd", o_lat.float(), w_uv.float()).to(o_lat.dtype)


def decode_bytes(lens: torch.Tensor, rank: int, rope: int, elem: int = 2) -> int:
    """Minimum DRAM traffic of one MLA decode step: the latent cache rows once (shared by all heads)."""
    return int(lens.sum()) * (rank + rope) * elem
