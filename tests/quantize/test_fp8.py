"""FP8 E4M3: the code table against torch's float8_e4m3fn, and the FP8 weight layouts."""

from __future__ import annotations

import pytest
import torch

from retarget.quantize.float_formats import decode, encode_e4m3, value_table
from retarget.quantize.fp8 import Fp8WeightConfig, quantize_fp8


def _rel_err(w: torch.Tensor, granularity: str, ue8m0: bool = False) -> float:
    return float((quantize_fp8(w, granularity, ue8m0).dequantize() - w).norm() / w.norm())


def test_e4m3_table_matches_torch_float8() -> None:
    codes = torch.arange(256, dtype=torch.uint8)
    torch.testing.assert_close(value_table("e4m3"), codes.view(torch.float8_e4m3fn).float(), equal_nan=True)
    assert value_table("e4m3").nan_to_num(0).abs().max() == 448  # OCP E4M3: largest finite value
    assert value_table("e4m3")[1] == 2.0**-9  # smallest subnormal


def test_e4m3_encoding_is_torchs_rounding_and_saturates() -> None:
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 100
    torch.testing.assert_close(decode(encode_e4m3(x), "e4m3"), x.to(torch.float8_e4m3fn).float())
    assert decode(encode_e4m3(torch.tensor([1e6, -1e6])), "e4m3").tolist() == [448.0, -448.0]


@pytest.mark.parametrize("granularity, ue8m0", [("tensor", False), ("channel", False), ("block128", False),
                                                ("block128", True)])
def test_dequantized_within_e4m3_precision(granularity: str, ue8m0: bool) -> None:
    w = torch.randn(200, 576, generator=torch.Generator().manual_seed(1))  # neither dim a multiple of 128
    qw = quantize_fp8(w, granularity, ue8m0)
    # E4M3 has 3 mantissa bits: a normal value rounds within 2**-4 relative
    normal = w.abs() >= 2.0**-6 * qw.expand(qw.scale)
    err = (qw.dequantize() - w).abs()
    assert (err[normal] <= w.abs()[normal] * 2.0**-4 + 1e-7).all()
    assert qw.element == "e4m3" and qw.symmetric and (qw.zero == 0).all()


def test_ue8m0_scales_are_powers_of_two_and_never_saturate() -> None:
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(2)) * 3
    qw = quantize_fp8(w, "block128", ue8m0=True)
    assert qw.scale_format == "e8m0"
    assert torch.equal(qw.scale, torch.exp2(torch.log2(qw.scale).round()))
    assert (w.abs() <= 448 * qw.expand(qw.scale)).all()


def test_block_layout_and_storage() -> None:
    w = torch.randn(300, 576, generator=torch.Generator().manual_seed(3))
    qw = quantize_fp8(w, "block128")
    assert qw.block_scale().shape == (3, 5)  # ceil(300/128) x ceil(576/128)
    # each 128-row block shares its scales: rows 0..127 are one block
    assert torch.equal(qw.scale[0], qw.scale[127]) and not torch.equal(qw.scale[127], qw.scale[128])
    assert qw.storage_bytes() == 300 * 576 + 3 * 5 * 4
    assert quantize_fp8(w, "block128", ue8m0=True).storage_bytes() == 300 * 576 + 3 * 5
    assert quantize_fp8(w, "tensor").storage_bytes() == 300 * 576 + 4
    assert quantize_fp8(w, "channel").storage_bytes() == 300 * 576 + 300 * 4


def test_per_channel_beats_per_tensor_on_rows_of_very_different_size() -> None:
    gen = torch.Generator().manual_seed(4)
    # rows spanning 6 decades: one tensor scale pushes the small rows into E4M3's subnormals
    w = torch.randn(256, 512, generator=gen) * torch.logspace(-6, 0, 256)[:, None]
    row_err = {g: float(((quantize_fp8(w, g).dequantize() - w).norm(dim=1) / w.norm(dim=1)).mean())
               for g in ("tensor", "channel")}
    assert row_err["channel"] < row_err["tensor"] / 2


def test_config_names_round_trip() -> None:
    from retarget.quantize import config_from_name

    for name in ("fp8-tensor", "fp8-channel", "fp8-block128", "fp8-block128-ue8m0"):
        assert config_from_name(name).name == name
    with pytest.raises(ValueError):
        Fp8WeightConfig(granularity="channel", ue8m0=True)


def test_w8a8_fp8_uses_a_static_scale_from_calibration(tiny_llama, tiny_tokens) -> None:
    from retarget.quantize import W8A8Fp8Config, collect_stats, quantize_
    from retarget.quantize.api import linear_layers

    ids = torch.tensor([tiny_tokens[:64]])
    with torch.inference_mode():
        ref = tiny_llama(input_ids=ids).logits
    stats = collect_stats(tiny_llama, tiny_tokens, linear_layers(tiny_llama, include_lm_head=False))
    assert quantize_(tiny_llama, W8A8Fp8Config(), stats=stats) == 2 * 7 + 1
    down = tiny_llama.model.layers[1].mlp.down_proj
    assert down.act == "e4m3" and float(down.act_scale) == pytest.approx(
        float(stats["model.layers.1.mlp.down_proj"].abs_max.max()) / 448)
    assert tiny_llama.lm_head.act is None
    with torch.inference_mode():
        got = tiny_llama(input_ids=ids).logits
    assert float((got - ref).norm() / ref.norm()) < 0.1


def test_fp4_recipes_keep_lm_head_at_fp8(tiny_llama) -> None:
    from retarget.quantize import Fp4WeightConfig, quantize_

    quantize_(tiny_llama, Fp4WeightConfig(scheme="nvfp4"))
    assert tiny_llama.model.layers[0].mlp.up_proj.element == "e2m1"
    assert tiny_llama.lm_head.element == "e4m3" and tiny_llama.lm_head.group_size == 96
