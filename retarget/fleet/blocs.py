"""The bloc view: model origin x hardware bloc, the best plan per cell at a quality floor, and how much each
model family loses off its home hardware.

"Off home" is measured two ways: the lock-in index (predicted tokens/s per device relative to a portable
reference model, so price-free) averaged geometrically over a bloc's devices, and, where both blocs have a
rental price, the ratio of the cheapest rental $/1M tokens in the bloc to the cheapest at home.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from retarget.fleet.facts import BLOCS, device_facts
from retarget.fleet.plans import Plan


def _best(plans: list[Plan], kind: str) -> Plan | None:
    """The cheapest plan by KIND (rental_usd or purchase_usd)."""
    priced = [p for p in plans if getattr(p.cost, kind) is not None]
    return min(priced, key=lambda p: getattr(p.cost, kind)) if priced else None


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _cell(plans: list[Plan]) -> dict[str, Any]:
    """Cheapest plan by rental and by amortised purchase (kept apart: they are not comparable), and the
    fastest per device."""
    out: dict[str, Any] = {"plans": len(plans)}
    for kind in ("rental", "purchase"):
        best = _best(plans, f"{kind}_usd")
        out[f"{kind}_usd_per_mtok"] = None if best is None else getattr(best.cost, f"{kind}_usd")
        out[f"{kind}_plan"] = None if best is None else f"{best.model} on {best.recipe.devices}x {best.profile.id}"
    fastest = max(plans, key=lambda p: p.output_tokens_s / p.recipe.devices) if plans else None
    out["tokens_s_per_device"] = None if fastest is None else fastest.output_tokens_s / fastest.recipe.devices
    out["fastest"] = None if fastest is None else f"{fastest.model} on {fastest.recipe.devices}x {fastest.profile.id}"
    return out


def bloc_matrix(plans: list[Plan], min_quality: float) -> dict[str, Any]:
    """Origin x bloc cells over the plans whose model meets MIN_QUALITY, and the off-home table per family."""
    good = [p for p in plans if p.quality is not None and p.quality >= min_quality]
    by_cell: dict[tuple[str, str], list[Plan]] = defaultdict(list)
    for p in good:
        by_cell[(p.mfacts.country, p.dfacts.bloc)].append(p)
    origins = sorted({p.mfacts.country for p in good})
    cells = {o: {b: _cell(by_cell[(o, b)]) for b in BLOCS} for o in origins}
    return {"min_quality": min_quality, "origins": origins, "blocs": BLOCS, "cells": cells,
            "models": sorted({p.model for p in good}), "families": off_home(good)}


def off_home(plans: list[Plan]) -> list[dict[str, Any]]:
    """Per model family (developer): its home bloc and, per bloc, the geometric-mean lock-in index of its
    models on that bloc's devices and the cheapest rental $/1M relative to the cheapest rental at home."""
    blocs = device_facts()
    out = []
    by_family: dict[str, list[Plan]] = defaultdict(list)
    for p in plans:
        by_family[p.mfacts.developer].append(p)
    for family, fplans in sorted(by_family.items()):
        home = Counter(p.home for p in fplans).most_common(1)[0][0]
        home_bloc = blocs[home].bloc
        by_bloc: dict[str, list[Plan]] = defaultdict(list)
        for p in fplans:
            by_bloc[p.dfacts.bloc].append(p)
        home_best = _best(by_bloc.get(home_bloc, []), "rental_usd")
        rows = {}
        for bloc, bplans in by_bloc.items():
            best = _best(bplans, "rental_usd")
            ratio = (best.cost.rental_usd / home_best.cost.rental_usd  # type: ignore[operator]
                     if best and home_best else None)
            rows[bloc] = {"geomean_li": _geomean([p.li for p in bplans if p.li]), "rental_vs_home": ratio,
                          "rental_usd_per_mtok": best.cost.rental_usd if best else None}
        out.append({"family": family, "origin": fplans[0].mfacts.country, "home_device": home,
                    "home_bloc": home_bloc, "models": sorted({p.model for p in fplans}), "blocs": rows})
    return out
