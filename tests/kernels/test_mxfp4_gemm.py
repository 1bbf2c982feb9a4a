"""MXFP4 kernel (tl.dot_scaled and dequantizing paths) against the torch reference and the OCP format."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.mxfp4_gemm import (
    dequantize,
    mxfp4_gemm,
    mxfp4_gemm_ref,
    pack,
    quantize_mxfp4,
    quantize_mxfp8,
)
from retarget.kernels.mxfp4_gemm.reference import E2M1_VALUES


def test_e2m1_grid_round_trips_exactly():
    """Values on the E2M1 grid times a power of two are exact in MXFP4 (OCP MX v1.0, section 5.3.3)."""
    grid = torch.tensor(E2M1_VALUES + tuple(-v for v in E2M1_VALUES[1:]))
    row = torch.cat([grid, grid[:32 - len(grid)]]) * 2.0**-3     # amax 6 * 2^-3 -> scale 2^-3
    codes, scales = quantize_mxfp4(row[None, :])
    assert scales.item() == 127 - 3
    assert torch.equal(dequantize(codes, scales)[0], row)


def test_quantization_error_is_bounded():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0))
    codes, scales = quantize_mxfp4(w)
    rel = (dequantize(codes, scales) - w).norm() / w.norm()
    assert 0.05 < rel < 0.2                       # 4-bit floats: ~10% relative error on Gaussian data


@pytest.mark.parametrize("act", ["fp16", "mxfp8"])
@pytest.mark.parametrize("dot_scaled", [False, True])
@pytest.mark.parametrize("m, config", [(1, None), (33, None), (33, KernelConfig(16, 32, 64))])
def test_kernel_matches_reference(act, dot_scaled, m, config):
    gen = torch.Generator().manual_seed(m)
    n, k = 123, 576
    codes, scales = quantize_mxfp4(torch.randn(n, k, generator=gen))
    x = torch.randn(m, k, generator=gen)
    xq, xs = (x.half(), None) if act == "fp16" else quantize_mxfp8(x)
    bias = torch.randn(n, generator=gen).half()
    y = mxfp4_gemm(xq, pack(codes, scales), bias, x_scales=xs, dot_scaled=dot_scaled, out_dtype=torch.float16,
                   config=config)
    ref = mxfp4_gemm_ref(xq, codes, scales, bias, x_scales=xs, out_dtype=torch.float16)
    torch.testing.assert_close(y.float(), ref.float(), rtol=1e-2, atol=1e-2 * ref.abs().max().item())
