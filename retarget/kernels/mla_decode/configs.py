"""Tile choices per vendor family, as data: block_m query heads (>= 16, the smallest MMA M) by block_n
cache rows; each step holds a [block_n, R] latent tile (R = 512 for DeepSeek-V3: 32 KB in bf16 at 32 rows),
so AMD's 64 KB LDS takes smaller tiles. The split count comes from the SM count at launch."""

from retarget.kernels._config import KernelConfig

SPLIT_WAVES = 2
MAX_SPLITS = 64

DECODE = {
    "nvidia": KernelConfig(16, 32, 0, num_warps=8, num_stages=2),   # sm_90 AOT: 181 regs, no spills (64 rows: 246)
    "amd-cdna": KernelConfig(16, 32, 0, num_warps=4, num_stages=1),
    "amd-rdna": KernelConfig(16, 16, 0, num_warps=4, num_stages=1),
}
