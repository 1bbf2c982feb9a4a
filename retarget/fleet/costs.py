"""Dollars and kilowatt-hours per million tokens from a predicted throughput, a device count and sourced
prices, under stated assumptions.

    wall tokens per hour = tokens/s x 3600 x utilisation
    rental   $/1M = devices x rent per device-hour / wall tokens per hour x 1e6
    purchase $/1M = devices x price / (years x 8760 h) / wall tokens per hour x 1e6 + kWh/1M x power price
    kWh/1M        = devices x TDP / 1000 x (1e6 / (tokens/s x 3600))

Devices draw their TDP while serving and nothing while idle, so energy per token does not depend on
utilisation; rent and purchase are paid for every hour, so their cost per token does. Rental prices include
power; purchase prices are the device alone (no host, network, building or staff).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from retarget.fleet.facts import Sourced

HOURS_PER_YEAR = 8760


@dataclass(frozen=True)
class Assumptions:
    """The assumed numbers behind every cost (each is printed with the results)."""

    utilisation: float = 0.6  # share of wall-clock hours the devices serve at the predicted rate
    amortisation_years: float = 4.0
    power_usd_per_kwh: float = 0.12
    usd_per: dict[str, float] = field(default_factory=lambda: {"USD": 1.0, "EUR": 1.08, "CNY": 0.14})

    def lines(self) -> list[str]:
        rates = ", ".join(f"1 {c} = {v:g} USD" for c, v in self.usd_per.items() if c != "USD")
        return [f"utilisation {self.utilisation:.0%} of wall-clock hours (rent and purchase are paid for all hours)",
                f"purchase amortised over {self.amortisation_years:g} years, device price only",
                f"power {self.power_usd_per_kwh:g} USD/kWh, devices at TDP while serving, 0 W idle",
                f"exchange rates {rates}",
                "tokens counted = prompt + generated tokens"]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "provenance": "assumed"}


@dataclass(frozen=True)
class Cost:
    """Per million tokens: rental and amortised-purchase dollars, and energy (None where a price is unknown)."""

    rental_usd: float | None
    purchase_usd: float | None
    kwh: float | None

    @property
    def best_usd(self) -> float | None:
        """Rental where a rental price is known, else purchase (the figure plans are ranked by)."""
        return self.rental_usd if self.rental_usd is not None else self.purchase_usd


def usd(price: Sourced | None, a: Assumptions) -> float | None:
    return None if price is None else price.value * a.usd_per[price.currency]


def cost_per_mtok(tokens_s: float, devices: int, rent: Sourced | None, purchase: Sourced | None,
                  tdp: Sourced | None, a: Assumptions) -> Cost:
    """Cost of 1M tokens served at TOKENS_S by DEVICES devices with these prices and TDP."""
    if tokens_s <= 0:
        return Cost(None, None, None)
    per_mtok_hours = 1e6 / (tokens_s * 3600 * a.utilisation)  # wall-clock hours per million tokens
    kwh = devices * tdp.value / 1000 * 1e6 / (tokens_s * 3600) if tdp else None
    rental = devices * rent.value * a.usd_per[rent.currency] * per_mtok_hours if rent else None
    price = usd(purchase, a)
    capex = devices * price / (a.amortisation_years * HOURS_PER_YEAR) * per_mtok_hours if price else None
    owned = capex + kwh * a.power_usd_per_kwh if capex is not None and kwh is not None else None
    return Cost(rental, owned, kwh)
