"""Round-trip properties of group-wise RTN quantization."""

from __future__ import annotations

import pytest
import torch

from retarget.quantize import QuantizedWeight, quantize_rtn


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_error_within_half_step(bits: int, group_size: int, symmetric: bool) -> None:
    w = torch.randn(37, 576, generator=torch.Generator().manual_seed(0))  # 576 % 128 == 64: short last group
    qw = quantize_rtn(w, bits, group_size, symmetric)
    step = qw.expand(qw.scale)
    assert ((qw.dequantize() - w).abs() <= step / 2 + 1e-6).all()
    assert int(qw.codes.max()) <= 2**bits - 1


@pytest.mark.parametrize("symmetric", [True, False])
def test_requantizing_dequantized_weights_is_exact(symmetric: bool) -> None:
    qw = quantize_rtn(torch.randn(16, 200, generator=torch.Generator().manual_seed(1)), 4, 64, symmetric)
    again = quantize_rtn(qw.dequantize(), 4, 64, symmetric)
    torch.testing.assert_close(again.dequantize(), qw.dequantize(), rtol=0, atol=1e-6)


def test_symmetric_keeps_zero_exact_and_uses_midpoint() -> None:
    w = torch.randn(8, 64)
    w[:, 5] = 0
    qw = quantize_rtn(w, 4, 32, symmetric=True)
    assert qw.symmetric and (qw.dequantize()[:, 5] == 0).all()


def test_sqnr_int4_g32_above_18_db() -> None:
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(2))
    err = quantize_rtn(w, 4, 32, symmetric=False).dequantize() - w
    sqnr = 10 * torch.log10(w.pow(2).mean() / err.pow(2).mean())
    assert sqnr > 18


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError):
        QuantizedWeight(torch.zeros(4, 64, dtype=torch.uint8), torch.ones(4, 1), torch.ones(4, 2), 4, 32)
