"""Fleet facts carry sources, and the cost arithmetic matches a hand-computed case."""

from __future__ import annotations

import pytest
import yaml

from retarget.errors import RetargetError
from retarget.fleet.costs import Assumptions, cost_per_mtok
from retarget.fleet.facts import DATA_DIR, Sourced, device_facts, model_facts, parse_devices, parse_models, tdp
from retarget.hw_profiles import list_profiles
from retarget.models.registry import registry_entries


def test_every_price_tdp_and_quality_figure_carries_a_source_url() -> None:
    figures = [(d, k, getattr(f, k)) for d, f in device_facts().items()
               for k in ("tdp_w", "rent_usd_per_hour", "purchase_usd")]
    figures += [(m, "quality", f.quality) for m, f in model_facts().items()]
    present = [(who, k, s) for who, k, s in figures if s is not None]
    assert len(present) >= 30  # the files are not empty
    for who, k, s in present:
        assert s.source.startswith(("http://", "https://")), (who, k)
        assert s.value > 0, (who, k)
    # a profile's own TDP keeps the profile's source; one without takes the fleet file's or stays unknown
    for p in list_profiles():
        power = tdp(p)
        assert power is None or power.source.startswith("http"), p.id


def test_facts_cover_every_bundled_profile_and_registry_model() -> None:
    assert set(device_facts()) == {p.id for p in list_profiles()}
    assert set(model_facts()) == set(registry_entries())


@pytest.mark.parametrize("field", ["tdp_w", "rent_usd_per_hour", "purchase_usd"])
def test_a_device_figure_without_a_source_is_rejected_naming_the_field(field: str) -> None:
    raw = yaml.safe_load((DATA_DIR / "devices.yaml").read_text())
    raw["devices"]["h20"][field] = {"value": 400}
    with pytest.raises(RetargetError, match=rf"devices\.h20\.{field}\.source"):
        parse_devices(raw)


def test_a_quality_figure_without_a_url_is_rejected() -> None:
    raw = yaml.safe_load((DATA_DIR / "models.yaml").read_text())
    raw["models"]["qwen3-8b"]["quality"] = {"value": 56.7, "source": "the Qwen3 report"}
    with pytest.raises(RetargetError, match=r"models\.qwen3-8b\.quality\.source"):
        parse_models(raw)


def _s(value: float, currency: str = "USD") -> Sourced:
    return Sourced(value=value, source="https://example.org/x", currency=currency)


def test_cost_arithmetic_against_a_hand_computed_case() -> None:
    """2 devices at $2/device-hour, $20,000 each, 500 W, serving 1000 tokens/s, 50% utilised, 4 years,
    $0.10/kWh. Wall-clock tokens per hour = 1000 x 3600 x 0.5 = 1.8M, so:
    rent  = 2 x 2 / 1.8 = 2.2222 $/1M;
    kWh   = 2 x 0.5 kW x (1e6 / 3.6e6 h) = 0.27778 kWh/1M;
    own   = 2 x 20000 / (4 x 8760) / 1.8 + 0.27778 x 0.10 = 0.634196 + 0.027778 = 0.661974 $/1M."""
    a = Assumptions(utilisation=0.5, amortisation_years=4, power_usd_per_kwh=0.10)
    c = cost_per_mtok(1000.0, 2, _s(2.0), _s(20000.0), _s(500.0), a)
    assert c.rental_usd == pytest.approx(2.222222, rel=1e-6)
    assert c.kwh == pytest.approx(0.277778, rel=1e-5)
    assert c.purchase_usd == pytest.approx(0.661974, rel=1e-5)
    # a price in another currency is converted at the stated rate; unknown prices stay unknown
    eur = cost_per_mtok(1000.0, 2, _s(2.0, "EUR"), None, None, a)
    assert eur.rental_usd == pytest.approx(2.222222 * a.usd_per["EUR"], rel=1e-6)
    assert eur.purchase_usd is None and eur.kwh is None
