"""W8A8 INT8 kernel against the float64 reference and against the unquantized float matmul."""

import pytest
import torch

from retarget.kernels._config import KernelConfig
from retarget.kernels.w8a8_int8_gemm import int8_gemm, int8_gemm_ref, quantize_rows


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    return (10 * torch.log10(ref.pow(2).sum() / (ref - test).pow(2).sum())).item()


SMALL_TILES = KernelConfig(16, 32, 64, group_m=2)


@pytest.mark.parametrize("m, config", [(1, None), (5, None), (33, None), (33, SMALL_TILES)])
def test_kernel_matches_reference(m, config):
    gen = torch.Generator().manual_seed(m)
    n, k = 123, 576
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    xq, sx = quantize_rows(x)
    wq, sw = quantize_rows(w)
    bias = torch.randn(n, generator=gen).half()
    y = int8_gemm(xq, sx, wq, sw, bias, out_dtype=torch.float16, config=config)
    ref = int8_gemm_ref(xq, sx, wq, sw, bias, out_dtype=torch.float16)
    torch.testing.assert_close(y.float(), ref.float(), rtol=2e-3, atol=2e-3 * ref.abs().max().item())
    # per-token x per-channel int8 keeps the product close to the float one (SmoothQuant-style W8A8)
    assert sqnr_db(x @ w.T + bias.float(), y.float()) > 30


def test_rejects_float_operands():
    with pytest.raises(ValueError, match="int8"):
        int8_gemm(torch.zeros(2, 4), torch.ones(2), torch.zeros(3, 4, dtype=torch.int8), torch.ones(3))
