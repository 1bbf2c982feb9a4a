"""The best retargeting recipe of a model on a device: a format per tensor group that the device runs
natively, or a real conversion of the native one, on the fewest devices the model fits on.

Rules (the accuracy budget: never fewer bits than the checkpoint ships with, except MXFP4 -> int4 which
requantises 4-bit blocks to 4-bit groups, and a model that fits no allowed number of devices otherwise,
which is quantised weight-only to 8, else 4 bits to make it fit, and says so):
* FP8 (per-tensor, per-channel or 128x128 blocks): FP8 where the device has an FP8 rate (FNUZ parts
  re-encode e4m3fn -> e4m3fnuz); else INT8 per-channel W8A8 where the device has INT8 matmuls (or GPTQ int4
  g128 W4A16 when that is faster and its measured price is within the accuracy budget, accuracy.py); else
  BF16. Conversions carry their measured accuracy price where bench/conversion_cost.py measured it.
* MXFP4 / NVFP4: kept where the device has FP4 units and the format; on CUDA/ROCm devices without FP4
  the 4-bit blocks stay and a W4A16 kernel dequantises them to BF16 (as Marlin / Triton do); elsewhere
  they are requantised to int4 with a group of 32 (W4A16).
* BF16 / FP16 / FP32: BF16 (FP16 where the device lists FP16 but not BF16). KV cache likewise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from retarget.errors import RetargetError
from retarget.hw_profiles.schema import HardwareProfile
from retarget.lockin import accuracy
from retarget.models.spec import ModelSpec
from retarget.perf import Prediction, predict
from retarget.perf.formats import get_format
from retarget.perf.model import USABLE_MEMORY

MAX_DEVICES = 256  # assumed: the largest tensor/expert-parallel group considered


@dataclass(frozen=True)
class Workload:
    """A workload of the lock-in index and the throughput it scores (per device)."""

    name: str
    batch: int
    ctx: int
    prompt_len: int
    phase: str  # decode | prefill

    def throughput(self, pred: Prediction) -> float:
        """Tokens/s of the whole device group for this workload."""
        return pred.decode_tokens_s if self.phase == "decode" else pred.prefill_tokens_s


WORKLOADS: dict[str, Workload] = {
    w.name: w for w in (
        Workload("decode-b1", 1, 4096, 4096, "decode"),
        Workload("decode-b64", 64, 4096, 4096, "decode"),
        Workload("prefill-4k", 1, 4096, 4096, "prefill"),
    )
}


def get_workload(name: str) -> Workload:
    """Workload by name."""
    if name not in WORKLOADS:
        raise RetargetError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}", field="--workload")
    return WORKLOADS[name]


@dataclass(frozen=True)
class CellRecipe:
    """What a model runs as on one device: formats, device count, the conversions made, and the result."""

    weight_format: str
    expert_format: str
    kv_format: str
    devices: int
    conversions: tuple[str, ...]
    prediction: Prediction | None = field(default=None, compare=False)
    tokens_s: float = 0.0  # whole group, this workload
    why_not: str = ""  # set when the model cannot run (does not fit / no link)
    prices: tuple[accuracy.Price, ...] = ()  # measured accuracy prices of the conversions, where measured
    quantised_to_fit: bool = False  # weights quantised below the checkpoint's bits because nothing else fits

    @property
    def runs(self) -> bool:
        return self.prediction is not None

    @property
    def tokens_s_per_device(self) -> float:
        return self.tokens_s / self.devices if self.runs else 0.0

    def describe(self) -> str:
        """One line, e.g. 'fp8-e4m3-block128 -> int8 W8A8 per-channel; 16 devices'."""
        if not self.runs:
            return self.why_not
        conv = "; ".join(self.conversions) if self.conversions else "native formats"
        return f"{conv}; {self.devices} device{'s' if self.devices > 1 else ''}"

    def to_dict(self) -> dict[str, Any]:
        return {"weight_format": self.weight_format, "expert_format": self.expert_format,
                "kv_format": self.kv_format, "devices": self.devices, "conversions": list(self.conversions),
                "conversion_prices": [p.to_dict() for p in self.prices], "quantised_to_fit": self.quantised_to_fit,
                "runs": self.runs, "why_not": self.why_not}


def _dense_format(profile: HardwareProfile) -> str:
    return "fp16" if "bf16" not in profile.native_formats and "fp16" in profile.native_formats else "bf16"


@dataclass(frozen=True)
class Conversion:
    """How one tensor group stored as NATIVE runs on a device: the perf format, what was done to get there
    (None: nothing) and its measured accuracy price (None: not measured, or nothing done)."""

    native: str
    format: str
    note: str | None = None
    price: accuracy.Price | None = None


def _priced(native: str, fmt: str, note: str, stand_in: str, target: str) -> Conversion:
    """A conversion whose accuracy price was measured on STAND_IN -> TARGET (bench/conversion_cost.py)."""
    price = accuracy.price(stand_in, target)
    return Conversion(native, fmt, note + (price.describe() if price else ""), price)


def convert(native: str, profile: HardwareProfile) -> Conversion:
    """How a tensor group stored as NATIVE runs on PROFILE."""
    key = native.lower()
    dense = _dense_format(profile)
    if key.startswith("fp8"):
        if profile.peak("fp8_e4m3"):
            if profile.fp8_variant == "fnuz":
                return Conversion(native, "fp8", f"{native} -> e4m3fnuz (re-encoded, scales x2)")
            return Conversion(native, "fp8")
        if profile.peak("int8") or "int8" in profile.native_formats:
            rate = "" if profile.peak("int8") else " (no sourced INT8 rate: matmuls costed at the BF16 rate)"
            return _priced(native, "int8", f"{native} -> INT8 per-channel W8A8{rate}", _fp8_stand_in(key),
                           "w8a8-int8")
        return Conversion(native, dense, f"{native} -> {dense} (dequantised, 2x weight bytes)")
    if key.startswith(("mxfp4", "nvfp4")):
        base = "mxfp4" if key.startswith("mxfp4") else "nvfp4"
        if profile.peak("fp4") and base in profile.native_formats:
            return Conversion(native, base)
        if profile.triton_backend == "official":
            return Conversion(native, base, f"{native} kept, W4A16 kernel dequantises to {dense} (no FP4 units)")
        return _priced(native, "int4-g32-sym", f"{native} -> int4 g32 W4A16 (requantised; no FP4 units, no MXFP4 "
                       "kernel)", "mxfp4", "int4-g32-sym")
    key = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(key, key)
    if key in ("bf16", "fp16", "fp32"):
        return Conversion(native, dense, None if key == dense else f"{native} -> {dense}")
    return Conversion(native, key)


def _fp8_stand_in(key: str) -> str:
    """The measured stand-in recipe of an FP8 checkpoint format (bench/conversion_cost.py)."""
    return "fp8-block128-ue8m0" if "ue8m0" in key else "fp8-block128"


def _gptq(c: Conversion) -> Conversion:
    """C, or when C turns FP8 into INT8 W8A8: GPTQ int4 g128 W4A16 instead, priced on FP8-block stand-ins."""
    if c.format != "int8" or not c.native.lower().startswith("fp8"):
        return c
    return _priced(c.native, "int4-g128-asym", f"{c.native} -> GPTQ int4 g128 W4A16", "fp8-block128",
                   "gptq-int4-g128-asym")


def _budget_alternatives(weight: Conversion, expert: Conversion) -> list[tuple[Conversion, Conversion]]:
    """Faster conversions of the FP8 -> INT8 groups allowed by the accuracy budget (accuracy.py): GPTQ int4
    g128 W4A16 when its measured price is within it."""
    alt = (_gptq(weight), _gptq(expert))
    changed = [new for new, old in zip(alt, (weight, expert), strict=True) if new != old]
    if not changed or not all(c.price is not None and c.price.within_budget for c in changed):
        return []
    return [alt]


def _group_formats(spec: ModelSpec) -> tuple[str, str]:
    """(linear, experts) native formats of SPEC from its `native_format` map."""
    nf = spec.native_format
    linear = nf.get("linear", nf.get("other", nf.get("all", "bf16")))
    experts = nf.get("experts", nf.get("linear", linear))
    return linear, experts


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _devices_to_try(fixed_gb: float, act_gb: float, profile: HardwareProfile) -> int:
    """Fewest power-of-two devices whose usable memory holds FIXED_GB (weights + KV, split across devices)
    plus ACT_GB of activations each, as retarget.perf counts memory (0: more than MAX_DEVICES)."""
    usable = profile.memory_bytes / 1e9 * USABLE_MEMORY
    if fixed_gb + act_gb <= usable:
        return 1
    return _next_pow2(max(2, math.ceil(fixed_gb / (usable - act_gb)))) if usable > act_gb else 2


def _with_capacity(pred: Prediction, profile: HardwareProfile) -> Prediction:
    """PRED (made for a device differing from PROFILE only in memory capacity) with PROFILE's capacity:
    times do not depend on capacity, only the fit does."""
    mem = pred.memory
    usable = profile.memory_bytes / 1e9 * USABLE_MEMORY
    if usable == mem.usable_per_device_gb:
        return pred
    needed = math.ceil((mem.weights_gb + mem.kv_cache_gb) / (usable - mem.activations_gb)) \
        if usable > mem.activations_gb else -1
    return replace(pred, memory=replace(mem, usable_per_device_gb=usable, fits=mem.per_device_gb <= usable,
                                        devices_needed=needed))


# weight formats tried when the model fits no allowed number of devices in its recipe (the accuracy budget of
# that case: group-wise weight-only quantisation down to 4 bits, as `retarget predict --recipe int4-g128-asym`
# costs it); the fastest that fits wins
FIT_LADDER = ("int8-g128-sym", "int4-g128-asym")


def best_recipe(spec: ModelSpec, profile: HardwareProfile, workload: Workload,
                footprint: dict[Any, tuple[float, float]] | None = None, key: Any = None,
                timings: dict[Any, Prediction] | None = None, time_key: Any = None) -> CellRecipe:
    """The recipe SPEC runs best with on PROFILE for WORKLOAD, on the fewest (power-of-two) devices; when it
    fits no allowed device count, the fastest FIT_LADDER format with fewer bits that makes it fit.

    FOOTPRINT caches (weights + KV GB, one-device activations GB) per (KEY, formats), which do not depend
    on the device, so the device count is found without a one-device trial prediction. TIMINGS caches
    predictions per (KEY, formats, TIME_KEY, devices, link bandwidth when devices > 1), TIME_KEY naming the
    device up to its memory capacity and interconnect (which change only the fit, and the collectives of
    more than one device)."""
    lin_native, exp_native = _group_formats(spec)
    weight_c = convert(lin_native, profile)
    expert_c = convert(exp_native, profile) if spec.is_moe else replace(weight_c, note=None, price=None)
    fit = _Fitter(spec, profile, workload, {} if footprint is None else footprint, key, timings, time_key)
    recipe = fit.converted(weight_c, expert_c)
    options = [recipe, *(fit.converted(*alt) for alt in _budget_alternatives(weight_c, expert_c))]
    if any(r.runs for r in options):
        return max((r for r in options if r.runs), key=lambda r: r.tokens_s_per_device)
    weight, expert, notes = recipe.weight_format, recipe.expert_format, recipe.conversions
    fitted = []
    for fmt in FIT_LADDER:
        bits = get_format(fmt).bits
        smaller = tuple(fmt if bits < get_format(f).bits else f for f in (weight, expert))
        if smaller == (weight, expert):
            continue
        changed = " and ".join(f"{a} -> {b}" for a, b in dict.fromkeys(zip((weight, expert), smaller, strict=True))
                               if a != b)
        fitted.append(replace(fit(*smaller, (*notes, f"{changed} weight-only (quantised to fit: {recipe.why_not} "
                                                     f"in {weight})"), recipe.prices), quantised_to_fit=True))
    return max((r for r in fitted if r.runs), key=lambda r: r.tokens_s_per_device, default=recipe)


@dataclass
class _Fitter:
    """Fits one model on one device for a given pair of formats (see best_recipe for the caches)."""

    spec: ModelSpec
    profile: HardwareProfile
    workload: Workload
    footprint: dict[Any, tuple[float, float]]
    key: Any
    timings: dict[Any, Prediction] | None
    time_key: Any

    def converted(self, weight: Conversion, expert: Conversion) -> CellRecipe:
        """The recipe of the two groups' conversions, their notes and prices deduplicated."""
        notes = tuple(dict.fromkeys(c.note for c in (weight, expert) if c.note))
        prices = tuple(dict.fromkeys(c.price for c in (weight, expert) if c.price))
        return self(weight.format, expert.format, notes, prices)

    def __call__(self, weight: str, expert: str, notes: tuple[str, ...],
                 prices: tuple[accuracy.Price, ...] = ()) -> CellRecipe:
        profile, workload = self.profile, self.workload
        kv = _dense_format(profile)
        fkey = (self.key if self.key is not None else self.spec.name, weight, expert, kv)

        def run(devices: int) -> Prediction:
            tkey = (fkey, self.time_key, devices, profile.interconnect_gb_s if devices > 1 else None)
            cached = self.timings is not None and self.time_key is not None
            if cached and tkey in self.timings:
                return _with_capacity(self.timings[tkey], profile)
            pred = predict(self.spec, profile, batch=workload.batch, ctx=workload.ctx,
                           prompt_len=workload.prompt_len, devices=devices, weight_format=weight, kv_format=kv,
                           expert_format=expert)
            if cached:
                self.timings[tkey] = pred
            if devices == 1:
                mem = pred.memory
                self.footprint[fkey] = (mem.weights_gb + mem.kv_cache_gb, mem.activations_gb)
            return pred

        devices = _devices_to_try(*self.footprint[fkey], profile) if fkey in self.footprint else 1
        if devices > 1 and not profile.interconnect_gb_s:
            return CellRecipe(weight, expert, kv, 1, notes, why_not="does not fit one device; no interconnect",
                                  prices=prices)
        while devices <= MAX_DEVICES:
            pred = run(devices)
            if pred.memory.fits:
                return CellRecipe(weight, expert, kv, devices, notes, pred, workload.throughput(pred), prices=prices)
            if not profile.interconnect_gb_s:
                return CellRecipe(weight, expert, kv, 1, notes, why_not="does not fit one device; no interconnect",
                                  prices=prices)
            devices = max(devices * 2, _devices_to_try(*self.footprint[fkey], profile)) if devices == 1 \
                else devices * 2
        return CellRecipe(weight, expert, kv, devices, notes, why_not=f"does not fit {MAX_DEVICES} devices",
                          prices=prices)
