"""Split-KV decode attention (window, sinks, GQA) against torch SDPA over the same cache. Goal on
H100/H200: >= 80% of HBM bandwidth at 8k+ context (share_of_peak_bandwidth in the results row)."""

import pytest
import torch

from retarget.kernels.attention import decode_attention, decode_attention_ref, decode_bytes

HQ, HKV, D = 64, 8, 64   # gpt-oss-120b attention


@pytest.mark.parametrize("batch, ctx", [(1, 8192), (16, 8192), (64, 8192), (16, 32768)])
@pytest.mark.parametrize("window", [None, 128])
def test_decode_attention(measure, batch, ctx, window):
    q = torch.randn(batch, HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, HKV, ctx, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    lens = torch.full((batch,), ctx, device="cuda", dtype=torch.int32)
    sinks = torch.randn(HQ, device="cuda")
    live = min(ctx, window or ctx)
    few = min(batch, 2)                         # the float64 reference expands the cache per query head
    kw, vw = k[:, :, ctx - live:], v[:, :, ctx - live:]
    row = measure("attention/decode", {"B": batch, "ctx": ctx, "Hq": HQ, "Hkv": HKV, "D": D, "window": window or 0},
                  "bf16", lambda: decode_attention(q, k, v, lens, window=window, sinks=sinks),
                  lambda: torch.nn.functional.scaled_dot_product_attention(q[:, :, None], kw, vw, enable_gqa=True),
                  "torch SDPA over the live window (no sinks)", 4 * batch * HQ * live * D,
                  decode_bytes(lens.cpu(), HKV, D, window=window), "bf16",
                  lambda: (decode_attention(q, k, v, lens, window=window, sinks=sinks)[:few],
                           decode_attention_ref(q[:few], k[:few], v[:few], lens[:few], window, sinks)))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
