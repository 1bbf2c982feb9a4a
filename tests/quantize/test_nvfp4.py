"""NVFP4: E2M1 codes in 16-blocks with an E4M3 block scale times a float32 tensor scale."""

from __future__ import annotations

import torch

from retarget.quantize.float_formats import encode_e4m3, value_table
from retarget.quantize.fp4 import quantize_mxfp4_weight, quantize_nvfp4


def _rel_err(qw, w: torch.Tensor) -> float:  # noqa: ANN001
    return float((qw.dequantize() - w).norm() / w.norm())


def test_block_scales_are_e4m3_times_the_tensor_scale() -> None:
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(0))
    qw = quantize_nvfp4(w)
    assert qw.group_size == 16 and qw.scale_format == "e4m3"
    assert qw.tensor_scale == float(w.abs().max()) / (448 * 6)
    block = qw.block_scale() / qw.tensor_scale
    torch.testing.assert_close(value_table("e4m3")[encode_e4m3(block).long()], block, rtol=1e-6, atol=0)


def test_nvfp4_error_below_mxfp4_on_gaussian_weights() -> None:
    # the known property: finer blocks and non-power-of-two scales fit each block better
    w = torch.randn(512, 1024, generator=torch.Generator().manual_seed(1))
    nv, mx = _rel_err(quantize_nvfp4(w), w), _rel_err(quantize_mxfp4_weight(w), w)
    assert nv < mx * 0.9, (nv, mx)


def test_zero_rows_and_short_blocks() -> None:
    w = torch.randn(4, 40, generator=torch.Generator().manual_seed(2))  # 40 = 2 x 16 + 8
    w[1] = 0
    qw = quantize_nvfp4(w)
    assert (qw.dequantize()[1] == 0).all()
    assert qw.storage_bytes() == 4 * 40 // 2 + 4 * 3 + 4
