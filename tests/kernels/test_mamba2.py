"""Mamba2 chunked scan and decode step against the sequential float64 scan, in the interpreter: a length
that is not a multiple of the chunk, P and N that are not powers of two, two heads per B/C group."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.mamba2 import chunk_scan, ssd_scan_ref, state_update, state_update_ref

B, H, G, P, N = 2, 4, 2, 24, 20


def _inputs(gen, length):
    x = torch.randn(B, length, H, P, generator=gen).half()
    dt = torch.rand(B, length, H, generator=gen) * 0.5 + 0.01
    a = -torch.rand(H, generator=gen) * 2 - 0.1
    b = torch.randn(B, length, G, N, generator=gen).half()
    c = torch.randn(B, length, G, N, generator=gen).half()
    d = torch.randn(H, generator=gen)
    return x, dt, a, b, c, d


@pytest.mark.parametrize("length, with_init", [(37, False), (16, True)])
def test_chunk_scan_matches_sequential_scan(length, with_init):
    gen = torch.Generator().manual_seed(length)
    x, dt, a, b, c, d = _inputs(gen, length)
    init = torch.randn(B, H, P, N, generator=gen) if with_init else None
    y, state = chunk_scan(x, dt, a, b, c, d, initial_state=init, config=KernelConfig(16, 16, 0))
    y_ref, state_ref = ssd_scan_ref(x, dt, a, b, c, d, initial_state=init)
    scale = y_ref.abs().max().item()
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=2e-2, atol=2e-2 * scale)
    torch.testing.assert_close(state, state_ref, rtol=2e-2, atol=2e-2 * state_ref.abs().max().item())


def test_decode_step_continues_the_scan():
    """Prefill 9 tokens with the scan reference, then one kernel step equals the scan over 10 tokens."""
    gen = torch.Generator().manual_seed(7)
    x, dt, a, b, c, d = _inputs(gen, 10)
    _, state = ssd_scan_ref(x[:, :9], dt[:, :9], a, b[:, :9], c[:, :9], d)
    y_ref, _ = state_update_ref(state, x[:, 9], dt[:, 9], a, b[:, 9], c[:, 9], d)
    y = state_update(state, x[:, 9], dt[:, 9], a, b[:, 9], c[:, 9], d)
    y_full, state_full = ssd_scan_ref(x, dt, a, b, c, d)
    torch.testing.assert_close(y.float(), y_full[:, 9].float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(state, state_full, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y_ref.float(), y_full[:, 9].float(), rtol=1e-3, atol=1e-3)
