"""Bits per element from each format's block layout."""

from __future__ import annotations

import pytest

from retarget.errors import RetargetError
from retarget.perf.formats import compute_format, get_format


@pytest.mark.parametrize(
    "name, bits",
    [
        ("q4_0", (32 * 4 + 16) / 32),  # ggml block_q4_0: 32 nibbles + fp16 scale
        ("q8_0", (32 * 8 + 16) / 32),
        ("mxfp4", (32 * 4 + 8) / 32),  # OCP MX: 32 x e2m1 + e8m0 scale
        ("nvfp4", (16 * 4 + 8) / 16),  # 16 x e2m1 + fp8 scale
        ("int4-g128-asym", 4 + 32 / 128),  # fp16 scale + fp16 zero per 128
        ("int4-g32-sym", 4 + 16 / 32),
        ("bf16", 16),
        ("F16", 16),
        ("fp8-e4m3-block128", 8),
    ],
)
def test_bits(name: str, bits: float) -> None:
    assert get_format(name).bits == pytest.approx(bits)


def test_unknown_format_lists_known() -> None:
    with pytest.raises(RetargetError, match="q4_k_m"):
        get_format("int3")


def test_compute_falls_back_along_the_chain() -> None:
    assert compute_format(get_format("nvfp4"), {"fp4": 4.0, "bf16": 1.0}) == ("fp4", 4.0)
    assert compute_format(get_format("mxfp4"), {"fp8_e4m3": 2.0, "bf16": 1.0}) == ("bf16", 1.0)  # W4A16
    assert compute_format(get_format("fp8"), {"bf16": 1.0}) == ("bf16", 1.0)
    with pytest.raises(RetargetError):
        compute_format(get_format("bf16"), {"int8": 3.0})
