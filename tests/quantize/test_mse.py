"""MSE clipping search against round-to-nearest on the weights' own squared error (calibration-free)."""

from __future__ import annotations

import pytest
import torch

from retarget.quantize import MSEConfig, config_from_name, quantize_rtn
from retarget.quantize.awq import search_clip


@pytest.mark.parametrize("bits, group, symmetric", [(4, 128, False), (3, 64, False), (4, 64, True)])
def test_no_group_has_more_squared_error_than_rtn(bits: int, group: int, symmetric: bool) -> None:
    w = torch.distributions.StudentT(4.0).sample((64, 576))  # K = 576: a short last group at g128
    q, rtn = search_clip(w, None, bits, group, symmetric), quantize_rtn(w, bits, group, symmetric)
    err, err_rtn = (w - q.dequantize()).pow(2), (w - rtn.dequantize()).pow(2)
    per_group = lambda e: torch.stack([c.sum(1) for c in e.split(group, dim=1)], 1)  # noqa: E731
    assert (per_group(err) <= per_group(err_rtn) * (1 + 1e-5)).all()
    assert err.sum() < 0.95 * err_rtn.sum()
    assert q.scale.shape == rtn.scale.shape and q.integer_zero


def test_name_round_trips() -> None:
    assert config_from_name("mse-int4-g64-asym") == MSEConfig(bits=4, group_size=64)
