"""A `Recipe` says how a model is compiled: its weight format, how that format is lowered to ONNX, and
optionally a quantized KV cache ('W+kv-int8'; 'kv-fp8' alone keeps float weights). `plan_recipe` turns the
user's request (a name, or 'auto') into one for a given device."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile
from retarget.quantize.configs import (
    FloatConfig,
    IntWeightOnlyConfig,
    KeepSourceConfig,
    QuantConfig,
)
from retarget.quantize.fp4 import Fp4WeightConfig
from retarget.quantize.fp8 import Fp8WeightConfig
from retarget.quantize.smoothquant import W8A8Int8Config

GGUF_AUTO_RECIPE = "gptq-int4-g64-asym-actorder"  # what 'auto' makes of a GGUF's integer blocks


@dataclass(frozen=True)
class Lowering:
    """How a recipe's weights go into the ONNX graph: NAME (the recipe's lowering), FAMILY (the
    retarget.export.lowering writer that emits it: 'matmulnbits', 'qdq' or 'float') and the ONNX Runtime
    execution PROVIDERS that run it (None: every provider)."""

    name: str
    family: str
    providers: frozenset[str] | None

    @property
    def runs_on_cpu(self) -> bool:
        """Whether ONNX Runtime's CPU provider (the one verification uses) runs it."""
        return self.providers is None or "CPUExecutionProvider" in self.providers


# lowering -> the ONNX Runtime execution providers that run it (None: every provider). Basis per entry in
# docs/onnx-lowerings.md: CPU measured here (ORT 1.32), the others from their providers' documentation.
LOWERINGS: dict[str, set[str] | None] = {
    # com.microsoft.MatMulNBits: ORT's own kernels
    "matmulnbits": {"CPUExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider", "WebGpuExecutionProvider"},
    # DequantizeLinear(int8 [K, N], scale [N], axis=1) -> MatMul: the portable INT8 weight
    "qdq-int8": {"CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                 "NvTensorRTRTXExecutionProvider", "DmlExecutionProvider", "OpenVINOExecutionProvider",
                 "MIGraphXExecutionProvider", "QNNExecutionProvider"},
    # opset-21 blocked DequantizeLinear (int4/uint4/int8, block_size along K) -> MatMul
    "qdq-blocked": {"CPUExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider",
                    "QNNExecutionProvider"},
    # DequantizeLinear(float8e4m3fn) -> MatMul; the CPU provider dequantizes to float32 (no FP8 arithmetic)
    "qdq-fp8": {"CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider",
                "NvTensorRTRTXExecutionProvider"},
    # opset-23/24 DequantizeLinear(float4e2m1, E8M0 or two-level E4M3 scales) -> MatMul; ORT 1.32's CPU
    # provider has no float4e2m1 DequantizeLinear kernel
    "qdq-fp4": {"TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider"},
    "float": None,  # plain MatMul
}
# the registry: each lowering's name, the writer family that emits it, its providers
LOWERING_REGISTRY: dict[str, Lowering] = {
    name: Lowering(name, "qdq" if name.startswith("qdq-") else name, None if eps is None else frozenset(eps))
    for name, eps in LOWERINGS.items()}
# the quantized KV cache (retarget.export.kv_cache_graph: GroupQueryAttention and RotaryEmbedding over a
# float32 graph, codes stored by Cast / Concat): verified on ORT 1.32's CPU provider only
KV_CACHE_PROVIDERS = {"CPUExecutionProvider"}
LOWERING_CHOICES = ("auto", "matmulnbits", "qdq")  # --lowering: a family; the recipe's weights pick the member


def runs_on_cpu(lowering: str) -> bool:
    """Whether ONNX Runtime's CPU provider (the one verification uses) runs LOWERING."""
    return LOWERING_REGISTRY[lowering].runs_on_cpu


