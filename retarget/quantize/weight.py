"""Group-wise integer weights: the one layout every quantizer produces and every lowering consumes.

A Linear weight W [N, K] (out_features, in_features) is split along K into G = ceil(K / g) groups of g
elements; the last group may be shorter (SmolLM2's K = 576 with g = 128 leaves a group of 64).

    codes: uint8 [N, K]   unsigned integer codes in [0, 2**bits - 1], unpacked
    scale: float32 [N, G]
    zero:  float32 [N, G] zero point in code units (symmetric: 2**(bits - 1); llama.cpp Q4_1's
                          minimum m becomes the float zero point -m / d)
    W[n, k] = (codes[n, k] - zero[n, k // g]) * scale[n, k // g]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizedWeight:
    """Integer codes with a scale and zero point per group of `group_size` input channels."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int

    def __post_init__(self) -> None:
        n, k = self.codes.shape
        groups = -(-k // self.group_size)
        if self.scale.shape != (n, groups) or self.zero.shape != (n, groups):
            got = f"{tuple(self.scale.shape)}/{tuple(self.zero.shape)}"
            raise ValueError(f"scale/zero must be [{n}, {groups}], got {got}")
        if self.codes.dtype != torch.uint8:
            raise ValueError(f"codes must be uint8, got {self.codes.dtype}")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)  # type: ignore[return-value]

    @property
    def symmetric(self) -> bool:
        return bool((self.zero == 2 ** (self.bits - 1)).all())

    @property
    def integer_zero(self) -> bool:
        return bool((self.zero == self.zero.round()).all())

    def expand(self, per_group: torch.Tensor) -> torch.Tensor:
        """Broadcast a [N, G] tensor to [N, K]."""
        k = self.codes.shape[1]
        return per_group.repeat_interleave(self.group_size, dim=1)[:, :k]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight these codes stand for."""
        w = (self.codes.float() - self.expand(self.zero.float())) * self.expand(self.scale.float())
        return w.to(dtype)

    def storage_bytes(self) -> int:
        """Bytes as stored after lowering: packed codes, fp32 scales, and zero points if not symmetric."""
        n, k = self.shape
        groups = self.scale.shape[1]
        code_bytes = n * groups * (self.group_size * self.bits // 8)
        if self.symmetric:
            zero_bytes = 0
        elif self.integer_zero:
            zero_bytes = n * -(-groups * self.bits // 8)
        else:
            zero_bytes = n * groups * 4
        return code_bytes + n * groups * 4 + zero_bytes


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
