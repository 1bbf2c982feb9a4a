"""MLA decode over the latent cache against the same absorbed attention in torch ops. Goal on
H100/H200: >= 80% of HBM bandwidth over the latent cache (share_of_peak_bandwidth)."""

import math

import pytest
import torch

from retarget.kernels.mla_decode import decode_bytes, mla_decode_latent

H, R, P = 128, 512, 64   # DeepSeek-V3


def _torch_latent(q_lat, q_pe, cache, scale):
    logits = (torch.einsum("bhr,btr->bht", q_lat, cache[..., :R]) + torch.einsum("bhp,btp->bht", q_pe, cache[..., R:]))
    return torch.einsum("bht,btr->bhr", torch.softmax(logits.float() * scale, -1).to(cache.dtype), cache[..., :R])


@pytest.mark.parametrize("batch, ctx", [(1, 8192), (32, 8192), (64, 4096), (16, 32768)])
def test_mla_decode(measure, batch, ctx):
    q_lat = torch.randn(batch, H, R, device="cuda", dtype=torch.bfloat16)
    q_pe = torch.randn(batch, H, P, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(batch, ctx, R + P, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
    scale = 1 / math.sqrt(128 + P)
    row = measure("mla_decode", {"B": batch, "ctx": ctx, "H": H, "R": R, "P": P}, "bf16",
                  lambda: mla_decode_latent(q_lat, q_pe, cache, lens, scale),
                  lambda: _torch_latent(q_lat, q_pe, cache, scale), "torch einsum + softmax (absorbed)",
                  2 * batch * H * ctx * (2 * R + P), decode_bytes(lens.cpu(), R, P), "bf16",
                  lambda: (mla_decode_latent(q_lat, q_pe, cache, lens, scale),
                           _torch_latent(q_lat.double(), q_pe.double(), cache.double(), scale)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