@dataclass(frozen=True)
class Recipe:
    """Weight format for every Linear (lm_head included) and the ONNX lowering that carries it."""

    weights: QuantConfig
    lowering: str
    why: str
    accuracy_level: int = 0  # MatMulNBits: 0 keeps fp32 activations, 4 quantizes them to int8 per block
    kv_cache: QuantConfig | None = None  # a retarget.quantize.kv_cache.KVCacheConfig (None: float cache)
    version: ClassVar[int] = 1

    @property
    def name(self) -> str:
        if self.kv_cache is None or self.kv_cache is self.weights:
            return self.weights.name
        return f"{self.weights.name}+{self.kv_cache.name}"

    @property
    def weight_lowering(self) -> Lowering:
        """The registered lowering that carries the weights (retarget.export.lowering dispatches on it)."""
        return LOWERING_REGISTRY[self.lowering]

    @property
    def runs_on_cpu(self) -> bool:
        return self.weight_lowering.runs_on_cpu

    @property
    def kv_element(self) -> str | None:
        """The quantized KV cache's element ('int8' or 'e4m3'; None: float cache)."""
        if self.kv_cache is None:
            return None
        from retarget.quantize.kv_cache import ELEMENTS  # imports torch

        return ELEMENTS[self.kv_cache.element]

    @property
    def weight_format(self) -> str:
        """The number format retarget.perf predicts with (keep: GGUF Q4_1 = 4-bit, g32 scale and minimum;
        per-channel INT8 and W8A8: 'int8'; FP8 weights: 'fp8'; FP4: its scheme; a KV-only recipe: 'fp32')."""
        weights = self.weights
        if isinstance(weights, KeepSourceConfig):
            return "fp8" if weights.element == "e4m3" else "int4-g32-asym"
        if isinstance(weights, IntWeightOnlyConfig):
            if weights.group_size is None:
                return f"int{weights.bits}"
            return f"int{weights.bits}-g{weights.group_size}-{'sym' if weights.symmetric else 'asym'}"
        if isinstance(weights, Fp8WeightConfig):
            return "fp8"
        if isinstance(weights, Fp4WeightConfig):
            return weights.scheme
        if isinstance(weights, W8A8Int8Config):
            return "int8"
        return "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "weight_format": self.weight_format,
                "weights": self.weights.to_dict(),
                "lowering": self.lowering, "accuracy_level": self.accuracy_level,
                "kv_cache": None if self.kv_cache is None else self.kv_cache.to_dict(), "why": self.why}


def _candidates(config: QuantConfig) -> list[str]:
    """The lowerings that can carry CONFIG's weights, preferred first."""
    if isinstance(config, FloatConfig) or config.name.startswith("kv-"):  # a KV-cache recipe alone: float weights
        return ["float"]
    if isinstance(config, KeepSourceConfig):  # FP8 source blocks (DeepSeek-V3) as FP8 QDQ, integers as 4/8-bit
        return ["qdq-fp8"] if config.element == "e4m3" else ["matmulnbits", "qdq-blocked"]
    if isinstance(config, IntWeightOnlyConfig):
        per_channel_int8 = config.bits == 8 and config.group_size is None
        if config.bits not in (4, 8):  # our MatMulNBits packing is 4/8-bit; QDQ holds 2/3-bit codes in int4
            return ["qdq-blocked"]
        return ["matmulnbits", "qdq-int8" if per_channel_int8 else "qdq-blocked"]
    if config.name.startswith("fp8-") or config.name == "w8a8-fp8":  # FP8 weights (and FP8 activations)
        return ["qdq-fp8"]
    if config.name.startswith("w8a8-"):  # INT8 per-channel weights, per-token INT8 activations
        return ["qdq-int8"]
    if config.name in ("mxfp4", "nvfp4"):
        return ["qdq-fp4"]
    raise RetargetError(f"recipe {config.name!r} has no ONNX lowering yet", field="--recipe")


def _lowering_for(config: QuantConfig, profile: HardwareProfile, family: str = "auto") -> str:
    """The first lowering of CONFIG (within FAMILY unless 'auto') that one of PROFILE's providers runs."""
    if family not in LOWERING_CHOICES:
        raise RetargetError(f"unknown lowering {family!r}; choose from {', '.join(LOWERING_CHOICES)}",
                            field="--lowering")
    candidates = [c for c in _candidates(config)
                  if family in ("auto", LOWERING_REGISTRY[c].family) or LOWERING_REGISTRY[c].family == "float"]
    if not candidates:
        raise RetargetError(f"recipe {config.name} cannot be lowered as {family}; it needs "
                            f"{' or '.join(_candidates(config))}", field="--lowering")
    eps = set(profile.onnxruntime_eps)
    for lowering in candidates:
        runners = LOWERINGS[lowering]
        if runners is None or eps & runners:
            return lowering
    raise RetargetError(f"{profile.id} has no ONNX Runtime provider that runs {' or '.join(candidates)} "
                        f"(recipe {config.name}); its providers: {', '.join(sorted(eps)) or 'none'}",
                        field="--target")


