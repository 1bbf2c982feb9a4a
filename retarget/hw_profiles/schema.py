"""HardwareProfile: what a device offers an LLM (dense peaks per format, memory, links, formats, toolchain).

Units are in the field names. Every number carries a `provenance` entry (source URL, and whether it is
published, derived from published numbers, assumed, or overridden by the user), checked at build time.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Formats with a dense peak rate in `peak_tflops` (TOPS for int8); fp4 = the FP4 tensor rate (NVFP4/MXFP4);
# fp16 = fp16 inputs with fp32 accumulation; fp16_acc16 = fp16 accumulation, listed only where it is faster
# (GeForce tensor cores run it at twice the fp32-accumulate rate).
PeakFormat = Literal["fp32", "tf32", "bf16", "fp16", "fp16_acc16", "fp8_e4m3", "int8", "fp4"]
PEAK_FORMATS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp16_acc16", "fp8_e4m3", "int8", "fp4")

# Families group devices that share an architecture generation and software stack; perf efficiency factors
# are looked up per family (see retarget/perf/efficiency.yaml).
Family = Literal[
    "nvidia-ampere", "nvidia-ada", "nvidia-hopper", "nvidia-blackwell",
    "amd-cdna3", "amd-cdna4", "amd-rdna3", "intel-gaudi", "ascend", "cambricon", "tpu", "aws-trainium", "apple", "cpu",
]

# The scalar fields that must carry provenance when set.
NUMERIC_FIELDS: tuple[str, ...] = ("memory_gb", "mem_bw_gb_s", "onchip_mb", "interconnect_gb_s", "tdp_w", "cores")


class FieldSource(BaseModel):
    """Where one number came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(pattern=r"^(https?://|--set)", description="URL (or '--set' for a user override)")
    kind: Literal["published", "derived", "assumed", "override"] = "published"
    note: str = ""


class HardwareProfile(BaseModel):
    """One device. Peak rates are dense (no 2:4 sparsity), per device (per package for multi-die parts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    name: str
    vendor: str
    family: Family
    arch: str = ""
    launch_year: int | None = None
    memory_gb: float | None = Field(
        default=None, gt=0, description="device memory as vendors state it: binary GB (GiB), as DRAM/HBM parts are")
    mem_bw_gb_s: float | None = Field(default=None, gt=0, description="peak DRAM/HBM bandwidth, decimal GB/s")
    peak_tflops: dict[PeakFormat, float] = Field(
        default_factory=dict,
        description="dense peak TFLOP/s (TOPS for int8) per format; absent = none/unsourced")
    fp8_variant: Literal["ocp", "fnuz", "none"] = "none"
    onchip_mb: float | None = Field(default=None, ge=0, description="largest on-chip cache/SRAM, MB")
    interconnect_gb_s: float | None = Field(
        default=None, gt=0, description="device-to-device bandwidth, bidirectional aggregate GB/s")
    tdp_w: float | None = Field(default=None, gt=0)
    cores: int | None = Field(
        default=None, gt=0, description="CPU cores of one device (one socket); the peaks assume a run on all of them. "
        "None for accelerators")
    native_formats: list[str] = Field(default_factory=list)
    compiler_target: str | None = Field(
        default=None,
        description="Triton/LLVM target, e.g. 'cuda:90', 'hip:gfx942'; None = no Triton backend")
    triton_backend: Literal["official", "partial", "none"] = "none"
    onnxruntime_eps: list[str] = Field(default_factory=list)
    software_stack: str = ""
    sources: list[str] = Field(min_length=1)
    provenance: dict[str, FieldSource] = Field(
        default_factory=dict, description="field name ('mem_bw_gb_s', 'peak_tflops.bf16') -> source")
    confidence: Literal["high", "medium", "low"]
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> HardwareProfile:
        for fmt, value in self.peak_tflops.items():
            if value <= 0:
                raise ValueError(f"peak_tflops.{fmt} must be > 0 (leave it out when unsupported)")
        numbers = [f for f in NUMERIC_FIELDS if getattr(self, f) is not None]
        numbers += [f"peak_tflops.{fmt}" for fmt in self.peak_tflops]
        missing = [f for f in numbers if f not in self.provenance]
        if missing:
            raise ValueError(f"no provenance (source URL) for {', '.join(missing)}")
        if "fp8_e4m3" in self.peak_tflops and self.fp8_variant == "none":
            raise ValueError("peak_tflops.fp8_e4m3 is set but fp8_variant is 'none'")
        return self

    @property
    def memory_bytes(self) -> float:
        """Device memory in bytes (inf when unknown). A vendor's '80GB' is 80 GiB: an H100 80GB reports 81559 MiB
        to nvidia-smi, the 80 GiB of its HBM stacks less what the driver reserves."""
        return self.memory_gb * 2**30 if self.memory_gb else math.inf

    def peak(self, fmt: str) -> float | None:
        """Dense peak TFLOP/s for FMT, or None when the device has no (sourced) rate for it."""
        return self.peak_tflops.get(fmt)  # type: ignore[call-overload]
