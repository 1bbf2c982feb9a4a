"""The lock-in index LI(M, h) of ../../DESIGN.md ("Lock-in, defined").

    LI(M, h) = [T(M, g) / T(M, h)] / [T(R(M), g) / T(R(M), h)]

T = predicted tokens/s per device of the best recipe (recipe.py) for the workload; g = the home device:
the registry's stated hardware, else the device M fits best on among all bundled profiles (the highest
tokens/s per device, so fewer devices or faster ones, without quantising it to fit), whichever targets a
run shows; R(M) = the portable
reference (variants.reference). Throughput is per device so that a model needing more devices on h pays
for them, as a deployment would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin.recipe import CellRecipe, Workload, best_recipe
from retarget.lockin.variants import features_of, neutralise, reference
from retarget.models.spec import ModelSpec
from retarget.perf import Prediction

MODEL_NAME = "retarget.lockin v1 (retarget.perf roofline v1)"


class Evaluator:
    """Best recipes for (model variant, device variant), computed once each."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self._cache: dict[tuple[Any, ...], CellRecipe] = {}
        self._compact: dict[Any, ModelSpec] = {}
        self._footprint: dict[Any, tuple[float, float]] = {}
        self._timings: dict[Any, Prediction] = {}

    def recipe(self, spec: ModelSpec, key: Any, profile: HardwareProfile, hw_key: Any = None) -> CellRecipe:
        """Best recipe of SPEC (cache KEY) on PROFILE (cache HW_KEY, default its id)."""
        k = (key, hw_key if hw_key is not None else profile.id)
        if k not in self._cache:
            if key not in self._compact:
                self._compact[key] = compact(spec)
            time_key = (profile.id, k[1][0] if isinstance(k[1], tuple) else None)
            self._cache[k] = best_recipe(self._compact[key], profile, self.workload, self._footprint, key,
                                         self._timings, time_key)
        return self._cache[k]

    def home(self, spec: ModelSpec, key: Any, g: HardwareProfile) -> CellRecipe:
        """Best recipe on the home device G, cached apart from the target columns: a home passed in may
        carry other settings than the target with the same id."""
        return self.recipe(spec, key, g, ("home", g.id))


def compact(spec: ModelSpec) -> ModelSpec:
    """SPEC with identical layer groups merged (interleaved patterns become one group per layer kind):
    every prediction is a sum over layers, so it is unchanged, and predict walks far fewer groups."""
    merged = [g.model_copy(update={"count": n}) for g, n in spec.layer_kinds]
    return spec if len(merged) == len(spec.blocks) else spec.model_copy(update={"blocks": merged})


@dataclass
class ModelVariants:
    """A model, the features it has, and its variants with some features neutralised (built lazily)."""

    spec: ModelSpec
    features: tuple[str, ...]

    def __post_init__(self) -> None:
        self._variants: dict[frozenset[str], ModelSpec] = {}

    @classmethod
    def of(cls, spec: ModelSpec, context: int | None = None) -> ModelVariants:
        """SPEC's features; with CONTEXT, windows no shorter than it (and no sinks) are left out: they
        change no prediction at that context, so their share is exactly 0 and skipping them halves the work."""
        features = features_of(spec)
        if context and "window" in features and not any(
                g.attention.sinks or (g.attention.window or context) < context
                for g in spec.blocks if g.attention is not None):
            features.remove("window")
        return cls(spec, tuple(features))

    def variant(self, features: frozenset[str]) -> ModelSpec:
        """The model with FEATURES (a subset of self.features) neutralised; all of them = R(M)."""
        features = features & frozenset(self.features)
        if features not in self._variants:
            full = bool(features) and features == frozenset(self.features)
            self._variants[features] = reference(self.spec) if full else neutralise(self.spec, features)
        return self._variants[features]

    def key(self, features: frozenset[str]) -> tuple[str, frozenset[str]]:
        return (self.spec.name, features & frozenset(self.features))

    @property
    def ref_features(self) -> frozenset[str]:
        return frozenset(self.features)


def per_device(recipe: CellRecipe) -> float:
    return recipe.tokens_s_per_device


def lock_in(t_m_g: float, t_m_h: float, t_r_g: float, t_r_h: float) -> float | None:
    """LI from the four throughputs; None when M or R does not run on one of the devices."""
    if min(t_m_g, t_m_h, t_r_g, t_r_h) <= 0:
        return None
    return (t_m_g / t_m_h) / (t_r_g / t_r_h)


def choose_home(mv: ModelVariants, candidates: list[HardwareProfile], ev: Evaluator,
                shared: frozenset[str] = frozenset()) -> tuple[HardwareProfile, str]:
    """(home device, why) for a model with no stated hardware: of CANDIDATES (every bundled profile, as
    bundled, so the choice depends neither on the targets of a run nor on its what-if overrides), the one
    where M fits best in its own formats: the highest tokens/s per device of its best recipe, not counting
    recipes quantised to fit (unless M fits nowhere otherwise). SHARED: ids whose target column is the
    bundled profile unchanged (its recipes are reused)."""
    recipes = {p.id: ev.recipe(mv.spec, mv.key(frozenset()), p, None if p.id in shared else ("bundled", p.id))
               for p in candidates}
    own = [p for p in candidates if recipes[p.id].runs and not recipes[p.id].quantised_to_fit] or candidates
    home = max(own, key=lambda p: per_device(recipes[p.id]))
    return home, (f"no stated hardware: the highest predicted tokens/s per device of all {len(candidates)} "
                  "bundled profiles, in its own formats")


def cell_dict(recipe: CellRecipe, phase: str) -> dict[str, Any]:
    """Recipe plus its predicted speed and memory (predicted provenance)."""
    out = recipe.to_dict()
    pred = recipe.prediction
    out["tokens_s_per_device"] = recipe.tokens_s_per_device
    out["tokens_s"] = recipe.tokens_s
    out["describe"] = recipe.describe()
    out["provenance"] = {"kind": "predicted", "model": MODEL_NAME, "numbers": "every number in this recipe"}
    if pred is not None:
        mem = pred.memory
        out["memory"] = {"weights_gb": mem.weights_gb, "kv_cache_gb": mem.kv_cache_gb,
                         "per_device_gb": mem.per_device_gb, "usable_per_device_gb": mem.usable_per_device_gb,
                         "fits": mem.fits}
        out["bottleneck"] = (pred.decode if phase == "decode" else pred.prefill).bottleneck
        out["assumptions"] = pred.assumptions
    return out

