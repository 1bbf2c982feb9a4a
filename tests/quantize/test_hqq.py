"""HQQ's zero-point search against round-to-nearest on weights alone (it is calibration-free)."""

from __future__ import annotations

import pytest
import torch

from retarget.quantize import HQQConfig, quantize_rtn
from retarget.quantize.hqq import hqq_quantize


@pytest.mark.parametrize("bits, group", [(4, 128), (4, 64), (3, 64)])
def test_lower_reconstruction_error_than_rtn(bits: int, group: int) -> None:
    # heavy-tailed like trained weights; K = 576 leaves a group of 64 at g128 (solved on its own)
    w = torch.distributions.StudentT(4.0).sample((64, 576))
    q = hqq_quantize(w, bits, group)
    rtn = quantize_rtn(w, bits, group, symmetric=False)
    err, err_rtn = w - q.dequantize(), w - rtn.dequantize()
    assert err.abs().mean() < 0.97 * err_rtn.abs().mean()
    assert err.norm() < err_rtn.norm()
    assert q.scale.shape == rtn.scale.shape and int(q.codes.max()) <= 2**bits - 1


def test_codes_are_the_rounding_of_the_stored_grid() -> None:
    w = torch.randn(16, 96, generator=torch.Generator().manual_seed(0))
    q = hqq_quantize(w, 4, 32)
    expected = (w / q.expand(q.scale) + q.expand(q.zero)).round().clamp(0, 15)
    assert torch.equal(q.codes.float(), expected)


def test_symmetric_is_refused() -> None:
    with pytest.raises(ValueError):
        HQQConfig(symmetric=True)
