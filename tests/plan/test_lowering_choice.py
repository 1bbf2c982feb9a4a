"""The planner picks each recipe's ONNX lowering from the target profile's ONNX Runtime providers."""

from __future__ import annotations

import pytest

from retarget.errors import RetargetError
from retarget.hw_profiles import load_profile
from retarget.plan import plan_recipe
from retarget.plan.recipe import LOWERINGS


@pytest.mark.parametrize(("target", "recipe", "lowering"), [
    ("cpu-x86", "auto", "matmulnbits"),  # GPTQ int4 of the GGUF's blocks as MatMulNBits
    ("cpu-x86", "int8-channel-sym", "matmulnbits"),
    ("h100-sxm", "int4-g128-asym", "matmulnbits"),  # the CUDA provider runs MatMulNBits
    ("mi300x", "int8-channel-sym", "qdq-int8"),  # MIGraphX reads standard QDQ only
    ("rx-7900xtx", "int8-channel-sym", "matmulnbits"),  # DirectML runs MatMulNBits
    ("cpu-x86", "fp32", "float"),
    ("cpu-x86", "int3-g64-asym", "qdq-blocked"),  # 3-bit codes travel in int4 QDQ (MatMulNBits packing: 4/8)
    ("mi300x", "auto", "qdq-int8"),  # no 4-bit lowering on MIGraphX: auto falls back to INT8 per channel
])
def test_auto_lowering(target: str, recipe: str, lowering: str) -> None:
    plan = plan_recipe(recipe, load_profile(target), has_source_blocks=True)
    assert plan.lowering == lowering
    runners = LOWERINGS[lowering]
    assert runners is None or set(load_profile(target).onnxruntime_eps) & runners


@pytest.mark.parametrize(("recipe", "lowering"), [
    ("int8-channel-sym", "qdq-int8"), ("int4-g64-asym", "qdq-blocked"), ("int8-g128-sym", "qdq-blocked"),
    ("keep", "qdq-blocked"),
])
def test_qdq_on_request(recipe: str, lowering: str) -> None:
    plan = plan_recipe(recipe, load_profile("cpu-x86"), has_source_blocks=True, lowering="qdq")
    assert plan.lowering == lowering


@pytest.mark.parametrize(("target", "recipe", "lowering", "field"), [
    ("mi300x", "int4-g128-asym", "auto", "--target"),  # no MatMulNBits, no blocked QDQ on MIGraphX
    ("tpu-v5e", "int8-channel-sym", "auto", "--target"),  # no ONNX Runtime provider at all
    ("cpu-x86", "int4-g128-asym", "tensorrt", "--lowering"),
])
def test_unrunnable_lowering_is_a_one_line_error(target: str, recipe: str, lowering: str, field: str) -> None:
    with pytest.raises(RetargetError) as err:
        plan_recipe(recipe, load_profile(target), has_source_blocks=True, lowering=lowering)
    assert err.value.field == field and "\n" not in str(err.value)


@pytest.mark.parametrize(("target", "recipe", "lowering"), [
    ("h100-sxm", "fp8-block128", "qdq-fp8"), ("cpu-x86", "fp8-channel", "qdq-fp8"),  # CPU: dequantizes to fp32
    ("b200", "nvfp4", "qdq-fp4"), ("rtx-5090", "mxfp4", "qdq-fp4"),
    ("cpu-x86", "w8a8-smoothquant", "qdq-int8"), ("h100-sxm", "w8a8-fp8", "qdq-fp8"),
])
def test_float_and_w8a8_formats_lower_to_qdq(target: str, recipe: str, lowering: str) -> None:
    assert plan_recipe(recipe, load_profile(target), has_source_blocks=False).lowering == lowering


def test_fp4_is_refused_where_no_provider_runs_it() -> None:
    """ORT's CPU provider has no float4e2m1 DequantizeLinear: a CPU target cannot take an FP4 recipe."""
    with pytest.raises(RetargetError, match="qdq-fp4") as err:
        plan_recipe("mxfp4", load_profile("cpu-x86"), has_source_blocks=False)
    assert err.value.field == "--target"
