"""Tile choices per vendor family, as data.

Decode: block_m is the padded number of query heads sharing one KV head (at least 16, the smallest MMA M),
block_n the keys per step; the split count comes from the SM count at launch (split_k = 0) so that
B * Hkv * splits fills about SPLIT_WAVES waves. Prefill: block_m queries by block_n keys.
"""

from retarget.kernels._config import KernelConfig

SPLIT_WAVES = 2
MAX_SPLITS = 64

DECODE = {
    "nvidia": KernelConfig(16, 64, 0, num_warps=4, num_stages=2),
    "amd-cdna": KernelConfig(16, 64, 0, num_warps=4, num_stages=1),
    "amd-rdna": KernelConfig(16, 32, 0, num_warps=4, num_stages=1),
}

PREFILL = {
    "nvidia": KernelConfig(128, 64, 0, num_warps=8, num_stages=3),
    "amd-cdna": KernelConfig(128, 64, 0, num_warps=8, num_stages=1),
    "amd-rdna": KernelConfig(64, 32, 0, num_warps=4, num_stages=1),
}

# the combine step: one program per (sequence, head), no tensor cores
COMBINE = KernelConfig(1, 1, 0, num_warps=4, num_stages=1)
