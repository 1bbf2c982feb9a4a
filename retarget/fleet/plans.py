"""Ranked plans: for every allowed model x device, the best recipe on the fewest devices it fits (the lock-in
recipe rules), its predicted speed (retarget.perf), cost and energy per million tokens, quality, lock-in
index and the accuracy cost of its format conversions (measured where bench/conversion_cost.py measured
it, shared with lock-in through retarget.lockin.accuracy); and why the other pairs are left out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from retarget.errors import RetargetError
from retarget.fleet.constraints import Constraints, FleetWorkload
from retarget.fleet.costs import Assumptions, Cost, cost_per_mtok
from retarget.fleet.facts import BLOCS, DeviceFacts, ModelFacts, facts_for, model_facts, tdp
from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin import accuracy
from retarget.lockin.index import Evaluator
from retarget.lockin.matrix import model_row
from retarget.lockin.recipe import CellRecipe
from retarget.models.spec import ModelSpec
from retarget.perf.confidence import validated_profiles

COST_MODEL = "retarget.fleet cost v1 (speed from retarget.perf roofline v1)"

# What a conversion of lockin.recipe.convert costs in accuracy when bench/conversion_cost.py did not measure it,
# by the marker text in its note: exact re-encodings cost nothing; the rest were not measured.
UNPRICED: tuple[tuple[str, str, str], ...] = (
    ("dequantised", "exact", "none (exact up-cast to a wider format)"),
    ("re-encoded", "exact", "none (exact e4m3fn -> e4m3fnuz re-encoding, scales x2)"),
    ("kept, W4A16", "exact", "none (same 4-bit weights, dequantised in the kernel)"),
    ("quantised to fit", "not measured", "weight-only requantisation below the checkpoint's bits, to fit"),
    ("-> fp16", "not measured", "small expected (FP16 narrows the exponent range)"),
    ("-> bf16", "not measured", "small expected (BF16 keeps the range, rounds the mantissa to 8 bits)"),
)


def conversion_cost(note: str, prices: tuple[accuracy.Price, ...]) -> dict[str, Any]:
    """What the conversion NOTE of a recipe costs in accuracy: its measured price (one of PRICES, the recipe's,
    whose describe() the note ends with), else an exact conversion's 'none', else 'not measured'."""
    price = next((p for p in prices if note.endswith(p.describe())), None)
    if price is not None:
        return {"conversion": note, "provenance": "measured", "cost": accuracy.price_text(price.to_dict()),
                "price": price.to_dict()}
    kind, cost = next(((k, c) for marker, k, c in UNPRICED if marker in note), ("not measured", "unknown"))
    return {"conversion": note, "provenance": kind, "cost": cost if kind == "exact" else f"{cost}; not measured",
            "price": None}


def accuracy_cost(recipe: CellRecipe) -> list[dict[str, Any]]:
    """What each of RECIPE's conversions costs in accuracy (conversion_cost); empty for native formats."""
    return [conversion_cost(c, recipe.prices) for c in recipe.conversions]


def cost_summary(costs: list[dict[str, Any]]) -> dict[str, str]:
    """A plan's accuracy_cost as three lines: 'cost', 'provenance' and 'source' (file and run of the measured
    prices), for the CSV and HTML."""
    if not costs:
        return {"cost": "none (native formats)", "provenance": "native formats", "source": ""}
    return {"cost": _join(c["cost"] for c in costs), "provenance": _join(c["provenance"] for c in costs),
            "source": _join(c["price"]["source"] for c in costs if c["price"])}


def _join(lines: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(lines))


def cost_brief(costs: list[dict[str, Any]]) -> str:
    """A plan's accuracy_cost in a few characters for the terminal: the measured perplexity ratio ('ppl
    x1.014'), 'none' (native or exact) or 'not measured'."""
    if not costs:
        return "none"
    parts = [f"ppl x{c['price']['ppl_ratio_vs_native']:.3f}" if c["price"] else
             "none" if c["provenance"] == "exact" else "not measured" for c in costs]
    return _join(parts)


