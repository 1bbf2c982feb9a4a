"""LI(M, h) against its definition: 1 for the portable reference, blind to a device's uniform speed-up."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from retarget.hw_profiles import list_profiles, load_profile
from retarget.lockin import lockin_for_spec
from retarget.lockin.variants import reference
from retarget.lockin.whatif import apply_whatif
from retarget.models.registry import get_spec
from retarget.perf import model as perf_model


def _li(row: dict, device: str) -> float | None:
    return row["cells"][device]["li"]["value"]


@pytest.mark.parametrize("name", ["deepseek-v3", "gpt-oss-20b", "jamba-v0.1", "llama-3.1-8b"])
def test_reference_model_has_li_one_everywhere(name: str) -> None:
    """R(M) is the plain model of the definition: moving it loses exactly what a plain model loses."""
    ref = reference(get_spec(name))
    profiles = list_profiles()
    row = lockin_for_spec(ref, profiles, home=load_profile("h100-sxm"), attribute=False)["row"]
    values = [_li(row, p.id) for p in profiles]
    ran = [v for v in values if v is not None]
    assert len(ran) >= 20  # everything that fits somewhere was scored
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in ran)


def test_plain_registry_model_is_its_own_reference() -> None:
    spec = get_spec("qwen3-8b")
    assert reference(spec) is spec
    row = lockin_for_spec(spec, list_profiles(), attribute=False)["row"]
    assert {round(v, 12) for v in (_li(row, d) for d in row["cells"]) if v is not None} == {1.0}


@pytest.fixture
def no_fixed_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-layer launch overhead and collective latency are wall-clock constants of the software, and the
    inter-node NIC (efficiency.yaml `multi_node`) is a platform constant, none of them device peaks; they
    are the only terms that do not scale with the peaks, so this test removes them (one node, no fixed
    costs)."""
    real = perf_model.efficiency
    node = perf_model.multi_node()

    def efficiency(*args, **kwargs):
        return replace(real(*args, **kwargs), overhead_us_per_layer=0.0, collective_latency_us=0.0,
                       internode_latency_us=0.0, moe_overhead_us_per_expert=0.0,
                       overhead_us_per_step=0.0, stage_hop_us=0.0)

    monkeypatch.setattr(perf_model, "efficiency", efficiency)
    monkeypatch.setattr(perf_model, "multi_node", lambda: replace(node, devices_per_node=10**6))


SCALE_ALL = {"scale_compute": "2.5", "scale_bandwidth": "2.5", "scale_interconnect": "2.5"}


@pytest.mark.usefixtures("no_fixed_costs")
@pytest.mark.parametrize("name", ["deepseek-v3", "gpt-oss-120b", "qwen3-30b-a3b"])
@pytest.mark.parametrize("device", ["ascend-910b", "h20", "mi300x"])
def test_li_unchanged_when_a_device_gets_uniformly_faster(name: str, device: str) -> None:
    spec = get_spec(name)
    base = [load_profile(device)]
    fast = [apply_whatif(base[0], SCALE_ALL)]
    assert fast[0].peak_tflops["bf16"] == pytest.approx(2.5 * base[0].peak_tflops["bf16"])
    li = _li(lockin_for_spec(spec, base, attribute=False)["row"], device)
    li_fast = _li(lockin_for_spec(spec, fast, attribute=False)["row"], device)
    assert li is not None and li_fast == pytest.approx(li, rel=1e-9)
    # the home device sped up uniformly changes nothing either
    home = apply_whatif(load_profile("h100-sxm"), SCALE_ALL)
    li_home = _li(lockin_for_spec(spec, base, home=home, attribute=False)["row"], device)
    li_ref = _li(lockin_for_spec(spec, base, home=load_profile("h100-sxm"), attribute=False)["row"], device)
    assert li_home == pytest.approx(li_ref, rel=1e-9)


def test_speeding_up_only_compute_does_change_li() -> None:
    """The invariance above is not vacuous: a non-uniform change (H20 with twice the compute) moves LI of
    a compute-heavy architecture (DeepSeek-V3's MLA attention at batch 64)."""
    spec = get_spec("deepseek-v3")
    h20 = load_profile("h20")
    row = lockin_for_spec(spec, [h20], workload="decode-b64", attribute=False)["row"]
    row2 = lockin_for_spec(spec, [apply_whatif(h20, {"scale_compute": "2"})], workload="decode-b64",
                           attribute=False)["row"]
    assert not math.isclose(_li(row, "h20"), _li(row2, "h20"), rel_tol=1e-3)


def test_home_device_comes_from_the_registry() -> None:
    row = lockin_for_spec(get_spec("deepseek-v3"), [load_profile("h20")], attribute=False)["row"]
    assert row["home"] == "h800-sxm"  # DeepSeek-V3 was trained on H800 (registry home_hardware)
    assert row["home_why"] == "stated in the model registry"
