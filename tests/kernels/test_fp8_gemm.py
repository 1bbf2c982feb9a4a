"""FP8 E4M3 kernel (per-channel and 1x128 / 128x128 block scales, float32 or UE8M0) against torch."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.fp8_gemm import fp8_gemm, fp8_gemm_ref, quantize


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    return (10 * torch.log10(ref.pow(2).sum() / (ref - test).pow(2).sum())).item()


@pytest.mark.parametrize("blockwise", [False, True])
@pytest.mark.parametrize("ue8m0", [False, True])
@pytest.mark.parametrize("m", [1, 33])
def test_kernel_matches_reference(blockwise, ue8m0, m):
    gen = torch.Generator().manual_seed(m)
    n, k = 123, 576                    # 576 = 4.5 scale blocks: the last K block is half full
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    xq, sx = quantize(x, (1, 128) if blockwise else None, ue8m0)
    wq, sw = quantize(w, (128, 128) if blockwise else None, ue8m0)
    y = fp8_gemm(xq, sx, wq, sw, blockwise, out_dtype=torch.float16)
    ref = fp8_gemm_ref(xq, sx, wq, sw, blockwise, out_dtype=torch.float16)
    torch.testing.assert_close(y.float(), ref.float(), rtol=2e-3, atol=2e-3 * ref.abs().max().item())
    assert sqnr_db(x @ w.T, y.float()) > 25          # e4m3 keeps 3 mantissa bits: ~30 dB on Gaussian data


@pytest.mark.parametrize("blockwise", [False, True])
def test_many_tiles(blockwise):
    x, w = torch.randn(33, 300), torch.randn(150, 300)
    xq, sx = quantize(x, (1, 128) if blockwise else None)
    wq, sw = quantize(w, (128, 128) if blockwise else None)
    cfg = KernelConfig(16, 32, 64, group_m=2)            # 3 x 5 tiles; BLOCK_K divides the scale block
    y = fp8_gemm(xq, sx, wq, sw, blockwise, out_dtype=torch.float16, config=cfg)
    ref = fp8_gemm_ref(xq, sx, wq, sw, blockwise, out_dtype=torch.float16)
    torch.testing.assert_close(y.float(), ref.float(), rtol=2e-3, atol=2e-3 * ref.abs().max().item())


def test_ue8m0_scales_are_powers_of_two_that_do_not_overflow():
    w = torch.randn(256, 384) * 3
    codes, scale = quantize(w, (128, 128), ue8m0=True)
    assert scale.dtype == torch.uint8 and scale.shape == (2, 3)
    assert codes.float().abs().max() <= 448
    # the scale is the smallest power of two with amax / scale <= 448
    amax = w.abs().view(2, 128, 3, 128).amax(dim=(1, 3))
    value = torch.exp2(scale.float() - 127)
    assert torch.all(amax / value <= 448) and torch.all(amax / (value / 2) > 448)


def test_block_scale_shapes_are_checked():
    xq, sx = quantize(torch.randn(4, 256), (1, 128))
    wq, sw = quantize(torch.randn(8, 256), None)
    with pytest.raises(ValueError, match="shape mismatch"):
        fp8_gemm(xq, sx, wq, sw, blockwise=True)
