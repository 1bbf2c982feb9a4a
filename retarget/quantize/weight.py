"""Group-wise quantized weights: the one layout every quantizer produces and every lowering consumes.

A Linear weight W [N, K] (out_features, in_features) is split along K into G = ceil(K / g) groups of g
elements; the last group may be shorter (SmolLM2's K = 576 with g = 128 leaves a group of 64).

    codes: uint8 [N, K]   one code per element, unpacked
    scale: float32 [N, G] the scale of each group, as a float32 value (whatever it is stored as, below)
    zero:  float32 [N, G] zero point in code units (float elements: always 0)
    W[n, k] = (value(codes[n, k]) - zero[n, k // g]) * scale[n, k // g]

What the fields mean per `element`:

    element  bits  value(code)                              zero                      recipes
    "int"    2..8  the unsigned integer code, 0..2**bits-1  symmetric: 2**(bits-1);   int*, keep, w8a8-*
                                                            llama.cpp Q4_1's minimum
                                                            m becomes -m / d
    "e4m3"   8     the FP8 E4M3 (OCP "fn") bit pattern      0                         fp8-*
    "e2m1"   4     the FP4 E2M1 bit pattern, 0..15          0                         mxfp4, nvfp4
                   (sign in bit 3)

(`retarget.quantize.float_formats.value_table` holds the code -> value tables.)

`scale_format` says how the scale is stored after lowering; `scale` always holds the float32 value:

    "fp32"  float32 as is
    "e8m0"  a power of two 2**e, stored as the OCP E8M0 code e + 127 (MXFP4; the UE8M0 variant of fp8-block128)
    "e4m3"  two-level (NVFP4): scale = e4m3_value * tensor_scale in float32, with one float32 `tensor_scale`
            per tensor and an E4M3 factor per block (scale / tensor_scale rounded to E4M3 recovers it exactly).
            ONNX: DequantizeLinear(e4m3 codes, tensor_scale) gives the block scales of a second
            DequantizeLinear over the E2M1 codes; both multiply in float32, so they reproduce `scale` exactly.

`block_rows` > 1: the scale is shared by blocks of `block_rows` rows as well (fp8-block128: 128 x 128 blocks;
fp8-tensor: block_rows = N, group_size = K, one scale). `scale` still holds a row per output channel, the
block's value repeated over its rows (so dequantize and kernels need no special case);
`block_scale()` gives the stored [ceil(N / block_rows), G] tensor and `storage_bytes` counts only that.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from retarget.quantize import float_formats

ELEMENTS = ("int", "e4m3", "e2m1")
SCALE_BYTES = {"fp32": 4, "e8m0": 1, "e4m3": 1}


@dataclass
class QuantizedWeight:
    """Codes with a scale and zero point per group of `group_size` input channels (see the module docstring)."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int
    element: str = "int"
    scale_format: str = "fp32"
    tensor_scale: float = 1.0
    block_rows: int = 1

    def __post_init__(self) -> None:
        n, k = self.codes.shape
        groups = -(-k // self.group_size)
        if self.scale.shape != (n, groups) or self.zero.shape != (n, groups):
            got = f"{tuple(self.scale.shape)}/{tuple(self.zero.shape)}"
            raise ValueError(f"scale/zero must be [{n}, {groups}], got {got}")
        if self.codes.dtype != torch.uint8:
            raise ValueError(f"codes must be uint8, got {self.codes.dtype}")
        if self.element not in ELEMENTS or self.scale_format not in SCALE_BYTES:
            raise ValueError(f"unknown element {self.element!r} or scale format {self.scale_format!r}")
        if self.element != "int" and self.bits != float_formats.BITS[self.element]:
            raise ValueError(f"{self.element} codes have {float_formats.BITS[self.element]} bits, got {self.bits}")
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)  # type: ignore[return-value]

    @property
    def symmetric(self) -> bool:
        if self.element != "int":
            return True
        return bool((self.zero == 2 ** (self.bits - 1)).all())

    @property
    def integer_zero(self) -> bool:
        return bool((self.zero == self.zero.round()).all())

    def expand(self, per_group: torch.Tensor) -> torch.Tensor:
        """Broadcast a [N, G] tensor to [N, K]."""
        k = self.codes.shape[1]
        return per_group.repeat_interleave(self.group_size, dim=1)[:, :k]

    def values(self) -> torch.Tensor:
        """float32 [N, K]: what each code stands for before zero point and scale."""
        if self.element == "int":
            return self.codes.float()
        return float_formats.decode(self.codes, self.element)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight these codes stand for."""
        w = (self.values() - self.expand(self.zero.float())) * self.expand(self.scale.float())
        return w.to(dtype)

    def block_scale(self) -> torch.Tensor:
        """The scale as stored: float32 [ceil(N / block_rows), G], one row per block of rows."""
        return self.scale[:: self.block_rows]

    def storage_bytes(self) -> int:
        """Bytes as stored after lowering: packed codes, scales in their stored format (plus the per-tensor
        scale of two-level scales), and zero points if not symmetric."""
        n, k = self.shape
        groups = self.scale.shape[1]
        scale_rows = -(-n // self.block_rows)
        scale_bytes = scale_rows * groups * SCALE_BYTES[self.scale_format] + 4 * (self.scale_format == "e4m3")
        if self.element != "int":
            return n * -(-k * self.bits // 8) + scale_bytes
        code_bytes = n * groups * (self.group_size * self.bits // 8)
        if self.symmetric:
            zero_bytes = 0
        elif self.integer_zero:
            zero_bytes = scale_rows * -(-groups * self.bits // 8)
        else:
            zero_bytes = scale_rows * groups * 4
        return code_bytes + scale_bytes + zero_bytes


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int, symmetric: bool) -> QuantizedWeight:
    """Round-to-nearest group-wise quantization of W [N, K].

    Symmetric: scale = max|w| / (2**(bits-1) - 1), codes in [1, 2**bits - 1] around the zero point
    2**(bits-1) (the restricted range, so +max and -max are both exact).
    Asymmetric: scale = (max - min) / (2**bits - 1) over a range that includes 0, integer zero point
    round(-min / scale).
    """
    if w.dim() != 2:
        raise ValueError(f"expected a 2-D weight, got {tuple(w.shape)}")
    n, k = w.shape
    groups = -(-k // group_size)
    pad = groups * group_size - k
    w32 = w.detach().float()
    # pad the last group with its own first value so it does not widen the range
    if pad:
        w32 = torch.cat([w32, w32[:, -1:].expand(n, pad)], dim=1)
    g = w32.view(n, groups, group_size)
    qmax = 2**bits - 1
    if symmetric:
        half = 2 ** (bits - 1)
        scale = g.abs().amax(dim=2) / (half - 1)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = torch.full_like(scale, float(half))
    else:
        lo = g.amin(dim=2).clamp(max=0)
        hi = g.amax(dim=2).clamp(min=0)
        scale = (hi - lo) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        zero = (-lo / scale).round().clamp(0, qmax)
    codes = (g / scale[..., None] + zero[..., None]).round().clamp(0, qmax)
    codes = codes.view(n, groups * group_size)[:, :k].to(torch.uint8)
    return QuantizedWeight(codes=codes, scale=scale, zero=zero, bits=bits, group_size=group_size)
