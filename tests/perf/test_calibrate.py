"""The calibration search on a loss whose minimum is known: a narrow valley where two fixed costs trade off."""

from __future__ import annotations

import pytest

from retarget.perf import calibrate

FREE = ["overhead_us_per_layer", "moe_overhead_us_per_expert"]
MINIMUM = {"overhead_us_per_layer": 300.0, "moe_overhead_us_per_expert": 180.0}


def _valley(plans: calibrate.Plans, factors: dict[str, float]) -> float:
    """Zero at MINIMUM; along the valley floor 8 us per expert buy back 1 us per layer almost for free."""
    layer = factors["overhead_us_per_layer"] - MINIMUM["overhead_us_per_layer"]
    expert = factors["moe_overhead_us_per_expert"] - MINIMUM["moe_overhead_us_per_expert"]
    return (layer + 8 * expert) ** 2 + 0.01 * layer**2


@pytest.fixture
def valley(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibrate, "loss", _valley)
    monkeypatch.setattr(calibrate, "calibration_rule", lambda engine: {"free": FREE})
    monkeypatch.setattr(calibrate, "engine_entry", lambda engine: {})


def test_the_polished_search_finds_the_bottom_of_a_valley(valley: None) -> None:
    factors, final = calibrate.fit_plans([], "valley")
    assert final < 1e-3
    for key, value in MINIMUM.items():
        assert factors[key] == pytest.approx(value, rel=1e-2), key


def test_coordinate_search_alone_stalls_in_the_valley(valley: None) -> None:
    """Why the Nelder-Mead polish exists: one factor at a time stops far from the minimum."""
    factors, final = calibrate.fit_plans([], "valley", polish=0)
    assert final > 100
    assert factors["overhead_us_per_layer"] > 2 * MINIMUM["overhead_us_per_layer"]


def test_the_polish_keeps_factors_in_their_ranges(monkeypatch: pytest.MonkeyPatch, valley: None) -> None:
    """A minimum outside a factor's range is approached from inside: the fit stops at the bound."""
    monkeypatch.setitem(MINIMUM, "moe_overhead_us_per_expert", 900.0)  # above the range's 500
    factors, _ = calibrate.fit_plans([], "valley")
    high = calibrate.FREE_FACTORS["moe_overhead_us_per_expert"].high
    assert factors["moe_overhead_us_per_expert"] == pytest.approx(high)
    assert 0 <= factors["overhead_us_per_layer"] <= calibrate.FREE_FACTORS["overhead_us_per_layer"].high


def test_a_fold_inherits_its_parents_factors_fitted_without_the_same_source(folds: list[dict]) -> None:
    """Leave-one-source-out leaks nothing through inheritance: a child engine's fold takes every factor it does
    not fit or set itself from its parent's fold for the same source, and a fold with too few rows to fit takes
    its free factors from there too (sglang-0.5-mi30x's one source is also one of sglang-0.5's)."""
    by_fold = {(f["engine"], f["held_out"]): f for f in folds}
    checked = 0
    for fold in folds:
        own = calibrate.own_entry(fold["engine"])
        parent = by_fold.get((own.get("inherits"), fold["held_out"]))
        if parent is None:
            continue
        free = calibrate.calibration_rule(fold["engine"])["free"]
        for key, value in parent["factors"].items():
            if key not in own and (key not in free or fold["prior"]):
                assert fold["factors"][key] == value, (fold["engine"], fold["held_out"], key)
                checked += 1
    assert checked >= 10
    mi30x = by_fold[("sglang-0.5-mi30x", "vngcloud/InferenceX-app")]
    assert mi30x["prior"] and mi30x["factors"]["overhead_us_per_step"] == \
        by_fold[("sglang-0.5", "vngcloud/InferenceX-app")]["factors"]["overhead_us_per_step"] > 0
