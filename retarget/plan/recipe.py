"""A `Recipe` says how a model is compiled: its weight format, and how that format is lowered to ONNX.
`plan_recipe` turns the user's request (a name, or 'auto') into one for a given device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from retarget.errors import RetargetError
from retarget.hw_profiles import HardwareProfile
from retarget.quantize.configs import (
    FloatConfig,
    IntWeightOnlyConfig,
    KeepSourceConfig,
    QuantConfig,
    config_from_name,
)

LOWERINGS = {
    # lowering -> the ONNX Runtime execution providers that run it
    "matmulnbits": {"CPUExecutionProvider", "CUDAExecutionProvider", "DmlExecutionProvider", "WebGpuExecutionProvider"},
    "float": None,  # plain MatMul: every provider
}


@dataclass(frozen=True)
class Recipe:
    """Weight format for every Linear (lm_head included) and the ONNX lowering that carries it."""

    weights: QuantConfig
    lowering: str
    why: str
    accuracy_level: int = 0  # MatMulNBits: 0 keeps fp32 activations, 4 quantizes them to int8 per block
    version: ClassVar[int] = 1

    @property
    def name(self) -> str:
        return self.weights.name

    @property
    def weight_format(self) -> str:
        """The number format retarget.perf predicts with (keep: GGUF Q4_1 = 4-bit, g32 scale and minimum)."""
        if isinstance(self.weights, KeepSourceConfig):
            return "int4-g32-asym"
        if isinstance(self.weights, IntWeightOnlyConfig) and self.weights.bits == 4:
            return f"int4-g{self.weights.group_size}-{'sym' if self.weights.symmetric else 'asym'}"
        if isinstance(self.weights, IntWeightOnlyConfig):
            return f"int{self.weights.bits}"
        return "fp32"

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "name": self.name, "weight_format": self.weight_format,
                "weights": self.weights.to_dict(),
                "lowering": self.lowering, "accuracy_level": self.accuracy_level, "why": self.why}


def _lowering_for(config: QuantConfig, profile: HardwareProfile) -> str:
    if isinstance(config, FloatConfig):
        return "float"
    eps = set(profile.onnxruntime_eps)
    if eps & LOWERINGS["matmulnbits"]:
        return "matmulnbits"
    raise RetargetError(f"no lowering for {config.name} on {profile.id}: its ONNX Runtime providers "
                        f"{sorted(eps) or 'none'} run no MatMulNBits", field="--recipe")


def _accuracy_level(lowering: str, profile: HardwareProfile) -> int:
    """On CPUs, MatMulNBits with fp32 activations is slower than a float MatMul at batch 1 (measured here:
    3.2 ms vs 2.0 ms for 6144 x 576); int8 activations (level 4) take MLAS's integer path at 1.0 ms."""
    return 4 if lowering == "matmulnbits" and profile.family == "cpu" else 0


def plan_recipe(requested: str, profile: HardwareProfile, has_source_blocks: bool) -> Recipe:
    """The recipe to compile with. 'auto' picks the fastest format the device's runtime lowers natively.

    Decode is memory-bound, so fewer weight bytes is faster: 4-bit weights. A source that is already
    4-bit (GGUF Q4_1) is carried over as it is ('keep'): re-quantizing would add error for no size gain.
    """
    if requested != "auto":
        config = config_from_name(requested)
        if isinstance(config, KeepSourceConfig) and not has_source_blocks:
            raise RetargetError("recipe 'keep' needs a pre-quantized source (a GGUF with Q4_1/Q8_0 tensors)",
                                field="--recipe")
        lowering = _lowering_for(config, profile)
        return Recipe(config, lowering, why="requested", accuracy_level=_accuracy_level(lowering, profile))
    if has_source_blocks:
        config: QuantConfig = KeepSourceConfig()
        why = "auto: the source is already 4-bit; its blocks lower to MatMulNBits unchanged (no added error)"
    else:
        config = IntWeightOnlyConfig(bits=4, group_size=128, symmetric=False)
        why = "auto: 4-bit weights move 1/8 of the fp32 bytes per decoded token; g128 asymmetric keeps accuracy"
    lowering = _lowering_for(config, profile)
    return Recipe(config, lowering, why=why, accuracy_level=_accuracy_level(lowering, profile))
