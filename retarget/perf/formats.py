"""Number formats as the perf model sees them: storage bits per element (scales included) and the dense
peak rate the matmuls run at on a device (the first format in `compute` the device has a peak for).

Bits per element follow each format's block layout:
* q4_0: 32 x 4-bit + one fp16 scale = 18 bytes / 32 weights = 4.5 bits (ggml `block_q4_0`,
  https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-common.h); q8_0 likewise 34 / 32 -> 8.5;
  q4_1 adds an fp16 minimum: 20 / 32 bytes -> 5.0 bits; q5_0 adds 32 high bits to q4_0: 22 / 32 -> 5.5; q5_1
  24 / 32 -> 6.0; q6_k: 256 weights in 210 bytes (`block_q6_K`) -> 6.5625; the non-linear iq4_nl: 32 x 4-bit
  indices + one fp16 scale = 18 / 32 -> 4.5, iq4_xs: 256 weights in 136 bytes (fp16 scale, 6-bit sub-block
  scales) -> 4.25 (the quantize tool states both: "4.50 bpw" and "4.25 bpw non-linear quantization").
* k-quant mixes (q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m) keep some tensors in a wider type, so their bits are the
  file size over the parameter count: llama.cpp's quantize tool lists Llama-3-8B (8.03B params) at Q2_K 2.96G,
  Q3_K_S 3.41G, Q3_K_M 3.74G, Q3_K_L 4.03G, Q4_K_S 4.37G, Q5_K_S 5.21G, Q5_K_M 5.33G (QUANT_OPTIONS,
  https://github.com/ggml-org/llama.cpp/blob/03161a4eb9a2ec66ef97789f347c5a28279f06ea/tools/quantize/quantize.cpp;
  G = GiB), i.e. 3.17, 3.65, 4.00, 4.31, 4.68, 5.57 and 5.70 bits. q4_k_m: 4.90 bits, the measured file size
  (4.58 GiB, the same as the tool's figure; XiongjieDai README,
  https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference).
* mxfp4: 32 x e2m1 + one e8m0 scale = 4.25 bits (OCP MX spec v1.0,
  https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf);
  nvfp4: 16 x e2m1 + one fp8 scale = 4.5 bits (NVIDIA, https://developer.nvidia.com/blog/introducing-nvfp4-for-efficient-and-accurate-low-precision-inference/).
* fp8-block128: e4m3 weights with one fp32 scale per 128 x 128 block (DeepSeek-V3's checkpoints, Qwen3's -FP8
  ones): 8 bits (the scales add 0.002); its matmuls need block-scaled kernels, whose rate is the engine's.
* intB-gG (B = 2, 3, 4, 8): B bits + an fp16 scale, and for -asym an fp16 zero, per G weights (group
  quantisation; weight-only, so the matmuls run at the bf16 rate).
Weight-only formats (int4, GGUF k-quants) dequantise to bf16 and run at the bf16 rate; so do FP4 formats on
devices without FP4 units (W4A16 kernels). FP8/INT8/FP4 formats
keep the LM head in bf16 (`head_bits`), as ModelOpt/vLLM checkpoints do; GGUF files quantise it too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from retarget.errors import RetargetError

_BF16_CHAIN = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class NumberFormat:
    """A storage format: bits per element and the peak-rate formats its matmuls can use, best first."""

    name: str
    bits: float
    compute: tuple[str, ...] = _BF16_CHAIN
    head_bits: float | None = None  # LM head / embedding bits; None = same as `bits`
    block_scaled: bool = False  # one scale per 128 x 128 weight block: matmuls need the engine's block kernels

    @property
    def bytes(self) -> float:
        return self.bits / 8


FORMATS: dict[str, NumberFormat] = {
    f.name: f
    for f in (
        NumberFormat("fp32", 32, ("fp32",)),
        NumberFormat("bf16", 16),
        NumberFormat("fp16", 16, ("fp16", "bf16", "fp32")),
        NumberFormat("fp8", 8, ("fp8_e4m3", *_BF16_CHAIN), head_bits=16),
        NumberFormat("fp8-block128", 8, ("fp8_e4m3", *_BF16_CHAIN), head_bits=16, block_scaled=True),
        NumberFormat("int8", 8, ("int8", *_BF16_CHAIN), head_bits=16),
        NumberFormat("nvfp4", 4.5, ("fp4", *_BF16_CHAIN), head_bits=16),
        NumberFormat("mxfp4", 4.25, ("fp4", *_BF16_CHAIN), head_bits=16),
        NumberFormat("q8_0", 8.5),
        NumberFormat("q4_0", 4.5),
        NumberFormat("q4_1", 5.0),
        NumberFormat("q5_0", 5.5),
        NumberFormat("q5_1", 6.0),
        NumberFormat("q6_k", 6.5625),
        NumberFormat("iq4_nl", 4.5),
        NumberFormat("iq4_xs", 4.25),
        NumberFormat("q2_k", 3.17),
        NumberFormat("q3_k_s", 3.65),
        NumberFormat("q3_k_m", 4.0),
        NumberFormat("q3_k_l", 4.31),
        NumberFormat("q4_k_s", 4.68),
        NumberFormat("q4_k_m", 4.9),
        NumberFormat("q5_k_s", 5.57),
        NumberFormat("q5_k_m", 5.7),
    )
}
_ALIASES = {
    "f16": "fp16",
    "f32": "fp32",
    "float16": "fp16",
    "bfloat16": "bf16",
    "fp8_e4m3": "fp8",
    "fp8-e4m3": "fp8",
    "e4m3": "fp8",
    "fp4": "nvfp4",
    "w8a8": "int8",
    "q3_k": "q3_k_m",  # llama.cpp's quantize aliases
    "q4_k": "q4_k_m",
    "q5_k": "q5_k_m",
}


def get_format(name: str) -> NumberFormat:
    """The format NAME ('bf16', 'fp8-e4m3-block128', 'int4-g128-asym', 'int3-g64-asym', 'q4_k_m', ...)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in FORMATS:
        return FORMATS[key]
    if m := re.fullmatch(r"int([2348])-g([1-9]\d{0,4})(-asym|-sym)?", key):
        bits, group = int(m.group(1)), int(m.group(2))
        zero = 16 if m.group(3) != "-sym" else 0
        return NumberFormat(key, bits + (16 + zero) / group, head_bits=16)
    if key.startswith("fp8") and "block" in key:  # 'fp8-e4m3-block128', 'fp8-block128-ue8m0' (DeepSeek-V3.1)
        return FORMATS["fp8-block128"]
    for prefix, base in (("fp8", "fp8"), ("int8", "int8"), ("mxfp4", "mxfp4"), ("nvfp4", "nvfp4")):
        if key.startswith(prefix):
            return FORMATS[base]
    known = ", ".join([*FORMATS, "int{2,3,4,8}-g<group>[-asym|-sym]"])
    raise RetargetError(f"unknown number format {name!r}; known: {known}", field="format")


def compute_format(fmt: NumberFormat, peaks: dict[str, float]) -> tuple[str, float]:
    """(peak format, TFLOP/s) the matmuls of FMT run at on a device with PEAKS; bf16 chain as last resort."""
    for candidate in (*fmt.compute, *_BF16_CHAIN):
        if peaks.get(candidate):
            return candidate, peaks[candidate]
    raise RetargetError(
        "device has no sourced peak rate for bf16/fp16/fp32; set one with --set bf16=...", field="peak_tflops"
    )
