"""KV-cache recipes: planned with their weights' lowering (float weights alone), refused where unverified."""

from __future__ import annotations

import pytest

from retarget.errors import RetargetError
from retarget.hw_profiles import load_profile
from retarget.plan import plan_recipe


@pytest.mark.parametrize(("recipe", "lowering", "element"), [
    ("kv-int8", "float", "int8"),
    ("kv-fp8", "float", "fp8"),
    ("int4-g128-asym+kv-int8", "matmulnbits", "int8"),
    ("int8-channel-sym+kv-fp8", "matmulnbits", "fp8"),
])
def test_kv_recipes_plan(recipe: str, lowering: str, element: str) -> None:
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=False)
    assert (plan.name, plan.lowering, plan.kv_cache.element) == (recipe, lowering, element)
    assert plan.to_dict()["kv_cache"]["element"] == element
    assert plan_recipe("int4-g128-asym", load_profile("cpu-x86"), has_source_blocks=False).kv_cache is None


@pytest.mark.parametrize(("recipe", "target", "field"), [
    ("kv-int8", "h100-sxm", "--target"),  # only ORT's CPU provider is verified to run the quantized cache
    ("int4-g128-asym+int8-channel-sym", "cpu-x86", "--recipe"),  # the part after '+' is not a KV recipe
    ("int4-g128-asym+kv-int4", "cpu-x86", "--recipe"),
    ("w8a8-int8+kv-int8", "cpu-x86", "--recipe"),  # the quantized-cache graph carries weight-only recipes
])
def test_kv_recipes_refused(recipe: str, target: str, field: str) -> None:
    with pytest.raises(RetargetError) as err:
        plan_recipe(recipe, load_profile(target), has_source_blocks=False)
    assert err.value.field == field
