"""The accuracy budget of lock-in's recipe choice: a measured conversion price within it lets the faster
conversion win; outside it, the default conversion stays (hand-made price tables)."""

from __future__ import annotations

import json

import pytest

from retarget.hw_profiles import load_profile
from retarget.lockin import accuracy
from retarget.lockin.recipe import best_recipe, get_workload
from retarget.models.registry import get_spec


def _table(tmp_path, int4_ppl: float):
    rows = [{"name": "fp8-block128", "smollm2": {"perplexity_ratio": 1.01}, "minilm": {"mean_cosine": 0.999}},
            {"name": "fp8-block128 -> w8a8-int8", "smollm2": {"perplexity_ratio": 1.012},
             "minilm": {"mean_cosine": 0.998}},
            {"name": "fp8-block128 -> gptq-int4-g128-asym", "smollm2": {"perplexity_ratio": int4_ppl},
             "minilm": {"mean_cosine": 0.997}}]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cost.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


@pytest.fixture
def cost_file(monkeypatch, tmp_path):
    def use(int4_ppl: float) -> None:
        monkeypatch.setattr(accuracy, "COST_FILE", _table(tmp_path / str(int4_ppl), int4_ppl))
    return use


def test_price_is_relative_to_the_native_format(cost_file):
    cost_file(1.05)
    p = accuracy.price("fp8-block128", "gptq-int4-g128-asym")
    assert p.ppl_ratio_vs_native == pytest.approx(1.05 / 1.01, abs=1e-4)
    assert p.cosine_drop_vs_native == pytest.approx(0.002)
    assert not p.within_budget          # 3.96% > the 2% budget
    assert accuracy.price("fp8-block128", "w8a8-int8").within_budget
    assert accuracy.price("mxfp4", "int4-g32-sym") is None


@pytest.mark.parametrize("int4_ppl, expected", [(1.015, "int4-g128-asym"), (1.05, "int8")])
def test_budget_decides_the_ascend_recipe(cost_file, int4_ppl, expected):
    """DeepSeek-V3 (FP8 blocks) on Ascend 910B at batch 1: 4-bit weights decode faster than INT8 ones, so GPTQ
    int4 wins when its measured price is within budget, and INT8 W8A8 stays when it is not."""
    cost_file(int4_ppl)
    r = best_recipe(get_spec("deepseek-v3"), load_profile("ascend-910b"), get_workload("decode-b1"))
    assert r.weight_format == expected
    assert any("measured on SmolLM2-135M" in c for c in r.conversions)
    assert [p.target for p in r.prices] == ["gptq-int4-g128-asym" if expected != "int8" else "w8a8-int8"]
    assert len(r.conversions) == 1      # GPTQ replaces the INT8 conversion rather than following it


def test_measured_prices_reach_the_recipes():
    """bench/results/conversion-cost.json (measured here) prices the conversions lock-in's recipes make, and
    the recipe text carries the price: DeepSeek-V3's FP8 blocks become INT8 W8A8 on Ascend 910B."""
    for native, target in (("fp8-block128", "w8a8-int8"), ("fp8-block128-ue8m0", "fp8-block128"),
                           ("mxfp4", "int4-g32-sym")):
        p = accuracy.price(native, target)
        assert p is not None and 0.5 < p.ppl_ratio_vs_native < 10 and abs(p.cosine_drop_vs_native) < 0.5
    r = best_recipe(get_spec("deepseek-v3"), load_profile("ascend-910b"), get_workload("decode-b1"))
    assert r.weight_format == "int8" and "measured on SmolLM2-135M: perplexity x" in r.describe()
