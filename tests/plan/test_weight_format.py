"""Every registered recipe plans to a number format the performance model knows (compile predicts the
compiled model's speed on every profile with it), with the storage bits of its layout."""

from __future__ import annotations

import pytest

from retarget.hw_profiles import load_profile
from retarget.perf.formats import get_format
from retarget.plan import plan_recipe
from retarget.quantize.configs import recipe_names


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_has_a_perf_format(recipe: str) -> None:
    target = "h100-sxm" if recipe in ("mxfp4", "nvfp4") else "cpu-x86"  # FP4 lowers for TensorRT only
    get_format(plan_recipe(recipe, load_profile(target), has_source_blocks=True).weight_format)


@pytest.mark.parametrize(("recipe", "fmt", "bits"), [
    ("int3-g64-asym", "int3-g64-asym", 3 + 32 / 64),   # codes + fp16 scale + fp16 zero per 64
    ("gptq-int4-g128-asym", "int4-g128-asym", 4 + 32 / 128),
    ("int4-g32-sym", "int4-g32-sym", 4 + 16 / 32),
    ("int8-g128-asym", "int8-g128-asym", 8 + 32 / 128),
    ("int8-channel-sym", "int8", 8),
    ("fp8-block128", "fp8", 8),
    ("w8a8-smoothquant", "int8", 8),
    ("kv-int8", "fp32", 32),
])
def test_format_and_bits(recipe: str, fmt: str, bits: float) -> None:
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=True)
    assert plan.weight_format == fmt
    assert get_format(fmt).bits == pytest.approx(bits)


def test_fp4_schemes_keep_their_block_scales() -> None:
    plan = plan_recipe("mxfp4", load_profile("h100-sxm"), has_source_blocks=True)
    assert plan.weight_format == "mxfp4" and get_format("mxfp4").bits == 4.25
