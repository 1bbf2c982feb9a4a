"""The kernels' weight layout, and the repack from the project's unpacked layout.

Project layout (retarget.quantize): codes uint8 [N, K], scale / zero float32 [N, G].
Kernel layout (`PackedWeight`), K-major so one program streams contiguous rows of N:

    bits = 4: qweight uint8 [ceil(K / 2), N]; byte [j, n] = q[n, 2j] | q[n, 2j + 1] << 4
              (low nibble first, the e2m1 packing order of tl.dot_scaled)
    bits = 8: qweight uint8 [K, N]
    scale, zero: [G, N] in the activation dtype (zero points are small integers or floats in code units)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PackedWeight:
    """Group-quantized weight in the kernels' layout (see the module docstring)."""

    qweight: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int
    k: int

    @property
    def n(self) -> int:
        return self.qweight.shape[1]


def supported_group(group_size: int) -> bool:
    """Group sizes the kernels take: multiples of 16 (the smallest MMA K step), per-channel (g = K) included."""
    return group_size > 0 and group_size % 16 == 0


def pack(qweight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, group_size: int,
         dtype: torch.dtype = torch.float16) -> PackedWeight:
    """Repack codes [N, K] and scale / zero [N, G] into the kernel layout on the same device."""
    if bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits}")
    n, k = qweight.shape
    groups = -(-k // group_size)
    if scale.shape != (n, groups) or zero.shape != (n, groups):
        raise ValueError(f"scale/zero must be [{n}, {groups}], got {tuple(scale.shape)}/{tuple(zero.shape)}")
    q = qweight.to(torch.uint8).T.contiguous()                     # [K, N]
    if bits == 4:
        if k % 2:
            q = torch.cat([q, q.new_zeros(1, n)])
        q = (q[0::2] | (q[1::2] << 4)).contiguous()                # [ceil(K/2), N]
    return PackedWeight(qweight=q, scale=scale.T.to(dtype).contiguous(), zero=zero.T.to(dtype).contiguous(),
                        bits=bits, group_size=group_size, k=k)