def _accuracy_level(lowering: str, profile: HardwareProfile) -> int:
    """On CPUs, MatMulNBits with fp32 activations is slower than a float MatMul at batch 1 (measured here:
    3.2 ms vs 2.0 ms for 6144 x 576); int8 activations (level 4) take MLAS's integer path at 1.0 ms.
    ORT fuses blocked 4-bit QDQ into MatMulNBits at level 4 by default (session option
    session.qdq_matmulnbits_accuracy_level), so the level applies there too."""
    return 4 if lowering in ("matmulnbits", "qdq-blocked") and profile.family == "cpu" else 0


def plan_recipe(requested: str, profile: HardwareProfile, has_source_blocks: bool, lowering: str = "auto",
                source_element: str = "int") -> Recipe:
    """The recipe to compile with. 'auto' picks the fastest format the device's runtime lowers natively.
    LOWERING ('auto', 'matmulnbits' or 'qdq') restricts how the weights go into the graph; 'auto' takes the
    first of the recipe's lowerings (MatMulNBits for integers, then QDQ) that a provider of the device runs.

    Decode is memory-bound, so fewer weight bytes is faster: 4-bit weights. SOURCE_ELEMENT is the source
    blocks' element. GGUF integer blocks ('int') are re-quantized by GPTQ (int4, g64, act-order, 8-bit
    lm_head): on the measured CPU Pareto of SmolLM2 (bench/results/pareto.md) it is on the front, 1.25x the
    decode of keeping Q4_1 (whose float minimums cost a block-sum term per projection) at KL 0.12; 'keep'
    stays the exact choice on request, and a 4-bit lm_head (`-head4`, also on the front) trades twice the KL
    for 12-15% more decode speed. Other source blocks are kept ('keep'): FP8 ('e4m3') is lowered as FP8
    QDQ on request, and 'auto' converts it to 4-bit (half the bytes of FP8).
    """
    if requested != "auto":
        from retarget.quantize.kv_cache import split_recipe  # imports torch

        config, kv_cache = split_recipe(requested)
        if isinstance(config, KeepSourceConfig) and not has_source_blocks:
            raise RetargetError("recipe 'keep' needs a pre-quantized source (GGUF Q4_1/Q8_0, MXFP4 experts, "
                                "FP8 blocks)", field="--recipe")
        if isinstance(config, KeepSourceConfig):
            config = replace(config, element=source_element)
        if kv_cache is not None and config.name.startswith("w8a8-"):
            raise RetargetError(f"{requested}: a quantized KV cache combines with weight-only recipes; the ONNX "
                                "graph that carries it has no quantized activations", field="--recipe")
        if kv_cache is not None and not KV_CACHE_PROVIDERS & set(profile.onnxruntime_eps):
            raise RetargetError(f"{profile.id} has no ONNX Runtime provider verified to run the quantized KV cache "
                                f"of {requested} (verified: {', '.join(sorted(KV_CACHE_PROVIDERS))})",
                                field="--target")
        lowering = _lowering_for(config, profile, lowering)
        return Recipe(config, lowering, why="requested", accuracy_level=_accuracy_level(lowering, profile),
                      kv_cache=kv_cache)
    if has_source_blocks and source_element == "int":
        from retarget.quantize.kv_cache import split_recipe  # imports torch

        config: QuantConfig = split_recipe(GGUF_AUTO_RECIPE)[0]
        why = (f"auto: {GGUF_AUTO_RECIPE} on calibration text; on the measured CPU Pareto it decodes 1.25x the "
               "GGUF's own blocks kept ('keep', exact on request) at KL 0.12")
    elif has_source_blocks and source_element != "e4m3":
        config = KeepSourceConfig(element=source_element)
        why = "auto: the source is already 4-bit; its blocks go into the graph unchanged (no added error)"
    else:
        config = IntWeightOnlyConfig(bits=4, group_size=128, symmetric=False)
        why = "auto: 4-bit weights move 1/8 of the fp32 bytes per decoded token; g128 asymmetric keeps accuracy"
    family = lowering
    try:
        lowering = _lowering_for(config, profile, family)
    except RetargetError as err:
        if err.field != "--target":
            raise
        # no provider of the device runs a 4-bit lowering: INT8 per channel, the most widely read QDQ form
        config = IntWeightOnlyConfig(bits=8, group_size=None, symmetric=True)
        why = f"auto: {profile.id}'s ONNX Runtime providers run no 4-bit lowering; INT8 per channel is read by most"
        lowering = _lowering_for(config, profile, family)
    return Recipe(config, lowering, why=why, accuracy_level=_accuracy_level(lowering, profile))
