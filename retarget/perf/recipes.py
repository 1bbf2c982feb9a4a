"""What `predict --recipe NAME` means in number formats: `native` (the checkpoint's own formats), a compile
recipe name (retarget.quantize.configs.recipe_names(), '+kv-int8' / '+kv-fp8' suffixes included), or a
number format the perf model knows directly (bf16, fp8, q4_k_m, nvfp4, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from retarget.errors import RetargetError
from retarget.models.spec import ModelSpec
from retarget.perf.formats import get_format

NATIVE = "native"


@dataclass(frozen=True)
class PredictFormats:
    """The formats one prediction runs at, and the recipe name they came from."""

    recipe: str
    weights: str
    experts: str | None = None
    kv: str | None = None  # None: the caller's --kv

    def kwargs(self, kv_default: str) -> dict[str, str | None]:
        """predict() keyword arguments."""
        return {"weight_format": self.weights, "expert_format": self.experts, "kv_format": self.kv or kv_default}


def native_formats(spec: ModelSpec) -> PredictFormats:
    """The checkpoint's own formats: `linear` (else `all`) for the weights, `experts` where it differs."""
    nf = spec.native_format
    weights = nf.get("linear") or nf.get("all") or nf.get("other") or "bf16"
    return PredictFormats(NATIVE, weights, nf.get("experts"))


def _from_compile_recipe(name: str, spec: ModelSpec) -> PredictFormats:
    """A compile recipe: its weight format as `Recipe.weight_format` states it ('keep' and KV-only recipes
    keep the native weights), its KV cache format when it quantizes the cache."""
    import retarget.quantize  # noqa: F401  (registers every recipe name)
    from retarget.plan.recipe import Recipe
    from retarget.quantize.configs import KeepSourceConfig
    from retarget.quantize.kv_cache import KVCacheConfig, split_recipe

    try:
        weights, kv_cache = split_recipe(name)
    except (RetargetError, ValueError):
        raise _unknown(name) from None
    kv = kv_cache.element if isinstance(kv_cache, KVCacheConfig) else None
    if isinstance(weights, KeepSourceConfig | KVCacheConfig):
        return PredictFormats(name, native_formats(spec).weights, native_formats(spec).experts, kv)
    return PredictFormats(name, Recipe(weights, "float", why="predict").weight_format, kv=kv)


def _unknown(name: str) -> RetargetError:
    from retarget.quantize.configs import recipe_names

    return RetargetError(f"unknown recipe {name!r}; use 'native', a compile recipe ({', '.join(recipe_names())}) "
                         "or a number format (bf16, fp8, q4_k_m, nvfp4, ...)", field="--recipe")


def resolve_recipe(name: str, spec: ModelSpec) -> PredictFormats:
    """NAME ('native', a compile recipe name, or a number format) as the formats predict() runs at."""
    if name == NATIVE:
        return native_formats(spec)
    if "+" not in name:  # 'W+kv-...' is always a compile recipe
        try:
            return PredictFormats(name, get_format(name).name)
        except RetargetError:
            pass
    return _from_compile_recipe(name, spec)
