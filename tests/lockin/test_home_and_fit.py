"""Comparable LI: the home device does not depend on the targets of a run; a model that fits a device only
when quantised is fitted that way, exactly as `retarget predict --recipe int4-g128-asym` costs it; what-if
runs echo what they changed."""

from __future__ import annotations

import pytest

from retarget.hw_profiles import list_profiles, load_profile
from retarget.lockin import lockin_for_spec
from retarget.lockin.recipe import best_recipe, get_workload
from retarget.lockin.whatif import apply_all, changes, describe, split_overrides
from retarget.models.registry import get_entry, get_spec
from retarget.perf import predict


def test_home_and_li_do_not_depend_on_the_targets() -> None:
    """Qwen3-235B states no hardware: its home was MI355X over all devices and MI300X over four."""
    spec = get_spec("qwen3-235b-a22b")
    assert not get_entry("qwen3-235b-a22b").home_hardware
    four = [load_profile(d) for d in ("mi300x", "h100-sxm", "ascend-910b", "h20")]
    small = lockin_for_spec(spec, four, attribute=False)["row"]
    full = lockin_for_spec(spec, list_profiles(), attribute=False)["row"]
    assert small["home"] == full["home"] not in {p.id for p in four}
    # chosen in the model's own formats: a 192 GB M2 Ultra running it int4 quantised-to-fit (one device, so
    # more tokens/s per device than any multi-device BF16 deployment) is not its home; the 288 GB MI355X is
    assert not full["home_recipe"]["quantised_to_fit"] and full["home"] == "mi355x"
    m2 = lockin_for_spec(spec, [load_profile("m2-ultra")], attribute=False)["row"]["cells"]["m2-ultra"]["recipe"]
    assert m2["quantised_to_fit"] and m2["tokens_s_per_device"] > full["home_recipe"]["tokens_s_per_device"]
    for device in ("mi300x", "h100-sxm", "ascend-910b", "h20"):
        assert small["cells"][device]["li"]["value"] == pytest.approx(full["cells"][device]["li"]["value"])


def test_quantised_to_fit_matches_predict() -> None:
    """Llama-3.1-70B in BF16 (141 GB) does not fit a 128 GB M4 Max; int4 g128 does, at predict's speed."""
    wl = get_workload("decode-b1")
    m4 = load_profile("m4-max")
    r = best_recipe(get_spec("llama-3.1-70b"), m4, wl)
    assert r.runs and r.devices == 1 and r.weight_format == "int4-g128-asym"
    assert "quantised to fit" in r.describe()
    pred = predict(get_spec("llama-3.1-70b"), m4, batch=wl.batch, ctx=wl.ctx, prompt_len=wl.prompt_len,
                   weight_format="int4-g128-asym", kv_format="bf16")
    assert pred.memory.fits and r.tokens_s == pytest.approx(pred.decode_tokens_s)
    bf16 = predict(get_spec("llama-3.1-70b"), m4, batch=1, ctx=4096, prompt_len=4096, weight_format="bf16",
                   kv_format="bf16")
    assert not bf16.memory.fits
    # a model that fits as shipped is never quantised
    assert best_recipe(get_spec("llama-3.1-8b"), m4, wl).weight_format == "bf16"


def test_whatif_echoes_the_fields_it_changed() -> None:
    items = ["h100-sxm.fp8=0"]
    split = split_overrides(items, [p.id for p in list_profiles()])
    changed = changes(list_profiles(), apply_all(list_profiles(), split))
    assert {c["device"] for c in changed} == {"h100-sxm"}
    assert any(c["field"] == "peak_tflops.fp8_e4m3" and c["after"] is None for c in changed)
    lines = describe(items, changed, {"llama-3.1-70b": "h100-sxm", "qwen3-8b": "rtx-4090"})
    assert lines[0] == "what-if: --set h100-sxm.fp8=0" and "llama-3.1-70b" in lines[-1] and "qwen3" not in lines[-1]
