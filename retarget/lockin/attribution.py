"""Attribution of log LI(M, h) to features: which part of the lock-in each feature causes.

Players are the model features M has (variants.MODEL_FEATURES) plus two device features where h differs
from the home device g: `memory` (h given g's memory capacity) and `interconnect` (h given g's link
bandwidth). For a set S of neutralised players, v(S) = log LI of M with S neutralised (model features
via variants.neutralise, device features on h, for M and R(M) alike). Neutralising every model feature
turns M into R(M), so v(all) = 0, and the Shapley values

    phi_i = sum over S not holding i of |S|! (n - |S| - 1)! / n! * (v(S) - v(S + i))

add up exactly to v(empty) = log LI: each feature's share is its average effect over every order of
neutralising, so no order has to be chosen. Shares are in log units; exp(phi_i) is the factor of LI
a feature accounts for.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin.index import Evaluator, ModelVariants, lock_in, per_device

DEVICE_FEATURES = ("memory", "interconnect")


def device_players(g: HardwareProfile, h: HardwareProfile) -> list[str]:
    """Device features where H differs from the home device G."""
    out = []
    if h.memory_gb != g.memory_gb:
        out.append("memory")
    if h.interconnect_gb_s != g.interconnect_gb_s:
        out.append("interconnect")
    return out


def _device_variant(h: HardwareProfile, g: HardwareProfile, hw: frozenset[str]) -> tuple[HardwareProfile, Any]:
    update: dict[str, Any] = {}
    if "memory" in hw:
        update["memory_gb"] = g.memory_gb
    if "interconnect" in hw:
        update["interconnect_gb_s"] = g.interconnect_gb_s
    if not update:
        return h, h.id
    return h.model_copy(update=update), (h.id, g.id, hw)


def _log_li_with(mv: ModelVariants, g: HardwareProfile, h: HardwareProfile, ev: Evaluator,
                 neutral: frozenset[str]) -> tuple[float | None, bool]:
    """(log LI(M, h) with the players in NEUTRAL neutralised, or None when a variant does not run;
    whether every recipe on h ran on one device, so that h's interconnect played no part)."""
    model = neutral - set(DEVICE_FEATURES)
    hp, hkey = _device_variant(h, g, neutral & set(DEVICE_FEATURES))
    ts, single = [], True
    for feats in (model, mv.ref_features):
        spec, key = mv.variant(feats), mv.key(feats)
        on_h = ev.recipe(spec, key, hp, hkey)
        single = single and on_h.runs and on_h.devices == 1
        ts += [per_device(ev.home(spec, key, g)), per_device(on_h)]
    li = lock_in(ts[0], ts[1], ts[2], ts[3])
    return (math.log(li) if li is not None else None), single


def _game(mv: ModelVariants, g: HardwareProfile, h: HardwareProfile, ev: Evaluator,
          players: list[str]) -> tuple[dict[frozenset[str], float | None], bool]:
    values, single = {}, True
    for size in range(len(players) + 1):
        for combo in combinations(players, size):
            values[frozenset(combo)], one = _log_li_with(mv, g, h, ev, frozenset(combo))
            single = single and one
    return values, single


def shapley(mv: ModelVariants, g: HardwareProfile, h: HardwareProfile, ev: Evaluator) -> dict[str, Any]:
    """{'total': log LI, 'shares': {feature: phi}, 'players': [...]} or {'error': why}.

    The interconnect is a null player (share 0, the others unchanged) when every recipe on h runs on one
    device; the game is then played without it, which halves the work."""
    players = [*mv.features, *device_players(g, h)]
    values, single = _game(mv, g, h, ev, [p for p in players if p != "interconnect"])
    if "interconnect" in players and not single:
        values, _ = _game(mv, g, h, ev, players)
    else:
        players = [p for p in players if p != "interconnect"]
    n = len(players)
    if any(v is None for v in values.values()):
        missing = sorted((s for s, v in values.items() if v is None), key=len)[0]
        return {"error": "a variant does not run: " + (", ".join(sorted(missing)) or "the model itself")
                + " neutralised", "players": players}
    weights = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    shares = {}
    for p in players:
        shares[p] = sum(weights[len(s)] * (values[s] - values[s | {p}])  # type: ignore[operator]
                        for s in values if p not in s)
    return {"total": values[frozenset()], "shares": shares, "players": players, "unit": "log LI",
            "provenance": "predicted", "method": "exact Shapley values"}