@dataclass(frozen=True)
class Plan:
    """One way to serve the workload: a model on COUNT devices (REPLICAS x the devices one copy needs)."""

    model: str
    mfacts: ModelFacts
    profile: HardwareProfile
    dfacts: DeviceFacts
    recipe: CellRecipe
    replicas: int
    ttft_s: float
    output_tokens_s: float  # one replica
    tokens_s: float  # one replica, prompt + generated
    cost: Cost
    li: float | None
    home: str  # the model's home device (registry, else where it runs best), for the lock-in index

    @property
    def devices(self) -> int:
        return self.recipe.devices * self.replicas

    @property
    def quality(self) -> float | None:
        return self.mfacts.quality.value if self.mfacts.quality else None

    def to_dict(self, a: Assumptions) -> dict[str, Any]:
        """JSON-able; every number labelled predicted / published / assumed."""
        p, d = self.profile, self.dfacts
        power = tdp(p)
        inputs = [*a.lines(), *(f"{name}: {s.value:g} {s.currency} ({s.kind}, {s.source})" for name, s in
                                (("rent per device-hour", d.rent_usd_per_hour), ("purchase", d.purchase_usd),
                                 ("TDP W", power)) if s)]

        def pred(v: float | None, unit: str, assumptions: list[str] | None = None) -> dict[str, Any]:
            return {"value": v, "unit": unit, "provenance": "predicted", "model": COST_MODEL,
                    "assumptions": assumptions or []}

        q = self.mfacts.quality
        return {
            "model": self.model, "origin": self.mfacts.country, "developer": self.mfacts.developer,
            "license": self.mfacts.license.name,
            "device": p.id, "vendor": p.vendor, "bloc": d.bloc, "bloc_name": BLOCS[d.bloc],
            "device_country": d.country, "export_control": d.export_control.status,
            "devices_per_replica": self.recipe.devices, "replicas": self.replicas, "devices": self.devices,
            "recipe": self.recipe.describe(), "conversions": list(self.recipe.conversions),
            "weight_format": self.recipe.weight_format, "expert_format": self.recipe.expert_format,
            "kv_format": self.recipe.kv_format,
            "ttft_s": pred(self.ttft_s, "s", self.recipe.prediction.assumptions if self.recipe.prediction else []),
            "output_tokens_s": pred(self.output_tokens_s * self.replicas, "tokens/s"),
            "tokens_s": pred(self.tokens_s * self.replicas, "tokens/s"),
            "rental_usd_per_mtok": pred(self.cost.rental_usd, "USD/1M tokens", inputs),
            "purchase_usd_per_mtok": pred(self.cost.purchase_usd, "USD/1M tokens", inputs),
            "kwh_per_mtok": pred(self.cost.kwh, "kWh/1M tokens", inputs),
            "quality": None if q is None else {"value": q.value, "unit": "% MMLU-Pro", "provenance": "published",
                                               "url": q.source, "note": q.note},
            "home_device": self.home,
            "lock_in_index": {"value": self.li, "unit": "ratio", "provenance": "predicted",
                              "model": "retarget.lockin v1"},
            "accuracy_cost": accuracy_cost(self.recipe),
            "validated_device": p.id in validated_profiles(),
        }


@dataclass(frozen=True)
class Rejection:
    model: str
    device: str  # '*' = every device
    reason: str


def speed(recipe: CellRecipe, wl: FleetWorkload) -> tuple[float, float, float]:
    """(TTFT s, generated tokens/s, prompt + generated tokens/s) of one replica: a batch is one prefill
    followed by OUTPUT_LEN decode steps at the mean cache length (recipe.prediction)."""
    pred = recipe.prediction
    assert pred is not None
    seconds = pred.ttft_s + wl.output_len * pred.tpot_s
    return pred.ttft_s, wl.batch * wl.output_len / seconds, wl.batch * (wl.prompt_len + wl.output_len) / seconds


def _plan(spec: ModelSpec, mf: ModelFacts, profile: HardwareProfile, recipe: CellRecipe, row: dict[str, Any],
          wl: FleetWorkload, a: Assumptions) -> Plan:
    df = facts_for(profile)
    ttft, out_s, all_s = speed(recipe, wl)
    cost = cost_per_mtok(all_s, recipe.devices, df.rent_usd_per_hour, df.purchase_usd, tdp(profile), a)
    li = row["cells"][profile.id]["li"]["value"]
    return Plan(spec.name, mf, profile, df, recipe, wl.replicas(out_s), ttft, out_s, all_s, cost, li, row["home"])


def _unknown_last(x: float | None) -> float:
    return float("inf") if x is None else x


# --rank-by: plan -> key, smallest first; unknown figures sort last, ties go to the faster plan
RANKINGS = {
    "cost": lambda p: _unknown_last(p.cost.best_usd),  # rental where known, else amortised purchase
    "rent": lambda p: _unknown_last(p.cost.rental_usd),
    "own": lambda p: _unknown_last(p.cost.purchase_usd),
    "energy": lambda p: _unknown_last(p.cost.kwh),
    "speed": lambda p: -p.output_tokens_s / p.recipe.devices,
    "quality": lambda p: -(p.quality if p.quality is not None else float("-inf")),
}


def ranked(plans: list[Plan], by: str = "cost") -> list[Plan]:
    """PLANS ordered by the ranking BY (a key of RANKINGS)."""
    if by not in RANKINGS:
        raise RetargetError(f"unknown ranking {by!r}; known: {', '.join(RANKINGS)}", field="--rank-by")
    return sorted(plans, key=lambda p: (RANKINGS[by](p), -p.output_tokens_s * p.replicas))


def build_plans(specs: list[ModelSpec], profiles: list[HardwareProfile], allowed: list[HardwareProfile],
                c: Constraints, wl: FleetWorkload, a: Assumptions) -> tuple[list[Plan], list[Rejection]]:
    """Plans for SPECS on the ALLOWED profiles (a subset of PROFILES, over which the lock-in index's home
    device is chosen), and the rejected models and pairs with their reasons."""
    ev = Evaluator(wl.lockin_workload())
    plans: list[Plan] = []
    rejected: list[Rejection] = []
    facts = model_facts()
    for spec in specs:
        mf = facts.get(spec.name)
        if mf is None:
            rejected.append(Rejection(spec.name, "*", "no fleet facts (developer, license, quality) for this model"))
            continue
        why = c.model_allowed(mf) or c.quality_ok(mf)
        if why:
            rejected.append(Rejection(spec.name, "*", why))
            continue
        row = model_row(spec, profiles, ev, attribute=False)
        runs = []
        for profile in allowed:
            recipe = ev.recipe(spec, (spec.name, frozenset()), profile)
            if not recipe.runs:
                rejected.append(Rejection(spec.name, profile.id, recipe.why_not))
                continue
            runs.append(_plan(spec, mf, profile, recipe, row, wl, a))
        if not runs and allowed:
            rejected.append(Rejection(spec.name, "*", "does not fit any allowed device"))
        plans.extend(runs)
    return plans, rejected
