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
    """bench/results/conversion-cost.json (measured here) prices every conversion lock-in's recipes make, the
    GPTQ one included, and the recipe text carries the price."""
    for native, target in (("fp8-block128", "w8a8-int8"), ("fp8-block128", "gptq-int4-g128-asym"),
                           ("fp8-block128-ue8m0", "fp8-block128"), ("mxfp4", "int4-g32-sym")):
        p = accuracy.price(native, target)
        assert p is not None and 0.5 < p.ppl_ratio_vs_native < 10 and abs(p.cosine_drop_vs_native) < 0.5
        assert "conversion-cost.json" in p.source and "cores" in p.source    # the run it was measured in
    r = best_recipe(get_spec("deepseek-v3"), load_profile("ascend-910b"), get_workload("decode-b1"))
    assert "measured on SmolLM2-135M: perplexity x" in r.describe()


def _by_hand(native: str, target: str) -> tuple[float, float, bool]:
    """(perplexity ratio, cosine drop, within 2% / 0.005) of NATIVE -> TARGET vs NATIVE, from the raw
    perplexities and cosines of the committed results file."""
    rows = {r["name"]: r for r in json.loads(accuracy.COST_FILE.read_text())["rows"]}
    conv, base = rows[f"{native} -> {target}"], rows[native]
    ppl = conv["smollm2"]["perplexity"] / base["smollm2"]["perplexity"]
    cos = base["minilm"]["mean_cosine"] - conv["minilm"]["mean_cosine"]
    return ppl, cos, ppl <= 1.02 and cos <= 0.005


def test_choice_reads_the_measured_file_and_keeps_to_the_budget():
    """With the committed measurements, DeepSeek-V3 (FP8 blocks) on Ascend 910B at decode batch 1, where 4-bit
    weights decode faster than INT8 ones (test above): GPTQ int4 is chosen exactly when its price, worked out
    here from the measured perplexities and cosines, is within 2% perplexity and 0.005 cosine; otherwise INT8
    W8A8 stays. Either way the chosen conversion is within the budget and carries that price."""
    gptq, int8 = _by_hand("fp8-block128", "gptq-int4-g128-asym"), _by_hand("fp8-block128", "w8a8-int8")
    r = best_recipe(get_spec("deepseek-v3"), load_profile("ascend-910b"), get_workload("decode-b1"))
    chosen = gptq if gptq[2] else int8
    assert r.weight_format == ("int4-g128-asym" if gptq[2] else "int8")
    (price,) = r.prices
    assert price.target == ("gptq-int4-g128-asym" if gptq[2] else "w8a8-int8") and price.within_budget
    assert chosen[2]
    assert price.ppl_ratio_vs_native == pytest.approx(chosen[0], abs=1e-4)
    assert price.cosine_drop_vs_native == pytest.approx(chosen[1], abs=1e-5)
