"""MXFP4 (OCP Microscaling v1.0): the E2M1 code table and the shared-scale rule, checked against the spec's
own definitions (https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf)."""

from __future__ import annotations

import torch

from retarget.kernels.mxfp4_gemm.reference import dequantize as kernel_dequantize
from retarget.quantize.float_formats import decode, encode_e2m1, value_table
from retarget.quantize.fp4 import quantize_mxfp4_weight

# OCP MX v1.0, section 5.3.3 (FP4 E2M1): the eight magnitudes, codes 0b000..0b111, sign in bit 3
SPEC_E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
E2M1_EMAX = 2  # exponent of the largest normal, 6 = 1.5 * 2**2


def test_e2m1_table_matches_spec() -> None:
    table = value_table("e2m1")
    assert table[:8].tolist() == SPEC_E2M1
    assert table[8:].tolist() == [-v for v in SPEC_E2M1]


def test_e2m1_encoding_rounds_to_nearest_and_saturates() -> None:
    x = torch.linspace(-8, 8, 4001)
    got = decode(encode_e2m1(x), "e2m1")
    grid = torch.tensor(SPEC_E2M1 + [-v for v in SPEC_E2M1])
    best = (x[:, None] - grid[None, :]).abs().min(dim=1).values
    assert torch.allclose((got - x).abs(), best)  # as close as any representable value


def test_shared_scale_follows_the_spec() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 320, generator=gen) * torch.logspace(-3, 2, 64)[:, None]
    qw = quantize_mxfp4_weight(w)
    assert qw.group_size == 32 and qw.scale_format == "e8m0" and qw.element == "e2m1"
    amax = w.view(64, 10, 32).abs().amax(dim=2)
    shared_exp = torch.floor(torch.log2(amax)) - E2M1_EMAX  # OCP MX v1.0, section 6.3
    assert torch.equal(qw.scale, torch.exp2(shared_exp))


def test_dequantize_agrees_with_the_mxfp4_kernel_reference() -> None:
    w = torch.randn(48, 200, generator=torch.Generator().manual_seed(1))  # 200 % 32 != 0: short last block
    qw = quantize_mxfp4_weight(w)
    e8m0 = (torch.log2(qw.scale) + 127).to(torch.uint8)
    torch.testing.assert_close(qw.dequantize(), kernel_dequantize(qw.codes, e8m0))


def test_storage_is_half_a_byte_per_weight_plus_one_byte_per_block() -> None:
    qw = quantize_mxfp4_weight(torch.randn(10, 320))
    assert qw.storage_bytes() == 10 * 320 // 2 + 10 * 10
