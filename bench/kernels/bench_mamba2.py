"""Mamba2 chunked scan against the sequential scan (one state-update kernel per token). Goal on
H100/H200: >= 5x the sequential scan at 4k tokens (speedup in the results row)."""

import pytest
import torch

from retarget.kernels.mamba2 import chunk_scan, scan_bytes, ssd_scan_ref, state_update

HEADS, P, G, N = 80, 64, 1, 128   # mamba2-2.7b


def _sequential(x, dt, a, b, c, d):
    state = torch.zeros(x.shape[0], HEADS, P, N, device="cuda")
    for t in range(x.shape[1]):
        state_update(state, x[:, t], dt[:, t], a, b[:, t], c[:, t], d)
    return state


@pytest.mark.parametrize("batch, length", [(1, 4096), (4, 4096), (1, 16384)])
def test_chunk_scan(measure, batch, length):
    x = torch.randn(batch, length, HEADS, P, device="cuda", dtype=torch.bfloat16)
    dt = torch.rand(batch, length, HEADS, device="cuda") * 0.1
    a = -torch.rand(HEADS, device="cuda")
    b = torch.randn(batch, length, G, N, device="cuda", dtype=torch.bfloat16)
    c = torch.randn_like(b)
    d = torch.randn(HEADS, device="cuda")
    row = measure("mamba2/chunk_scan", {"B": batch, "L": length, "H": HEADS, "P": P, "N": N}, "bf16",
                  lambda: chunk_scan(x, dt, a, b, c, d), lambda: _sequential(x, dt, a, b, c, d),
                  "sequential scan (state_update per token)", 6 * batch * length * HEADS * P * N,
                  scan_bytes(batch, length, HEADS, P, G, N), "bf16",
                  lambda: (chunk_scan(x, dt, a, b, c, d)[0], ssd_scan_ref(x, dt, a, b, c, d)[0]))
    assert row["p50_ms"] > 0 and row["rel_err"] <= row["rel_err_tol"]
