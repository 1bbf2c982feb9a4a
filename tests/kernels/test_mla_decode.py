"""MLA decode with absorbed weights against the expanded (non-absorbed) float64 reference, in the interpreter:
odd head count, rank and rope dim that are not powers of two, ragged lengths."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.mla_decode import mla_decode, mla_decode_ref

TILES = KernelConfig(16, 16, 0)


@pytest.mark.parametrize("heads, splits", [(5, 2), (19, 1)])
def test_absorbed_kernel_matches_expanded_reference(heads, splits):
    gen = torch.Generator().manual_seed(heads)
    b, t, r, p, dn, dv = 2, 41, 48, 12, 24, 20
    q_nope = torch.randn(b, heads, dn, generator=gen).half()
    q_pe = torch.randn(b, heads, p, generator=gen).half()
    ckv = (torch.randn(b, t, r, generator=gen) * 0.5).half()
    k_pe = torch.randn(b, t, p, generator=gen).half()
    w_uk = (torch.randn(heads, dn, r, generator=gen) / r ** 0.5).half()
    w_uv = (torch.randn(heads, dv, r, generator=gen) / r ** 0.5).half()
    lens = torch.tensor([41, 7])
    out = mla_decode(q_nope, q_pe, torch.cat([ckv, k_pe], dim=-1), w_uk, w_uv, lens, splits=splits, config=TILES)
    ref = mla_decode_ref(q_nope, q_pe, ckv, k_pe, w_uk, w_uv, lens)
    torch.testing.assert_close(out.float(), ref.float(), rtol=2e-2, atol=2e-2)
    # a shorter live length changes the answer (the mask is honoured, not the full cache)
    assert not torch.allclose(ref, mla_decode_ref(q_nope, q_pe, ckv, k_pe, w_uk, w_uv, torch.tensor([40, 7])))
