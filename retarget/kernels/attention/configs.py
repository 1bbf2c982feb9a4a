"""Tile choices per vendor family, as data.

Decode: block_m is the padded number of query heads sharing one KV head (at least 16, the smallest MMA M),
block_n the keys per step; the split count comes from the SM count at launch (split_k = 0) so that
B * Hkv * splits fills about SPLIT_WAVES waves. Prefill: block_m queries by block_n keys, per padded head width
(rows of (max BLOCK_D, config), picked by _config.pick): the query tile and the pipelined key and value tiles must
fit the shared memory, so wider heads (MLA's 192 = 128 + 64 rope, padded to 256) take smaller tiles. On an H200
the 128 x 64 three-stage tile wanted 256 KB at BLOCK_D 256, over the 227 KB limit.
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
    "nvidia": [(128, KernelConfig(128, 64, 0, num_warps=8, num_stages=3)),
               (256, KernelConfig(64, 64, 0, num_warps=8, num_stages=2))],
    "amd-cdna": [(128, KernelConfig(128, 64, 0, num_warps=8, num_stages=1)),
                 (256, KernelConfig(32, 32, 0, num_warps=4, num_stages=1))],
    "amd-rdna": [(128, KernelConfig(64, 32, 0, num_warps=4, num_stages=1)),
                 (256, KernelConfig(32, 32, 0, num_warps=4, num_stages=1))],
}

# the combine step: one program per (sequence, head), no tensor cores
COMBINE = KernelConfig(1, 1, 0, num_warps=4, num_stages=1)
