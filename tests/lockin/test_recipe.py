"""Best recipe per device: native formats where the device has them, real conversions elsewhere, and the
fewest devices the model fits on."""

from __future__ import annotations

import math

import pytest

from retarget.errors import RetargetError
from retarget.hw_profiles import load_profile
from retarget.lockin.recipe import best_recipe, get_workload
from retarget.lockin.whatif import apply_all, apply_whatif, split_overrides
from retarget.models.registry import get_entry, get_spec

DECODE = get_workload("decode-b1")


def _recipe(model: str, device: str, overrides: dict[str, str] | None = None):
    profile = load_profile(device)
    return best_recipe(get_spec(model), apply_whatif(profile, overrides or {}), DECODE)


def test_fp8_blocks_become_int8_w8a8_where_there_is_no_fp8() -> None:
    """Ascend 910B/910C and A100 have no FP8 (hw_specs.md section 2); CloudMatrix384 served DeepSeek-R1 in INT8."""
    for device in ("ascend-910b", "ascend-910c", "a100-80g-sxm"):
        r = _recipe("deepseek-v3", device)
        assert r.weight_format == "int8"
        assert any("INT8 per-channel W8A8" in c for c in r.conversions)
    assert _recipe("deepseek-v3", "h800-sxm").weight_format == "fp8"
    assert _recipe("deepseek-v3", "h800-sxm").conversions == ()
    assert "e4m3fnuz" in _recipe("deepseek-v3", "mi300x").conversions[0]  # CDNA3 is FNUZ


def test_mxfp4_kept_with_fp4_units_converted_without() -> None:
    assert _recipe("gpt-oss-120b", "b200").expert_format == "mxfp4"
    assert _recipe("gpt-oss-120b", "b200").conversions == ()
    assert "W4A16" in _recipe("gpt-oss-120b", "h100-sxm").conversions[0]  # Marlin-style dequant on Hopper
    assert _recipe("gpt-oss-120b", "ascend-910b").expert_format.startswith("int4-g32")


def test_fewest_devices() -> None:
    """DeepSeek-V3 in FP8 is about 671 GB of weights (one byte per weight, published total); H800 has 80 GB
    of which 90% is usable, so at least 10 devices, rounded up to a power of two."""
    r = _recipe("deepseek-v3", "h800-sxm")
    at_least = math.ceil(get_entry("deepseek-v3").published.total_params_billion / (80 * 0.9))
    assert r.devices == 1 << (at_least - 1).bit_length() == 16
    assert r.prediction is not None and r.prediction.memory.fits
    assert not _recipe("deepseek-v3", "m4-max").runs  # no interconnect, does not fit one device
    assert _recipe("llama-3.1-8b", "rtx-4090").devices == 1


def test_whatif_gives_ascend_fp8_at_its_int8_rate() -> None:
    r = _recipe("deepseek-v3", "ascend-910b", {"fp8": "560"})
    assert r.weight_format == "fp8" and r.conversions == ()


def test_overrides_target_one_profile() -> None:
    split = split_overrides(["h20.scale_compute=2", "mem_bw_gb_s=1000"], ["h20", "h100-sxm"])
    assert split == {"h20": {"scale_compute": "2"}, None: {"mem_bw_gb_s": "1000"}}
    h20, h100 = apply_all([load_profile("h20"), load_profile("h100-sxm")], split)
    assert h20.peak_tflops["bf16"] == 2 * 148.0 and h100.peak_tflops["bf16"] == 989.5
    assert h20.mem_bw_gb_s == h100.mem_bw_gb_s == 1000
    assert h20.provenance["peak_tflops.bf16"].kind == "override"


@pytest.mark.parametrize("item", ["h20.scale_compute=fast", "h20.scale_compute=0", "h20.bogus=1", "novalue"])
def test_bad_overrides_are_user_errors(item: str) -> None:
    with pytest.raises(RetargetError):
        apply_all([load_profile("h20")], split_overrides([item], ["h20"]))
